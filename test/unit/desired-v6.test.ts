/**
 * Desired state and plan for both families, one code path (contract §11): the
 * IPv6 half of a lease gives neighbour → FDB → route on flannel-v6.<VNI>; an
 * IPv4-only lease gives nothing there; an IPv6-only lease nothing on flannel.<VNI>.
 */
import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { Lease, LeaseV6 } from '../../src/lease/lease';
import { IPV4, IPV6 } from '../../src/net/family';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { PeerEntries, peerSkipReason } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';
import { describeEntry, planChanges } from '../../src/overlay/plan';
import { RefusedLeases } from '../../src/overlay/refused';

const dual = parseNetworkConfig('{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}');
const v6only = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}');
const v4only = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');

const self4 = { subnet: parseCidr('10.7.5.0/24'), publicIP: parseIPv4('10.65.154.11'), vtepMAC: '02:00:00:00:04:05' };
const self6 = { subnet: parseCidr6('fc00:0:0:5::/64'), publicIP: parseIPv6('2001:db8::11'), vtepMAC: '02:00:00:00:06:05' };

function v6half(n: number, extra: Partial<LeaseV6> = {}): LeaseV6 {
  return { subnet: parseCidr6(`fc00:0:0:${n.toString(16)}::/64`), publicIP: parseIPv6(`2001:db8::${n.toString(16)}`), vni: 1, vtepMAC: `02:00:00:00:06:${n.toString(16).padStart(2, '0')}`, ...extra };
}

function lease(n: number, opts: { v4?: boolean; v6?: LeaseV6 | undefined; rev?: string } = {}): Lease {
  const v4 = opts.v4 ?? true;
  return {
    subnet: v4 ? parseCidr(`10.7.${n}.0/24`) : parseCidr('0.0.0.0/0'),
    publicIP: v4 ? parseIPv4(`10.65.154.${n}`) : 0,
    backendType: 'vxlan',
    vni: 1,
    vtepMAC: v4 ? `02:00:00:00:04:${n.toString(16).padStart(2, '0')}` : undefined,
    hasIPv4: v4,
    v6: opts.v6,
    createRevision: opts.rev,
  };
}

const describePeer = (p: PeerEntries | undefined): string[] => (p ? [p.neighbor, p.fdb, p.route].flatMap((e) => (e ? [describeEntry(e)] : [])) : []);

