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
 *
 * Reading thousands of entries costs tens of milliseconds, so the entries from
 * the last listing are kept (KernelIndex) and updated with what we apply. A
 * pass caused only by lease events plans against that copy; a kernel
 * notification about someone else's change, a failed operation, the periodic
 * tick and start-up list the device again. Our own changes are not read back
 * at once: a verification listing follows `verifyMs` after the last of them.
 */
import { isDeepStrictEqual } from 'node:util';
import { ChangeCause, DeviceState, HostNetwork, Kernel, isEntryOfFamily } from '../kernel/kernel';
import { AddressFamily, IPV4 } from '../net/family';
import { Clock, isAbortError } from '../util/clock';
import { errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { DEFAULT_BACKOFF, backoffDelay } from '../util/retry';
import { DesiredState } from './desired';
import { isLogged } from './desired-book';
import { KernelIndex } from './kernel-index';
import { PlannedOperation, describeEntry, planChangedPeers, planChanges, planChangesSince } from './plan';

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

/** The host's addresses and routes as the last full pass read them, and which device is ours. */
export interface HostSnapshot {
  readonly network: HostNetwork;
  readonly overlayIndex: number;
}

/** Errnos that say the kernel will never accept this entry: retrying cannot help. */
const REFUSED_ERRNOS = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EAFNOSUPPORT', 'EPROTONOSUPPORT']);

/** True when the kernel refused an operation for a reason a retry cannot fix. */
export function isRefusal(err: Error): boolean {
  const errno = (err as { errno?: unknown }).errno;
  return typeof errno === 'string' && REFUSED_ERRNOS.has(errno);
}

export interface ReconcilerDeps {
  readonly kernel: Kernel;
  /**
   * The current desired state, checked against the host's own network when
   * `host` is given; undefined while the daemon cannot know it yet.
   */
  readonly desired: (host?: HostSnapshot) => DesiredState | undefined;
  /**
   * Runs before the desired state is asked for, with the host as the last listing
   * pass read it (DirectRouting decides its peers here: route lookups are async).
   */
  readonly prepare?: (host: HostSnapshot) => Promise<void>;
  /** The family this reconciler keeps (default IPv4): the listing's direct routes of the other family are not its business. */
  readonly family?: AddressFamily;
  /** The kernel refused these replace operations for good (EINVAL, ENOTSUP…): the daemon drops their peers. */
  readonly onRefused?: (refused: ReadonlyArray<{ readonly operation: PlannedOperation; readonly error: Error }>) => void;
  /** Changes whenever the desired state may have changed (lease events, resyncs, own lease). */
  readonly generation: () => number;
  /** Creates, adopts or repairs the overlay device and returns it. */
  readonly ensureDevice: () => Promise<DeviceState>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly rand: () => number;
  /** Full pass even when nothing reported a change (catches what notifications miss). */
  readonly periodMs: number;
  /** Wait this long after the last dirty mark so a burst becomes one pass… */
  readonly coalesceMs: number;
  /** …but never longer than this after the first. */
  readonly maxCoalesceMs?: number;
  /** Re-list the device this long after our last change (default 2 s). */
  readonly verifyMs?: number;
  readonly onPass?: (result: PassResult) => void;
  /** Kernel notifications were lost (the watch overflowed); a full pass follows. */
  readonly onOverflow?: () => void;
}

/** Overflows closer together than this are one episode: logged once. */
const OVERFLOW_EPISODE_MS = 60_000;

export class Reconciler {
  private dirty = true;
  /** The next pass must list the device instead of trusting `known`. */
  private fullNeeded = true;
  /** The periodic pass plans every peer, even when the listing matches what is known. */
  private planAll = false;
  private known: KernelIndex | undefined;
  /**
   * The desired state `known` matched after the last pass that applied everything
   * it planned: a state kept in place with the mark of its change log then, or a
   * state that is not changed afterwards.
   */
  private knownMatches: { readonly state: DesiredState; readonly mark: number | undefined } | undefined;
  private knownDevice: DeviceState | undefined;
  private host: HostSnapshot | undefined;
  private lastMark = 0;
  private verify: AbortController | undefined;
  private wake: (() => void) | undefined;
  private inSync = false;
  private readonly syncWaiters: Array<() => void> = [];
  private lastOverflow = -Infinity;
  private syncedGeneration = -1;

  constructor(private readonly deps: ReconcilerDeps) {}

  /**
   * Something changed: run a pass soon. `full` when the kernel itself may differ
   * from what we last saw (someone else's change); lease events need not say so.
   */
  markDirty(full = false): void {
    this.dirty = true;
    if (full) this.fullNeeded = true;
    this.lastMark = this.deps.clock.now();
    this.wake?.();
  }

  private onKernelChange(cause: ChangeCause): void {
    if (cause === 'overflow') this.overflowed();
    if (cause !== 'own') return this.markDirty(true);
    // Our own change: verify with a listing once we have been quiet for a while.
    this.verify?.abort();
    const ctl = new AbortController();
    this.verify = ctl;
    this.deps.clock.sleep(this.deps.verifyMs ?? 2000, ctl.signal).then(() => this.markDirty(true), () => undefined);
  }

  // ENOBUFS: the kernel dropped notifications, so anything may have changed (netlink(7): resync).
  private overflowed(): void {
    const now = this.deps.clock.now();
    if (now - this.lastOverflow > OVERFLOW_EPISODE_MS) {
      this.deps.log.warn('kernel notifications were lost (the watch\'s receive queue overflowed); re-listing the overlay device, and logging no further overflow until 60 s pass without one');
    }
    this.lastOverflow = now;
    this.deps.onOverflow?.();
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
    const unwatch = this.deps.kernel.watch((cause) => this.onKernelChange(cause));
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
      this.verify?.abort();
    }
  }

  /** One pass: ensure device, read, plan, apply, log. */
  async reconcileOnce(): Promise<PassResult> {
    const started = this.deps.clock.now();
    let generation = this.deps.generation();
    if (!this.deps.desired(this.host)) return { planned: 0, failed: 0, peers: 0, durationMs: 0, applied: {}, repairs: 0, generation };
    // Cleared before reading, so a notification that arrives meanwhile asks for another listing.
    const full = this.fullNeeded || !this.known || !this.knownDevice;
    const planAll = this.planAll;
    this.fullNeeded = false;
    this.planAll = false;
    let device = this.knownDevice;
    let known = this.known;
    if (full || !device || !known) {
      device = await this.deps.ensureDevice();
      const family = (this.deps.family ?? IPV4).family;
      // Read through the last index, which then takes the listing in place; a device that did not change keeps what it is known to match.
      const prior = this.known && this.knownDevice?.index === device.index ? this.known : undefined;
      const listed = (await this.deps.kernel.listEntries(device.index, prior && ((e) => prior.canonical(e)))).filter((e) => isEntryOfFamily(e, family));
      const unchanged = prior !== undefined && !prior.adopt(listed);
      known = prior ?? KernelIndex.of(listed);
      // Read once per listing pass: peers are checked against the host's own addresses and routes
      // (every listing: route changes on other devices are not notified, kernel/change-filter.ts).
      const network = await this.deps.kernel.readHostNetwork(device.index);
      // The same reading keeps the same snapshot: the desired state is not re-decided for nothing (every verification pass reads it).
      if (!this.host || this.host.overlayIndex !== device.index || !isDeepStrictEqual(this.host.network, network)) this.host = { network, overlayIndex: device.index };
      this.knownDevice = device;
      this.known = known;
      if (!unchanged || planAll) this.knownMatches = undefined;
    }
    if (this.deps.prepare && this.host) {
      await this.deps.prepare(this.host);
      generation = this.deps.generation();
    }
    const desired = this.deps.desired(this.host) as DesiredState;
    // A lease event after a clean pass: only the peers that changed are planned.
    const plan = this.planFor(desired, known);
    // Marked now, not after the apply: whatever changes the state from here on is planned by the next pass.
    const matches = { state: desired, mark: isLogged(desired) ? desired.checkpoint() : undefined };
    this.knownMatches = undefined;
    let failed = 0;
    const applied: Record<string, number> = {};
    if (plan.length > 0) {
      const errors = (await this.deps.kernel.apply(device.index, plan)).map((r) => r.error);
      // Refusals go to the daemon, which logs them once per lease and drops that lease's peer.
      const reported = new Set<number>();
      const onRefused = this.deps.onRefused;
      if (onRefused) {
        plan.forEach((op, i) => {
          const error = errors[i];
          if (error && op.op === 'replace' && isRefusal(error)) reported.add(i);
        });
        if (reported.size > 0) onRefused([...reported].map((i) => ({ operation: plan[i] as PlannedOperation, error: errors[i] as Error })));
      }
      failed = this.logResults(plan, errors, reported);
      plan.forEach((op, i) => {
        const key = `${op.op}-${op.entry.kind}-${errors[i] ? 'failed' : 'ok'}`;
        applied[key] = (applied[key] ?? 0) + 1;
        if (!errors[i]) known.record(op);
      });
      if (failed > 0) this.fullNeeded = true;
    }
    const repairs = generation === this.syncedGeneration ? plan.length - failed : 0;
    const result = { planned: plan.length, failed, peers: desired.peers.size, durationMs: this.deps.clock.now() - started, applied, repairs, generation };
    this.inSync = failed === 0;
    if (this.inSync) this.knownMatches = matches;
    if (this.inSync) this.syncedGeneration = generation;
    if (this.inSync) this.syncWaiters.splice(0).forEach((w) => w());
    this.deps.onPass?.(result);
    return result;
  }

  // The whole plan, or (after a clean pass on the same index) only the changed peers'.
  private planFor(desired: DesiredState, known: KernelIndex): PlannedOperation[] {
    const prev = this.knownMatches;
    if (!prev) return planChanges(desired, known);
    if (prev.mark === undefined) return planChangesSince(prev.state, desired, known);
    const changed = prev.state === desired && isLogged(desired) ? desired.changedSince(prev.mark) : undefined;
    return changed ? planChangedPeers(changed, desired, known) : planChanges(desired, known);
  }

  /** Logs each change (or a summary) and returns how many failed; `reported` failures were logged by the daemon. */
  private logResults(plan: readonly PlannedOperation[], errors: ReadonlyArray<Error | undefined>, reported: ReadonlySet<number>): number {
    const log = this.deps.log;
    let failed = 0;
    const counts: Record<string, number> = {};
    const each = plan.length <= LOG_EACH_LIMIT ? 'info' : log.isLevelEnabled('debug') ? 'debug' : undefined;
    plan.forEach((op, i) => {
      const err = errors[i];
      if (err) {
        failed++;
        if (reported.has(i)) return;
        log.warn({ err: err.message, reason: op.reason }, `failed to ${op.op} ${describeEntry(op.entry)}: ${err.message}`);
        return;
      }
      const k = `${op.op}-${op.entry.kind}`;
      counts[k] = (counts[k] ?? 0) + 1;
      // Text for 15,000 operations of a cold start is only built when it is logged.
      if (each) log[each]({ reason: op.reason }, `${op.op} ${describeEntry(op.entry)} (${op.reason})`);
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
      // Woken by the tick rather than by a change: look at the kernel itself, and plan every peer.
      if (!this.dirty) this.fullNeeded = this.planAll = true;
    }
    // Wait for a quiet moment, so that a storm of lease events becomes one pass.
    const { coalesceMs } = this.deps;
    const started = clock.now();
    const cap = this.deps.maxCoalesceMs ?? coalesceMs * 20;
    while (coalesceMs > 0 && !signal.aborted) {
      await clock.sleep(coalesceMs, signal).catch(() => undefined);
      const now = clock.now();
      if (now - this.lastMark >= coalesceMs || now - started >= cap) break;
    }
  }
}
