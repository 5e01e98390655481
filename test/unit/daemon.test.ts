/**
 * The daemon against the in-memory fakes: start-up order, peers following leases,
 * own-lease loss, kernel drift, config waiting and fatal errors. Real timers, short intervals.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon';
import { Firewall, FirewallOptions } from '../../src/firewall/firewall';
import { FirewallBackends } from '../../src/firewall/firewall-keeper';
import { MemoryFirewall } from '../../src/firewall/memory-firewall';
import { BlackholeResult } from '../../src/kernel/blackhole-route';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { WatchHandlers } from '../../src/lease/store';
import { DaemonObserver, Metrics } from '../../src/metrics';
import { Cidr, formatCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { waitFor } from '../../src/testbed/scene';
import { startMemoryDaemon } from '../helpers/memory-daemon';
import { HostError, KernelError, OutOfSubnetsError, errorMessage } from '../../src/util/errors';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const PFX = '/coreos.com/network/subnets/';

interface Harness {
  store: MemoryLeaseStore;
  kernel: MemoryKernel;
  daemon: Daemon;
  logs: string[];
  subnetFile: string;
  done: Promise<unknown>;
  stop(): Promise<unknown>;
  entries(): Promise<string[]>;
  /** The memory firewalls' rule sets, by backend (shared by every instance the daemon opens). */
  rules: { iptables: Map<string, readonly string[]>; nftables: Map<string, readonly string[]> };
  /** Subnets --ip-blackhole-route was asked to ensure, in order. */
  blackholes: string[];
  sysctlRoot: string;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function peerValue(ip: string, mac: string): string {
  return encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });
}

function start(opts: { store?: MemoryLeaseStore; kernel?: MemoryKernel; args?: string[]; config?: string | null; subnetFile?: string; brNetfilter?: boolean; rules?: Harness['rules']; firewalls?: FirewallBackends; observer?: DaemonObserver } = {}): Harness {
  const rules = opts.rules ?? { iptables: new Map<string, readonly string[]>(), nftables: new Map<string, readonly string[]>() };
  const firewalls: FirewallBackends = opts.firewalls ?? { iptables: async (o) => new MemoryFirewall(o, rules.iptables), nftables: async (o) => new MemoryFirewall(o, rules.nftables) };
  const blackholes: string[] = [];
  const blackholeRoutes = { ensure: async (subnet: Cidr): Promise<BlackholeResult> => { blackholes.push(formatCidr(subnet)); return 'added'; } };
  const subnetFile = opts.subnetFile;
  const h = startMemoryDaemon({
    config: opts.config === null ? null : opts.config ?? CONFIG,
    ...(opts.store && { store: opts.store }),
    ...(opts.kernel && { kernel: opts.kernel }),
    ...(subnetFile !== undefined && { subnetFile: () => subnetFile }),
    ...(opts.brNetfilter !== undefined && { brNetfilter: opts.brNetfilter }),
    // A stand-in /proc/sys: the br_netfilter sysctl (unless told otherwise) and flannel.1's IPv6 conf directory.
    ipv6ConfDevices: ['flannel.1'],
    args: ['--iptables-forward-rules=false', ...(opts.args ?? [])],
    firewalls,
    deps: { blackholes: blackholeRoutes, ...(opts.observer && { observer: opts.observer }) },
  });
  cleanups.push(() => h.close());
  return { ...h, rules, blackholes, entries: () => h.entries() };
}

const count = (logs: string[], re: RegExp): number => logs.join('').split('\n').filter((l) => re.test(l)).length;

/** A store whose watch holds back events while `hold` is set, as an etcd watch stream cut off from its server does. */
class HeldWatchStore extends MemoryLeaseStore {
  hold = false;
  private held: Array<() => void> = [];

  override watch(fromRevision: bigint, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
    return super.watch(fromRevision, { ...handlers, onEvents: (events) => (this.hold ? this.held.push(() => handlers.onEvents(events)) : handlers.onEvents(events)) }, signal);
  }

  release(): void {
    this.hold = false;
    for (const deliver of this.held.splice(0)) deliver();
  }
}

const ready = (h: Harness) => waitFor('daemon ready', () => h.daemon.status().phase === 'ready', 5000, 10);

