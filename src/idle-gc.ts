/**
 * Giving memory back after a burst. V8 keeps the pages a burst of work (a join
 * storm, lease churn) grew its heap to long after the work is done, full of
 * garbage: measured at 1,000 peers, 1,500 lease writes in 30 s left the daemon
 * at 122 MB RSS where it had used 79 MB before, while heap snapshots before and
 * after showed no growth of what is reachable (about 1 MB, compiled code). One
 * full collection brought it to 73 MB. So once the daemon has changed the
 * kernel and then been quiet for a while, it asks V8 for one full collection:
 * a few tens of ms of CPU after each burst, none while idle.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DaemonObserver } from './metrics';
import { PassResult } from './overlay/reconciler';

/** Quiet time after the last kernel change before collecting. */
export const IDLE_GC_QUIET_MS = 5_000;

/** The options V8's exposed `gc` takes; `last-resort` collects until nothing more is freed and gives the freed pages back (the new space shrinks too). */
export interface GcOptions {
  readonly type?: 'major' | 'minor';
  readonly execution?: 'sync' | 'async';
  readonly flavor?: 'regular' | 'last-resort';
}

/**
 * V8's full collection, without starting Node with --expose-gc: the flag set at
 * run time exposes `gc` in contexts created afterwards. Undefined if V8 refuses.
 */
export function fullGc(): ((options?: GcOptions) => void) | undefined {
  const existing = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') return existing as (options?: GcOptions) => void;
  setFlagsFromString('--expose-gc');
  const gc: unknown = runInNewContext('gc');
  return typeof gc === 'function' ? (gc as (options?: GcOptions) => void) : undefined;
}

/**
 * The collection the daemon makes after a burst: a plain full collection frees
 * the garbage but V8 keeps the pages committed (measured at 5,000 peers after
 * 60 s of churn: 27.6 MB in use of 39.1 MB committed, and the resident set
 * stayed 22 % above its level before the churn); the last-resort flavour
 * releases them.
 */
export const AFTER_BURST_GC: GcOptions = { type: 'major', execution: 'sync', flavor: 'last-resort' };

/** Runs `collect` once `quietMs` have passed since the last `busy()`. Its timer never keeps the process alive. */
export class IdleCollector {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly collect: () => void, private readonly quietMs = IDLE_GC_QUIET_MS) {}

  busy(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.collect();
    }, this.quietMs);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** The daemon's observer (`inner`, if any) plus: a pass that changed the kernel marks the collector busy. */
export function collectingObserver(collector: IdleCollector, inner: DaemonObserver | undefined): DaemonObserver {
  return {
    leasesSeen: (counts) => inner?.leasesSeen(counts),
    reconciled: (result: PassResult) => {
      inner?.reconciled(result);
      if (result.planned > 0) collector.busy();
    },
    etcdReconnected: () => inner?.etcdReconnected(),
    watchResynced: () => inner?.watchResynced(),
    leaseRenewed: (ok) => inner?.leaseRenewed(ok),
    leaseRewritten: (ok) => inner?.leaseRewritten(ok),
    leaseEventApplied: (seconds) => inner?.leaseEventApplied(seconds),
    kernelWatchOverflowed: () => inner?.kernelWatchOverflowed(),
    peersSkipped: (count) => inner?.peersSkipped?.(count),
    leaseRefused: () => inner?.leaseRefused?.(),
  };
}
