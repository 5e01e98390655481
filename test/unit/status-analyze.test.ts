/**
 * status analysis on the memory fakes: a host programmed the way the daemon
 * programs it, then one fault at a time, each of which must show (and set the
 * exit code) exactly as the issue asks.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { Cidr, makeCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { desiredState } from '../../src/overlay/desired-book';
import { planChanges } from '../../src/overlay/plan';
import { AnalyzeOptions, analyzeStatus } from '../../src/status/analyze';
import { KernelReader, StatusStore, collectFacts } from '../../src/status/collect';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { renderJson } from '../../src/status/render';
import { StatusReport } from '../../src/status/report';
import { renderSubnetEnv } from '../../src/subnet-file';
import { systemClock } from '../../src/util/clock';

const STATUS_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/status.schema.json'), 'utf8')) as JsonSchema;
const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const PFX = '/coreos.com/network/subnets/';
const SUBNET_FILE = '/run/flannel/subnet.env';
const T0 = Date.parse('2025-06-01T12:00:00Z');
const SELF = { n: 23, ip: '10.65.154.11', mac: '02:00:00:00:00:23' };
const PEERS = [
  { n: 40, ip: '10.65.154.12', mac: '02:00:00:00:00:40' },
  { n: 41, ip: '10.65.154.13', mac: '02:00:00:00:00:41' },
];

const value = (ip: string, mac: string): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });
const subnetOf = (n: number): Cidr => parseCidr(`10.7.${n}.0/24`);

interface Fixture {
  store: MemoryLeaseStore;
  kernel: MemoryKernel;
  index: number;
  files: Map<string, string>;
  now: number;
}

/** Three nodes in etcd; this host (10.7.23.0/24) with flannel.1 and its peers programmed as the daemon does it. */
async function cluster(): Promise<Fixture> {
  const fx = { now: T0 } as Fixture;
  fx.store = new MemoryLeaseStore({ now: () => fx.now });
  fx.store.setConfig(CONFIG);
  for (const node of [SELF, ...PEERS]) fx.store.putRaw(`${PFX}10.7.${node.n}.0-24`, value(node.ip, node.mac), { ttlSeconds: 86_400 });
  fx.kernel = new MemoryKernel();
  fx.kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4(SELF.ip), prefixLen: 24, scope: 0 }] });
  fx.kernel.setDefaultRoute(2);
  const dev = await fx.kernel.createVxlan({ name: 'flannel.1', vni: 1, localIP: parseIPv4(SELF.ip), underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 }, SELF.mac);
  fx.index = dev.index;
  await fx.kernel.setLink(dev.index, { up: true });
  await fx.kernel.addAddress(dev.index, makeCidr(subnetOf(SELF.n).ip, 32));
  const leases = (await fx.store.list()).records.flatMap((r) => (r.kind === 'lease' ? [r.lease] : []));
  const desired = desiredState({ subnet: subnetOf(SELF.n), publicIP: parseIPv4(SELF.ip) }, leases, parseNetworkConfig(CONFIG));
  await fx.kernel.apply(dev.index, planChanges(desired, []));
  fx.files = new Map([[SUBNET_FILE, renderSubnetEnv({ network: parseCidr('10.7.0.0/16'), subnet: subnetOf(SELF.n), mtu: 1450, ipMasq: false })]]);
  return fx;
}

async function analyze(fx: Fixture, opts: Partial<AnalyzeOptions> & { kernel?: (() => Promise<KernelReader>) | null; store?: StatusStore } = {}): Promise<StatusReport> {
  const readFile = async (path: string): Promise<string> => {
    const text = fx.files.get(path);
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };
  const kernel = opts.kernel === null ? undefined : opts.kernel ?? (async () => fx.kernel);
  const clock = { now: () => fx.now, sleep: systemClock.sleep };
  const facts = await collectFacts({ store: opts.store ?? fx.store, kernel, readFile, clock }, { subnetFile: SUBNET_FILE, etcdBudgetMs: 1000, endpoints: ['http://etcd:2379'] });
  const report = analyzeStatus(facts, { endpoints: ['http://etcd:2379'], prefix: '/coreos.com/network', iface: [], ifaceRegex: [], renewMarginMs: 3_600_000, filter: {}, ...opts });
  // Every scenario's --json document must match the documented schema.
  expect(schemaErrors(STATUS_SCHEMA, JSON.parse(renderJson(report, true)))).toEqual([]);
  return report;
}

