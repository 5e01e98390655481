/**
 * The CPU cost of one full reconcile pass, measured directly: the bench makes
 * an external change on flannel.1 (deletes one peer's route with `ip route del`,
 * what an operator or another agent might do), which the daemon answers with a
 * full pass (list the device, plan, repair) and, 2 s after its repair, a
 * verification listing (another full pass). Each trigger is timed out to
 * quiescence; the daemon's own pass counter (`flanneld_reconcile_duration_seconds`
 * on /metrics) says how many passes ran, and /proc/<pid>/stat what they cost.
 * The idle rate measured before is subtracted for the time the triggers took.
 */
import { IDLE_GC_QUIET_MS } from '../idle-gc';
import { formatCidr } from '../net/ipv4';
import { runChecked } from '../testbed/exec';
import { EtcdAgent } from './etcd-agent-client';
import { DEVICE } from './kernel-view';
import { BenchPeer } from './peers';
import { waitQuiescent } from './probes';
import { monotonicMs, readCpuMs } from './proc';
import { round1 } from './stats';

export interface PassCostResult {
  readonly triggers: number;
  /** Passes the daemon counted meanwhile. */
  readonly passes: number;
  /** CPU per pass, idle rate subtracted. */
  readonly cpuMsPerPass: number;
  /** Wall time per pass from the daemon's histogram (sum / count). */
  readonly wallMsPerPass: number;
}

const PASS_METRIC = 'flanneld_reconcile_duration_seconds';
/**
 * The reconciler's verification listing follows our own last change by 2 s: wait past it,
 * but not as long as the daemon's quiet time before its idle collection (idle-gc.ts), so
 * that collection falls after the measured window and is not booked to the passes.
 */
const AFTER_REPAIR_MS = Math.min(3_000, IDLE_GC_QUIET_MS - 1_000);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `<name>_count` and `<name>_sum` of a histogram in Prometheus text. */
export function parseHistogram(text: string, name: string): { count: number; sum: number } {
  const value = (suffix: string): number => {
    const m = new RegExp(`^${name}_${suffix}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(text);
    if (!m) throw new Error(`no ${name}_${suffix} in the daemon's /metrics`);
    return Number(m[1]);
  };
  return { count: value('count'), sum: value('sum') };
}

export interface PassCostOptions {
  readonly agent: EtcdAgent;
  /** The daemon's /metrics URL, reachable from the agent's namespace. */
  readonly metricsUrl: string;
  readonly pid: number;
  readonly netns: string;
  readonly peers: readonly BenchPeer[];
  readonly triggers: number;
  /** The daemon's CPU rate at idle (ms per s), subtracted; 0 when unknown. */
  readonly idleCpuMsPerS: number;
}

export async function measurePassCost(o: PassCostOptions): Promise<PassCostResult> {
  await waitQuiescent(o.pid);
  const h0 = parseHistogram(await o.agent.fetch(o.metricsUrl), PASS_METRIC);
  const cpu0 = readCpuMs(o.pid);
  const t0 = monotonicMs();
  for (let i = 0; i < o.triggers; i++) {
    const peer = o.peers[(i * 7919) % o.peers.length] as BenchPeer;
    const dst = formatCidr(peer.subnet);
    await runChecked('ip', ['-n', o.netns, 'route', 'del', dst, 'dev', DEVICE]);
    const deadline = monotonicMs() + 30_000;
    while ((await runChecked('ip', ['-n', o.netns, 'route', 'show', dst, 'dev', DEVICE])).stdout.trim() === '') {
      if (monotonicMs() > deadline) throw new Error(`the daemon did not repair route ${dst} within 30 s of its deletion`);
      await sleep(20);
    }
    await sleep(AFTER_REPAIR_MS);
    await waitQuiescent(o.pid);
  }
  const cpuMs = readCpuMs(o.pid) - cpu0;
  const seconds = (monotonicMs() - t0) / 1000;
  const h1 = parseHistogram(await o.agent.fetch(o.metricsUrl), PASS_METRIC);
  const passes = h1.count - h0.count;
  if (passes < o.triggers) throw new Error(`${o.triggers} external changes caused only ${passes} reconcile passes (${PASS_METRIC}_count)`);
  return {
    triggers: o.triggers,
    passes,
    cpuMsPerPass: round1(Math.max(0, cpuMs - o.idleCpuMsPerS * seconds) / passes),
    wallMsPerPass: round1(((h1.sum - h0.sum) * 1000) / passes),
  };
}
