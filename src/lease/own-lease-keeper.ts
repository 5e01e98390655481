/**
 * This node's own lease once held (contract §13): renewed before it expires,
 * its unchanged value written again every --subnet-lease-reput-interval and soon
 * after news that peers may have forgotten it (lease/reput.ts), and re-acquired
 * when etcd says it is gone or someone else's. The daemon hands in what the
 * watch and the lease listings say about our key and is called back when the
 * subnet changed or the lease was re-acquired.
 */
import { DaemonObserver } from '../metrics';
import { Cidr } from '../net/ipv4';
import { Cidr6 } from '../net/ipv6';
import { Clock } from '../util/clock';
import { errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { retryTransient } from '../util/retry';
import { leaseAt, leaseName, subnetKey } from './codec';
import { OwnLease, isOwnRecord, renewAt } from './lease-manager';
import { ReputSchedule } from './reput';
import { LeaseEvent, LeaseStore } from './store';

export interface OwnLeaseKeeperDeps {
  readonly store: LeaseStore;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly log: Logger;
  readonly observer?: DaemonObserver | undefined;
  /** --etcd-prefix, for our key. */
  readonly prefix: string;
  readonly ttlSeconds: number;
  readonly renewMarginMinutes: number;
  readonly reputIntervalMs: number;
  /** Whether the config has an IPv4 pool (an IPv6-only node asks for its IPv6 subnet alone). */
  readonly ipv4: boolean;
  /** Acquires a lease, preferring these subnets. */
  acquire(previous: Cidr | undefined, previous6: Cidr6 | undefined): Promise<OwnLease>;
  /** How many leases the cluster has: spreads triggered re-puts (lease/reput.ts). */
  leaseCount(): number;
  /** The lease was re-acquired under another subnet: devices and subnet.env must follow. */
  subnetChanged(): Promise<void>;
  /** The lease was re-acquired (same subnet or not): the kernel state must be checked again. */
  reacquired(): void;
}

export class OwnLeaseKeeper {
  /** Why our lease needs re-acquiring, and the store revision that said so (none for a failed renewal). */
  private lost: { reason: string; revision: bigint | undefined } | undefined;
  private reput: ReputSchedule | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly deps: OwnLeaseKeeperDeps, private current: OwnLease) {}

  get own(): OwnLease {
    return this.current;
  }

  /** False between losing our lease and getting one again. */
  get held(): boolean {
    return this.lost === undefined;
  }

  key(): string {
    return subnetKey(this.deps.prefix, this.current.subnet, this.current.subnet6);
  }

  /** Watch events: a delete or a foreign value at our key means the lease is lost. */
  onEvents(events: readonly LeaseEvent[]): void {
    const key = this.key();
    for (const ev of events) {
      if (ev.type === 'delete' && ev.key === key) this.markLost(`lease ${leaseName(this.current)} was deleted from etcd`, ev.revision);
      else if (ev.type === 'put' && ev.record.key === key) this.checkRecord(ev.record, ev.revision);
    }
  }

  /** `record`: our key as etcd held it at `revision` (undefined: absent). */
  checkRecord(record: Parameters<typeof isOwnRecord>[0], revision: bigint): void {
    if (record === undefined) this.markLost(`lease ${leaseName(this.current)} is gone from etcd`, revision);
    else if (!isOwnRecord(record, this.current.value)) this.markLost(`lease ${leaseName(this.current)} now belongs to someone else`, revision);
  }

  /** Asks for a re-put of our value soon (spread over the cluster; see lease/reput.ts). */
  triggerReput(reason: string): void {
    if (!this.reput) return;
    const now = this.deps.clock.now();
    const wasPending = this.reput.triggered;
    this.reput.trigger(now, this.deps.leaseCount());
    if (!wasPending) this.deps.log.debug({ reason, in: Math.max(0, this.reput.dueAt() - now) }, `will write lease value again: ${reason}`);
    this.wake?.();
  }

  /** Renews our lease before it expires, re-puts its value, and re-acquires it when lost. Returns when `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, clock, rand, log } = this.deps;
    const ttlMs = this.deps.ttlSeconds * 1000;
    const marginMs = this.deps.renewMarginMinutes * 60_000;
    this.reput = new ReputSchedule(this.deps.reputIntervalMs, rand, clock.now());
    const reput = this.reput;
    while (!signal.aborted) {
      const own = this.current;
      const renewDue = own.expiresAt === undefined ? Infinity : renewAt(own.expiresAt, ttlMs, marginMs);
      if (this.lost === undefined) {
        const next = Math.min(renewDue, reput.dueAt());
        await this.sleepUnlessWoken(Math.max(0, next - clock.now()), signal);
        if (signal.aborted) return;
      }
      if (this.lost !== undefined) {
        await this.reacquire(signal);
        continue;
      }
      if (clock.now() >= reput.dueAt()) await this.rewriteOwn();
      if (this.lost !== undefined || this.current.etcdLease === undefined || clock.now() < renewDue) continue;
      const etcdLease = this.current.etcdLease;
      const renewed = await retryTransient(() => store.renew(etcdLease), { what: `renew lease ${leaseName(this.current)}`, log, clock, rand, signal });
      this.deps.observer?.leaseRenewed(renewed.ok);
      if (renewed.ok) {
        this.current = { ...this.current, expiresAt: renewed.expiresAt };
        log.info({ subnet: leaseName(this.current), expiresAt: new Date(renewed.expiresAt).toISOString() }, `renewed lease ${leaseName(this.current)}`);
      } else {
        this.markLost(`lease ${leaseName(this.current)} expired before it could be renewed (${renewed.reason})`);
      }
    }
  }

  /**
   * What etcd said at or before the revision our holding is known from describes an
   * earlier holding: a watch stream that comes back after an outage delivers the
   * delete of a lease that expired meanwhile, possibly after the lease loop has
   * already re-acquired it. Acting on it would re-acquire a lease we hold.
   */
  private isPast(revision: bigint | undefined): boolean {
    return revision !== undefined && revision <= this.current.since;
  }

  /** A loss reported while re-acquiring, by news older than the new holding, is past. */
  private forgetPastLoss(): void {
    if (this.isPast(this.lost?.revision)) this.lost = undefined;
  }

  private markLost(reason: string, revision?: bigint): void {
    if (this.isPast(revision)) return;
    this.lost ??= { reason, revision };
    this.wake?.();
  }

  /** Writes our unchanged value again (same etcd lease, only while the key holds it), so flanneld peers relearn us. */
  private async rewriteOwn(): Promise<void> {
    const { store, clock, log } = this.deps;
    const schedule = this.reput as ReputSchedule;
    const own = this.current;
    const name = leaseName(own);
    schedule.attempted(clock.now());
    let ok: boolean;
    try {
      ok = await store.rewrite(leaseAt(own.subnet, own.subnet6), own.value, own.etcdLease);
    } catch (err) {
      schedule.failed(clock.now());
      log.debug({ err: errorMessage(err), subnet: name }, `failed to write lease ${name} again; will retry`);
      return;
    }
    this.deps.observer?.leaseRewritten(ok);
    if (ok) log.debug({ subnet: name }, `wrote lease ${name} again`);
    else if (this.current === own) this.markLost(`lease ${name} no longer holds this node's value`);
  }

  private async reacquire(signal: AbortSignal): Promise<void> {
    const { clock, rand, log } = this.deps;
    const old = this.current;
    const oldName = leaseName(old);
    const reason = this.lost?.reason;
    log.warn({ subnet: oldName, reason }, `${reason}; re-acquiring`);
    this.lost = undefined;
    this.current = await retryTransient(() => this.deps.acquire(this.deps.ipv4 ? old.subnet : undefined, old.subnet6), { what: 'acquire a subnet lease', log, clock, rand, signal });
    this.forgetPastLoss();
    const name = leaseName(this.current);
    if (name !== oldName) {
      log.error({ oldSubnet: oldName, subnet: name }, `SUBNET CHANGED from ${oldName} to ${name}: ${oldName} was taken by another node; pods still on the old subnet have lost connectivity and must be recreated`);
      await this.deps.subnetChanged();
    } else {
      log.info({ subnet: oldName }, `re-acquired lease ${oldName}`);
    }
    this.deps.reacquired();
  }

  private sleepUnlessWoken(ms: number, signal: AbortSignal): Promise<void> {
    const ctl = new AbortController();
    const onAbort = (): void => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      // setTimeout cannot take more than 2^31-1 ms; a reservation sleeps until woken.
      this.deps.clock.sleep(Math.min(ms, 2 ** 31 - 1), ctl.signal).then(resolve, resolve);
    }).finally(() => {
      this.wake = undefined;
      ctl.abort();
      signal.removeEventListener('abort', onAbort);
    });
  }
}
