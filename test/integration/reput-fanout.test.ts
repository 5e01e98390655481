/**
 * The fan-out of a triggered re-put (lease/reput.ts), measured on a real etcd:
 * N nodes hold leases, W watchers watch `subnets/`, and every node re-puts once
 * after a random delay in the window for N leases, as after an undecodable
 * event. Every watcher must get every PUT, and the cluster-wide put rate must
 * average REPUT_RATE_PER_SECOND over the window; the figures are printed
 * (README, "Lease renewal in a mixed cluster").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeLeaseValue } from '../../src/lease/codec';
import { EtcdLeaseStore } from '../../src/lease/etcd-store';
import { REPUT_RATE_PER_SECOND, reputWindowMs } from '../../src/lease/reput';
import { makeCidr, parseIPv4 } from '../../src/net/ipv4';
import { EtcdProcess, startEtcd } from '../../src/testbed/etcd-process';
import { silentLogger } from '../../src/util/log';

const NODES = 100;
const WATCHERS = 100;
const PREFIX = '/fanout/coreos.com/network';

let etcd: EtcdProcess | undefined;
const stores: EtcdLeaseStore[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await etcd?.cleanup();
});

describe('triggered re-put fan-out on a real etcd', () => {
  it(`${NODES} nodes re-put once within the window; each of ${WATCHERS} watchers gets every PUT`, async () => {
    const endpoint = (etcd as EtcdProcess).endpoint;
    const writer = new EtcdLeaseStore({ endpoints: [endpoint], prefix: PREFIX, log: silentLogger() });
    stores.push(writer);
    const leases: Array<{ subnet: ReturnType<typeof makeCidr>; value: string; etcdLease: string }> = [];
    for (let i = 0; i < NODES; i++) {
      const subnet = makeCidr(parseIPv4(`10.7.${i + 1}.0`), 24);
      const value = encodeLeaseValue({ publicIP: parseIPv4(`10.65.${Math.floor(i / 200)}.${(i % 200) + 10}`), vni: 1, vtepMAC: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` });
      const created = await writer.create(subnet, value, 3600);
      if (!created) throw new Error('create failed');
      leases.push({ subnet, value, etcdLease: created.etcdLease });
    }
    const { revision } = await writer.list();
    const ac = new AbortController();
    const received: number[] = [];
    const arrivals: number[] = [];
    for (let w = 0; w < WATCHERS; w++) {
      const store = new EtcdLeaseStore({ endpoints: [endpoint], prefix: PREFIX, log: silentLogger() });
      stores.push(store);
      received.push(0);
      void store.watch(revision + 1n, { onEvents: (evs) => {
        received[w] = (received[w] as number) + evs.length;
        if (w === 0) for (const _ of evs) arrivals.push(Date.now());
      } }, ac.signal).catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 1000));
    const windowMs = reputWindowMs(NODES);
    const started = Date.now();
    const puts = leases.map((l) => new Promise<boolean>((resolve, reject) => {
      setTimeout(() => writer.rewrite(l.subnet, l.value, l.etcdLease).then(resolve, reject), Math.floor(Math.random() * windowMs));
    }));
    expect((await Promise.all(puts)).every(Boolean)).toBe(true);
    const putsDoneMs = Date.now() - started;
    const deadline = Date.now() + 30_000;
    while (received.some((n) => n < NODES) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const deliveredMs = Date.now() - started;
    ac.abort();
    expect(received).toEqual(Array(WATCHERS).fill(NODES));
    // Puts per second, in one-second buckets, as watcher 0 saw them.
    const buckets = new Map<number, number>();
    for (const t of arrivals) buckets.set(Math.floor((t - started) / 1000), (buckets.get(Math.floor((t - started) / 1000)) ?? 0) + 1);
    const peak = Math.max(...buckets.values());
    const mean = NODES / (windowMs / 1000);
    process.stdout.write(`re-put fan-out: ${NODES} puts × ${WATCHERS} watchers = ${NODES * WATCHERS} events; window ${windowMs} ms; puts done in ${putsDoneMs} ms, all delivered in ${deliveredMs} ms; mean ${mean.toFixed(1)} puts/s (${(mean * WATCHERS).toFixed(0)} events/s), peak second ${peak} puts (${peak * WATCHERS} events)\n`);
    // The window is sized so that the mean stays at the target rate; the peak second is only reported (it depends on load).
    expect(mean).toBeLessThanOrEqual(REPUT_RATE_PER_SECOND);
    expect(windowMs).toBe((NODES / REPUT_RATE_PER_SECOND) * 1000);
  }, 90_000);
});
