import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { ChangeFilter } from '../../src/kernel/change-filter';
import { Entry, HostNetwork, HostRoute, RTPROT_FLANNELD_TS, RouteEntry } from '../../src/kernel/kernel';
import { parseMonitorLine } from '../../src/kernel/monitor-lines';
import { decodeRoute, encodeOperation } from '../../src/kernel/rtnl-codec';
import { Lease } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { LeaseHalf, peerEntries } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';
import { IPV4, IpAddr } from '../../src/net/family';
import { DirectDecisions, hostFingerprint, isDirectRoute } from '../../src/overlay/direct-routing';
import { KernelIndex } from '../../src/overlay/kernel-index';
import { describeEntry, planChanges } from '../../src/overlay/plan';
import { underlayChecker, underlayProblem } from '../../src/overlay/underlay';
import { vxlanLease } from '../helpers/vxlan-lease';

const ip = parseIPv4;
const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: ip('10.65.154.11') };
const p12 = vxlanLease('10.7.12.0/24', '10.65.154.12', '02:00:00:00:00:12');
const p13 = vxlanLease('10.7.13.0/24', '10.66.0.13', '02:00:00:00:00:13');
const vxlanEntries = (l: Lease): Entry[] => {
  const p = peerEntries({ ...l, vtepMAC: l.vtepMAC as string });
  return [p.neighbor as Entry, p.fdb as Entry, p.route];
};
const directRoute = (l: Lease): RouteEntry => peerEntries({ ...l, vtepMAC: l.vtepMAC as string }, 'direct').route;
const words = (plan: ReturnType<typeof planChanges>): string[] => plan.map((o) => `${o.op} ${describeEntry(o.entry)} (${o.reason})`);

describe('the DirectRouting rule (contract §12)', () => {
  it.each([
    ['a connected route (no gateway)', { gateway: undefined, type: 'unicast' }, true],
    ['gateway 0 (how some answers spell none)', { gateway: 0 }, true],
    ['a route via a gateway', { gateway: ip('10.65.154.1'), type: 'unicast' }, false],
    ['a local answer (our own address)', { gateway: undefined, type: 'local' }, false],
    ['an unreachable answer', { gateway: undefined, type: 'unreachable' }, false],
    ['a failed lookup', undefined, false],
  ])('%s → direct %s', (_what, lookup, want) => {
    expect(isDirectRoute(lookup)).toBe(want);
  });
});

describe('DirectDecisions', () => {
  const eth0 = { index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: ip('10.65.154.11'), prefixLen: 24, scope: 0 }] };
  const r = (dst: string, extra: Partial<HostRoute> = {}): HostRoute => ({ dst: parseCidr(dst), table: 254, protocol: 3, scope: 0, type: 1, devices: [2], ...extra });
  const host = (routes: HostRoute[]): HostNetwork => ({ interfaces: [eth0], routes });

  it('looks each PublicIP up once, then answers from the cache until the host changes', async () => {
    const asked: IpAddr[] = [];
    const d = new DirectDecisions(async (dst) => {
      asked.push(dst);
      return dst === ip('10.65.154.12') ? { index: 2, src: undefined } : { index: 2, src: undefined, gateway: ip('10.65.154.1') };
    });
    const h = host([r('0.0.0.0/0', { gateway: ip('10.65.154.1') })]);
    expect(d.observe(h, 9)).toBe(false);
    expect(await d.decide([ip('10.65.154.12'), ip('10.66.0.13')])).toBe(2);
    expect(await d.decide([ip('10.65.154.12'), ip('10.66.0.13')])).toBe(0);
    expect([d.isDirect(ip('10.65.154.12')), d.isDirect(ip('10.66.0.13')), d.isDirect(ip('10.1.1.1'))]).toEqual([true, false, undefined]);
    // Our own routes (on flannel.1, or proto 152 anywhere) are no change of the host's addressing.
    const ours = host([...h.routes, r('10.7.12.0/24', { protocol: RTPROT_FLANNELD_TS, gateway: ip('10.65.154.12') }), r('10.7.13.0/24', { devices: [9] })]);
    expect(d.observe(ours, 9)).toBe(false);
    expect(await d.decide([ip('10.65.154.12'), ip('10.66.0.13')])).toBe(0);
    // Someone else's route is: every decision is made again.
    expect(d.observe(host([...ours.routes, r('10.66.0.0/24')]), 9)).toBe(true);
    expect(await d.decide([ip('10.65.154.12'), ip('10.66.0.13')])).toBe(2);
    expect(asked).toHaveLength(4);
  });

  it('a failed lookup is not direct', async () => {
    const d = new DirectDecisions(async () => {
      throw new Error('EPERM');
    });
    await d.decide([ip('10.65.154.12')]);
    expect(d.isDirect(ip('10.65.154.12'))).toBe(false);
  });

  it('an address change changes the fingerprint', () => {
    const a = hostFingerprint(host([]), 9);
    const moved = { interfaces: [{ ...eth0, addresses: [{ ip: ip('10.65.155.11'), prefixLen: 24, scope: 0 }] }], routes: [] };
    expect(hostFingerprint(moved, 9)).not.toBe(a);
  });
});