const kinds = (r: StatusReport): string[] => r.problems.map((p) => `${p.severity} ${p.kind}`);
const peer = (r: StatusReport, n: number) => r.kernel.peers.find((p) => p.subnet === `10.7.${n}.0/24`);

describe('status analysis of a healthy host', () => {
  it('is healthy: pool counts, own lease by the subnet file, expiries, every peer and device check ok', async () => {
    const fx = await cluster();
    fx.now += 48 * 60_000;
    const r = await analyze(fx);
    expect(r.problems).toEqual([]);
    expect([r.healthy, r.exitCode]).toEqual([true, 0]);
    expect(r.pool).toEqual({ capacity: 255, leased: 3, reserved: 0, invalid: 0, ignored: 0, used: 3, free: 252, usedPercent: 1.2, ipv6: null });
    expect(r.self).toMatchObject({ publicIP: SELF.ip, interface: 'eth0', subnet: '10.7.23.0/24', matchedBy: 'subnet-file', subnetFile: { state: 'agrees', subnet: '10.7.23.0/24' } });
    expect(r.leases.map((l) => [l.subnet, l.own, l.expiresInSeconds])).toEqual([
      ['10.7.23.0/24', true, 86_400 - 48 * 60],
      ['10.7.40.0/24', false, 86_400 - 48 * 60],
      ['10.7.41.0/24', false, 86_400 - 48 * 60],
    ]);
    expect(r.leases[0]?.expiresAt).toBe(new Date(T0 + 86_400_000).toISOString());
    expect(r.kernel.state).toBe('checked');
    expect(r.kernel.peers.map((p) => [p.subnet, p.route, p.neighbor, p.fdb])).toEqual([
      ['10.7.40.0/24', 'ok', 'ok', 'ok'],
      ['10.7.41.0/24', 'ok', 'ok', 'ok'],
    ]);
    expect(r.kernel.stale).toEqual([]);
    expect(r.kernel.device?.checks.map((c) => `${c.name}=${c.state}`)).toEqual(['exists=ok', 'vni=ok', 'port=ok', 'learning=ok', 'local=ok', 'underlay=ok', 'mtu=ok', 'address=ok', 'up=ok']);
    expect(r.kernel.device?.replaceReason).toBe('');
  });

  it('finds its own lease by the public IP when there is no subnet file', async () => {
    const fx = await cluster();
    fx.files.clear();
    const r = await analyze(fx);
    expect(r.self).toMatchObject({ subnet: '10.7.23.0/24', matchedBy: 'public-ip', subnetFile: { state: 'absent' } });
    expect(kinds(r)).toEqual(['warning subnet-file']);
    expect(r.exitCode).toBe(0);
  });

  it('never writes: no kernel call, no etcd revision', async () => {
    const fx = await cluster();
    const calls = fx.kernel.calls.length;
    const revision = fx.store.currentRevision;
    await analyze(fx);
    expect(fx.kernel.calls.length).toBe(calls);
    expect(fx.store.currentRevision).toBe(revision);
  });
});