describe('desiredState per family', () => {
  const leases = [lease(5, { v6: v6half(5) }), lease(12, { v6: v6half(12) }), lease(13), lease(0, { v4: false, v6: v6half(14) })];

  it('IPv6: one neighbour, FDB (dst PublicIPv6) and onlink route per IPv6 half; never our own, nothing for an IPv4-only lease', () => {
    const d = desiredState(self6, leases, dual, undefined, IPV6);
    expect([...d.peers.keys()]).toEqual(['fc00:0:0:c::/64', 'fc00:0:0:e::/64']);
    expect(describePeer(d.peers.get('fc00:0:0:c::/64'))).toEqual([
      'neighbor fc00:0:0:c:: lladdr 02:00:00:00:06:0c',
      'fdb 02:00:00:00:06:0c dst 2001:db8::c',
      'route fc00:0:0:c::/64 via fc00:0:0:c:: onlink',
    ]);
    expect(d.skipped).toEqual([]);
  });

  it('IPv4 in the same dual-stack cluster: the IPv4 halves only; an IPv6-only lease is no IPv4 peer and no problem', () => {
    const d = desiredState(self4, leases, dual, undefined, IPV4);
    expect([...d.peers.keys()]).toEqual(['10.7.12.0/24', '10.7.13.0/24']);
    expect(describePeer(d.peers.get('10.7.12.0/24'))).toContain('fdb 02:00:00:00:04:0c dst 10.65.154.12');
    expect(d.skipped).toEqual([]);
  });

  it('an IPv4-only config programs no IPv6 peers; an IPv6-only config no IPv4 peers', () => {
    expect(desiredState(self6, leases, v4only, undefined, IPV6).peers.size).toBe(0);
    expect(desiredState(self4, leases, v6only, undefined, IPV4).peers.size).toBe(0);
    expect([...desiredState(self6, leases, v6only, undefined, IPV6).peers.keys()]).toEqual(['fc00:0:0:c::/64', 'fc00:0:0:e::/64']);
  });

  it('validates the IPv6 half as the IPv4 one: network, length, PublicIPv6, VNI, MAC', () => {
    const why = (v6: LeaseV6): string | undefined => peerSkipReason(self6, lease(20, { v6 }), dual, IPV6);
    expect(why(v6half(20))).toBeUndefined();
    expect(why(v6half(20, { subnet: parseCidr6('fd00:0:0:20::/64') }))).toBe('subnet is outside IPv6Network fc00::/48');
    expect(why(v6half(20, { subnet: parseCidr6('fc00:0:0:20::/80') }))).toBe('subnet length is not /64');
    expect(why(v6half(20, { publicIP: undefined }))).toBe('no PublicIPv6');
    expect(why(v6half(20, { publicIP: self6.publicIP }))).toBe("PublicIPv6 2001:db8::11 is this node's own");
    expect(why(v6half(20, { publicIP: parseIPv6('ff02::1') }))).toMatch(/^PublicIPv6 ff02::1 is not a unicast host address: multicast/);
    expect(why(v6half(20, { publicIP: parseIPv6('fe80::1') }))).toMatch(/link-local/);
    expect(why(v6half(20, { vni: 7 }))).toBe('VNI 7 differs from ours (1)');
    expect(why(v6half(20, { vtepMAC: undefined }))).toBe('no VtepMAC in BackendV6Data');
    expect(why(v6half(20, { vtepMAC: self6.vtepMAC }))).toBe("VtepMAC 02:00:00:00:06:05 is this node's own");
    expect(why(v6half(20, { vtepMAC: '33:33:00:00:00:01' }))).toMatch(/multicast/);
  });

  it('a VtepMAC two IPv6 halves claim stays with the older lease', () => {
    const older = lease(30, { v6: v6half(30, { vtepMAC: '02:00:00:00:06:99' }), rev: '10' });
    const newer = lease(31, { v6: v6half(31, { vtepMAC: '02:00:00:00:06:99' }), rev: '20' });
    const d = desiredState(self6, [newer, older], dual, undefined, IPV6);
    expect([...d.peers.keys()]).toEqual(['fc00:0:0:1e::/64']);
    expect(d.skipped).toEqual([{ subnet: 'fc00:0:0:1f::/64', reason: 'VtepMAC 02:00:00:00:06:99 is already used by fc00:0:0:1e::/64, which etcd created earlier' }]);
  });

  it('refusals are per family: an IPv6 refusal keys on the IPv6 subnet and leaves the IPv4 half programmed', () => {
    const peer = lease(12, { v6: v6half(12) });
    const refused6 = new RefusedLeases(IPV6);
    expect(refused6.add(peer, 'the kernel refused it')).toBe(true);
    expect(refused6.add(peer, 'again')).toBe(false);
    const d6 = desiredState(self6, [peer], dual, (l) => refused6.reason(l), IPV6);
    expect(d6.skipped).toEqual([{ subnet: 'fc00:0:0:c::/64', reason: 'the kernel refused it' }]);
    expect(desiredState(self4, [peer], dual, (l) => new RefusedLeases(IPV4).reason(l), IPV4).peers.size).toBe(1);
    // A new PublicIPv6 is a new value: tried again.
    refused6.forget([lease(12, { v6: v6half(12, { publicIP: parseIPv6('2001:db8::99') }) })]);
    expect(refused6.size).toBe(0);
  });
});

describe('planChanges on IPv6 entries', () => {
  it('adds neighbour → FDB → route, repairs a moved FDB dst, removes stale entries route first', () => {
    const d = desiredState(self6, [lease(12, { v6: v6half(12) })], dual, undefined, IPV6);
    const add = planChanges(d, []);
    expect(add.map((o) => `${o.op} ${describeEntry(o.entry)}`)).toEqual([
      'replace neighbor fc00:0:0:c:: lladdr 02:00:00:00:06:0c',
      'replace fdb 02:00:00:00:06:0c dst 2001:db8::c',
      'replace route fc00:0:0:c::/64 via fc00:0:0:c:: onlink',
    ]);
    const peer = d.peers.get('fc00:0:0:c::/64');
    if (!peer?.neighbor || !peer.fdb) throw new Error('no vxlan peer');
    const moved = { ...peer.fdb, dst: parseIPv6('2001:db8::99') };
    expect(planChanges(d, [peer.neighbor, moved, peer.route]).map((o) => o.reason)).toEqual(['wrong dst 2001:db8::99']);
    expect(planChanges(d, [peer.neighbor, peer.fdb, peer.route])).toEqual([]);
    const gone = desiredState(self6, [], dual, undefined, IPV6);
    expect(planChanges(gone, [peer.neighbor, peer.fdb, peer.route]).map((o) => `${o.op} ${o.entry.kind}`)).toEqual(['delete route', 'delete fdb', 'delete neighbor']);
  });
});
