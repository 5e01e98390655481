/**
 * DirectRouting for IPv6 (contract §12, "per peer and family"): the route lookup
 * of a PublicIPv6, the rule applied to its answer, the per-family decisions and
 * their invalidation, the IPv6 direct route as a peer entry (codec, plan), and a
 * dual-stack daemon on the in-memory fakes deciding each family on its own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { Entry, HostNetwork, HostRoute, RTPROT_FLANNELD_TS, describeEntry } from '../../src/kernel/kernel';
import { decodeRouteLookup, encodeRouteQuery } from '../../src/kernel/route-query';
import { decodeRoute, encodeOperation } from '../../src/kernel/rtnl-codec';
import { Lease } from '../../src/lease/lease';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { IPV6, IpAddr } from '../../src/net/family';
import { parseIPv4 } from '../../src/net/ipv4';
import { Cidr6, parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { DesiredState, LeaseHalf } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';
import { DirectDecisions, hostFingerprint, isDirectRoute } from '../../src/overlay/direct-routing';
import { planChanges } from '../../src/overlay/plan';
import { waitFor } from '../../src/testbed/scene';
import { eth0Kernel } from '../helpers/eth0-kernel';
import { startMemoryDaemon } from '../helpers/memory-daemon';

const ip6 = parseIPv6;
const words = (plan: ReturnType<typeof planChanges>): string[] => plan.map((o) => `${o.op} ${describeEntry(o.entry)} (${o.reason})`);


/** The kernel entries that would hold exactly this desired state. */
function kernelOf(state: DesiredState): Entry[] {
  return [...state.peers.values()].flatMap((p) => [p.neighbor, p.fdb, p.route].filter((e): e is Entry => e !== undefined));
}
describe('the route lookup for a PublicIPv6 (`ip -6 route get`)', () => {
  it('sends what iproute2 sends: AF_INET6, /128, RTA_DST of 16 bytes', () => {
    // strace -e trace=sendmsg -xx ip -6 route get 2001:db8:154::12
    expect(encodeRouteQuery({ dst: ip6('2001:db8:154::12') }).toString('hex')).toBe('0a8000000000000000000000' + '14000100' + '20010db8015400000000000000000012');
  });

  it('decodes an AF_INET6 answer: a gateway is not direct, none is', () => {
    const answer = (gateway: bigint | undefined): Buffer => {
      const head = Buffer.from('0a800000fe000001' + '00000000', 'hex');
      const attr = (type: number, payload: Buffer): Buffer => Buffer.concat([Buffer.from([4 + payload.length, 0, type, 0]), payload]);
      const addr = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(32, '0'), 'hex');
      const oif = Buffer.alloc(4);
      oif.writeUInt32LE(2);
      return Buffer.concat([head, attr(1, addr(ip6('2001:db8:200::13'))), attr(4, oif), ...(gateway === undefined ? [] : [attr(5, addr(gateway))]), attr(7, addr(ip6('2001:db8:154::11')))]);
    };
    const routed = decodeRouteLookup(answer(ip6('2001:db8:154::1')));
    expect(routed).toEqual({ type: 'unicast', table: 254, oif: 2, gateway: ip6('2001:db8:154::1'), prefsrc: ip6('2001:db8:154::11') });
    expect(isDirectRoute(routed)).toBe(false);
    const onLink = decodeRouteLookup(answer(undefined));
    expect(onLink.gateway).toBeUndefined();
    expect(isDirectRoute(onLink)).toBe(true);
    expect(isDirectRoute({ gateway: 0n })).toBe(true);
  });
});

