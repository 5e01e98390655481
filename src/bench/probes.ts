/**
 * Waiting on the daemon without disturbing it: until its CPU counters stop
 * moving (quiescent), and until its namespace holds every route the peers call
 * for, checked by reading the FIB's prefix count (a few microseconds of kernel
 * work) every few milliseconds and confirmed by a full dump of flannel.1.
 */
import { DaemonHandle } from '../testbed/scene';
import { verifyDevice, Verification } from './kernel-view';
import { BenchPeer } from './peers';
import { monotonicMs, readCpuTicks, readRoutePrefixes } from './proc';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const POLL_MS = 5;
const QUIET_POLL_MS = 25;
/** Consecutive unchanged CPU samples that count as quiescent (100 ms at 25 ms). */
const QUIET_SAMPLES = 4;

/**
 * Resolves once the process has used no CPU for QUIET_SAMPLES polls in a row,
 * or after `maxMs` (a daemon that never settles is itself a finding: the caller
 * measures on regardless).
 */
export async function waitQuiescent(pid: number, maxMs = 5_000): Promise<void> {
  const deadline = monotonicMs() + maxMs;
  const cpu = (): number => {
    const t = readCpuTicks(pid);
    return t.utime + t.stime;
  };
  let last = cpu();
  let quiet = 0;
  while (quiet < QUIET_SAMPLES && monotonicMs() < deadline) {
    await sleep(QUIET_POLL_MS);
    const now = cpu();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
}

export interface ProgrammedWait {
  /** Route count of the namespace that means every peer's route is in. */
  readonly targetPrefixes: number;
  /** A process inside the daemon's namespace, for /proc/<pid>/net. */
  readonly anchorPid: number;
  readonly netns: string;
  readonly peers: readonly BenchPeer[];
  readonly timeoutMs: number;
  /** Fails the wait early (the daemon exited). */
  readonly daemon?: DaemonHandle;
}

/**
 * The monotonic time at which every peer's three entries were first seen in the
 * kernel, with the verification that proved it. The daemon adds each peer's
 * route only after its neighbour and FDB requests completed, so the route count
 * reaching the target is the moment to look; the dump then confirms all three
 * kinds and their contents, and polling goes on if it finds anything missing.
 */
export async function waitProgrammed(w: ProgrammedWait): Promise<{ at: number; verification: Verification }> {
  const deadline = monotonicMs() + w.timeoutMs;
  let exited: number | undefined;
  void w.daemon?.exited.then((c) => (exited = c));
  let last: Verification | undefined;
  for (;;) {
    if (exited !== undefined) throw new Error(`flanneld-ts exited with ${exited} before all entries were programmed:\n${tail(w.daemon)}`);
    const at = monotonicMs();
    if (at > deadline) {
      const why = last ? last.problems.join('; ') : `route count stayed below ${w.targetPrefixes}`;
      throw new Error(`not all ${w.peers.length} peers were programmed within ${w.timeoutMs / 1000} s: ${why}\n${tail(w.daemon)}`);
    }
    if (readRoutePrefixes(w.anchorPid) >= w.targetPrefixes) {
      last = await verifyDevice(w.netns, w.peers);
      if (last.ok) return { at, verification: last };
    }
    await sleep(POLL_MS);
  }
}

/** The end of a daemon's log, for failure messages. */
export function tail(d: DaemonHandle | undefined, lines = 20): string {
  if (!d) return '';
  try {
    return d.log().trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
