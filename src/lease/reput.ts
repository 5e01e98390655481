/**
 * When to write our unchanged lease value again (contract §13).
 *
 * flanneld learns peers only from PUT events, and after any watch event it
 * cannot decode it drops every peer and waits for their next PUT. A node that
 * only keeps its etcd lease alive would never come back on such a peer. So we
 * re-put our value:
 * - periodically, every `intervalMs` ± 25 % (jitter keeps a fleet that started
 *   together from putting together); the default (1 h) is well inside flanneld's
 *   own ~23 h;
 * - soon after something that can have made flanneld peers forget us: an event
 *   flanneld cannot decode, a reconnect after an etcd outage, a compaction
 *   resync. The delay is random in a window that grows with the number of
 *   leases (`leases / REPUT_RATE_PER_SECOND` seconds), and a node puts at most
 *   once per window, so the whole cluster stays near REPUT_RATE_PER_SECOND puts
 *   a second however many nodes react to the same event.
 * Every PUT goes to every watcher: n nodes cost n × (n / interval) watch events
 * a second at steady state (README, "Lease renewal").
 */
import { LeaseEvent } from './store';

/** Cluster-wide puts per second a triggered re-put aims at. */
export const REPUT_RATE_PER_SECOND = 10;

const MIN_WINDOW_MS = 1_000;

/** The periodic delay: `intervalMs` × [0.75, 1.25). */
export function periodicReputDelay(intervalMs: number, rand: () => number): number {
  return Math.round(intervalMs * (0.75 + 0.5 * rand()));
}

/** The window a triggered re-put is spread over, for a cluster of `leases` nodes. */
export function reputWindowMs(leases: number): number {
  return Math.max(MIN_WINDOW_MS, Math.ceil((leases * 1000) / REPUT_RATE_PER_SECOND));
}

/** Decides when the next re-put is due. Pure apart from the injected `rand`; times are Unix ms. */
export class ReputSchedule {
  private periodicAt: number;
  private triggeredAt: number | undefined;
  private lastAttemptAt = -Infinity;
  private lastWindowMs = MIN_WINDOW_MS;

  constructor(private readonly intervalMs: number, private readonly rand: () => number, now: number) {
    this.periodicAt = now + periodicReputDelay(intervalMs, rand);
  }

  /** When the next re-put is due. */
  dueAt(): number {
    return Math.min(this.periodicAt, this.triggeredAt ?? Infinity);
  }

  /** Whether a re-put is pending because of a trigger (not just the period). */
  get triggered(): boolean {
    return this.triggeredAt !== undefined;
  }

  /**
   * Something may have made peers forget us: re-put within a random delay in
   * the window for `leases` nodes, but not sooner than one window after the last attempt.
   */
  trigger(now: number, leases: number): void {
    const windowMs = reputWindowMs(leases);
    this.lastWindowMs = windowMs;
    const at = Math.max(now + Math.floor(this.rand() * windowMs), this.lastAttemptAt + windowMs);
    this.triggeredAt = Math.min(this.triggeredAt ?? Infinity, at);
  }

  /** A re-put was attempted at `now` (success or not): the next period starts. */
  attempted(now: number): void {
    this.lastAttemptAt = now;
    this.triggeredAt = undefined;
    this.periodicAt = now + periodicReputDelay(this.intervalMs, this.rand);
  }

  /** A failed attempt: try again like a trigger (never sooner than one window later). */
  failed(now: number): void {
    this.triggeredAt = Math.max(now + Math.floor(this.rand() * this.lastWindowMs), this.lastAttemptAt + this.lastWindowMs);
  }
}

/**
 * Would this batch make a flanneld peer drop all its peers (contract §13)? Any
 * key or value our codec rejects: a key that is not `<ip>-<len>` (on a PUT or a
 * DELETE) or an undecodable value. Our codec is a little stricter than flanneld's
 * (a bad VtepMAC), which only costs an unneeded re-put.
 */
export function wouldWipeFlanneldPeers(events: readonly LeaseEvent[]): boolean {
  return events.some((ev) => (ev.type === 'put' ? ev.record.kind === 'invalid' : ev.subnet === undefined));
}