describe('status analysis: kernel drift', () => {
  it('reports a deleted FDB entry as missing, exit 1', async () => {
    const fx = await cluster();
    fx.kernel.removeEntry(fx.index, { kind: 'fdb', mac: PEERS[0]!.mac, dst: parseIPv4(PEERS[0]!.ip), permanent: true });
    const r = await analyze(fx);
    expect(peer(r, 40)).toMatchObject({ route: 'ok', neighbor: 'ok', fdb: 'missing' });
    expect(r.problems).toEqual([{ severity: 'error', kind: 'drift', subnets: ['10.7.40.0/24'], publicIPs: ['10.65.154.12'], message: 'peer 10.7.40.0/24 (10.65.154.12): fdb missing' }]);
    expect(r.exitCode).toBe(1);
  });

  it('reports wrong entries with what is wrong', async () => {
    const fx = await cluster();
    fx.kernel.putEntry(fx.index, { kind: 'neighbor', ip: subnetOf(40).ip, mac: '02:00:00:00:00:99', permanent: true });
    fx.kernel.putEntry(fx.index, { kind: 'route', dst: subnetOf(41), gateway: parseIPv4('10.7.41.9'), onlink: true });
    const r = await analyze(fx);
    expect(peer(r, 40)?.neighbor).toBe('wrong mac 02:00:00:00:00:99');
    expect(peer(r, 41)?.route).toBe('wrong gateway 10.7.41.9');
    expect(kinds(r)).toEqual(['error drift', 'error drift']);
  });

  it('reports entries no lease explains as stale: route, neighbour and FDB', async () => {
    const fx = await cluster();
    fx.kernel.putEntry(fx.index, { kind: 'route', dst: parseCidr('10.9.9.0/24'), gateway: 0, onlink: false });
    fx.kernel.putEntry(fx.index, { kind: 'neighbor', ip: parseIPv4('10.7.99.0'), mac: '02:00:00:00:00:99', permanent: true });
    fx.kernel.putEntry(fx.index, { kind: 'fdb', mac: '02:00:00:00:00:99', dst: parseIPv4('10.65.154.99'), permanent: true });
    const r = await analyze(fx);
    expect(r.kernel.stale).toEqual([
      { kind: 'route', entry: 'route 10.9.9.0/24 via 0.0.0.0', subnet: '10.9.9.0/24', publicIP: null },
      { kind: 'fdb', entry: 'fdb 02:00:00:00:00:99 dst 10.65.154.99', subnet: null, publicIP: '10.65.154.99' },
      { kind: 'neighbor', entry: 'neighbor 10.7.99.0 lladdr 02:00:00:00:00:99', subnet: '10.7.99.0/32', publicIP: null },
    ]);
    expect(kinds(r)).toEqual(['error stale', 'error stale', 'error stale']);
    expect(r.problems[0]?.message).toBe('stale route 10.9.9.0/24 via 0.0.0.0 on flannel.1: no lease explains it');
  });

  it('checks the device: MTU, learning, down, missing address; the daemon would keep it', async () => {
    const fx = await cluster();
    await fx.kernel.setLink(fx.index, { mtu: 1400 });
    await fx.kernel.deleteAddress(fx.index, makeCidr(subnetOf(SELF.n).ip, 32));
    await fx.kernel.setLink(fx.index, { up: false });
    const r = await analyze(fx);
    const bad = r.kernel.device?.checks.filter((c) => c.state !== 'ok');
    expect(bad).toEqual([
      { name: 'mtu', state: 'wrong 1400', have: '1400', want: '1450' },
      { name: 'address', state: 'missing', have: null, want: '10.7.23.0/32' },
      { name: 'up', state: 'wrong down', have: 'down', want: 'up' },
    ]);
    expect(r.kernel.device?.replaceReason).toBe('');
    expect(r.problems.find((p) => p.kind === 'device')?.message).toBe('flannel.1 is wrong: mtu wrong 1400 (want 1450), address missing, up wrong down (want up)');
    // subnet.env still says 1450: the CNI plugin gives pods an MTU the device does not have.
    expect(r.self.subnetFile.state).toBe('disagrees');
  });

  it('reports a device with another local IP as one the daemon would recreate', async () => {
    const fx = await cluster();
    await fx.kernel.deleteLink(fx.index);
    const dev = await fx.kernel.createVxlan({ name: 'flannel.1', vni: 1, localIP: parseIPv4('10.65.154.99'), underlayIndex: 2, port: 8472, learning: true, gbp: false, mtu: 1450 }, SELF.mac);
    await fx.kernel.setLink(dev.index, { up: true });
    await fx.kernel.addAddress(dev.index, makeCidr(subnetOf(SELF.n).ip, 32));
    const r = await analyze(fx);
    expect(r.kernel.device?.checks.filter((c) => c.state !== 'ok').map((c) => `${c.name} ${c.state}`)).toEqual(['learning wrong on', 'local wrong 10.65.154.99']);
    expect(r.kernel.device?.replaceReason).toBe('local 10.65.154.99 != 10.65.154.11');
    expect(peer(r, 40)).toMatchObject({ route: 'missing', neighbor: 'missing', fdb: 'missing' });
  });

  it('reports a node whose flannel.1 is gone: device missing, every entry missing', async () => {
    const fx = await cluster();
    await fx.kernel.deleteLink(fx.index);
    const r = await analyze(fx);
    expect(r.kernel.device).toMatchObject({ present: false, checks: [{ name: 'exists', state: 'missing' }] });
    expect(r.kernel.peers.every((p) => p.route === 'missing' && p.neighbor === 'missing' && p.fdb === 'missing')).toBe(true);
    expect(kinds(r)).toEqual(['error device', 'error drift', 'error drift']);
  });
});