describe('Daemon', () => {
  it('starts: device, lease, subnet.env, peers programmed, then ready', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'), { ttlSeconds: 3600 });
    const h = start({ store });
    await ready(h);
    const st = h.daemon.status();
    expect(st.publicIP).toBe('10.65.154.11');
    expect(st.vtepMAC).toBe('5a:5a:5a:5a:5a:5a');
    const dev = await h.kernel.getDevice('flannel.1');
    expect(dev && [dev.vni, dev.port, dev.mtu, dev.up, dev.learning, dev.localIP]).toEqual([1, 8472, 1450, true, false, parseIPv4('10.65.154.11')]);
    expect(readFileSync(h.subnetFile, 'utf8')).toBe(`FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=${st.subnet?.replace('.0/', '.1/')}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
    expect(await h.entries()).toEqual(['fdb 02:00:00:00:00:12 dst 10.65.154.12', 'neighbor 10.7.12.0 lladdr 02:00:00:00:00:12', 'route 10.7.12.0/24 via 10.7.12.0 onlink']);
    const own = (await h.store.list()).records.find((r) => r.kind === 'lease' && r.lease.publicIP === parseIPv4('10.65.154.11'));
    expect(own?.kind === 'lease' && own.lease.vtepMAC).toBe('5a:5a:5a:5a:5a:5a');
    expect(st.peers).toBe(1);
  });

  it('follows peers joining, changing and leaving', async () => {
    const h = start();
    await ready(h);
    h.store.putRaw(`${PFX}10.7.20.0-24`, peerValue('10.65.154.20', '02:00:00:00:00:20'));
    await waitFor('peer programmed', async () => (await h.entries()).length === 3, 3000, 10);
    h.store.putRaw(`${PFX}10.7.20.0-24`, peerValue('10.65.154.21', '02:00:00:00:01:20'));
    await waitFor('peer updated', async () => (await h.entries()).join() === ['fdb 02:00:00:00:01:20 dst 10.65.154.21', 'neighbor 10.7.20.0 lladdr 02:00:00:00:01:20', 'route 10.7.20.0/24 via 10.7.20.0 onlink'].join(), 3000, 10);
    h.store.deleteRaw(`${PFX}10.7.20.0-24`);
    await waitFor('peer removed', async () => (await h.entries()).length === 0, 3000, 10);
  });

  it('repairs kernel drift: a deleted FDB entry and a stale route', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    const h = start({ store });
    await ready(h);
    const dev = await h.kernel.getDevice('flannel.1');
    h.kernel.removeEntry(dev!.index, { kind: 'fdb', mac: '02:00:00:00:00:12', dst: parseIPv4('10.65.154.12'), permanent: true });
    h.kernel.putEntry(dev!.index, { kind: 'route', dst: { ip: parseIPv4('10.7.99.0'), prefixLen: 24 }, gateway: parseIPv4('10.7.99.0'), onlink: true });
    await waitFor('drift repaired', async () => (await h.entries()).length === 3 && !(await h.entries()).join().includes('10.7.99.0'), 3000, 10);
    expect(h.logs.join('')).toMatch(/replace fdb 02:00:00:00:00:12 dst 10.65.154.12 \(missing\)/);
    expect(h.logs.join('')).toMatch(/delete route 10.7.99.0\/24 via 10.7.99.0 onlink \(stale\)/);
  });

  it('re-acquires the same subnet when its lease is deleted', async () => {
    const h = start();
    await ready(h);
    const subnet = h.daemon.status().subnet as string;
    h.store.deleteRaw(PFX + subnet.replace('/', '-'));
    await waitFor('lease back', async () => (await h.store.list()).records.some((r) => r.key === PFX + subnet.replace('/', '-')), 3000, 10);
    expect(h.daemon.status().subnet).toBe(subnet);
    expect(h.logs.join('')).toMatch(/was deleted from etcd; re-acquiring/);
  });

  // etcd delivers a watch's backlog when the stream comes back, possibly after the
  // lease loop has already re-acquired the lease: the backlog's delete of the old
  // lease describes the past and must not start a second re-acquisition.
  it('re-acquires once when the delete of its expired lease arrives on the watch after the re-acquisition', async () => {
    const store = new HeldWatchStore();
    const h = start({ store, args: ['--subnet-lease-ttl', '6'] });
    await ready(h);
    const subnet = h.daemon.status().subnet as string;
    store.hold = true;
    const [lease] = store.leaseIds();
    await store.revoke(lease as string); // expired while the watch stream was away
    await waitFor('the renewal to notice and re-acquire', () => h.logs.join('').includes('re-acquired lease'), 10_000, 20);
    const renewals = count(h.logs, /renewed lease/);
    store.release(); // the stream's backlog: the delete, then the re-acquisition's put
    // A loss reported by those events would be handled before the lease loop renews again.
    await waitFor('the next renewal', () => count(h.logs, /renewed lease/) > renewals, 10_000, 20);
    expect(count(h.logs, /re-acquiring/)).toBe(1);
    expect(count(h.logs, /re-acquired lease/)).toBe(1);
    expect(h.daemon.status().subnet).toBe(subnet);
    expect(store.leaseIds()).toHaveLength(1);
  }, 20_000);

  it('reuses the previous subnet from the subnet file', async () => {
    const first = start();
    await ready(first);
    const subnet = first.daemon.status().subnet as string;
    await first.stop();
    const store = new MemoryLeaseStore();
    const h2 = start({ store, subnetFile: first.subnetFile });
    await ready(h2);
    expect(h2.daemon.status().subnet).toBe(subnet);
  });

  it('waits for a missing config and for a corrected invalid one, naming the field', async () => {
    const store = new MemoryLeaseStore();
    const h = start({ store, config: null });
    await waitFor('missing logged', () => h.logs.join('').includes('network config /coreos.com/network/config not found'), 3000, 10);
    store.setConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"udp"}}');
    await waitFor('invalid logged', () => h.logs.join('').includes('invalid network config: Backend.Type'), 3000, 10);
    store.setConfig(CONFIG);
    await ready(h);
  });

  it('fails with a clear error when the network is full', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.3.0-24`, peerValue('10.65.154.30', '02:00:00:00:00:30'));
    const h = start({ store, config: '{"Network":"10.7.0.0/16","SubnetMin":"10.7.3.0","SubnetMax":"10.7.3.0","Backend":{"Type":"vxlan"}}' });
    const err = await h.done;
    expect(err).toBeInstanceOf(OutOfSubnetsError);
    expect((err as Error).message).toBe('failed to acquire a subnet lease in 10.7.0.0/16: out of subnets');
    expect(await h.kernel.getDevice('flannel.1')).toBeUndefined();
    expect((await store.list()).records).toHaveLength(1);
  });

  it('logs a valid but unusable lease once and keeps serving the rest', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    store.putRaw(`${PFX}10.7.30.0-24`, '{"PublicIP":"10.65.154.30","BackendType":"udp"}');
    store.putRaw(`${PFX}10.7.32.0-24`, '{"PublicIP":"10.65.154.32","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:32"}, "x": "' + 'a'.repeat(70_000) + '"}');
    const h = start({ store });
    await ready(h);
    // After start-up: another key claiming this node's PublicIP (at start-up it would be taken as ours).
    store.putRaw(`${PFX}10.7.31.0-24`, peerValue('10.65.154.11', '02:00:00:00:00:31'));
    await new Promise((r) => setTimeout(r, 500));
    const text = h.logs.join("");
    expect(text.match(/not programming lease 10.7.30.0\/24: backend type \\"udp\\" is not vxlan/g)).toHaveLength(1);
    expect(text.match(/not programming lease 10.7.31.0\/24: PublicIP 10.65.154.11 is this node's own/g)).toHaveLength(1);
    expect(text.match(/skipping invalid lease \S*10.7.32.0-24: value is \d+ bytes/g)).toHaveLength(1);
    expect(await h.entries()).toHaveLength(3);
  });

  it('DirectRouting: a peer on the host\'s subnet gets one direct route, one behind a gateway VXLAN; re-decided when the host\'s addressing changes', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    store.putRaw(`${PFX}10.7.13.0-24`, peerValue('10.66.0.13', '02:00:00:00:00:13'));
    const kernel = new MemoryKernel();
    kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }] });
    kernel.setDefaultRoute(2, parseIPv4('10.65.154.1'));
    const h = start({ store, kernel, config: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}' });
    await ready(h);
    expect(await h.entries()).toEqual([
      'fdb 02:00:00:00:00:13 dst 10.66.0.13',
      'neighbor 10.7.13.0 lladdr 02:00:00:00:00:13',
      'route 10.7.12.0/24 via 10.65.154.12 proto 152',
      'route 10.7.13.0/24 via 10.7.13.0 onlink',
    ]);
    // A second NIC on 10.66.0.0/24: 10.66.0.13 is now on-link, so its peer moves to a direct route and its vxlan entries go.
    kernel.addInterface({ index: 9, name: 'eth1', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.66.0.11'), prefixLen: 24, scope: 0 }] });
    await waitFor('peer 13 direct', async () => (await h.entries()).includes('route 10.7.13.0/24 via 10.66.0.13 proto 152'), 3000, 20);
    expect(await h.entries()).toEqual(['route 10.7.12.0/24 via 10.65.154.12 proto 152', 'route 10.7.13.0/24 via 10.66.0.13 proto 152']);
    expect(h.logs.join('')).toContain('deciding again which peers are direct');
    expect(h.logs.join('')).toContain('peer 10.7.13.0/24 is now reached directly (DirectRouting)');
    expect(h.logs.join('')).not.toContain('peer 10.7.12.0/24 is now reached');
    // A hand-deleted direct route comes back (drift repair).
    kernel.removeEntry(2, { kind: 'route', dst: parseCidr('10.7.12.0/24'), gateway: parseIPv4('10.65.154.12'), onlink: false, direct: true });
    await waitFor('route repaired', async () => (await h.entries()).includes('route 10.7.12.0/24 via 10.65.154.12 proto 152'), 3000, 20);
    // The peer's PublicIP moves behind a gateway (10.67.0.12 is reached by the default route): back to VXLAN.
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.67.0.12', '02:00:00:00:00:12'));
    await waitFor('peer 12 over vxlan', async () => (await h.entries()).includes('route 10.7.12.0/24 via 10.7.12.0 onlink'), 3000, 20);
    expect(await h.entries()).toEqual([
      'fdb 02:00:00:00:00:12 dst 10.67.0.12',
      'neighbor 10.7.12.0 lladdr 02:00:00:00:00:12',
      'route 10.7.12.0/24 via 10.7.12.0 onlink',
      'route 10.7.13.0/24 via 10.66.0.13 proto 152',
    ]);
  });

  it('renews its lease before expiry with a short TTL', async () => {
    const h = start({ args: ['--subnet-lease-ttl', '6'] });
    await ready(h);
    await waitFor('renewal', () => h.logs.join('').includes('renewed lease'), 6000, 50);
    expect(h.store.leaseIds()).toHaveLength(1);
  }, 10_000);
});

