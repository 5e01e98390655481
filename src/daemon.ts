/**
 * The composition root of the daemon: start-up order (contract §10) and
 * cancellation. Config (retry) → external interface → device → lease → /32
 * address, link up → subnet.env → peers listed and watched → reconciled → ready
 * → renewal. Everything it talks to comes in through DaemonDeps.
 */
import { DaemonOptions } from './cli';
import { NetworkConfig, VXLAN_OVERHEAD, parseNetworkConfig } from './config';
import { FirewallBackends, keepFirewall, startFirewall } from './firewall/firewall-keeper';
import { NfTablesGeneration } from './firewall/nft-generation';
import { NftablesFirewall } from './firewall/nftables';
import { IptablesFirewall } from './iptables';
import { BlackholeRoutes, IprouteBlackholeRoutes, keepBlackholeRoute } from './kernel/blackhole-route';
import { SYSCTL_ROOT, checkBrNetfilter, disableAcceptRa } from './kernel/sysctl';
import { DaemonObserver } from './metrics';
import { chooseExternalInterface, readInterfaceFacts } from './kernel/interfaces';
import { DeviceState, Kernel, VxlanSpec } from './kernel/kernel';
import { ensureDeviceAddress, ensureVxlanDevice } from './kernel/vxlan-device';
import { configKey, subnetKey } from './lease/codec';
import { OwnLease, acquireLease, isOwnRecord, renewAt } from './lease/lease-manager';
import { Lease } from './lease/lease';
import { LeaseView } from './lease/lease-view';
import { ReputSchedule, wouldWipeFlanneldPeers } from './lease/reput';
import { CompactedError, LeaseEvent, LeaseStore } from './lease/store';
import { Cidr, formatCidr, formatIPv4, makeCidr } from './net/ipv4';
import { randomMac } from './net/mac';
import { DesiredState, LeaseMemo, desiredState } from './overlay/desired';
import { HostSnapshot, PassResult, Reconciler } from './overlay/reconciler';
import { RefusedLeases } from './overlay/refused';
import { networkProblem, underlayChecker } from './overlay/underlay';
import { Entry, describeEntry } from './kernel/kernel';
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
  /** IPv4 addresses of the etcd endpoints (resolved by main): no peer subnet or Network may contain one. */
  readonly etcdAddresses?: readonly number[];
  /** The firewall backends (default: iptables and nft); tests pass MemoryFirewall ones. */
  readonly firewalls?: FirewallBackends;
  /** --ip-blackhole-route's kernel access (default: iproute2). */
  readonly blackholes?: BlackholeRoutes;
  /** Where /proc/sys is (br_netfilter check, accept_ra); tests point it elsewhere. */
  readonly sysctlRoot?: string;
}