describe('direct peers in the desired state and the plan', () => {
  const modeOf = (l: LeaseHalf) => (l.publicIP === ip('10.65.154.12') ? ('direct' as const) : ('vxlan' as const));
  const desired = desiredState(self, [p12, p13], config, undefined, IPV4, modeOf);

  it('a direct peer has one route via its PublicIP (proto 152), no neighbour and no FDB entry', () => {
    const p = desired.peers.get('10.7.12.0/24');
    expect(p?.mode).toBe('direct');
    expect(p?.neighbor).toBeUndefined();
    expect(p?.fdb).toBeUndefined();
    expect(describeEntry(p?.route as Entry)).toBe('route 10.7.12.0/24 via 10.65.154.12 proto 152');
    expect(desired.peers.get('10.7.13.0/24')?.mode).toBe('vxlan');
  });

  it('from nothing: the direct route and the vxlan peer\'s three entries', () => {
    expect(words(planChanges(desired, []))).toEqual([
      'replace route 10.7.12.0/24 via 10.65.154.12 proto 152 (missing)',
      'replace neighbor 10.7.13.0 lladdr 02:00:00:00:00:13 (missing)',
      'replace fdb 02:00:00:00:00:13 dst 10.66.0.13 (missing)',
      'replace route 10.7.13.0/24 via 10.7.13.0 onlink (missing)',
    ]);
    expect(planChanges(desired, [directRoute(p12), ...vxlanEntries(p13)])).toEqual([]);
  });

  it('vxlan → direct: the route is replaced in place (never deleted first), then the neighbour and FDB entry go', () => {
    expect(words(planChanges(desired, [...vxlanEntries(p12), ...vxlanEntries(p13)]))).toEqual([
      'replace route 10.7.12.0/24 via 10.65.154.12 proto 152 (missing)',
      'delete fdb 02:00:00:00:00:12 dst 10.65.154.12 (peer is direct)',
      'delete neighbor 10.7.12.0 lladdr 02:00:00:00:00:12 (peer is direct)',
    ]);
  });

  it('direct → vxlan: neighbour and FDB first, then the onlink route takes the direct route\'s place', () => {
    const allVxlan = desiredState(self, [p12, p13], config, undefined, IPV4, () => 'vxlan');
    expect(words(planChanges(allVxlan, [directRoute(p12), ...vxlanEntries(p13)]))).toEqual([
      'replace neighbor 10.7.12.0 lladdr 02:00:00:00:00:12 (missing)',
      'replace fdb 02:00:00:00:00:12 dst 10.65.154.12 (missing)',
      'replace route 10.7.12.0/24 via 10.7.12.0 onlink (missing)',
    ]);
  });

  it('a stale direct route is deleted; a direct route to the wrong gateway is replaced', () => {
    const gone = desiredState(self, [p13], config, undefined, IPV4, modeOf);
    expect(words(planChanges(gone, [directRoute(p12), ...vxlanEntries(p13)]))).toEqual(['delete route 10.7.12.0/24 via 10.65.154.12 proto 152 (stale)']);
    const wrong = { ...directRoute(p12), gateway: ip('10.65.154.99') };
    expect(words(planChanges(desired, [wrong, ...vxlanEntries(p13)]))).toEqual(['replace route 10.7.12.0/24 via 10.65.154.12 proto 152 (wrong gateway 10.65.154.99)']);
  });

  it('the kernel index keeps one route per destination: a replace of one kind evicts the other', () => {
    const idx = KernelIndex.of(vxlanEntries(p12));
    idx.record({ op: 'replace', entry: directRoute(p12) });
    expect([idx.routes.size, idx.direct.size]).toEqual([0, 1]);
    idx.record({ op: 'replace', entry: vxlanEntries(p12)[2] as Entry });
    expect([idx.routes.size, idx.direct.size]).toEqual([1, 0]);
  });
});