describe('Daemon against hostile or careless data', () => {
  const count = (h: Harness, re: RegExp): number => h.logs.join('').match(re)?.length ?? 0;

  it('skips peers over the underlay, with a bad PublicIP or VtepMAC, or with its own MAC; logs each once', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    const kernel = new MemoryKernel();
    kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }] });
    kernel.setDefaultRoute(2);
    kernel.addHostRoute({ dst: { ip: parseIPv4('10.7.77.0'), prefixLen: 24 }, table: 254, protocol: 4, scope: 0, type: 1, devices: [2], gateway: parseIPv4('10.65.154.1') });
    const h = start({ store, kernel, config: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}' });
    await ready(h);
    store.putRaw(`${PFX}10.7.77.0-24`, peerValue('10.65.154.77', '02:00:00:00:00:77'));
    store.putRaw(`${PFX}10.7.40.0-24`, peerValue('127.0.0.1', '02:00:00:00:00:40'));
    store.putRaw(`${PFX}10.7.41.0-24`, peerValue('10.65.154.41', 'ff:ff:ff:ff:ff:ff'));
    store.putRaw(`${PFX}10.7.42.0-24`, peerValue('10.65.154.42', h.daemon.status().vtepMAC as string));
    store.putRaw(`${PFX}10.7.43.0-24`, peerValue('10.65.154.43', '02:00:00:00:00:12'));
    await waitFor('all logged', () => count(h, /not programming lease/g) >= 5, 3000, 10);
    await new Promise((r) => setTimeout(r, 700));
    expect(count(h, /not programming lease 10.7.77.0\/24: subnet 10.7.77.0\/24 overlaps route 10.7.77.0\/24 dev eth0, which flanneld-ts did not make/g)).toBe(1);
    expect(count(h, /not programming lease 10.7.40.0\/24: PublicIP 127.0.0.1 is not a unicast host address/g)).toBe(1);
    expect(count(h, /not programming lease 10.7.41.0\/24: VtepMAC ff:ff:ff:ff:ff:ff is broadcast/g)).toBe(1);
    expect(count(h, /not programming lease 10.7.42.0\/24: VtepMAC \S+ is this node's own/g)).toBe(1);
    expect(count(h, /not programming lease 10.7.43.0\/24: VtepMAC 02:00:00:00:00:12 is already used by 10.7.12.0\/24/g)).toBe(1);
    expect(await h.entries()).toEqual(['fdb 02:00:00:00:00:12 dst 10.65.154.12', 'neighbor 10.7.12.0 lladdr 02:00:00:00:00:12', 'route 10.7.12.0/24 via 10.7.12.0 onlink']);
    expect(h.daemon.status()).toMatchObject({ phase: 'ready', kernelInSync: true, peers: 1 });
  });

  it('drops a peer whose entry the kernel refuses for good (all three entries), logs once, stays ready and retries once the value changes', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const h = start({ observer: metrics });
    await ready(h);
    const refusal = new KernelError('failed to replace fdb: EOPNOTSUPP', 'EOPNOTSUPP', false);
    h.kernel.failNext((c) => c.method === 'apply' && c.operation.entry.kind === 'fdb' && c.operation.entry.mac === '02:00:00:00:00:50', refusal);
    h.store.putRaw(`${PFX}10.7.50.0-24`, peerValue('10.65.154.50', '02:00:00:00:00:50'));
    h.store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    await waitFor('refusal logged', () => count(h, /not programming lease 10.7.50.0\/24: the kernel refused its fdb 02:00:00:00:00:50 dst 10.65.154.50: failed to replace fdb: EOPNOTSUPP/g) === 1, 3000, 10);
    await waitFor('only the good peer left', async () => (await h.entries()).join() === 'fdb 02:00:00:00:00:12 dst 10.65.154.12,neighbor 10.7.12.0 lladdr 02:00:00:00:00:12,route 10.7.12.0/24 via 10.7.12.0 onlink', 3000, 10);
    await waitFor('in sync', () => h.daemon.status().kernelInSync, 3000, 10);
    await new Promise((r) => setTimeout(r, 700));
    expect(count(h, /not programming lease 10.7.50.0/g)).toBe(1);
    expect(count(h, /"msg":"failed to replace/g)).toBe(0);
    const text = await metrics.text();
    expect(text).toMatch(/^flanneld_kernel_refusals_total 1$/m);
    expect(text).toMatch(/^flanneld_peers_skipped 1$/m);
    // A new value is tried again (and this time the kernel takes it).
    h.store.putRaw(`${PFX}10.7.50.0-24`, peerValue('10.65.154.51', '02:00:00:00:00:50'));
    await waitFor('retried with the new value', async () => (await h.entries()).length === 6, 3000, 10);
  });

  it('waits for a Network that does not contain its own public IP, naming both', async () => {
    const h = start({ config: '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}' });
    await waitFor('refusal logged', () => h.logs.join('').includes("invalid network config: Network: Network 10.0.0.0/8 contains this node's public IP 10.65.154.11"), 3000, 10);
    expect(await h.kernel.getDevice('flannel.1')).toBeUndefined();
    h.store.setConfig(CONFIG);
    await ready(h);
  });

  it.each([
    ['{"Network":"8.0.0.0/7","Backend":{"Type":"vxlan"}}', 'Network: 8.0.0.0/7 is wider than /8'],
    ['{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","VNI":16000000}}', 'Backend.VNI: 16000000 is too large'],
    ['{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","MTU":1}}', 'Backend.MTU: 1 is too small'],
  ])('keeps waiting on %s and starts once corrected', async (config, message) => {
    const h = start({ config });
    await waitFor('problem logged', () => h.logs.join('').includes(message), 3000, 10);
    await new Promise((r) => setTimeout(r, 1200));
    expect(count(h, new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g'))).toBe(1);
    expect(h.daemon.status().phase).toBe('starting');
    h.store.setConfig(CONFIG);
    await ready(h);
  });

  it('accepts a wide Network with --allow-wide-network', async () => {
    const h = start({ config: '{"Network":"100.0.0.0/6","Backend":{"Type":"vxlan"}}', args: ['--allow-wide-network'] });
    await ready(h);
  });
});

describe('Daemon firewall, routes and host checks (contract §16)', () => {
  const NFT_CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"},"EnableNFTables":true}';

  it('iptables mode: removes our nftables rules at start, writes every set, and repairs a flushed one', async () => {
    const rules: Harness['rules'] = { iptables: new Map(), nftables: new Map([['ip flannel-ipv4/postrtg', ['stale']]]) };
    const h = start({ args: ['--ip-masq', '--iptables-forward-rules', '--iptables-resync', '1'], rules });
    await ready(h);
    expect(rules.nftables.size).toBe(0);
    expect([...rules.iptables.keys()].sort()).toEqual(['filter/FLANNEL-FWD', 'nat/FLANNEL-POSTRTG']);
    const subnet = h.daemon.status().subnet ?? '';
    expect(rules.iptables.get('nat/FLANNEL-POSTRTG')?.join('\n')).toContain(`-s ${subnet} -d 10.7.0.0/16`);
    rules.iptables.set('filter/FLANNEL-FWD', []);
    await waitFor('the flushed forward set to be rewritten', () => (rules.iptables.get('filter/FLANNEL-FWD') ?? []).length === 2, 5000, 20);
  });

  it('EnableNFTables: writes nftables, removes our iptables chains, and needs no br_netfilter', async () => {
    const rules: Harness['rules'] = { iptables: new Map([['nat/FLANNEL-POSTRTG', ['old']], ['filter/FLANNEL-FWD', ['old']]]), nftables: new Map() };
    const h = start({ args: ['--ip-masq', '--iptables-forward-rules'], config: NFT_CONFIG, rules, brNetfilter: false });
    await ready(h);
    expect(rules.iptables.size).toBe(0);
    expect(rules.nftables.size).toBe(2);
  });

  it('EnableNFTables: rules nft refuses at start are fatal, as in flanneld; in iptables mode they are only logged', async () => {
    const refusing = async (o: FirewallOptions): Promise<Firewall> => {
      const fw = new MemoryFirewall(o);
      return Object.assign(fw, { ensure: async () => { throw new HostError('failed to install nftables rules ip flannel-ipv4/forward (nft exit 1): Error: Could not process rule'); } });
    };
    const nft = start({ config: NFT_CONFIG, args: ['--iptables-forward-rules'], firewalls: { iptables: async (o) => new MemoryFirewall(o), nftables: refusing } });
    const err = await nft.done;
    expect(err).toBeInstanceOf(HostError);
    expect(errorMessage(err)).toContain('failed to install nftables rules ip flannel-ipv4/forward');
    const ipt = start({ args: ['--iptables-forward-rules'], firewalls: { iptables: refusing, nftables: async (o) => new MemoryFirewall(o) } });
    await ready(ipt);
    expect(ipt.logs.join('')).toContain('failed to install nftables rules');
  });

  it('exits at start with a fix when br_netfilter is missing (iptables mode)', async () => {
    const h = start({ brNetfilter: false });
    const err = await h.done;
    expect(errorMessage(err)).toBe(`br_netfilter is not loaded (${h.sysctlRoot}/net/bridge/bridge-nf-call-iptables is missing): run "modprobe br_netfilter" (and list it in /etc/modules-load.d/), or set "EnableNFTables": true in the network config`);
    expect(err).toBeInstanceOf(HostError);
    expect(await h.kernel.getDevice('flannel.1')).toBeUndefined(); // checked before anything is made
  });

  it('sets accept_ra=0 on flannel.1 once it exists, and carries on when it cannot', async () => {
    const h = start();
    await ready(h);
    expect(readFileSync(join(h.sysctlRoot, 'net/ipv6/conf/flannel.1/accept_ra'), 'utf8')).toBe('0');
    const noIpv6 = start();
    rmSync(join(noIpv6.sysctlRoot, 'net/ipv6'), { recursive: true });
    await ready(noIpv6);
    expect(noIpv6.logs.join('')).toContain('accept_ra to 0');
  });

  it('--ip-blackhole-route asks for blackhole <own subnet> every period; without the flag never', async () => {
    const h = start({ args: ['--ip-blackhole-route', '--iptables-resync', '1'] });
    await ready(h);
    await waitFor('two blackhole checks', () => h.blackholes.length >= 2, 5000, 20);
    expect(new Set(h.blackholes)).toEqual(new Set([h.daemon.status().subnet]));
    const off = start({ args: ['--iptables-resync', '1'] });
    await ready(off);
    await new Promise((r) => setTimeout(r, 1500));
    expect(off.blackholes).toEqual([]);
  });
});

describe('Daemon: writing its unchanged value again (contract §13)', () => {
  const ownRecord = async (h: Harness) => {
    const rec = await h.store.get(parseCidr(h.daemon.status().subnet as string));
    if (rec?.kind !== 'lease') throw new Error('own lease missing');
    return rec.lease;
  };
  const revisionAbove = (h: Harness, rev: bigint) => waitFor('own lease written again', async () => BigInt((await ownRecord(h)).modRevision ?? '0') > rev, 8000, 20);

  it('re-puts the same bytes on the same etcd lease every --subnet-lease-reput-interval', async () => {
    const h = start({ args: ['--subnet-lease-reput-interval', '1'] });
    await ready(h);
    const first = await ownRecord(h);
    await revisionAbove(h, BigInt(first.modRevision ?? '0'));
    const second = await ownRecord(h);
    await revisionAbove(h, BigInt(second.modRevision ?? '0'));
    const third = await ownRecord(h);
    expect([second.etcdLease, third.etcdLease]).toEqual([first.etcdLease, first.etcdLease]);
    expect(h.store.leaseIds()).toEqual([first.etcdLease]);
    expect((await h.store.list()).records.filter((r) => r.kind === 'lease').map((r) => r.kind === 'lease' && r.lease.vtepMAC)).toEqual(['5a:5a:5a:5a:5a:5a']);
  }, 20_000);

  it('keeps a reservation a reservation when it re-puts it', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.44.0-24`, peerValue('10.65.154.11', '5a:5a:5a:5a:5a:5a'));
    const h = start({ store, args: ['--subnet-lease-reput-interval', '1'] });
    await ready(h);
    expect(h.daemon.status().subnet).toBe('10.7.44.0/24');
    const before = await ownRecord(h);
    await revisionAbove(h, BigInt(before.modRevision ?? '0'));
    expect((await ownRecord(h)).etcdLease).toBeUndefined();
    expect(store.leaseIds()).toEqual([]);
  }, 20_000);

  it('re-puts soon after an event flanneld peers cannot decode, and after an etcd outage', async () => {
    const h = start({ args: ['--subnet-lease-reput-interval', '82800'] });
    await ready(h);
    const before = BigInt((await ownRecord(h)).modRevision ?? '0');
    h.store.putRaw(`${PFX}not-a-subnet`, 'garbage');
    await revisionAbove(h, before);
    expect((await ownRecord(h)).etcdLease).toBe(h.store.leaseIds()[0]);
    const afterWipe = BigInt((await ownRecord(h)).modRevision ?? '0');
    h.store.setUnavailable(true);
    await waitFor('watch lost', () => h.logs.join('').includes('lost the etcd watch'), 5000, 20);
    h.store.setUnavailable(false);
    await revisionAbove(h, afterWipe);
  }, 20_000);

  it('leaves the kernel alone when a peer re-puts an unchanged value, and follows a changed one', async () => {
    const store = new MemoryLeaseStore();
    const peerLease = store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'), { ttlSeconds: 3600 });
    const kernel = new MemoryKernel();
    kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }] });
    kernel.setDefaultRoute(2);
    let applied = 0;
    let passes = 0;
    const apply = kernel.apply.bind(kernel);
    kernel.apply = async (index, ops) => {
      applied += ops.length;
      return apply(index, ops);
    };
    const noop = (): void => undefined;
    const observer: DaemonObserver = { leasesSeen: noop, reconciled: () => passes++, etcdReconnected: noop, watchResynced: noop, leaseRenewed: noop, leaseRewritten: noop, leaseEventApplied: noop, kernelWatchOverflowed: noop };
    const h = start({ store, kernel, observer, args: ['--kernel-resync', '600'] });
    await ready(h);
    await new Promise((r) => setTimeout(r, 200));
    const settled = applied;
    const passesBefore = passes;
    for (let i = 0; i < 5; i++) store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'), { etcdLease: peerLease });
    await new Promise((r) => setTimeout(r, 500));
    expect(applied).toBe(settled);
    // Not even a reconcile pass (nor a recomputed desired state).
    expect(passes).toBe(passesBefore);
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:13'), { etcdLease: peerLease });
    await waitFor('changed peer programmed', async () => (await h.entries()).join().includes('02:00:00:00:00:13'), 3000, 10);
    expect(applied).toBeGreaterThan(settled);
  });
});
