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
import { AddressFamily, AnyCidr, formatAnyCidr } from '../net/family';
import { Clock } from '../util/clock';
import { Logger } from '../util/log';
import { DesiredState, SelfInfo, desiredState, familyPool, halfSubnetText, leaseHalf } from './desired';
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
  /** Bumped by the daemon whenever the desired state may change. */
  readonly generation: () => number;
  /** Ask the daemon for a new generation (a refusal changed the desired state). */
  readonly bumpGeneration: () => void;
  readonly etcdAddresses: readonly number[];
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
  private desiredCache: { generation: number; host: HostSnapshot | undefined; desired: DesiredState } | undefined;
  private host: HostSnapshot | undefined;

  constructor(private readonly deps: FamilyOverlayDeps) {
    this.refused = new RefusedLeases(deps.family);
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
   * Computed once per generation and host reading: every reconcile pass and
   * every /readyz probe asks for it. Peers are checked against the host's own
   * network as the last listing pass saw it (underlay.ts, either family), and leases the
   * kernel refused stay out.
   */
  desired(host?: HostSnapshot): DesiredState | undefined {
    const own = this.deps.own();
    if (!own) return undefined;
    if (host) this.host = host;
    const seen = this.host;
    const generation = this.deps.generation();
    if (this.desiredCache?.generation === generation && this.desiredCache.host === seen) return this.desiredCache.desired;
    const { family, config } = this.deps;
    const pool = familyPool(config, family);
    const underlay = seen && pool ? underlayChecker({ host: seen.network, overlayIndex: seen.overlayIndex, network: pool.network, etcdAddresses: this.deps.etcdAddresses }) : undefined;
    const leases = this.deps.leases();
    this.refused.forget(leases);
    const self: SelfInfo = { subnet: own.subnet, publicIP: own.publicIP, vtepMAC: this.mac };
    const desired = desiredState(self, leases, config, (lease) => {
      const half = leaseHalf(lease, family);
      return (half && underlay?.(half.subnet)) ?? this.refused.reason(lease);
    }, family);
    this.logSkipped(desired);
    this.desiredCache = { generation, host: seen, desired };
    return desired;
  }

  /** Valid leases that are not programmed (wrong backend, outside the network, our own IP…): logged once each. */
  private logSkipped(desired: DesiredState): void {
    const now = new Map(desired.skipped.map((s) => [s.subnet, s.reason]));
    for (const [subnet, reason] of now) {
      if (this.skippedLogged.get(subnet) !== reason) this.deps.log.warn({ subnet, reason }, `not programming lease ${subnet}: ${reason}`);
    }
    this.skippedLogged = now;
    this.skippedCount = desired.skipped.length;
    this.deps.onSkipped?.();
  }

  /** The kernel refused entries of these peers for good: drop the whole peer (all three entries) until its lease changes. */
  private onRefused(refused: ReadonlyArray<{ operation: { entry: Entry }; error: Error }>): void {
    const peers = this.desired()?.peers;
    if (!peers) return;
    let added = 0;
    for (const { operation, error } of refused) {
      const entry = operation.entry;
      const peer = [...peers.values()].find((p) => (entry.kind === 'route' ? p.route.dst.ip === entry.dst.ip : entry.kind === 'neighbor' ? p.neighbor.ip === entry.ip : p.fdb.mac === entry.mac));
      const subnet = peer && formatAnyCidr(peer.subnet);
      const lease = subnet && this.deps.leases().find((l) => halfSubnetText(l, this.deps.family) === subnet);
      if (!lease) continue;
      if (this.refused.add(lease, `the kernel refused its ${describeEntry(entry)}: ${error.message}`)) {
        added++;
        this.deps.observer?.leaseRefused?.();
      }
    }
    if (added === 0) return;
    this.deps.bumpGeneration();
    this.reconciler?.markDirty();
  }

  /** The reconciler of this family's device (not started: the daemon runs it). */
  makeReconciler(): Reconciler {
    const { kernel, log, clock, rand, observer } = this.deps;
    this.reconciler = new Reconciler({
      kernel,
      desired: (host) => this.desired(host),
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
