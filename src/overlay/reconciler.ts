/**
 * Design note: the VXLAN data path and how flanneld-ts keeps it.
 *
 * For every remote lease (subnet S = s.0/len, VTEP MAC M, public IP P) the
 * kernel needs three entries on flannel.<VNI>, and nothing else:
 *   1. neighbour  s.0 lladdr M permanent   — the inner Ethernet destination for
 *      the gateway, so the kernel never ARPs across the overlay (learning is off);
 *   2. FDB        M dst P self permanent     — which underlay host gets frames for M;
 *   3. route      S via s.0 dev flannel.1 onlink — send S into the overlay.
 * The route goes in last, so no packet is ever routed to a gateway the kernel
 * cannot resolve; removal goes the other way.
 *
 * We reconcile rather than replay events: a lease event, a kernel notification
 * or the periodic tick only marks the state dirty. One loop then ensures the
 * device, reads the entries on it, plans the difference (plan.ts) and applies
 * it. Bursts of events collapse into one pass; restarts, hand-deleted entries,
 * a recreated device and stale entries all heal the same way.
 */
import { DeviceState, Kernel } from '../kernel/kernel';
import { Clock, isAbortError } from '../util/clock';
import { errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { DEFAULT_BACKOFF, backoffDelay } from '../util/retry';
import { DesiredState } from './desired';
import { PlannedOperation, describeEntry, planChanges } from './plan';

/** Above this many operations in one pass, log a summary instead of one line each. */
const LOG_EACH_LIMIT = 50;

export interface PassResult {
  readonly planned: number;
  readonly failed: number;
  readonly peers: number;
  readonly durationMs: number;
  /** Operations applied, keyed `<op>-<kind>-<ok|failed>`. */
  readonly applied: Readonly<Record<string, number>>;
  /** Entries fixed although the desired state had not changed since the last clean pass: drift. */
  readonly repairs: number;
  /** The desired-state generation this pass worked from. */
  readonly generation: number;
}

export interface ReconcilerDeps {
  readonly kernel: Kernel;
  /** The current desired state; undefined while the daemon cannot know it yet. */
  readonly desired: () => DesiredState | undefined;
  /** Changes whenever the desired state may have changed (lease events, resyncs, own lease). */
  readonly generation: () => number;
  /** Creates, adopts or repairs the overlay device and returns it. */
  readonly ensureDevice: () => Promise<DeviceState>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly rand: () => number;
  /** Full pass even when nothing reported a change (catches what notifications miss). */
  readonly periodMs: number;
  /** Wait this long after the first dirty mark so a burst becomes one pass. */
  readonly coalesceMs: number;
  readonly onPass?: (result: PassResult) => void;
}

export class Reconciler {
  private dirty = true;
  private wake: (() => void) | undefined;
  private inSync = false;
  private readonly syncWaiters: Array<() => void> = [];
  private syncedGeneration = -1;

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Something changed (lease event, kernel notification): run a pass soon. */
  markDirty(): void {
    this.dirty = true;
    this.wake?.();
  }

  /** True after a pass that left the kernel matching the desired state. */
  get synced(): boolean {
    return this.inSync;
  }

  /** Resolves after the next pass that leaves the kernel in sync. */
  waitSynced(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      this.markDirty();
    });
  }

  /** The loop; returns when `signal` aborts. Never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    const unwatch = this.deps.kernel.watch(() => this.markDirty());
    try {
      while (!signal.aborted) {
        await this.waitForWork(signal, failures);
        if (signal.aborted) break;
        this.dirty = false;
        try {
          const result = await this.reconcileOnce();
          failures = result.failed > 0 ? failures + 1 : 0;
          if (result.failed > 0) this.dirty = true;
        } catch (err) {
          if (isAbortError(err)) break;
          if (failures === 0) this.deps.log.warn({ err: errorMessage(err) }, `failed to reconcile kernel state: ${errorMessage(err)}; retrying with backoff`);
          failures++;
          this.dirty = true;
        }
      }
    } finally {
      unwatch();
    }
  }

  /** One pass: ensure device, read, plan, apply, log. */
  async reconcileOnce(): Promise<PassResult> {
    const started = this.deps.clock.now();
    const generation = this.deps.generation();
    const desired = this.deps.desired();
    if (!desired) return { planned: 0, failed: 0, peers: 0, durationMs: 0, applied: {}, repairs: 0, generation };
    const device = await this.deps.ensureDevice();
    const actual = await this.deps.kernel.listEntries(device.index);
    const plan = planChanges(desired, actual);
    let failed = 0;
    const applied: Record<string, number> = {};
    if (plan.length > 0) {
      const errors = (await this.deps.kernel.apply(device.index, plan)).map((r) => r.error);
      failed = this.logResults(plan, errors);
      plan.forEach((op, i) => {
        const key = `${op.op}-${op.entry.kind}-${errors[i] ? 'failed' : 'ok'}`;
        applied[key] = (applied[key] ?? 0) + 1;
      });
    }
    const repairs = generation === this.syncedGeneration ? plan.length - failed : 0;
    const result = { planned: plan.length, failed, peers: desired.peers.size, durationMs: this.deps.clock.now() - started, applied, repairs, generation };
    this.inSync = failed === 0;
    if (this.inSync) this.syncedGeneration = generation;
    if (this.inSync) this.syncWaiters.splice(0).forEach((w) => w());
    this.deps.onPass?.(result);
    return result;
  }

  private logResults(plan: readonly PlannedOperation[], errors: ReadonlyArray<Error | undefined>): number {
    const log = this.deps.log;
    let failed = 0;
    const counts: Record<string, number> = {};
    plan.forEach((op, i) => {
      const err = errors[i];
      const what = `${op.op} ${describeEntry(op.entry)}`;
      if (err) {
        failed++;
        log.warn({ err: err.message, reason: op.reason }, `failed to ${what}: ${err.message}`);
        return;
      }
      const k = `${op.op}-${op.entry.kind}`;
      counts[k] = (counts[k] ?? 0) + 1;
      if (plan.length <= LOG_EACH_LIMIT) log.info({ reason: op.reason }, `${what} (${op.reason})`);
      else log.debug({ reason: op.reason }, `${what} (${op.reason})`);
    });
    if (plan.length > LOG_EACH_LIMIT) log.info({ ...counts, failed }, `applied ${plan.length - failed} kernel changes`);
    return failed;
  }

  private async waitForWork(signal: AbortSignal, failures: number): Promise<void> {
    const { clock } = this.deps;
    if (failures > 0) {
      await clock.sleep(backoffDelay(DEFAULT_BACKOFF, failures - 1, this.deps.rand), signal).catch(() => undefined);
    } else if (!this.dirty) {
      const ticker = new AbortController();
      const onAbort = (): void => ticker.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        clock.sleep(this.deps.periodMs, ticker.signal).then(resolve, resolve);
      });
      this.wake = undefined;
      ticker.abort();
      signal.removeEventListener('abort', onAbort);
    }
    if (this.deps.coalesceMs > 0 && !signal.aborted) await clock.sleep(this.deps.coalesceMs, signal).catch(() => undefined);
  }
}
