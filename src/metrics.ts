/**
 * Prometheus metrics (prom-client, one registry per daemon). The daemon reports
 * through the small `DaemonObserver` interface, so it does not depend on
 * prom-client and tests can observe it directly.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PassResult } from './overlay/reconciler';

/** What the daemon tells the outside world as it works. */
export interface DaemonObserver {
  leasesSeen(counts: { valid: number; invalid: number; ignored: number }): void;
  reconciled(result: PassResult): void;
  etcdReconnected(): void;
  watchResynced(): void;
  leaseRenewed(ok: boolean): void;
  /** Our unchanged value was written again (ok) or the key no longer held it (lost). */
  leaseRewritten(ok: boolean): void;
  leaseEventApplied(seconds: number): void;
  kernelWatchOverflowed(): void;
  /** Leases not programmed right now (invalid values, dangerous subnets, refused by the kernel…). */
  peersSkipped?(count: number): void;
  /** The kernel refused a lease's entries for good; counted once per lease and value. */
  leaseRefused?(): void;
}

/**
 * How often the nodejs_eventloop_lag_* histogram samples: a stall that spans a
 * sample shows as its delay (nodejs_eventloop_lag_seconds is measured at each
 * scrape besides). Every sample is a wake-up of the idle daemon: at 1 s they were
 * about a third of its idle CPU at 5,000 peers (perf, issue 10), as many as the
 * 5 s firewall check's; at 5 s they are a fifth of that.
 */
const EVENT_LOOP_SAMPLE_MS = 5_000;

export class Metrics implements DaemonObserver {
  readonly registry = new Registry();
  private readonly leases = new Gauge({ name: 'flanneld_leases', help: 'Keys under <prefix>/subnets/ by state', labelNames: ['state'] as const, registers: [this.registry] });
  private readonly peers = new Gauge({ name: 'flanneld_peers_programmed', help: 'Peers whose route, neighbour and FDB entry are wanted on flannel.<VNI>', registers: [this.registry] });
  private readonly inSync = new Gauge({ name: 'flanneld_kernel_in_sync', help: '1 when the last reconcile pass left the kernel matching the leases', registers: [this.registry] });
  private readonly operations = new Counter({ name: 'flanneld_kernel_operations_total', help: 'Kernel entry changes applied, by operation, kind and result', labelNames: ['op', 'kind', 'result'] as const, registers: [this.registry] });
  private readonly repairs = new Counter({ name: 'flanneld_drift_repairs_total', help: 'Kernel entries repaired without a lease change (drift)', registers: [this.registry] });
  private readonly reconnects = new Counter({ name: 'flanneld_etcd_reconnects_total', help: 'etcd watch streams re-established after an outage', registers: [this.registry] });
  private readonly resyncs = new Counter({ name: 'flanneld_watch_resyncs_total', help: 'Full lease re-lists (compaction or watch failure)', registers: [this.registry] });
  private readonly overflows = new Counter({ name: 'flanneld_kernel_watch_overflows_total', help: 'Times kernel notifications were lost (ENOBUFS: the watch fell behind) and everything was re-listed', registers: [this.registry] });
  private readonly renewals = new Counter({ name: 'flanneld_lease_renewals_total', help: 'Lease renewals, by result', labelNames: ['result'] as const, registers: [this.registry] });
  private readonly skipped = new Gauge({ name: 'flanneld_peers_skipped', help: 'Valid leases not programmed as peers (bad PublicIP or VtepMAC, over the underlay, refused by the kernel…)', registers: [this.registry] });
  private readonly refusals = new Counter({ name: 'flanneld_kernel_refusals_total', help: 'Leases whose entries the kernel refused for good (EINVAL, ENOTSUP…); each is then skipped', registers: [this.registry] });
  private readonly rewrites = new Counter({ name: 'flanneld_lease_rewrites_total', help: 'Writes of our unchanged lease value (so flanneld peers relearn us), by result', labelNames: ['result'] as const, registers: [this.registry] });
  private readonly passDuration = new Histogram({
    name: 'flanneld_reconcile_duration_seconds',
    help: 'Duration of one reconcile pass (read kernel, plan, apply)',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly eventLatency = new Histogram({
    name: 'flanneld_lease_event_to_kernel_seconds',
    help: 'From a lease event reaching the daemon to its kernel entries being applied',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    // prom-client samples event-loop delay with a timer at this precision; at its default (10 ms)
    // that timer woke the idle daemon 100 times a second, about 0.6 % of a core (issue 10, idle CPU).
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    this.renewals.inc({ result: 'ok' }, 0);
    this.renewals.inc({ result: 'lost' }, 0);
    this.rewrites.inc({ result: 'ok' }, 0);
    this.rewrites.inc({ result: 'lost' }, 0);
  }

  leasesSeen(counts: { valid: number; invalid: number; ignored: number }): void {
    for (const [state, n] of Object.entries(counts)) this.leases.set({ state }, n);
  }

  reconciled(r: PassResult): void {
    this.peers.set(r.peers);
    this.inSync.set(r.failed === 0 ? 1 : 0);
    this.passDuration.observe(r.durationMs / 1000);
    for (const [key, n] of Object.entries(r.applied)) {
      const [op, kind, result] = key.split('-');
      this.operations.inc({ op, kind, result }, n);
    }
    if (r.repairs > 0) this.repairs.inc(r.repairs);
  }

  etcdReconnected(): void {
    this.reconnects.inc();
  }

  watchResynced(): void {
    this.resyncs.inc();
  }

  leaseRenewed(ok: boolean): void {
    this.renewals.inc({ result: ok ? 'ok' : 'lost' });
  }

  leaseRewritten(ok: boolean): void {
    this.rewrites.inc({ result: ok ? 'ok' : 'lost' });
  }

  leaseEventApplied(seconds: number): void {
    this.eventLatency.observe(seconds);
  }

  kernelWatchOverflowed(): void {
    this.overflows.inc();
  }

  peersSkipped(count: number): void {
    this.skipped.set(count);
  }

  leaseRefused(): void {
    this.refusals.inc();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
