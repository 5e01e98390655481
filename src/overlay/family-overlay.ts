/**
 * One address family's overlay on this node: its VXLAN device (flannel.<VNI>
 * for IPv4, flannel-v6.<VNI> for IPv6; contract §4, §11), the desired state of
 * its peers, and the reconciler that keeps the device's entries. The daemon
 * makes one per enabled family; the code is the same for both (STYLE: the
 * family is a value), only the lease half, pool and device parameters differ.
 */
import { NetworkConfig } from '../config';
import { DeviceState, Entry, Kernel, VxlanSpec, describeEntry } from '../kernel/kernel';
import { disableAcceptRa } from '../kernel/sysctl';
import { ensureDeviceAddress, ensureVxlanDevice } from '../kernel/vxlan-device';
import { Lease } from '../lease/lease';
import { DaemonObserver } from '../metrics';
import { AddressFamily, AnyCidr, IpAddr, formatAnyCidr } from '../net/family';
import { Clock } from '../util/clock';
import { Logger } from '../util/log';
import { LeaseChange } from '../lease/lease-view';
import { DesiredState, LeaseHalf, LeaseMemo, PeerMode, SelfInfo, familyPool, halfSubnetText, leaseHalf } from './desired';
import { BookInputs, DesiredBook } from './desired-book';
import { DirectDecisions } from './direct-routing';
import { HostSnapshot, PassResult, Reconciler } from './reconciler';
import { RefusedLeases } from './refused';
import { underlayChecker } from './underlay';

export interface FamilyOverlayDeps {
  readonly family: AddressFamily;
  readonly kernel: Kernel;
  readonly config: NetworkConfig;
  readonly spec: VxlanSpec;
  readonly log: Logger;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly sysctlRoot: string;
  /** This node in this family (subnet, public IP), once it holds a lease. The MAC is the device's. */
  readonly own: () => { readonly subnet: AnyCidr; readonly publicIP: SelfInfo['publicIP'] } | undefined;
  readonly leases: () => readonly Lease[];
  /** The lease view's change log: with it, a lease event re-decides the changed leases only (without, every lease). */
  readonly leaseChanges?: { readonly version: number; changesSince(version: number): readonly LeaseChange[] | undefined } | undefined;
  /** Bumped by the daemon whenever the desired state may change. */
  readonly generation: () => number;
  /** Ask the daemon for a new generation (a refusal changed the desired state). */
  readonly bumpGeneration: () => void;
  readonly etcdAddresses: readonly IpAddr[];
  readonly observer?: DaemonObserver | undefined;
  readonly onPass?: (result: PassResult) => void;
  /** The number of skipped leases changed (the daemon reports the sum over families). */
  readonly onSkipped?: () => void;
  readonly periodMs: number;
}

export class FamilyOverlay {
  /** The device's MAC: the lease's VtepMAC (BackendData or BackendV6Data). */
  mac = '';
  reconciler: Reconciler | undefined;
  /** Leases skipped in the last desired state of this family. */
  skippedCount = 0;
  private acceptRaIndex: number | undefined;
  private readonly refused: RefusedLeases;
  private skippedLogged = new Map<string, string>();
  /** This family's desired state, kept in place (desired-book.ts), and what it was last brought up to date with. */
  private book: DesiredBook | undefined;
  private bookAt: { generation: number; host: HostSnapshot | undefined; inputs: BookInputs; leaseVersion: number; refused: number } | undefined;
  /** Bumped when the kernel refuses a lease: its peer must be re-decided. */
  private refusedVersion = 0;
  private lastSkipped: DesiredState['skipped'] | undefined;
  private host: HostSnapshot | undefined;
  /**
   * Per-lease checks kept between desired-state computations (issue 10: a lease
   * event at 5,000 peers checks one lease): `leases` for one self and config,
   * `underlay` for one host reading. Keyed by the view's lease objects, which
   * change only when their value does.
   */
  private leaseMemo: { self: string; config: NetworkConfig; leases: LeaseMemo } | undefined;
  private underlayMemo: { host: HostSnapshot; check: (subnet: AnyCidr, publicIP?: IpAddr) => string | undefined; results: WeakMap<Lease, string | undefined> } | undefined;
  /** DirectRouting's per-PublicIP decisions for this family (undefined when the config does not ask for it). */
  private readonly direct: DirectDecisions | undefined;
  private directHost: HostSnapshot | undefined;

  constructor(private readonly deps: FamilyOverlayDeps) {
    this.refused = new RefusedLeases(deps.family);
    // Contract §12, per peer and family: PublicIP decides the IPv4 half, PublicIPv6 the IPv6 half.
    if (deps.config.backend.directRouting) this.direct = new DirectDecisions((ip) => deps.kernel.routeGet(ip), deps.family.family);
  }

  get family(): AddressFamily {
    return this.deps.family;
  }

