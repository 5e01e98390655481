/**
 * The composition root of the daemon: start-up order (contract §10) and
 * cancellation. Config (retry) → external interface → device → lease → /32
 * address, link up → subnet.env → peers listed and watched → reconciled → ready
 * → renewal. Everything it talks to comes in through DaemonDeps. The config
 * step is host-config.ts, the renewal and everything else about our lease once
 * held lease/own-lease-keeper.ts.
 */
import { DaemonOptions } from './cli';
import { NetworkConfig, VXLAN_OVERHEAD } from './config';
import { waitForHostConfig } from './host-config';
import { FirewallBackends, keepFirewall, startFirewall } from './firewall/firewall-keeper';
import { Firewall, FirewallTarget } from './firewall/firewall';
import { NfTablesGeneration } from './firewall/nft-generation';
import { NftablesFirewall } from './firewall/nftables';
import { IptablesFirewall } from './iptables';
import { BlackholeRoutes, IprouteBlackholeRoutes, keepBlackholeRoute } from './kernel/blackhole-route';
import { SYSCTL_ROOT, checkBrNetfilter } from './kernel/sysctl';
import { DaemonObserver } from './metrics';
import { Kernel, VxlanSpec } from './kernel/kernel';
import { leaseName } from './lease/codec';
import { OwnLease, acquireLease } from './lease/lease-manager';
import { OwnLeaseKeeper } from './lease/own-lease-keeper';
import { LeaseView } from './lease/lease-view';
import { wouldWipeFlanneldPeers } from './lease/reput';
import { CompactedError, LeaseStore } from './lease/store';
import { Cidr, formatCidr, formatIPv4 } from './net/ipv4';
import { Cidr6, formatCidr6, formatIPv6 } from './net/ipv6';
import { AddressFamily, AnyCidr, IPV4, IPV6, IpAddr } from './net/family';
import { randomMac } from './net/mac';
import { PassResult } from './overlay/reconciler';
import { FamilyOverlay } from './overlay/family-overlay';
import { familyPool } from './overlay/desired';
import { ensureSubnetFile, readPreviousSubnets } from './subnet-file';
import { Clock } from './util/clock';
import { errorMessage } from './util/errors';
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
  /** Addresses of the etcd endpoints, either family (resolved by main): no peer subnet or Network may contain one. */
  readonly etcdAddresses?: readonly IpAddr[];
  /** The firewall backends (default: iptables and nft); tests pass MemoryFirewall ones. */
  readonly firewalls?: FirewallBackends;
  /** --ip-blackhole-route's kernel access (default: iproute2). */
  readonly blackholes?: BlackholeRoutes;
  /** Where /proc/sys is (br_netfilter check, accept_ra); tests point it elsewhere. */
  readonly sysctlRoot?: string;
}

const REAL_FIREWALLS: FirewallBackends = { iptables: (o, l, f) => IptablesFirewall.create(o, l, f), nftables: (o, l, f) => NftablesFirewall.create(o, l, f) };

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

