/**
 * The composition root of the daemon: start-up order (contract §10) and
 * cancellation. Config (retry) → external interface → device → lease → /32
 * address, link up → subnet.env → peers listed and watched → reconciled → ready
 * → renewal. Everything it talks to comes in through DaemonDeps.
 */
import { DaemonOptions } from './cli';
import { NetworkConfig, parseNetworkConfig } from './config';
import { IptablesRules } from './iptables';
import { DaemonObserver } from './metrics';
import { chooseExternalInterface, readInterfaceFacts } from './kernel/interfaces';
import { DeviceState, Kernel, VxlanSpec } from './kernel/kernel';
import { ensureDeviceAddress, ensureVxlanDevice } from './kernel/vxlan-device';
import { configKey, subnetKey } from './lease/codec';
import { OwnLease, acquireLease, isOwnRecord, renewAt } from './lease/lease-manager';
import { LeaseView } from './lease/lease-view';
import { ReputSchedule, wouldWipeFlanneldPeers } from './lease/reput';
import { CompactedError, LeaseEvent, LeaseStore } from './lease/store';
import { Cidr, formatCidr, formatIPv4, makeCidr } from './net/ipv4';
import { randomMac } from './net/mac';
import { DesiredState, desiredState } from './overlay/desired';
import { PassResult, Reconciler } from './overlay/reconciler';
import { ensureSubnetFile, readPreviousSubnet } from './subnet-file';
import { Clock } from './util/clock';
import { ConfigError, errorMessage } from './util/errors';
import { Logger } from './util/log';
import { retryTransient } from './util/retry';

export interface DaemonDeps {
  readonly store: LeaseStore;
  readonly kernel: Kernel;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly randomBytes: (n: number) => Uint8Array;
  readonly log: Logger;
  /** Called once when the daemon first becomes ready (systemd notification). */
  readonly onReady?: (status: DaemonStatus) => void;
  /** Metrics; optional so tests and embedders need not care. */
  readonly observer?: DaemonObserver;
}

/** What health endpoints and tests look at. */
export interface DaemonStatus {
  readonly phase: 'starting' | 'ready' | 'stopped';
  readonly subnet?: string;
  readonly publicIP?: string;
  readonly vtepMAC?: string;
  readonly peers: number;
  /** False between losing our lease and getting one again. */
  readonly leaseHeld: boolean;
  readonly kernelInSync: boolean;
}

const CONFIG_POLL_MS = 1000;