describe('ownership of direct routes', () => {
  it('encodes ip route replace|del <subnet> via <PublicIP> proto 152: no device, no onlink; the delete names proto and gateway', () => {
    const route = directRoute(p12);
    const add = encodeOperation(4, { op: 'replace', entry: route });
    // rtmsg: AF_INET, /24, table main, proto 152 (0x98), scope universe, unicast, no flags; RTA_DST, RTA_GATEWAY; no RTA_OIF.
    expect(add.body.toString('hex')).toBe('02180000fe98000100000000' + '080001000a070c00' + '080005000a419a0c');
    const del = encodeOperation(4, { op: 'delete', entry: route });
    expect(del.body.toString('hex')).toBe('02180000fe98ff0000000000' + '080001000a070c00' + '080005000a419a0c');
  });

  it('lists a main-table proto 152 route on any device as ours, and a proto boot route elsewhere not at all', () => {
    const body = encodeOperation(4, { op: 'replace', entry: directRoute(p12) }).body;
    expect(decodeRoute(body, 77)).toEqual({ kind: 'route', dst: parseCidr('10.7.12.0/24'), gateway: ip('10.65.154.12'), onlink: false, direct: true });
    const boot = Buffer.from(body);
    boot[5] = 3;
    expect(decodeRoute(boot, 77)).toBeUndefined();
  });

  it('the kernel watch hears changes to our direct routes on any device, and no other route on eth0', () => {
    const f = new ChangeFilter();
    f.manage(9, 'flannel.1');
    const ours = parseMonitorLine('[ROUTE]Deleted 10.7.12.0/24 via 10.65.154.12 dev eth0 proto 152');
    const theirs = parseMonitorLine('[ROUTE]10.9.0.0/24 via 10.65.154.1 dev eth0 proto boot');
    expect(f.classify(ours as never, 0)).toBe('external');
    expect(f.classify(theirs as never, 0)).toBe('ignore');
    const keys = f.expect('flannel.1', [{ op: 'delete', entry: directRoute(p12) }], 0);
    f.done(keys, 0);
    expect(f.classify(ours as never, 1)).toBe('own');
  });

  it('underlay: our direct routes and flanneld\'s exact direct route for the lease are no conflict; any other route is', () => {
    const eth0 = { index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: ip('10.65.154.11'), prefixLen: 24, scope: 0 }] };
    const r = (dst: string, extra: Partial<HostRoute>): HostRoute => ({ dst: parseCidr(dst), table: 254, protocol: 3, scope: 0, type: 1, devices: [2], ...extra });
    const ctx = (routes: HostRoute[]) => ({ host: { interfaces: [eth0], routes }, overlayIndex: 9, network: parseCidr('10.7.0.0/16'), etcdAddresses: [] });
    const subnet = parseCidr('10.7.12.0/24');
    expect(underlayProblem(subnet, ctx([r('10.7.12.0/24', { protocol: RTPROT_FLANNELD_TS, gateway: ip('10.65.154.12') })]))).toBeUndefined();
    const flanneld = ctx([r('10.7.12.0/24', { gateway: ip('10.65.154.12') })]);
    expect(underlayProblem(subnet, flanneld)).toContain('which flanneld-ts did not make');
    expect(underlayChecker(flanneld)(subnet, ip('10.65.154.12'))).toBeUndefined();
    // Another gateway, another protocol or another table: not flanneld's route for this lease, so the peer stays refused.
    expect(underlayChecker(flanneld)(subnet, ip('10.65.154.13'))).toContain('overlaps route 10.7.12.0/24 dev eth0');
    expect(underlayChecker(ctx([r('10.7.12.0/24', { protocol: 4, gateway: ip('10.65.154.12') })]))(subnet, ip('10.65.154.12'))).toContain('overlaps route');
    expect(underlayChecker(ctx([r('10.7.12.0/24', { table: 100, gateway: ip('10.65.154.12') })]))(subnet, ip('10.65.154.12'))).toContain('overlaps route');
  });
});