describe('IPv6 decisions and what invalidates them', () => {
  const r4 = (dst: string): HostRoute => ({ dst: { ip: parseIPv4(dst.split('/')[0] as string), prefixLen: Number(dst.split('/')[1]) }, table: 254, protocol: 3, scope: 0, type: 1, devices: [2] });
  const r6 = (dst: string, extra: Partial<HostRoute<Cidr6>> = {}): HostRoute<Cidr6> => ({ dst: parseCidr6(dst), table: 254, protocol: 3, scope: 0, type: 1, devices: [2], ...extra });
  const eth0 = { index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [], addresses6: [{ ip: ip6('2001:db8:154::11'), prefixLen: 64, scope: 0, flags: 0 }] };
  const host = (extra: Partial<HostNetwork> = {}): HostNetwork => ({ interfaces: [eth0], routes: [], routes6: [r6('2001:db8:154::/64', { protocol: 2 })], ...extra });

  it('an IPv6 decision is redone when IPv6 routes change, not for IPv4 routes, link-local addresses or a new veth', async () => {
    const asked: IpAddr[] = [];
    const d = new DirectDecisions(async (dst) => {
      asked.push(dst);
      return dst === ip6('2001:db8:154::12') ? { index: 2, src: undefined } : { index: 2, src: undefined, gateway: ip6('2001:db8:154::1') };
    }, 6);
    expect(d.observe(host(), 9)).toBe(false);
    await d.decide([ip6('2001:db8:154::12'), ip6('2001:db8:5::13')]);
    expect([d.isDirect(ip6('2001:db8:154::12')), d.isDirect(ip6('2001:db8:5::13'))]).toEqual([true, false]);
    // An IPv4 route, a pod's veth with only a link-local address and its fe80::/64 and ff00::/8 routes, our own routes: no news.
    const veth = { index: 7, name: 'veth1', mtu: 1500, up: true, addresses: [], addresses6: [{ ip: ip6('fe80::1'), prefixLen: 64, scope: 253, flags: 0 }] };
    const quiet = host({
      interfaces: [eth0, veth],
      routes: [r4('10.66.0.0/24')],
      routes6: [...(host().routes6 ?? []), r6('fe80::/64', { devices: [7], protocol: 2 }), r6('ff00::/8', { devices: [7], table: 255, type: 5 }), r6('fc00:0:0:c::/64', { protocol: RTPROT_FLANNELD_TS, gateway: ip6('2001:db8:154::12') }), r6('fc00:0:0:d::/64', { devices: [9] })],
    });
    expect(d.observe(quiet, 9)).toBe(false);
    expect(await d.decide([ip6('2001:db8:154::12'), ip6('2001:db8:5::13')])).toBe(0);
    // A global IPv6 address on another NIC is news: every IPv6 decision is made again.
    const eth1 = { index: 3, name: 'eth1', mtu: 1500, up: true, addresses: [], addresses6: [{ ip: ip6('2001:db8:5::11'), prefixLen: 64, scope: 0, flags: 0 }] };
    expect(d.observe(host({ interfaces: [eth0, eth1] }), 9)).toBe(true);
    expect(await d.decide([ip6('2001:db8:154::12'), ip6('2001:db8:5::13')])).toBe(2);
    expect(asked).toHaveLength(4);
  });

  it('the IPv4 fingerprint ignores IPv6 changes', () => {
    expect(hostFingerprint(host({ routes6: [] }), 9, 4)).toBe(hostFingerprint(host(), 9, 4));
    expect(hostFingerprint(host({ routes6: [] }), 9, 6)).not.toBe(hostFingerprint(host(), 9, 6));
  });
});