  get spec(): VxlanSpec {
    return this.deps.spec;
  }

  /** This node's subnet in this family, once it holds a lease. */
  ownSubnet(): AnyCidr | undefined {
    return this.deps.own()?.subnet;
  }

  /** The device before any lease: created with a random MAC, or adopted with its own. */
  async createDevice(randomMac: () => string): Promise<{ device: DeviceState; created: boolean }> {
    const first = await ensureVxlanDevice(this.deps.kernel, this.deps.spec, this.deps.log, randomMac);
    this.mac = first.device.mac;
    await this.disableAcceptRa(first.device);
    if (!first.created) this.deps.log.info({ device: this.deps.spec.name, mac: this.mac }, `adopted existing ${this.deps.spec.name} (parameters match; MAC kept)`);
    return first;
  }

  /** Creates or repairs the device with our MAC, the own subnet's /32 or /128 and link up. */
  async ensureDevice(): Promise<DeviceState> {
    const { kernel, spec, log, family, config } = this.deps;
    const { device } = await ensureVxlanDevice(kernel, spec, log, () => this.mac);
    await this.disableAcceptRa(device);
    const own = this.deps.own();
    const pool = familyPool(config, family);
    if (own && pool) await ensureDeviceAddress(kernel, device, family.hostCidr(own.subnet.ip) as AnyCidr, pool.network, log);
    return device;
  }

  /** accept_ra=0 on a device we made or adopted (flanneld: device.go); once per device, a failure logged and ignored. */
  private async disableAcceptRa(device: DeviceState): Promise<void> {
    if (this.acceptRaIndex === device.index) return;
    this.acceptRaIndex = device.index;
    const problem = await disableAcceptRa(this.deps.sysctlRoot, this.deps.spec.name);
    if (problem) this.deps.log.warn({ device: this.deps.spec.name }, `${problem} (ignored, as flanneld does)`);
  }

  /**
   * Brought up to date once per generation and host reading: every reconcile
   * pass and every /readyz probe asks for it. Lease events re-decide the leases
   * they changed; new inputs (our own lease, the config, a different host
   * reading, a refusal) re-decide every lease. Peers are checked against the
   * host's own network as the last listing pass saw it (underlay.ts, either
   * family), and leases the kernel refused stay out.
   */
  desired(host?: HostSnapshot): DesiredState | undefined {
    const own = this.deps.own();
    if (!own) return undefined;
    if (host) this.host = host;
    const seen = this.host;
    const generation = this.deps.generation();
    const at = this.bookAt;
    if (this.book && at?.generation === generation && at.host === seen) return this.book;
    const inputs = this.inputsFor(own, seen);
    const feed = this.deps.leaseChanges;
    const leaseVersion = feed?.version ?? -1;
    const changes = feed && at && at.inputs === inputs && at.refused === this.refusedVersion ? feed.changesSince(at.leaseVersion) : undefined;
    this.book ??= new DesiredBook(inputs);
    if (changes) this.book.update(changes);
    else {
      const leases = this.deps.leases();
      if (this.refused.size > 0) this.refused.forget(leases);
      this.book.rebuild(leases, inputs);
    }
    this.bookAt = { generation, host: seen, inputs, leaseVersion, refused: this.refusedVersion };
    if (this.direct) {
      this.book.recheckModes();
      this.logModes(this.book.takeMoves());
    }
    if (this.book.skipped !== this.lastSkipped) this.logSkipped(this.book.skipped);
    return this.book;
  }

  // The book's inputs for this self, config and host reading: the same object while none of them changed.
  private inputsFor(own: { readonly subnet: AnyCidr; readonly publicIP: IpAddr }, seen: HostSnapshot | undefined): BookInputs {
    const { family, config } = this.deps;
    const self: SelfInfo = { subnet: own.subnet, publicIP: own.publicIP, vtepMAC: this.mac };
    const selfKey = `${formatAnyCidr(self.subnet)} ${self.publicIP} ${self.vtepMAC ?? ''}`;
    let fresh = false;
    if (this.leaseMemo?.self !== selfKey || this.leaseMemo.config !== config) {
      this.leaseMemo = { self: selfKey, config, leases: new WeakMap() };
      fresh = true;
    }
    const pool = familyPool(config, family);
    if (seen && pool && this.underlayMemo?.host !== seen) {
      const check = underlayChecker({ host: seen.network, overlayIndex: seen.overlayIndex, network: pool.network, etcdAddresses: this.deps.etcdAddresses });
      this.underlayMemo = { host: seen, check, results: new WeakMap() };
      fresh = true;
    }
    const previous = this.bookAt?.inputs;
    if (!fresh && previous) return previous;
    const underlay = seen && pool ? this.underlayMemo : undefined;
    // Per lease value and host reading: the check of this family's half (subnet, PublicIP) against the underlay.
    const onUnderlay = (lease: Lease): string | undefined => {
      if (!underlay) return undefined;
      if (underlay.results.has(lease)) return underlay.results.get(lease);
      const half = leaseHalf(lease, family);
      const reason = half && underlay.check(half.subnet, half.publicIP);
      underlay.results.set(lease, reason);
      return reason;
    };
    const direct = this.direct;
    const modeOf = direct && ((half: LeaseHalf): PeerMode | undefined => {
      if (half.publicIP === undefined) return 'vxlan';
      const d = direct.isDirect(half.publicIP);
      return d === undefined ? undefined : d ? 'direct' : 'vxlan';
    });
    return { self, config, family, extraSkip: (lease) => onUnderlay(lease) ?? this.refused.reason(lease), modeOf, memo: this.leaseMemo.leases };
  }