export class Daemon {
  private phase: DaemonStatus['phase'] = 'starting';
  private config!: NetworkConfig;
  private spec!: VxlanSpec;
  private own!: OwnLease;
  private mac = '';
  private publicIP = 0;
  private readonly view: LeaseView;
  private reconciler: Reconciler | undefined;
  private lost: string | undefined;
  private skippedLogged = new Map<string, string>();
  /** Bumped whenever the desired state may change; lets the reconciler tell drift from news. */
  private generation = 0;
  private desiredCache: { generation: number; desired: DesiredState } | undefined;
  /** Generation and arrival time of the oldest lease event not yet in the kernel. */
  private pendingEvent: { generation: number; at: number } | undefined;
  private wakeLeaseLoop: (() => void) | undefined;
  private reput: ReputSchedule | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: DaemonOptions, private readonly deps: DaemonDeps) {
    this.log = deps.log;
    this.view = new LeaseView(deps.log.child({ component: 'leases' }));
  }

  status(): DaemonStatus {
    return {
      phase: this.phase,
      ...(this.own && { subnet: formatCidr(this.own.subnet), publicIP: formatIPv4(this.publicIP), vtepMAC: this.mac }),
      peers: this.reconciler ? this.currentDesired()?.peers.size ?? 0 : 0,
      leaseHeld: this.own !== undefined && this.lost === undefined,
      kernelInSync: this.reconciler?.synced ?? false,
    };
  }

  /** Runs until `signal` aborts (resolves) or a fatal error (rejects). Leaves kernel state and lease in place. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, kernel, clock, rand, log } = this.deps;
    const retry = <T>(what: string, fn: () => Promise<T>): Promise<T> => retryTransient(fn, { what, log, clock, rand, signal });
    try {
      this.config = await this.waitForConfig(signal);
      if (this.config.backend.directRouting) {
        log.warn('Backend.DirectRouting is not supported by flanneld-ts yet: every peer is reached through VXLAN');
      }
      const host = await readInterfaceFacts(kernel, this.opts.ifaceCanReach);
      const ext = chooseExternalInterface(host.ifaces, host.defaultRoute, { iface: this.opts.iface, ifaceRegex: this.opts.ifaceRegex, canReach: host.canReach, publicIP: this.opts.publicIP });
      this.publicIP = ext.publicIP;
      const b = this.config.backend;
      this.spec = { name: `flannel.${b.vni}`, vni: b.vni, localIP: ext.publicIP, underlayIndex: ext.iface.index, port: b.port, learning: b.learning, gbp: b.gbp, mtu: (b.mtu || ext.iface.mtu) - 50 };
      log.info({ iface: ext.iface.name, publicIP: formatIPv4(ext.publicIP), mtu: this.spec.mtu }, `using interface ${ext.iface.name} with public IP ${formatIPv4(ext.publicIP)}`);
      const first = await ensureVxlanDevice(kernel, this.spec, log, () => randomMac(this.deps.randomBytes));
      this.mac = first.device.mac;
      if (!first.created) log.info({ device: this.spec.name, mac: this.mac }, `adopted existing ${this.spec.name} (parameters match; MAC kept)`);

      const previous = await readPreviousSubnet(this.opts.subnetFile);
      try {
        this.own = await retry('acquire a subnet lease', () => this.acquire(previous));
      } catch (err) {
        // No partial state: a device we created for a lease we could not get goes again.
        if (first.created && !signal.aborted) {
          await kernel.deleteLink(first.device.index).catch(() => undefined);
          log.info({ device: this.spec.name }, `removed ${this.spec.name}: no subnet lease was acquired`);
        }
        throw err;
      }
      await this.ensureDevice();
      const iptables = new IptablesRules({ ipMasq: this.opts.ipMasq, fullyRandom: this.opts.ipMasqFullyRandom, forwardRules: this.opts.iptablesForwardRules, resyncMs: this.opts.iptablesResyncMs }, log.child({ component: 'iptables' }), clock);
      // Not fatal: the overlay works without them; the resync loop keeps trying and logs once.
      await iptables.ensure(this.config.network, this.own.subnet).catch((err) => log.error({ err: errorMessage(err) }, errorMessage(err)));
      await this.writeSubnetFile();

      const snapshot = await retry('list leases', () => store.list());
      this.view.reset(snapshot.records);
      this.leasesChanged();
      this.checkOwnRecord(snapshot.records.find((r) => r.key === this.ownKey()));
      const reconciler = new Reconciler({
        kernel,
        desired: () => this.currentDesired(),
        generation: () => this.generation,
        onPass: (result) => this.onPass(result),
        ensureDevice: () => this.ensureDevice(),
        log: log.child({ component: 'reconciler' }),
        clock,
        rand,
        periodMs: this.opts.resyncMs,
        coalesceMs: 5,
      });
      this.reconciler = reconciler;
      const background = [reconciler.run(signal), this.watchLoop(snapshot.revision + 1n, signal), iptables.run(() => this.config.network, () => this.own.subnet, signal)];
      await reconciler.waitSynced(signal);
      this.phase = 'ready';
      log.info({ subnet: formatCidr(this.own.subnet), peers: this.currentDesired()?.peers.size ?? 0 }, 'ready: lease held, subnet file written, peers programmed');
      this.deps.onReady?.(this.status());
      await this.leaseLoop(signal);
      await Promise.all(background);
    } catch (err) {
      // Once stopping, whatever the in-flight call threw is moot.
      if (!signal.aborted) throw err;
    } finally {
      this.phase = 'stopped';
    }
  }

  private leasesChanged(): void {
    this.generation++;
    if (!this.deps.observer) return;
    const counts = { valid: 0, invalid: 0, ignored: 0 };
    for (const r of this.view.all()) counts[r.kind === 'lease' ? 'valid' : r.kind]++;
    this.deps.observer.leasesSeen(counts);
  }

  private onPass(result: PassResult): void {
    this.deps.observer?.reconciled(result);
    const pending = this.pendingEvent;
    if (pending && result.failed === 0 && result.generation >= pending.generation) {
      this.deps.observer?.leaseEventApplied((this.deps.clock.now() - pending.at) / 1000);
      this.pendingEvent = undefined;
    }
  }

  /** Computed once per generation: every reconcile pass and every /readyz probe asks for it. */
  private currentDesired(): DesiredState | undefined {
    if (!this.own) return undefined;
    if (this.desiredCache?.generation === this.generation) return this.desiredCache.desired;
    const desired = desiredState({ subnet: this.own.subnet, publicIP: this.publicIP }, this.view.leases(), this.config);
    this.logSkipped(desired);
    this.desiredCache = { generation: this.generation, desired };
    return desired;
  }

  /** Valid leases that are not programmed (wrong backend, outside the network, our own IP…): logged once each. */
  private logSkipped(desired: DesiredState): void {
    const now = new Map(desired.skipped.map((s) => [s.subnet, s.reason]));
    for (const [subnet, reason] of now) {
      if (this.skippedLogged.get(subnet) !== reason) this.log.warn({ subnet, reason }, `not programming lease ${subnet}: ${reason}`);
    }
    this.skippedLogged = now;
  }

  private ownKey(): string {
    return subnetKey(this.opts.etcd.prefix, this.own.subnet);
  }

  private acquire(previous: Cidr | undefined): Promise<OwnLease> {
    return acquireLease({
      store: this.deps.store,
      config: this.config,
      publicIP: this.publicIP,
      vtepMAC: this.mac,
      previous,
      ttlSeconds: this.opts.leaseTTLSeconds,
      rand: this.deps.rand,
      log: this.log.child({ component: 'lease' }),
    });
  }

  /** Creates or repairs flannel.N with our MAC, address and link state. */
  private async ensureDevice(): Promise<DeviceState> {
    const { device } = await ensureVxlanDevice(this.deps.kernel, this.spec, this.log, () => this.mac);
    await ensureDeviceAddress(this.deps.kernel, device, makeCidr(this.own.subnet.ip, 32), this.config.network, this.log);
    return device;
  }

  private async writeSubnetFile(): Promise<void> {
    const written = await ensureSubnetFile(this.opts.subnetFile, { network: this.config.network, subnet: this.own.subnet, mtu: this.spec.mtu, ipMasq: this.opts.ipMasq });
    if (written) this.log.info({ file: this.opts.subnetFile }, `wrote ${this.opts.subnetFile}`);
  }

  private async waitForConfig(signal: AbortSignal): Promise<NetworkConfig> {
    const { store, clock, rand, log } = this.deps;
    const key = configKey(this.opts.etcd.prefix);
    let lastProblem = '';
    for (;;) {
      const text = await retryTransient(() => store.getConfig(), { what: `read network config ${key}`, log, clock, rand, signal });
      let problem: string;
      if (text === undefined) {
        problem = `network config ${key} not found in etcd; waiting for it (checking every second)`;
      } else {
        try {
          const config = parseNetworkConfig(text);
          if (lastProblem !== '') log.info({ key }, `network config ${key} is now valid`);
          return config;
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          problem = `${err.message} (at ${key}); waiting for a corrected config`;
        }
      }
      if (problem !== lastProblem) log.error({ key }, problem);
      lastProblem = problem;
      await clock.sleep(CONFIG_POLL_MS, signal);
    }
  }

  private async watchLoop(fromRevision: bigint, signal: AbortSignal): Promise<void> {
    const { store, clock, rand, log } = this.deps;
    let revision = fromRevision;
    while (!signal.aborted) {
      try {
        await store.watch(revision, {
          onEvents: (events) => {
            const last = events[events.length - 1];
            if (last) revision = last.revision + 1n;
            if (wouldWipeFlanneldPeers(events)) this.triggerReput('an event flanneld peers cannot decode');
            const changed = this.view.apply(events);
            this.onOwnEvents(events);
            // A re-put of an unchanged value (ours or a peer's) means nothing for the kernel.
            if (changed === 0) return;
            this.pendingEvent ??= { generation: this.generation + 1, at: clock.now() };
            this.leasesChanged();
            this.reconciler?.markDirty();
          },
          onDisconnected: (err) => log.warn({ err: errorMessage(err) }, `lost the etcd watch: ${errorMessage(err)}; reconnecting`),
          onReconnected: () => {
            log.info('etcd watch re-established');
            this.deps.observer?.etcdReconnected();
            this.triggerReput('reconnected to etcd');
          },
        }, signal);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof CompactedError) log.warn({ revision: String(revision) }, `watch revision ${revision} was compacted; re-listing leases`);
        else log.warn({ err: errorMessage(err) }, `etcd watch failed: ${errorMessage(err)}; re-listing leases`);
        try {
          const snapshot = await retryTransient(() => store.list(), { what: 'list leases', log, clock, rand, signal });
          const changed = this.view.reset(snapshot.records);
          this.leasesChanged();
          this.deps.observer?.watchResynced();
          revision = snapshot.revision + 1n;
          log.info({ changed }, `resynced leases: ${changed} changed`);
          this.checkOwnRecord(snapshot.records.find((r) => r.key === this.ownKey()));
          this.reconciler?.markDirty();
          this.triggerReput('re-listed leases after the watch broke');
        } catch (listErr) {
          if (signal.aborted) return;
          // Only fatal errors get here (retryTransient retries the rest): keep serving what we have.
          log.error({ err: errorMessage(listErr) }, `failed to re-list leases: ${errorMessage(listErr)}`);
          await clock.sleep(CONFIG_POLL_MS, signal).catch(() => undefined);
        }
      }
    }
  }

  private onOwnEvents(events: readonly LeaseEvent[]): void {
    const key = this.ownKey();
    for (const ev of events) {
      // Older than the list our lease was (re)taken from: e.g. the old key's expiry, delivered after a reconnect.
      if (this.own.chosenAt !== undefined && ev.revision <= this.own.chosenAt) continue;
      if (ev.type === 'delete' && ev.key === key) this.markLost(`lease ${formatCidr(this.own.subnet)} was deleted from etcd`);
      else if (ev.type === 'put' && ev.record.key === key) this.checkOwnRecord(ev.record);
    }
  }

  private checkOwnRecord(record: Parameters<typeof isOwnRecord>[0]): void {
    if (record === undefined) this.markLost(`lease ${formatCidr(this.own.subnet)} is gone from etcd`);
    else if (!isOwnRecord(record, this.publicIP, this.mac)) this.markLost(`lease ${formatCidr(this.own.subnet)} now belongs to someone else`);
  }

  private markLost(reason: string): void {
    this.lost ??= reason;
    this.wakeLeaseLoop?.();
  }

  /** Asks for a re-put of our value soon (spread over the cluster; see lease/reput.ts). */
  private triggerReput(reason: string): void {
    if (!this.reput) return;
    const wasPending = this.reput.triggered;
    this.reput.trigger(this.deps.clock.now(), this.view.leases().length);
    if (!wasPending) this.log.debug({ reason, in: Math.max(0, this.reput.dueAt() - this.deps.clock.now()) }, `will write lease value again: ${reason}`);
    this.wakeLeaseLoop?.();
  }

  /** Writes our unchanged value again (same etcd lease, only while the key holds it), so flanneld peers relearn us. */
  private async reputOwn(): Promise<void> {
    const { store, clock, log } = this.deps;
    const schedule = this.reput as ReputSchedule;
    const own = this.own;
    const name = formatCidr(own.subnet);
    schedule.attempted(clock.now());
    let ok: boolean;
    try {
      ok = await store.rewrite(own.subnet, own.value, own.etcdLease);
    } catch (err) {
      schedule.failed(clock.now());
      log.debug({ err: errorMessage(err), subnet: name }, `failed to write lease ${name} again; will retry`);
      return;
    }
    this.deps.observer?.leaseRewritten(ok);
    if (ok) log.debug({ subnet: name }, `wrote lease ${name} again`);
    else if (this.own === own) this.markLost(`lease ${name} no longer holds this node's value`);
  }

  /** Renews our lease before it expires, re-puts its value, and re-acquires it when lost. Returns when `signal` aborts. */
  private async leaseLoop(signal: AbortSignal): Promise<void> {
    const { store, clock, rand, log } = this.deps;
    const ttlMs = this.opts.leaseTTLSeconds * 1000;
    const marginMs = this.opts.renewMarginMinutes * 60_000;
    this.reput = new ReputSchedule(this.opts.reputIntervalMs, rand, clock.now());
    const reput = this.reput;
    while (!signal.aborted) {
      const own = this.own;
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
      if (clock.now() >= reput.dueAt()) await this.reputOwn();
      if (this.lost !== undefined || this.own.etcdLease === undefined || clock.now() < renewDue) continue;
      const etcdLease = this.own.etcdLease;
      const renewed = await retryTransient(() => store.renew(etcdLease), { what: `renew lease ${formatCidr(this.own.subnet)}`, log, clock, rand, signal });
      this.deps.observer?.leaseRenewed(renewed.ok);
      if (renewed.ok) {
        this.own = { ...this.own, expiresAt: renewed.expiresAt };
        log.info({ subnet: formatCidr(this.own.subnet), expiresAt: new Date(renewed.expiresAt).toISOString() }, `renewed lease ${formatCidr(this.own.subnet)}`);
      } else {
        this.markLost(`lease ${formatCidr(this.own.subnet)} expired before it could be renewed (${renewed.reason})`);
      }
    }
  }

  private async reacquire(signal: AbortSignal): Promise<void> {
    const { clock, rand, log } = this.deps;
    const old = this.own.subnet;
    log.warn({ subnet: formatCidr(old), reason: this.lost }, `${this.lost}; re-acquiring`);
    this.lost = undefined;
    this.own = await retryTransient(() => this.acquire(old), { what: 'acquire a subnet lease', log, clock, rand, signal });
    if (formatCidr(this.own.subnet) !== formatCidr(old)) {
      log.error({ oldSubnet: formatCidr(old), subnet: formatCidr(this.own.subnet) }, `SUBNET CHANGED from ${formatCidr(old)} to ${formatCidr(this.own.subnet)}: ${formatCidr(old)} was taken by another node; pods still on the old subnet have lost connectivity and must be recreated`);
      await this.ensureDevice();
      await this.writeSubnetFile();
    } else {
      log.info({ subnet: formatCidr(old) }, `re-acquired lease ${formatCidr(old)}`);
    }
    this.generation++;
    this.reconciler?.markDirty(true);
  }

  private sleepUnlessWoken(ms: number, signal: AbortSignal): Promise<void> {
    const ctl = new AbortController();
    const onAbort = (): void => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    return new Promise<void>((resolve) => {
      this.wakeLeaseLoop = resolve;
      // setTimeout cannot take more than 2^31-1 ms; a reservation sleeps until woken.
      this.deps.clock.sleep(Math.min(ms, 2 ** 31 - 1), ctl.signal).then(resolve, resolve);
    }).finally(() => {
      this.wakeLeaseLoop = undefined;
      ctl.abort();
      signal.removeEventListener('abort', onAbort);
    });
  }
}
