import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { Entry } from '../../src/kernel/kernel';
import { Lease } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { vxlanLease } from '../helpers/vxlan-lease';
import { peerEntries } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';
import { describeEntry, planChanges } from '../../src/overlay/plan';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: parseIPv4('10.65.154.11') };
const peer12 = vxlanLease('10.7.12.0/24', '10.65.154.12', '02:00:00:00:00:12');
const peer13 = vxlanLease('10.7.13.0/24', '10.65.154.13', '02:00:00:00:00:13');

function entriesOf(...leases: Lease[]): Entry[] {
  return leases.flatMap((l) => {
    const p = peerEntries({ ...l, vtepMAC: l.vtepMAC as string });
    return [p.neighbor as Entry, p.fdb as Entry, p.route];
  });
}

describe('desiredState', () => {
  it('has one peer per remote vxlan lease and never our own', () => {
    const d = desiredState(self, [vxlanLease('10.7.5.0/24', '10.65.154.11', '02:00:00:00:00:05'), peer12, peer13], config);
    expect([...d.peers.keys()]).toEqual(['10.7.12.0/24', '10.7.13.0/24']);
    const p = d.peers.get('10.7.12.0/24');
    expect(p && [describeEntry(p.neighbor as Entry), describeEntry(p.fdb as Entry), describeEntry(p.route)]).toEqual([
      'neighbor 10.7.12.0 lladdr 02:00:00:00:00:12',
      'fdb 02:00:00:00:00:12 dst 10.65.154.12',
      'route 10.7.12.0/24 via 10.7.12.0 onlink',
    ]);
    expect(d.skipped).toEqual([]);
  });
  it.each([
    [vxlanLease('10.7.20.0/24', '10.65.154.20', '02:00:00:00:00:20', { backendType: 'udp' }), 'backend type'],
    [vxlanLease('10.7.20.0/24', '10.65.154.20', '02:00:00:00:00:20', { vtepMAC: undefined }), 'no VtepMAC'],
    [vxlanLease('10.8.20.0/24', '10.65.154.20', '02:00:00:00:00:20'), 'outside Network'],
    [vxlanLease('10.7.20.0/25', '10.65.154.20', '02:00:00:00:00:20'), 'length'],
    [vxlanLease('10.7.20.0/24', '10.65.154.11', '02:00:00:00:00:20'), "this node's own"],
    [vxlanLease('10.7.20.0/24', '10.65.154.20', '02:00:00:00:00:20', { vni: 2 }), 'VNI'],
    [vxlanLease('10.7.20.0/24', '10.65.154.20', '02:00:00:00:00:12'), 'already used by 10.7.12.0/24'],
  ])('skips %# with a reason (%s)', (bad, reason) => {
    const d = desiredState(self, [peer12, bad], config);
    expect(d.peers.size).toBe(1);
    expect(d.skipped).toHaveLength(1);
    expect(d.skipped[0]?.reason).toContain(reason);
  });
});

describe('planChanges', () => {
  const desired = desiredState(self, [peer12, peer13], config);

  it('adds neighbour, FDB, route per peer, in that order', () => {
    const plan = planChanges(desired, []);
    expect(plan.map((o) => `${o.op} ${o.entry.kind} ${o.reason}`)).toEqual([
      'replace neighbor missing',
      'replace fdb missing',
      'replace route missing',
      'replace neighbor missing',
      'replace fdb missing',
      'replace route missing',
    ]);
  });
  it('is empty when the kernel matches', () => {
    expect(planChanges(desired, entriesOf(peer12, peer13))).toEqual([]);
  });
  it('removes stale entries in reverse order, before additions', () => {
    const stale = vxlanLease('10.7.99.0/24', '10.65.154.99', '02:00:00:00:00:99');
    const plan = planChanges(desired, [...entriesOf(peer12, stale)]);
    expect(plan.map((o) => `${o.op} ${describeEntry(o.entry)}`)).toEqual([
      'delete route 10.7.99.0/24 via 10.7.99.0 onlink',
      'delete fdb 02:00:00:00:00:99 dst 10.65.154.99',
      'delete neighbor 10.7.99.0 lladdr 02:00:00:00:00:99',
      'replace neighbor 10.7.13.0 lladdr 02:00:00:00:00:13',
      'replace fdb 02:00:00:00:00:13 dst 10.65.154.13',
      'replace route 10.7.13.0/24 via 10.7.13.0 onlink',
    ]);
  });
  it('replaces the neighbour and drops the old FDB entry when a peer gets a new MAC', () => {
    const moved = { ...peer12, vtepMAC: '02:00:00:00:01:12' };
    const plan = planChanges(desiredState(self, [moved, peer13], config), entriesOf(peer12, peer13));
    expect(plan.map((o) => `${o.op} ${describeEntry(o.entry)} (${o.reason})`)).toEqual([
      'delete fdb 02:00:00:00:00:12 dst 10.65.154.12 (stale)',
      'replace neighbor 10.7.12.0 lladdr 02:00:00:00:01:12 (wrong mac 02:00:00:00:00:12)',
      'replace fdb 02:00:00:00:01:12 dst 10.65.154.12 (missing)',
    ]);
  });
  it('replaces the FDB entry when a peer gets a new public IP', () => {
    const moved = { ...peer12, publicIP: parseIPv4('10.65.154.42') };
    const plan = planChanges(desiredState(self, [moved, peer13], config), entriesOf(peer12, peer13));
    expect(plan.map((o) => `${o.op} ${describeEntry(o.entry)} (${o.reason})`)).toEqual(['replace fdb 02:00:00:00:00:12 dst 10.65.154.42 (wrong dst 10.65.154.12)']);
  });
  it('repairs a route without onlink, a wrong gateway and a non-permanent neighbour', () => {
    const actual: Entry[] = entriesOf(peer12, peer13).map((e) => {
      if (e.kind === 'route' && e.dst.ip === peer12.subnet.ip) return { ...e, onlink: false };
      if (e.kind === 'route') return { ...e, gateway: parseIPv4('10.7.13.1') };
      if (e.kind === 'neighbor' && e.ip === peer12.subnet.ip) return { ...e, permanent: false };
      return e;
    });
    expect(planChanges(desired, actual).map((o) => `${o.entry.kind} ${o.reason}`)).toEqual(['neighbor not permanent', 'route not onlink', 'route wrong gateway 10.7.13.1']);
  });
  it('drops an extra appended FDB remote but leaves kernel-made neighbours alone', () => {
    const extraFdb: Entry = { kind: 'fdb', mac: '02:00:00:00:00:12', dst: parseIPv4('10.65.154.77'), permanent: true };
    const kernelNeigh: Entry = { kind: 'neighbor', ip: parseIPv4('10.7.77.0'), mac: '00:00:00:00:00:00', permanent: false };
    const plan = planChanges(desired, [...entriesOf(peer12, peer13), extraFdb, kernelNeigh]);
    expect(plan.map((o) => `${o.op} ${describeEntry(o.entry)}`)).toEqual(['delete fdb 02:00:00:00:00:12 dst 10.65.154.77']);
  });
});