describe('status analysis: the kernel check skipped', () => {
  it.each([
    ['turned off', { kernel: null }, /--no-kernel-check/],
    ['unreadable', { kernel: async () => Promise.reject(new Error('netlink is Linux-only (this is darwin)')) }, /^failed to read kernel state: netlink is Linux-only \(this is darwin\)$/],
  ] as const)('when %s, says why and still judges etcd', async (_name, opts, why) => {
    const fx = await cluster();
    const r = await analyze(fx, opts);
    expect(r.kernel).toMatchObject({ state: 'skipped', device: null, peers: [] });
    expect(r.kernel.skipReason).toMatch(why);
    expect(r.self).toMatchObject({ subnet: '10.7.23.0/24', matchedBy: 'subnet-file', publicIP: SELF.ip, interface: null });
    expect(r.exitCode).toBe(0);
  });

  it('on a host that is not a node (an operator laptop): no device, no lease for its IP', async () => {
    const fx = await cluster();
    fx.files.clear();
    const laptop = new MemoryKernel();
    laptop.addInterface({ index: 3, name: 'wlan0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('192.168.1.5'), prefixLen: 24, scope: 0 }] });
    laptop.setDefaultRoute(3);
    const r = await analyze(fx, { kernel: async () => laptop });
    expect(r.kernel.skipReason).toBe("not a flannel node: no flannel.1 device and no lease for this host's public IP 192.168.1.5");
    expect(r.self).toMatchObject({ publicIP: '192.168.1.5', subnet: null, matchedBy: null });
    expect(r.problems).toEqual([]);
    expect(r.leases.some((l) => l.own)).toBe(false);
  });

  it('without a network config: a config problem, no pool, exit 1, leases still listed', async () => {
    const fx = await cluster();
    fx.store.deleteRaw('/coreos.com/network/config');
    const r = await analyze(fx);
    expect(r.problems[0]).toMatchObject({ kind: 'config', message: 'network config /coreos.com/network/config not found in etcd' });
    expect([r.config, r.pool, r.kernel.skipReason, r.leases.length, r.exitCode]).toEqual([null, null, 'no usable network config', 3, 1]);
  });
});

describe('status analysis: leases', () => {
  it('shows a garbage value as an INVALID row with the reason, never dropped; exit 1', async () => {
    const fx = await cluster();
    fx.store.putRaw(`${PFX}10.7.250.0-24`, 'this is not json');
    fx.store.putRaw(`${PFX}bogus`, '{}');
    fx.store.putRaw(`${PFX}10.7.8.0-24&fc00::-64`, value('10.65.154.30', '02:00:00:00:00:30'));
    const r = await analyze(fx);
    expect(r.leases.map((l) => [l.subnet ?? l.key, l.state, l.reason])).toEqual([
      ['10.7.8.0/24', 'invalid', 'BackendV6Data is missing or not an object'],
      ['10.7.23.0/24', 'valid', null],
      ['10.7.40.0/24', 'valid', null],
      ['10.7.41.0/24', 'valid', null],
      ['10.7.250.0/24', 'invalid', 'value is not JSON'],
      [`${PFX}bogus`, 'invalid', 'key "bogus" is not of the form <ip>-<len>'],
    ]);
    expect(r.problems.map((p) => p.message)).toEqual([
      `lease 10.7.8.0/24 is invalid: BackendV6Data is missing or not an object`,
      'lease 10.7.250.0/24 is invalid: value is not JSON',
      `lease ${PFX}bogus is invalid: key "bogus" is not of the form <ip>-<len>`,
    ]);
    expect(r.pool).toMatchObject({ leased: 3, invalid: 3, ignored: 0, used: 5, free: 250 });
    // Every valid peer is still checked (and programmed).
    expect(r.kernel.peers.map((p) => p.fdb)).toEqual(['ok', 'ok']);
    expect(r.exitCode).toBe(1);
  });

  it.each([
    ['a second lease with one PublicIP', `${PFX}10.7.60.0-24`, value('10.65.154.12', '02:00:00:00:00:60'), ['error duplicate-public-ip'], 'PublicIP 10.65.154.12 holds 2 leases: 10.7.40.0/24, 10.7.60.0/24'],
    ['a second lease with one VtepMAC', `${PFX}10.7.60.0-24`, value('10.65.154.60', PEERS[0]!.mac), ['error duplicate-vtep-mac'], 'VtepMAC 02:00:00:00:00:40 is in 2 leases: 10.7.40.0/24, 10.7.60.0/24 (peers program only 10.7.40.0/24, which etcd created first)'],
    ['an overlapping lease of the wrong length', `${PFX}10.7.40.128-25`, value('10.65.154.60', '02:00:00:00:00:60'), ['error wrong-length', 'error overlap'], 'leases 10.7.40.0/24 and 10.7.40.128/25 overlap'],
    ['a lease outside the network', `${PFX}10.9.1.0-24`, value('10.65.154.60', '02:00:00:00:00:60'), ['error outside-network'], 'lease 10.9.1.0/24 is outside Network 10.7.0.0/16'],
    ['a lease of another backend', `${PFX}10.7.60.0-24`, '{"PublicIP":"10.65.154.60","BackendType":"udp"}', ['error not-programmable'], 'peers do not program lease 10.7.60.0/24: backend type "udp" is not vxlan'],
    ['a lease with another VNI', `${PFX}10.7.60.0-24`, encodeLeaseValue({ publicIP: parseIPv4('10.65.154.60'), vni: 7, vtepMAC: '02:00:00:00:00:60' }), ['error not-programmable'], 'peers do not program lease 10.7.60.0/24: VNI 7 differs from ours (1)'],
  ])('reports %s', async (_name, key, val, expected, message) => {
    const fx = await cluster();
    fx.store.putRaw(key, val, { ttlSeconds: 86_400 });
    // Without the kernel check: the new peers are not programmed here, which is drift of its own.
    const r = await analyze(fx, { kernel: null });
    expect(kinds(r)).toEqual(expected);
    expect(r.problems.map((p) => p.message)).toContain(message);
    expect(r.exitCode).toBe(1);
  });

  it('warns (exit 0) about a lease outside SubnetMin..SubnetMax and one expiring within the renew margin; a reservation never expires', async () => {
    const fx = await cluster();
    fx.store.putRaw(`${PFX}10.7.0.0-24`, value('10.65.154.60', '02:00:00:00:00:60'), { ttlSeconds: 86_400 * 2 });
    fx.store.putRaw(`${PFX}10.7.61.0-24`, value('10.65.154.61', '02:00:00:00:00:61'), { ttlSeconds: 40 * 60 });
    fx.store.putRaw(`${PFX}10.7.62.0-24`, value('10.65.154.62', '02:00:00:00:00:62'));
    const r = await analyze(fx, { kernel: null });
    expect(kinds(r)).toEqual(['warning outside-range', 'warning expiring']);
    expect(r.problems[1]?.message).toBe('lease 10.7.61.0/24 expires in 2400 s, within the 60 min renew margin: its node has not renewed it');
    const reservation = r.leases.find((l) => l.subnet === '10.7.62.0/24');
    expect(reservation).toMatchObject({ reservation: true, etcdLease: null, expiresAt: null, expiresInSeconds: null });
    expect(r.pool).toMatchObject({ leased: 5, reserved: 1 });
    expect(r.exitCode).toBe(0);
  });

  it('shows expiry as unknown when the store cannot tell', async () => {
    const fx = await cluster();
    const store: StatusStore = { getConfig: () => fx.store.getConfig(), list: () => fx.store.list(), watch: (from, handlers, signal) => fx.store.watch(from, handlers, signal) };
    const r = await analyze(fx, { store });
    expect(r.leases.map((l) => [l.reservation, l.expiresAt])).toEqual([[false, null], [false, null], [false, null]]);
    expect(r.exitCode).toBe(0);
  });
});

describe('status analysis: the subnet file', () => {
  it('disagrees when it names another subnet than this host holds', async () => {
    const fx = await cluster();
    fx.files.set(SUBNET_FILE, 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.77.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
    const r = await analyze(fx);
    expect(r.self).toMatchObject({ subnet: '10.7.23.0/24', matchedBy: 'public-ip', subnetFile: { state: 'disagrees', subnet: '10.7.77.0/24' } });
    expect(r.problems).toEqual([{ severity: 'error', kind: 'subnet-file', subnets: ['10.7.77.0/24', '10.7.23.0/24'], publicIPs: [], message: `subnet file ${SUBNET_FILE} names 10.7.77.0/24, but etcd holds no lease for it; this host's lease (PublicIP 10.65.154.11) is 10.7.23.0/24` }]);
  });

  it.each([
    ['another network', 'FLANNEL_NETWORK=10.8.0.0/16\nFLANNEL_SUBNET=10.7.23.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n', 'disagrees', "FLANNEL_NETWORK is 10.8.0.0/16, the config's Network 10.7.0.0/16"],
    ['no FLANNEL_SUBNET', 'FLANNEL_NETWORK=10.7.0.0/16\n', 'unparsable', 'has no valid FLANNEL_SUBNET'],
  ])('reports a file with %s', async (_name, text, state, message) => {
    const fx = await cluster();
    fx.files.set(SUBNET_FILE, text);
    const r = await analyze(fx);
    expect(r.self.subnetFile.state).toBe(state);
    expect(r.problems.map((p) => p.message).join('\n')).toContain(message);
    expect(r.exitCode).toBe(1);
  });
});

describe('status analysis: filters', () => {
  it('--subnet keeps what overlaps it (a pod IP finds its lease) and host-wide problems; pool stays whole', async () => {
    const fx = await cluster();
    fx.kernel.removeEntry(fx.index, { kind: 'fdb', mac: PEERS[1]!.mac, dst: parseIPv4(PEERS[1]!.ip), permanent: true });
    const all = await analyze(fx);
    expect(all.exitCode).toBe(1);
    const r40 = await analyze(fx, { filter: { subnet: makeCidr(parseIPv4('10.7.40.17'), 32) } });
    expect(r40.leases.map((l) => l.subnet)).toEqual(['10.7.40.0/24']);
    expect(r40.kernel.peers.map((p) => p.subnet)).toEqual(['10.7.40.0/24']);
    expect([r40.problems, r40.exitCode, r40.filter.subnet]).toEqual([[], 0, '10.7.40.17/32']);
    expect(r40.pool).toEqual(all.pool);
    const r41 = await analyze(fx, { filter: { subnet: parseCidr('10.7.41.0/24') } });
    expect(r41.exitCode).toBe(1);
    await fx.kernel.setLink(fx.index, { mtu: 1400 });
    expect(kinds(await analyze(fx, { filter: { subnet: parseCidr('10.7.40.0/24') } }))).toEqual(['error device']);
  });

  it('--public-ip keeps the leases, peers and stale FDB entries of that node', async () => {
    const fx = await cluster();
    fx.kernel.putEntry(fx.index, { kind: 'fdb', mac: '02:00:00:00:00:99', dst: parseIPv4(PEERS[1]!.ip), permanent: true });
    fx.kernel.putEntry(fx.index, { kind: 'route', dst: parseCidr('10.9.9.0/24'), gateway: 0, onlink: false });
    const r = await analyze(fx, { filter: { publicIP: parseIPv4(PEERS[1]!.ip) } });
    expect(r.leases.map((l) => l.publicIP)).toEqual([PEERS[1]!.ip]);
    expect(r.kernel.peers.map((p) => p.publicIP)).toEqual([PEERS[1]!.ip]);
    expect(r.kernel.stale.map((s) => s.entry)).toEqual(['fdb 02:00:00:00:00:99 dst 10.65.154.13']);
    expect(kinds(r)).toEqual(['error stale']);
  });
});