const REAL_FIREWALLS: FirewallBackends = { iptables: (o, l) => IptablesFirewall.create(o, l), nftables: (o, l) => NftablesFirewall.create(o, l) };

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
  /** Why our lease needs re-acquiring, and the store revision that said so (none for a failed renewal). */
  private lost: { reason: string; revision: bigint | undefined } | undefined;
  private skippedLogged = new Map<string, string>();
  /** Bumped whenever the desired state may change; lets the reconciler tell drift from news. */
  private generation = 0;
  private desiredCache: { generation: number; host: HostSnapshot | undefined; desired: DesiredState } | undefined;
  /**
   * Per-lease checks kept between desired-state computations (issue 10: a lease
   * event at 5,000 peers checks one lease): `leases` for one self and config,
   * `underlay` for one host reading. Keyed by the view's lease objects, which
   * change only when their value does.
   */
  private leaseMemo: { self: string; config: NetworkConfig; leases: LeaseMemo } | undefined;
  private underlayMemo: { host: HostSnapshot; check: (subnet: Cidr) => string | undefined; results: WeakMap<Lease, string | undefined> } | undefined;
  /** The host's addresses and routes from the last listing pass. */
  private host: HostSnapshot | undefined;
  private readonly refused = new RefusedLeases();
  /** Generation and arrival time of the oldest lease event not yet in the kernel. */
  private pendingEvent: { generation: number; at: number } | undefined;
  private wakeLeaseLoop: (() => void) | undefined;
  /** Index of the device whose accept_ra we last set (set again only for a new device). */
  private acceptRaIndex: number | undefined;
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
      const { config, ext } = await this.waitForConfig(signal);
      this.config = config;
      const sysctlRoot = this.deps.sysctlRoot ?? SYSCTL_ROOT;
      // Contract §16: flanneld checks this after the config and before choosing the interface.
      if (!this.config.enableNFTables) await checkBrNetfilter(sysctlRoot);
      if (this.config.backend.directRouting) {
        log.warn('Backend.DirectRouting is not supported by flanneld-ts yet: every peer is reached through VXLAN');
      }
      this.publicIP = ext.publicIP;
      const b = this.config.backend;
      this.spec = { name: `flannel.${b.vni}`, vni: b.vni, localIP: ext.publicIP, underlayIndex: ext.iface.index, port: b.port, learning: b.learning, gbp: b.gbp, mtu: (b.mtu || ext.iface.mtu) - VXLAN_OVERHEAD };
      log.info({ iface: ext.iface.name, publicIP: formatIPv4(ext.publicIP), mtu: this.spec.mtu }, `using interface ${ext.iface.name} with public IP ${formatIPv4(ext.publicIP)}`);
      const first = await ensureVxlanDevice(kernel, this.spec, log, () => randomMac(this.deps.randomBytes));
      this.mac = first.device.mac;
      await this.disableAcceptRa(first.device);
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
      const firewallLog = log.child({ component: 'firewall' });
      const target = () => ({ network: this.config.network, subnet: this.own.subnet });
      const firewallOpts = { ipMasq: this.opts.ipMasq, fullyRandom: this.opts.ipMasqFullyRandom, forwardRules: this.opts.iptablesForwardRules };
      // iptables mode: not fatal (the overlay works without the rules; the resync keeps trying). nftables mode: fatal, as flanneld.
      const firewall = await startFirewall(this.config.enableNFTables, firewallOpts, target(), this.deps.firewalls ?? REAL_FIREWALLS, firewallLog);
      await this.writeSubnetFile();

      const snapshot = await retry('list leases', () => store.list());
      this.view.reset(snapshot.records);
      this.leasesChanged();
      this.checkOwnRecord(snapshot.records.find((r) => r.key === this.ownKey()), snapshot.revision);
      const reconciler = new Reconciler({
        kernel,
        desired: (host) => this.currentDesired(host),
        onRefused: (refused) => this.onRefused(refused),
        generation: () => this.generation,
        onPass: (result) => this.onPass(result),
        onOverflow: () => this.deps.observer?.kernelWatchOverflowed(),
        ensureDevice: () => this.ensureDevice(),
        log: log.child({ component: 'reconciler' }),
        clock,
        rand,
        periodMs: this.opts.resyncMs,
        coalesceMs: 5,
      });
      this.reconciler = reconciler;
      const background = [reconciler.run(signal), this.watchLoop(snapshot.revision + 1n, signal), keepFirewall(firewall, target, this.opts.iptablesResyncMs, clock, firewallLog, signal, firewall.inNfTables ? new NfTablesGeneration(firewallLog) : undefined)];
      if (this.opts.ipBlackholeRoute) {
        background.push(keepBlackholeRoute(this.deps.blackholes ?? new IprouteBlackholeRoutes(), () => this.own.subnet, this.opts.iptablesResyncMs, clock, log.child({ component: 'blackhole' }), signal));
      }
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

  /**
   * Computed once per generation and host reading: every reconcile pass and
   * every /readyz probe asks for it. Peers are checked against the host's own
   * network as the last listing pass saw it, and leases the kernel refused stay out.
   */
  private currentDesired(host?: HostSnapshot): DesiredState | undefined {
    if (!this.own) return undefined;
    if (host) this.host = host;
    const seen = this.host;
    if (this.desiredCache?.generation === this.generation && this.desiredCache.host === seen) return this.desiredCache.desired;
    if (this.refused.size > 0) this.refused.forget(this.view.leases());
    const self = { subnet: this.own.subnet, publicIP: this.publicIP, vtepMAC: this.mac };
    const selfKey = `${formatCidr(self.subnet)} ${self.publicIP} ${self.vtepMAC ?? ''}`;
    if (this.leaseMemo?.self !== selfKey || this.leaseMemo.config !== this.config) this.leaseMemo = { self: selfKey, config: this.config, leases: new WeakMap() };
    if (seen && this.underlayMemo?.host !== seen) {
      const check = underlayChecker({ host: seen.network, overlayIndex: seen.overlayIndex, network: this.config.network, etcdAddresses: this.deps.etcdAddresses ?? [] });
      this.underlayMemo = { host: seen, check, results: new WeakMap() };
    }
    const underlay = seen && this.underlayMemo;
    const onUnderlay = (lease: Lease): string | undefined => {
      if (!underlay) return undefined;
      if (underlay.results.has(lease)) return underlay.results.get(lease);
      const reason = underlay.check(lease.subnet);
      underlay.results.set(lease, reason);
      return reason;
    };
    const desired = desiredState(self, this.view.leases(), this.config, (lease) => onUnderlay(lease) ?? this.refused.reason(lease), this.leaseMemo.leases);
    this.logSkipped(desired);
    this.desiredCache = { generation: this.generation, host: seen, desired };
    return desired;
  }

  /** Valid leases that are not programmed (wrong backend, outside the network, our own IP…): logged once each. */
  private logSkipped(desired: DesiredState): void {
    const now = new Map(desired.skipped.map((s) => [s.subnet, s.reason]));
    for (const [subnet, reason] of now) {
      if (this.skippedLogged.get(subnet) !== reason) this.log.warn({ subnet, reason }, `not programming lease ${subnet}: ${reason}`);
    }
    this.skippedLogged = now;
    this.deps.observer?.peersSkipped?.(desired.skipped.length);
  }

  /** The kernel refused entries of these peers for good: drop the whole peer (all three entries) until its lease changes. */
  private onRefused(refused: ReadonlyArray<{ operation: { entry: Entry }; error: Error }>): void {
    const peers = this.currentDesired()?.peers;
    if (!peers) return;
    let added = 0;
    for (const { operation, error } of refused) {
      const entry = operation.entry;
      const peer = [...peers.values()].find((p) => (entry.kind === 'route' ? p.route.dst.ip === entry.dst.ip : entry.kind === 'neighbor' ? p.neighbor.ip === entry.ip : p.fdb.mac === entry.mac));
      const lease = peer && this.view.leases().find((l) => l.subnet.ip === peer.subnet.ip && l.subnet.prefixLen === peer.subnet.prefixLen);
      if (!lease) continue;
      if (this.refused.add(lease, `the kernel refused its ${describeEntry(entry)}: ${error.message}`)) {
        added++;
        this.deps.observer?.leaseRefused?.();
      }
    }
    if (added === 0) return;
    this.generation++;
    this.reconciler?.markDirty();
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
    await this.disableAcceptRa(device);
    await ensureDeviceAddress(this.deps.kernel, device, makeCidr(this.own.subnet.ip, 32), this.config.network, this.log);
    return device;
  }

  /** accept_ra=0 on a device we made or adopted (flanneld: device.go); once per device, a failure logged and ignored. */
  private async disableAcceptRa(device: DeviceState): Promise<void> {
    if (this.acceptRaIndex === device.index) return;
    this.acceptRaIndex = device.index;
    const problem = await disableAcceptRa(this.deps.sysctlRoot ?? SYSCTL_ROOT, this.spec.name);
    if (problem) this.log.warn({ device: this.spec.name }, `${problem} (ignored, as flanneld does)`);
  }

  private async writeSubnetFile(): Promise<void> {
    const written = await ensureSubnetFile(this.opts.subnetFile, { network: this.config.network, subnet: this.own.subnet, mtu: this.spec.mtu, ipMasq: this.opts.ipMasq });
    if (written) this.log.info({ file: this.opts.subnetFile }, `wrote ${this.opts.subnetFile}`);
  }

  /**
   * The config, checked against this host too: a Network containing the public
   * IP, an address of the external interface or an etcd endpoint would route the
   * underlay into the overlay, so it is treated like an invalid config.
   */
  private async checkedConfig(text: string): Promise<{ config: NetworkConfig; ext: ReturnType<typeof chooseExternalInterface> }> {
    const config = parseNetworkConfig(text, { allowWideNetwork: this.opts.allowWideNetwork });
    const { kernel } = this.deps;
    const host = await readInterfaceFacts(kernel, this.opts.ifaceCanReach);
    const ext = chooseExternalInterface(host.ifaces, host.defaultRoute, { iface: this.opts.iface, ifaceRegex: this.opts.ifaceRegex, canReach: host.canReach, publicIP: this.opts.publicIP });
    const problem = networkProblem(config.network, { publicIP: ext.publicIP, iface: ext.iface, etcdAddresses: this.deps.etcdAddresses ?? [] });
    if (problem !== undefined) throw new ConfigError('Network', problem);
    if (config.backend.mtu === 0 && ext.iface.mtu - VXLAN_OVERHEAD < 68) {
      throw new ConfigError('Backend.MTU', `the MTU of ${ext.iface.name} (${ext.iface.mtu}) leaves less than 68 for flannel.${config.backend.vni}; set Backend.MTU`);
    }
    return { config, ext };
  }

  private async waitForConfig(signal: AbortSignal): Promise<{ config: NetworkConfig; ext: ReturnType<typeof chooseExternalInterface> }> {
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
          const checked = await this.checkedConfig(text);
          if (lastProblem !== '') log.info({ key }, `network config ${key} is now valid`);
          return checked;
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
          this.checkOwnRecord(snapshot.records.find((r) => r.key === this.ownKey()), snapshot.revision);
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
      if (ev.type === 'delete' && ev.key === key) this.markLost(`lease ${formatCidr(this.own.subnet)} was deleted from etcd`, ev.revision);
      else if (ev.type === 'put' && ev.record.key === key) this.checkOwnRecord(ev.record, ev.revision);
    }
  }

  /** `record`: our key as etcd held it at `revision` (undefined: absent). */
  private checkOwnRecord(record: Parameters<typeof isOwnRecord>[0], revision: bigint): void {
    if (record === undefined) this.markLost(`lease ${formatCidr(this.own.subnet)} is gone from etcd`, revision);
    else if (!isOwnRecord(record, this.publicIP, this.mac)) this.markLost(`lease ${formatCidr(this.own.subnet)} now belongs to someone else`, revision);
  }

  /**
   * What etcd said at or before the revision our holding is known from describes an
   * earlier holding: a watch stream that comes back after an outage delivers the
   * delete of a lease that expired meanwhile, possibly after the lease loop has
   * already re-acquired it. Acting on it would re-acquire a lease we hold.
   */
  private isPast(revision: bigint | undefined): boolean {
    return revision !== undefined && revision <= this.own.since;
  }

  /** A loss reported while re-acquiring, by news older than the new holding, is past. */
  private forgetPastLoss(): void {
    if (this.isPast(this.lost?.revision)) this.lost = undefined;
  }

  private markLost(reason: string, revision?: bigint): void {
    if (this.isPast(revision)) return;
    this.lost ??= { reason, revision };
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
    const reason = this.lost?.reason;
    log.warn({ subnet: formatCidr(old), reason }, `${reason}; re-acquiring`);
    this.lost = undefined;
    this.own = await retryTransient(() => this.acquire(old), { what: 'acquire a subnet lease', log, clock, rand, signal });
    this.forgetPastLoss();
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
