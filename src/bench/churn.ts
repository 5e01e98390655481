/**
 * The churn phase: for a while, the daemon's leases are deleted and put back at
 * a steady rate (peer k deleted, then put back, then peer k+1…), so the lease
 * count stays N while every write is a real event. Issue 10 asks that memory
 * stays bounded under it: RSS is sampled before (settled), throughout (peak) and
 * after (settled again), and the kernel must hold every peer at the end.
 */
import { EtcdAgent } from './etcd-agent-client';
import { verifyDevice, Verification } from './kernel-view';
import { BenchPeer, leaseItem, peerKey } from './peers';
import { readFileSync } from 'node:fs';
import { waitQuiescent } from './probes';
import { monotonicMs, parseRssKinds, readCpuMs, readRssKb } from './proc';
import { round1 } from './stats';

export interface ChurnResult {
  readonly seconds: number;
  /** Lease writes sent (deletes and puts). */
  readonly writes: number;
  /** Writes per second achieved (the agent may fall behind the asked rate). */
  readonly rate: number;
  /** VmRSS of the settled daemon before the churn. */
  readonly rssBeforeMB: number;
  /** Highest VmRSS sampled during the churn and its settling. */
  readonly rssPeakMB: number;
  /** VmRSS of the settled daemon after the churn. */
  readonly rssAfterMB: number;
  /** rssAfter / rssBefore − 1, in percent. */
  readonly rssGrowthPct: number;
  /** CPU of the daemon (and its children) during the writes. */
  readonly cpuMs: number;
  /** V8 heap in use before and after (the daemon's nodejs_heap_size_used_bytes): growth here is a leak, growth in RSS alone is the allocator keeping pages. */
  readonly heapUsedBeforeMB: number;
  readonly heapUsedAfterMB: number;
  /** V8's committed heap, its external memory and the anonymous resident set, settled before and after: where a growth sits. */
  readonly heapTotalBeforeMB?: number;
  readonly heapTotalAfterMB?: number;
  readonly externalBeforeMB?: number;
  readonly externalAfterMB?: number;
  readonly anonBeforeMB?: number;
  readonly anonAfterMB?: number;
}

/** After a burst V8 keeps collecting for several seconds (its memory reducer): RSS is read once that has run. */
const SETTLE_MS = 15_000;
const RSS_POLL_MS = 250;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number): number => round1(kb / 1024);

export interface ChurnOptions {
  readonly agent: EtcdAgent;
  readonly prefix: string;
  readonly pid: number;
  readonly netns: string;
  readonly peers: readonly BenchPeer[];
  readonly seconds: number;
  readonly rate: number;
  /** The daemon's /metrics text. */
  readonly metrics: () => Promise<string>;
}

/** A gauge's value in Prometheus text. */
export function gaugeValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in the daemon's /metrics`);
  return Number(m[1]);
}

/** V8's heap (used, committed), the memory it tracks outside the heap, and the resident set that is not file-backed. */
async function memoryOf(o: ChurnOptions): Promise<{ heapUsedMB: number; heapTotalMB: number; externalMB: number; anonMB: number }> {
  const text = await o.metrics();
  const g = (name: string): number => round1(gaugeValue(text, name) / 2 ** 20);
  const { anonKb } = parseRssKinds(readFileSync(`/proc/${o.pid}/status`, 'utf8'));
  return { heapUsedMB: g('nodejs_heap_size_used_bytes'), heapTotalMB: g('nodejs_heap_size_total_bytes'), externalMB: g('nodejs_external_memory_bytes'), anonMB: round1(anonKb / 1024) };
}

async function settledRssKb(pid: number): Promise<number> {
  await sleep(SETTLE_MS);
  await waitQuiescent(pid);
  return readRssKb(pid);
}

export async function runChurn(o: ChurnOptions): Promise<{ result: ChurnResult; verification: Verification }> {
  const before = await settledRssKb(o.pid);
  const memBefore = await memoryOf(o);
  let peak = before;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, readRssKb(o.pid));
    } catch {
      // The daemon died: the verification below reports it.
    }
  }, RSS_POLL_MS);
  try {
    const intervalMs = 1000 / o.rate;
    const cpu0 = readCpuMs(o.pid);
    const t0 = monotonicMs();
    let writes = 0;
    while (monotonicMs() - t0 < o.seconds * 1000) {
      const peer = o.peers[Math.floor(writes / 2) % o.peers.length] as BenchPeer;
      if (writes % 2 === 0) await o.agent.del([peerKey(o.prefix, peer)]);
      else await o.agent.put([leaseItem(o.prefix, peer)]);
      writes++;
      const wait = t0 + writes * intervalMs - monotonicMs();
      if (wait > 0) await sleep(wait);
    }
    // The last delete gets its put, so all N leases are back.
    if (writes % 2 === 1) {
      await o.agent.put([leaseItem(o.prefix, o.peers[Math.floor(writes / 2) % o.peers.length] as BenchPeer)]);
      writes++;
    }
    const elapsedS = (monotonicMs() - t0) / 1000;
    const cpuMs = readCpuMs(o.pid) - cpu0;
    const after = await settledRssKb(o.pid);
    const memAfter = await memoryOf(o);
    peak = Math.max(peak, after);
    const verification = await verifyDevice(o.netns, o.peers);
    return {
      result: {
        seconds: round1(elapsedS),
        writes,
        rate: round1(writes / elapsedS),
        rssBeforeMB: mb(before),
        rssPeakMB: mb(peak),
        rssAfterMB: mb(after),
        rssGrowthPct: round1((after / before - 1) * 100),
        cpuMs: Math.round(cpuMs),
        heapUsedBeforeMB: memBefore.heapUsedMB,
        heapUsedAfterMB: memAfter.heapUsedMB,
        heapTotalBeforeMB: memBefore.heapTotalMB,
        heapTotalAfterMB: memAfter.heapTotalMB,
        externalBeforeMB: memBefore.externalMB,
        externalAfterMB: memAfter.externalMB,
        anonBeforeMB: memBefore.anonMB,
        anonAfterMB: memAfter.anonMB,
      },
      verification,
    };
  } finally {
    clearInterval(sampler);
  }
}