/** After a failed re-list of the leases (a fatal error), before the watch is tried again. */
const RELIST_PAUSE_MS = 1000;
/** Outer IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
const VXLAN6_HEADROOM = 70;

export class Daemon {
  private phase: DaemonStatus['phase'] = 'starting';
  private config!: NetworkConfig;
  /** Our lease once acquired: renewal, re-puts and re-acquiring (lease/own-lease-keeper.ts). */
  private lease: OwnLeaseKeeper | undefined;
  private publicIP = 0;
  /** FLANNEL_MTU, and flannel.<VNI>'s MTU. */
  private mtu = 0;
  /** The public IPv6 (flannel-v6.<VNI>'s local and our PublicIPv6), when the config enables IPv6. */
  private publicIPv6: bigint | undefined;
  private readonly view: LeaseView;
  /** One per enabled family: IPv4 (flannel.<VNI>) first, then IPv6 (flannel-v6.<VNI>). */
  private overlays: FamilyOverlay[] = [];
  /** Bumped whenever the desired state may change; lets the reconciler tell drift from news. */
  private generation = 0;
  /** Generation and arrival time of the oldest lease event not yet in the kernel. */
  private pendingEvent: { generation: number; at: number } | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: DaemonOptions, private readonly deps: DaemonDeps) {
    this.log = deps.log;
    this.view = new LeaseView(deps.log.child({ component: 'leases' }));
  }

  status(): DaemonStatus {
    return {
      phase: this.phase,
      ...(this.lease && { subnet: leaseName(this.lease.own), publicIP: this.config.enableIPv4 ? formatIPv4(this.publicIP) : formatIPv6(this.publicIPv6 ?? 0n), vtepMAC: this.overlay(IPV4)?.mac ?? this.overlay(IPV6)?.mac ?? '' }),
      peers: this.peerCount(),
      leaseHeld: this.lease?.held ?? false,
      kernelInSync: this.overlays.length > 0 && this.overlays.every((o) => o.reconciler?.synced ?? false),
    };
  }

  /** Runs until `signal` aborts (resolves) or a fatal error (rejects). Leaves kernel state and lease in place. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, kernel, clock, rand, log } = this.deps;
    const retry = <T>(what: string, fn: () => Promise<T>): Promise<T> => retryTransient(fn, { what, log, clock, rand, signal });
    try {
      const { config, ext } = await waitForHostConfig(
        { store, kernel, clock, rand, log, etcdAddresses: this.deps.etcdAddresses ?? [] },
        { prefix: this.opts.etcd.prefix, allowWideNetwork: this.opts.allowWideNetwork, ifaceCanReach: this.opts.ifaceCanReach, choice: { iface: this.opts.iface, ifaceRegex: this.opts.ifaceRegex, publicIP: this.opts.publicIP, publicIPv6: this.opts.publicIPv6 } },
        signal,
      );
      this.config = config;
      const sysctlRoot = this.deps.sysctlRoot ?? SYSCTL_ROOT;
      // Contract §16: flanneld checks this after the config and before choosing the interface.
      if (!this.config.enableNFTables) await checkBrNetfilter(sysctlRoot);
      if (this.config.ignoredBackendKeys.length > 0) {
        const keys = this.config.ignoredBackendKeys.join(', ');
        log.warn({ keys: this.config.ignoredBackendKeys }, `ignoring Backend key(s) ${keys}: flanneld's Linux VXLAN backend does not read them (MacPrefix and Name are Windows-only)`);
      }
      if (this.config.backend.directRouting) {
        log.info('Backend.DirectRouting: peers whose PublicIP this host reaches without a gateway get a direct route (proto 152), the others VXLAN');
      }
      this.publicIP = ext.publicIP;
      const b = this.config.backend;
      const mtu = (b.mtu || ext.iface.mtu) - VXLAN_OVERHEAD;
      this.mtu = mtu;
      // Contract §11: flannel-v6.<VNI> has the IPv4 device's VNI, port, GBP, learning, dev and MTU; its local is the public IPv6.
      const spec = (family: AddressFamily, localIP: number | bigint): VxlanSpec => ({
        name: family === IPV6 ? `flannel-v6.${b.vni}` : `flannel.${b.vni}`,
        vni: b.vni,
        localIP,
        underlayIndex: ext.iface.index,
        port: b.port,
        learning: b.learning,
        gbp: b.gbp,
        // The kernel clamps a VXLAN-over-IPv6 device to its underlay's MTU - 70 (drivers/net/vxlan: VXLAN6_HEADROOM) and
        // refuses more later (EINVAL): flanneld asks for 1450 and gets 1430, and so do we. FLANNEL_MTU stays the IPv4 figure.
        mtu: family === IPV6 ? Math.min(mtu, ext.iface.mtu - VXLAN6_HEADROOM) : mtu,
      });
      const specs: Array<[AddressFamily, VxlanSpec]> = [];
      if (this.config.enableIPv4) specs.push([IPV4, spec(IPV4, ext.publicIP)]);
      if (this.config.enableIPv6 && ext.publicIPv6 !== undefined) {
        this.publicIPv6 = ext.publicIPv6;
        specs.push([IPV6, spec(IPV6, ext.publicIPv6)]);
      }
      const addrs = [...(this.config.enableIPv4 ? [`public IP ${formatIPv4(ext.publicIP)}`] : []), ...(this.publicIPv6 === undefined ? [] : [`public IPv6 ${formatIPv6(this.publicIPv6)}`])];
      log.info({ iface: ext.iface.name, publicIP: formatIPv4(ext.publicIP), ...(this.publicIPv6 !== undefined && { publicIPv6: formatIPv6(this.publicIPv6) }), mtu }, `using interface ${ext.iface.name} with ${addrs.join(' and ')}`);
      this.overlays = specs.map(([family, s]) => this.makeOverlay(family, s));
      const created: Array<{ index: number; name: string }> = [];
      for (const o of this.overlays) {
        const first = await o.createDevice(() => randomMac(this.deps.randomBytes));
        if (first.created) created.push({ index: first.device.index, name: o.spec.name });
      }

      const previous = await readPreviousSubnets(this.opts.subnetFile);
      try {
        const own = await retry('acquire a subnet lease', () => this.acquire(previous.subnet, previous.subnet6));
        this.lease = this.makeLeaseKeeper(own);
      } catch (err) {
        // No partial state: a device we created for a lease we could not get goes again.
        if (!signal.aborted) {
          for (const d of created) {
            await kernel.deleteLink(d.index).catch(() => undefined);
            log.info({ device: d.name }, `removed ${d.name}: no subnet lease was acquired`);
          }
        }
        throw err;
      }
      await this.ensureDevices();
      const firewallLog = log.child({ component: 'firewall' });
      const firewallOpts = { ipMasq: this.opts.ipMasq, fullyRandom: this.opts.ipMasqFullyRandom, forwardRules: this.opts.iptablesForwardRules };
      // One rule set per enabled family: iptables / `ip flannel-ipv4` for IPv4, ip6tables / `ip6 flannel-ipv6` for IPv6 (contract §11, §16).
      // iptables mode: not fatal (the overlay works without the rules; the resync keeps trying). nftables mode: fatal, as flanneld.
      const firewalls: Array<{ firewall: Firewall; target: () => FirewallTarget }> = [];
      for (const o of this.overlays) {
        const target = (): FirewallTarget => {
          const own = o.ownSubnet();
          const pool = familyPool(this.config, o.family);
          if (!own || !pool) throw new Error(`no ${o.family.name} subnet for the firewall rules`);
          return { network: pool.network, subnet: own };
        };
        firewalls.push({ firewall: await startFirewall(this.config.enableNFTables, firewallOpts, target(), this.deps.firewalls ?? REAL_FIREWALLS, firewallLog, o.family), target });
      }
      await this.writeSubnetFile();

      const snapshot = await retry('list leases', () => store.list());
      this.view.reset(snapshot.records);
      this.leasesChanged();
      const lease = this.lease as OwnLeaseKeeper;
      lease.checkRecord(snapshot.records.find((r) => r.key === lease.key()), snapshot.revision);
      const reconcilers = this.overlays.map((o) => o.makeReconciler());
      const background = [...reconcilers.map((r) => r.run(signal)), this.watchLoop(snapshot.revision + 1n, signal)];
      // nf_tables' ruleset generation is one counter for every family's tables: the shortcut holds for ip6tables-nft and `ip6 flannel-ipv6` too.
      for (const f of firewalls) background.push(keepFirewall(f.firewall, f.target, this.opts.iptablesResyncMs, clock, firewallLog, signal, f.firewall.inNfTables ? new NfTablesGeneration(firewallLog) : undefined));
      if (this.opts.ipBlackholeRoute) {
        // One blackhole per enabled family: the own subnet and the own IPv6 subnet (contract §16).
        for (const o of this.overlays) {
          const own = (): AnyCidr => o.ownSubnet() ?? lease.own.subnet;
          background.push(keepBlackholeRoute(this.deps.blackholes ?? new IprouteBlackholeRoutes(), own, this.opts.iptablesResyncMs, clock, log.child({ component: 'blackhole' }), signal));
        }
      }
      for (const r of reconcilers) await r.waitSynced(signal);
      this.phase = 'ready';
      log.info({ subnet: formatCidr(lease.own.subnet), ...(lease.own.subnet6 && { subnet6: formatCidr6(lease.own.subnet6) }), peers: this.peerCount() }, 'ready: lease held, subnet file written, peers programmed');
      this.deps.onReady?.(this.status());
      await lease.run(signal);
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
    const { lease, invalid, ignored } = this.view.recordCounts();
    this.deps.observer.leasesSeen({ valid: lease, invalid, ignored });
  }

  private onPass(result: PassResult): void {
    this.deps.observer?.reconciled(result);
    const pending = this.pendingEvent;
    if (pending && result.failed === 0 && result.generation >= pending.generation) {
      this.deps.observer?.leaseEventApplied((this.deps.clock.now() - pending.at) / 1000);
      this.pendingEvent = undefined;
    }
  }

  /** Peers programmed over all families (a dual-stack peer counts once per family). */
  private peerCount(): number {
    return this.overlays.reduce((n, o) => n + (o.reconciler ? o.desired()?.peers.size ?? 0 : 0), 0);
  }

  private overlay(family: AddressFamily): FamilyOverlay | undefined {
    return this.overlays.find((o) => o.family === family);
  }

  private makeOverlay(family: AddressFamily, spec: VxlanSpec): FamilyOverlay {
    const { kernel, clock, rand, log, observer } = this.deps;
    return new FamilyOverlay({
      family,
      kernel,
      config: this.config,
      spec,
      log,
      clock,
      rand,
      sysctlRoot: this.deps.sysctlRoot ?? SYSCTL_ROOT,
      own: () => {
        const own = this.lease?.own;
        if (!own) return undefined;
        if (family === IPV6) return own.subnet6 && this.publicIPv6 !== undefined ? { subnet: own.subnet6, publicIP: this.publicIPv6 } : undefined;
        return { subnet: own.subnet, publicIP: this.publicIP };
      },
      leases: () => this.view.leases(),
      leaseChanges: this.view,
      generation: () => this.generation,
      bumpGeneration: () => {
        this.generation++;
      },
      etcdAddresses: this.deps.etcdAddresses ?? [],
      observer,
      onPass: (result) => this.onPass(result),
      onSkipped: () => observer?.peersSkipped?.(this.overlays.reduce((n, x) => n + x.skippedCount, 0)),
      periodMs: this.opts.resyncMs,
    });
  }

  private markAllDirty(full = false): void {
    for (const o of this.overlays) o.reconciler?.markDirty(full);
  }

  private acquire(previous: Cidr | undefined, previous6: Cidr6 | undefined): Promise<OwnLease> {
    return acquireLease({
      store: this.deps.store,
      config: this.config,
      publicIP: this.publicIP,
      vtepMAC: this.overlay(IPV4)?.mac ?? '',
      v6: this.publicIPv6 === undefined ? undefined : { publicIP: this.publicIPv6, vtepMAC: this.overlay(IPV6)?.mac ?? '', previous: previous6 },
      previous,
      ttlSeconds: this.opts.leaseTTLSeconds,
      rand: this.deps.rand,
      log: this.log.child({ component: 'lease' }),
    });
  }

  private makeLeaseKeeper(own: OwnLease): OwnLeaseKeeper {
    const { store, clock, rand, log, observer } = this.deps;
    return new OwnLeaseKeeper(
      {
        store,
        clock,
        rand,
        log,
        observer,
        prefix: this.opts.etcd.prefix,
        ttlSeconds: this.opts.leaseTTLSeconds,
        renewMarginMinutes: this.opts.renewMarginMinutes,
        reputIntervalMs: this.opts.reputIntervalMs,
        ipv4: this.config.enableIPv4,
        acquire: (previous, previous6) => this.acquire(previous, previous6),
        leaseCount: () => this.view.leases().length,
        subnetChanged: async () => {
          await this.ensureDevices();
          await this.writeSubnetFile();
        },
        reacquired: () => {
          this.generation++;
          this.markAllDirty(true);
        },
      },
      own,
    );
  }

  /** Creates or repairs flannel.N and flannel-v6.N with our MACs, addresses and link state. */
  private async ensureDevices(): Promise<void> {
    for (const o of this.overlays) await o.ensureDevice();
  }

  private async writeSubnetFile(): Promise<void> {
    const own = (this.lease as OwnLeaseKeeper).own;
    const v4 = this.config.enableIPv4;
    const ipv6 = this.config.ipv6 && own.subnet6 ? { network: this.config.ipv6.network, subnet: own.subnet6 } : undefined;
    // FLANNEL_MTU is (Backend.MTU or the interface's) - 50 whatever the families (contract §11).
    const written = await ensureSubnetFile(this.opts.subnetFile, { network: v4 ? this.config.network : undefined, subnet: v4 ? own.subnet : undefined, ipv6, mtu: this.mtu, ipMasq: this.opts.ipMasq });
    if (written) this.log.info({ file: this.opts.subnetFile }, `wrote ${this.opts.subnetFile}`);
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
            if (wouldWipeFlanneldPeers(events)) this.lease?.triggerReput('an event flanneld peers cannot decode');
            const changed = this.view.apply(events);
            this.lease?.onEvents(events);
            // A re-put of an unchanged value (ours or a peer's) means nothing for the kernel.
            if (changed === 0) return;
            this.pendingEvent ??= { generation: this.generation + 1, at: clock.now() };
            this.leasesChanged();
            this.markAllDirty();
          },
          onDisconnected: (err) => log.warn({ err: errorMessage(err) }, `lost the etcd watch: ${errorMessage(err)}; reconnecting`),
          onReconnected: () => {
            log.info('etcd watch re-established');
            this.deps.observer?.etcdReconnected();
            this.lease?.triggerReput('reconnected to etcd');
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
          const lease = this.lease as OwnLeaseKeeper;
          lease.checkRecord(snapshot.records.find((r) => r.key === lease.key()), snapshot.revision);
          this.markAllDirty();
          lease.triggerReput('re-listed leases after the watch broke');
        } catch (listErr) {
          if (signal.aborted) return;
          // Only fatal errors get here (retryTransient retries the rest): keep serving what we have.
          log.error({ err: errorMessage(listErr) }, `failed to re-list leases: ${errorMessage(listErr)}`);
          await clock.sleep(RELIST_PAUSE_MS, signal).catch(() => undefined);
        }
      }
    }
  }
}