describe('the IPv6 direct route as a peer entry', () => {
  const config = parseNetworkConfig('{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan","DirectRouting":true}}');
  const self = { subnet: parseCidr6('fc00:0:0:5::/64'), publicIP: ip6('2001:db8:154::11') };
  const lease = (n: number, publicIPv6: string): Lease => ({
    subnet: { ip: parseIPv4(`10.7.${n}.0`), prefixLen: 24 },
    publicIP: parseIPv4(`10.65.154.${n}`),
    backendType: 'vxlan',
    vni: 1,
    vtepMAC: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
    v6: { subnet: parseCidr6(`fc00:0:0:${n.toString(16)}::/64`), publicIP: ip6(publicIPv6), vni: 1, vtepMAC: `02:00:00:00:06:${n.toString(16).padStart(2, '0')}` },
  });
  const p12 = lease(12, '2001:db8:154::12');
  const p13 = lease(13, '2001:db8:5::13');
  const modeOf = (h: LeaseHalf) => (h.publicIP === ip6('2001:db8:154::12') ? ('direct' as const) : ('vxlan' as const));
  const desired = desiredState(self, [p12, p13], config, undefined, IPV6, modeOf);

  it('a direct IPv6 peer has one route via its PublicIPv6 (proto 152); the other keeps flannel-v6\'s three entries', () => {
    expect(words(planChanges(desired, []))).toEqual([
      'replace route fc00:0:0:c::/64 via 2001:db8:154::12 proto 152 (missing)',
      'replace neighbor fc00:0:0:d:: lladdr 02:00:00:00:06:0d (missing)',
      'replace fdb 02:00:00:00:06:0d dst 2001:db8:5::13 (missing)',
      'replace route fc00:0:0:d::/64 via fc00:0:0:d:: onlink (missing)',
    ]);
  });

  it('vxlan → direct for IPv6: the route is replaced in place, then the neighbour and FDB entry go', () => {
    const vxlan = desiredState(self, [p12, p13], config, undefined, IPV6);
    const before = kernelOf(vxlan);
    expect(words(planChanges(desired, before))).toEqual([
      'replace route fc00:0:0:c::/64 via 2001:db8:154::12 proto 152 (missing)',
      'delete fdb 02:00:00:00:06:0c dst 2001:db8:154::12 (peer is direct)',
      'delete neighbor fc00:0:0:c:: lladdr 02:00:00:00:06:0c (peer is direct)',
    ]);
  });

  it('direct → vxlan for IPv6: neighbour and FDB first, then the direct route goes just before the onlink route (the kernel refuses the replace over it)', () => {
    const vxlan = desiredState(self, [p12, p13], config, undefined, IPV6);
    const now = kernelOf(desired);
    expect(words(planChanges(vxlan, now))).toEqual([
      'replace neighbor fc00:0:0:c:: lladdr 02:00:00:00:06:0c (missing)',
      'replace fdb 02:00:00:00:06:0c dst 2001:db8:154::12 (missing)',
      'delete route fc00:0:0:c::/64 via 2001:db8:154::12 proto 152 (peer is vxlan)',
      'replace route fc00:0:0:c::/64 via fc00:0:0:c:: onlink (missing)',
    ]);
  });

  it('encodes `ip -6 route replace|del <subnet> via <PublicIPv6> proto 152` as iproute2 does, and lists it as ours on any device', () => {
    const route = desired.peers.get('fc00:0:0:c::/64')?.route as Entry;
    const add = encodeOperation(4, { op: 'replace', entry: route }).body;
    // strace -xx of iproute2: AF_INET6, /64, table main, proto 0x98, scope universe, unicast; RTA_DST, RTA_GATEWAY; no RTA_OIF.
    expect(add.toString('hex')).toBe('0a400000fe98000100000000' + '14000100' + 'fc0000000000000c0000000000000000' + '14000500' + '20010db8015400000000000000000012');
    expect(decodeRoute(add, 77)).toEqual({ kind: 'route', dst: parseCidr6('fc00:0:0:c::/64'), gateway: ip6('2001:db8:154::12'), onlink: false, direct: true });
    const del = encodeOperation(4, { op: 'delete', entry: route }).body;
    // The delete names the protocol and the gateway, so the kernel removes only our route.
    expect(del.subarray(0, 12).toString('hex')).toBe('0a400000fe98ff0000000000');
    expect(del.subarray(12).toString('hex')).toBe(add.subarray(12).toString('hex'));
  });
});

const PFX = '/coreos.com/network/subnets/';
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function dualValue(n: number, publicIP: string, publicIPv6: string): string {
  const mac = (f: string) => `02:00:00:00:${f}:${n.toString(16).padStart(2, '0')}`;
  return `{"PublicIP":"${publicIP}","PublicIPv6":"${publicIPv6}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac('00')}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${mac('06')}"}}`;
}