  /**
   * DirectRouting: re-decides every peer when the host's addressing changed since
   * the last host reading, and looks up PublicIPs not decided yet. A change of any
   * decision is a new generation (the desired state changed, not the kernel).
   */
  private async decideDirect(host: HostSnapshot): Promise<void> {
    const direct = this.direct;
    const own = this.deps.own();
    if (!direct || !own) return;
    let changed = false;
    if (host !== this.directHost) {
      this.directHost = host;
      changed = direct.observe(host.network, host.overlayIndex);
      if (changed) this.deps.log.info({ family: this.deps.family.name }, `host ${this.deps.family.name} addresses or routes changed: deciding again which peers are direct`);
    }
    const publicIPs = this.deps.leases().flatMap((l) => {
      const ip = leaseHalf(l, this.deps.family)?.publicIP;
      return ip === undefined || ip === own.publicIP ? [] : [ip];
    });
    const made = await direct.decide(publicIPs);
    if (changed || made > 0) this.deps.bumpGeneration();
  }

  /** DirectRouting: one line per peer that changed mode (not for peers decided for the first time). */
  private logModes(moves: ReadonlyArray<{ readonly subnet: string; readonly mode: PeerMode; readonly was: PeerMode }>): void {
    for (const { subnet, mode, was } of moves) this.deps.log.info({ subnet, mode, was }, `peer ${subnet} is now reached ${mode === 'direct' ? 'directly (DirectRouting)' : 'over VXLAN'}`);
  }

  /** Valid leases that are not programmed (wrong backend, outside the network, our own IP…): logged once each. */
  private logSkipped(skipped: DesiredState['skipped']): void {
    this.lastSkipped = skipped;
    const now = new Map(skipped.map((s) => [s.subnet, s.reason]));
    for (const [subnet, reason] of now) {
      if (this.skippedLogged.get(subnet) !== reason) this.deps.log.warn({ subnet, reason }, `not programming lease ${subnet}: ${reason}`);
    }
    this.skippedLogged = now;
    this.skippedCount = skipped.length;
    this.deps.onSkipped?.();
  }

  /** The kernel refused entries of these peers for good: drop the whole peer (all three entries) until its lease changes. */
  private onRefused(refused: ReadonlyArray<{ operation: { entry: Entry }; error: Error }>): void {
    const peers = this.desired()?.peers;
    if (!peers) return;
    let added = 0;
    for (const { operation, error } of refused) {
      const entry = operation.entry;
      const peer = [...peers.values()].find((p) => (entry.kind === 'route' ? p.route.dst.ip === entry.dst.ip : entry.kind === 'neighbor' ? p.neighbor?.ip === entry.ip : p.fdb?.mac === entry.mac));
      const subnet = peer && formatAnyCidr(peer.subnet);
      const lease = subnet && this.deps.leases().find((l) => halfSubnetText(l, this.deps.family) === subnet);
      if (!lease) continue;
      if (this.refused.add(lease, `the kernel refused its ${describeEntry(entry)}: ${error.message}`)) {
        added++;
        this.deps.observer?.leaseRefused?.();
      }
    }
    if (added === 0) return;
    this.refusedVersion++;
    this.deps.bumpGeneration();
    this.reconciler?.markDirty();
  }

  /** The reconciler of this family's device (not started: the daemon runs it). */
  makeReconciler(): Reconciler {
    const { kernel, log, clock, rand, observer } = this.deps;
    this.reconciler = new Reconciler({
      kernel,
      desired: (host) => this.desired(host),
      prepare: (host) => this.decideDirect(host),
      family: this.deps.family,
      onRefused: (refused) => this.onRefused(refused),
      generation: () => this.deps.generation(),
      onPass: (result) => this.deps.onPass?.(result),
      onOverflow: () => observer?.kernelWatchOverflowed(),
      ensureDevice: () => this.ensureDevice(),
      log: log.child({ component: 'reconciler', device: this.deps.spec.name }),
      clock,
      rand,
      periodMs: this.deps.periodMs,
      coalesceMs: 5,
    });
    return this.reconciler;
  }
}
