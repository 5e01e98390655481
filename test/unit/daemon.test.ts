/**
 * The daemon against the in-memory fakes: start-up order, peers following leases,
 * own-lease loss, kernel drift, config waiting and fatal errors. Real timers, short intervals.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonOptions, parseCommandLine } from '../../src/cli';
import { Daemon } from '../../src/daemon';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { DaemonObserver } from '../../src/metrics';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { waitFor } from '../../src/testbed/scene';
import { systemClock } from '../../src/util/clock';
import { OutOfSubnetsError } from '../../src/util/errors';
import { createLogger } from '../../src/util/log';

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
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function peerValue(ip: string, mac: string): string {
  return encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });
}

function start(opts: { store?: MemoryLeaseStore; kernel?: MemoryKernel; args?: string[]; config?: string | null; subnetFile?: string; observer?: DaemonObserver } = {}): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'flts-daemon-'));
  const subnetFile = opts.subnetFile ?? join(dir, 'subnet.env');
  const store = opts.store ?? new MemoryLeaseStore();
  if (opts.config !== null) store.setConfig(opts.config ?? CONFIG);
  const kernel = opts.kernel ?? new MemoryKernel();
  if (!opts.kernel) {
    kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }] });
    kernel.setDefaultRoute(2);
  }
  const cmd = parseCommandLine(['--subnet-file', subnetFile, '--kernel-resync', '0.2', '--iptables-forward-rules=false', ...(opts.args ?? [])], {});
  if (cmd.command !== 'run') throw new Error('not run');
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } });
  const daemon = new Daemon(cmd.options as DaemonOptions, { store, kernel, clock: systemClock, rand: Math.random, randomBytes: (n) => new Uint8Array(n).fill(0x5a), log: createLogger('debug', sink), ...(opts.observer && { observer: opts.observer }) });
  const ctl = new AbortController();
  const done = daemon.run(ctl.signal).catch((err: unknown) => err);
  const h: Harness = {
    store, kernel, daemon, logs, subnetFile, done,
    stop: async () => { ctl.abort(); return done; },
    async entries() {
      const dev = await kernel.getDevice('flannel.1');
      if (!dev) return [];
      const { describeEntry } = await import('../../src/overlay/plan');
      return (await kernel.listEntries(dev.index)).map(describeEntry).sort();
    },
  };
  cleanups.push(async () => { await h.stop(); rmSync(dir, { recursive: true, force: true }); });
  return h;
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

  it('says that DirectRouting is not supported and carries on over VXLAN', async () => {
    const store = new MemoryLeaseStore();
    store.putRaw(`${PFX}10.7.12.0-24`, peerValue('10.65.154.12', '02:00:00:00:00:12'));
    const h = start({ store, config: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}' });
    await ready(h);
    expect(h.logs.join('')).toContain('Backend.DirectRouting is not supported by flanneld-ts yet');
    expect(await h.entries()).toHaveLength(3);
  });

  it('renews its lease before expiry with a short TTL', async () => {
    const h = start({ args: ['--subnet-lease-ttl', '6'] });
    await ready(h);
    await waitFor('renewal', () => h.logs.join('').includes('renewed lease'), 6000, 50);
    expect(h.store.leaseIds()).toHaveLength(1);
  }, 10_000);
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
    const observer: DaemonObserver = { leasesSeen: noop, reconciled: () => passes++, etcdReconnected: noop, watchResynced: noop, leaseRenewed: noop, leaseRewritten: noop, leaseEventApplied: noop };
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