describe('a dual-stack daemon with DirectRouting (in-memory fakes)', () => {
  it('decides each family of a peer on its own, and re-decides IPv6 when the host gains an IPv6 address', async () => {
    const store = new MemoryLeaseStore();
    // Peer 12 shares both of eth0's segments; peer 13 is behind the default routes in both families.
    store.putRaw(`${PFX}10.7.12.0-24&fc00:0:0:c::-64`, dualValue(12, '10.65.154.12', '2001:db8:154::12'));
    store.putRaw(`${PFX}10.7.13.0-24&fc00:0:0:d::-64`, dualValue(13, '10.66.0.13', '2001:db8:5::13'));
    const kernel = eth0Kernel({ addresses6: ['2001:db8:154::11/64'], flags6: 0, gateway: '10.65.154.1', gateway6: '2001:db8:154::1' });
    const config = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan","DirectRouting":true}}';
    const { daemon, logs, close } = startMemoryDaemon({ config, store, kernel, prefix: 'flts-direct6-', args: ['--iptables-forward-rules=false'] });
    cleanups.push(close);
    const entries = async (device: string, family: 4 | 6): Promise<string[]> => {
      const d = await kernel.getDevice(device);
      if (!d) return [];
      return (await kernel.listEntries(d.index)).filter((e) => (typeof (e.kind === 'route' ? e.dst.ip : e.kind === 'neighbor' ? e.ip : e.dst) === 'bigint') === (family === 6)).map(describeEntry).sort();
    };
    await waitFor('daemon ready', () => daemon.status().phase === 'ready', 5000, 10);
    await waitFor('both families programmed', async () => (await entries('flannel-v6.1', 6)).length === 4 && (await entries('flannel.1', 4)).length === 4, 3000, 20);
    expect(await entries('flannel.1', 4)).toEqual(['fdb 02:00:00:00:00:0d dst 10.66.0.13', 'neighbor 10.7.13.0 lladdr 02:00:00:00:00:0d', 'route 10.7.12.0/24 via 10.65.154.12 proto 152', 'route 10.7.13.0/24 via 10.7.13.0 onlink']);
    expect(await entries('flannel-v6.1', 6)).toEqual(['fdb 02:00:00:00:06:0d dst 2001:db8:5::13', 'neighbor fc00:0:0:d:: lladdr 02:00:00:00:06:0d', 'route fc00:0:0:c::/64 via 2001:db8:154::12 proto 152', 'route fc00:0:0:d::/64 via fc00:0:0:d:: onlink']);
    // eth1 on 2001:db8:5::/64 only: peer 13's PublicIPv6 is now on-link, its PublicIP is not. Its IPv6 half moves, its IPv4 half stays.
    kernel.addInterface({ index: 3, name: 'eth1', mtu: 1500, up: true, addresses: [], addresses6: [{ ip: ip6('2001:db8:5::11'), prefixLen: 64, scope: 0, flags: 0 }] });
    await waitFor('peer 13 direct over IPv6', async () => (await entries('flannel-v6.1', 6)).length === 2, 3000, 20);
    expect(await entries('flannel-v6.1', 6)).toEqual(['route fc00:0:0:c::/64 via 2001:db8:154::12 proto 152', 'route fc00:0:0:d::/64 via 2001:db8:5::13 proto 152']);
    expect(await entries('flannel.1', 4)).toContain('route 10.7.13.0/24 via 10.7.13.0 onlink');
    const text = logs.join('');
    expect(text).toContain('host IPv6 addresses or routes changed: deciding again which peers are direct');
    expect(text).toContain('peer fc00:0:0:d::/64 is now reached directly (DirectRouting)');
    expect(text).not.toContain('peer 10.7.13.0/24 is now reached');
    // eth1 loses its address: back to VXLAN, the direct route deleted just before the onlink route (the kernel's IPv6 rule).
    kernel.addInterface({ index: 3, name: 'eth1', mtu: 1500, up: true, addresses: [], addresses6: [] });
    await waitFor('peer 13 over VXLAN again', async () => (await entries('flannel-v6.1', 6)).length === 4, 3000, 20);
    expect(await entries('flannel-v6.1', 6)).toContain('route fc00:0:0:d::/64 via fc00:0:0:d:: onlink');
    expect(logs.filter((l) => /failed to (replace|delete)|kernel refused/.test(l))).toEqual([]);
  });
});
