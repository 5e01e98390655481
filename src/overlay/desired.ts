/**
 * Desired kernel state: a pure function of our own lease, every other lease and
 * the config. See reconciler.ts for the design note on the three entries per peer.
 */
import { NetworkConfig } from '../config';
import { Cidr, cidrContains, cidrContainsCidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { Lease } from '../lease/lease';
import { FdbEntry, NeighborEntry, RouteEntry } from '../kernel/kernel';
import { LINK_LOCAL, publicIPProblem, vtepMacProblem } from '../net/address-kind';

/** The three entries one remote lease calls for. */
export interface PeerEntries {
  readonly subnet: Cidr;
  readonly neighbor: NeighborEntry;
  readonly fdb: FdbEntry;
  readonly route: RouteEntry;
}

export interface DesiredState {
  /** Keyed by subnet text ("10.7.12.0/24"). */
  readonly peers: ReadonlyMap<string, PeerEntries>;
  /** Leases that are valid JSON but cannot be programmed, with why (shown by status, logged once). */
  readonly skipped: ReadonlyArray<{ readonly subnet: string; readonly reason: string }>;
}

export interface SelfInfo {
  readonly subnet: Cidr;
  readonly publicIP: number;
  /** This node's VTEP MAC: no peer is ever programmed with it. */
  readonly vtepMAC?: string | undefined;
}

/** Why a lease is not programmed as a peer, or undefined when it is. */
export function peerSkipReason(self: SelfInfo, lease: Lease, config: NetworkConfig): string | undefined {
  if (cidrEquals(lease.subnet, self.subnet)) return 'own lease';
  if (lease.backendType !== 'vxlan') return `backend type ${JSON.stringify(lease.backendType)} is not vxlan`;
  if (lease.vtepMAC === undefined) return 'no VtepMAC';
  if (!cidrContainsCidr(config.network, lease.subnet)) return `subnet is outside Network ${formatCidr(config.network)}`;
  if (lease.subnet.prefixLen !== config.subnetLen) return `subnet length is not /${config.subnetLen}`;
  if (lease.publicIP === self.publicIP) return `PublicIP ${formatIPv4(lease.publicIP)} is this node's own`;
  if (lease.vni !== config.backend.vni) return `VNI ${lease.vni} differs from ours (${config.backend.vni})`;
  const ipProblem = publicIPProblem(lease.publicIP, cidrContains(LINK_LOCAL, self.publicIP));
  if (ipProblem !== undefined) return ipProblem;
  const macProblem = vtepMacProblem(lease.vtepMAC);
  if (macProblem !== undefined) return macProblem;
  if (self.vtepMAC !== undefined && lease.vtepMAC === self.vtepMAC) return `VtepMAC ${lease.vtepMAC} is this node's own`;
  return undefined;
}

export function peerEntries(lease: Lease & { vtepMAC: string }): PeerEntries {
  const gw = lease.subnet.ip;
  return {
    subnet: lease.subnet,
    neighbor: { kind: 'neighbor', ip: gw, mac: lease.vtepMAC, permanent: true },
    fdb: { kind: 'fdb', mac: lease.vtepMAC, dst: lease.publicIP, permanent: true },
    route: { kind: 'route', dst: lease.subnet, gateway: gw, onlink: true },
  };
}

/** Older first: by etcd create revision (a lease without one is newest), then by subnet. */
export function olderFirst(a: Lease, b: Lease): number {
  const ra = a.createRevision === undefined ? undefined : BigInt(a.createRevision);
  const rb = b.createRevision === undefined ? undefined : BigInt(b.createRevision);
  if (ra !== rb) {
    if (ra === undefined) return 1;
    if (rb === undefined) return -1;
    return ra < rb ? -1 : 1;
  }
  return a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen;
}

/**
 * What desiredState works out for one lease that depends only on the lease, our
 * own lease and the config. A caller that keeps a LeaseMemo across calls (for
 * one self and config) pays for these once per lease value, so a lease event
 * at 5,000 peers costs one lease's checks, not 5,000 (issue 10).
 */
export interface LeaseVerdict {
  readonly reason: string | undefined;
  readonly subnet: string;
  entries?: PeerEntries;
}
export type LeaseMemo = WeakMap<Lease, LeaseVerdict>;

function verdictOf(self: SelfInfo, lease: Lease, config: NetworkConfig, memo: LeaseMemo | undefined): LeaseVerdict {
  let v = memo?.get(lease);
  if (!v) {
    v = { reason: peerSkipReason(self, lease, config), subnet: formatCidr(lease.subnet) };
    memo?.set(lease, v);
  }
  return v;
}

/**
 * One neighbour, FDB entry and route per remote vxlan lease; never our own.
 * Two leases with one VtepMAC would fight over one FDB entry: the MAC stays with
 * the lease etcd created first (an established peer keeps its traffic when a new
 * key copies its MAC) and the newcomer is skipped with a reason.
 * `extraSkip` adds reasons that need more than the leases (the host's routes,
 * entries the kernel refused); a lease it refuses never owns a MAC. `memo`
 * must only be shared between calls with the same `self` and `config`.
 */
export function desiredState(
  self: SelfInfo,
  leases: Iterable<Lease>,
  config: NetworkConfig,
  extraSkip?: (lease: Lease) => string | undefined,
  memo?: LeaseMemo,
): DesiredState {
  const all = [...leases];
  const verdicts: LeaseVerdict[] = [];
  const reasons: Array<string | undefined> = [];
  // The first lease (in `all`) that claims each MAC; the rare MACs claimed twice are settled below.
  const claimedBy = new Map<string, number>();
  const contested = new Set<string>();
  for (let i = 0; i < all.length; i++) {
    const lease = all[i] as Lease;
    const verdict = verdictOf(self, lease, config, memo);
    const reason = verdict.reason ?? extraSkip?.(lease);
    verdicts.push(verdict);
    reasons.push(reason);
    if (reason !== undefined) continue;
    const mac = lease.vtepMAC as string;
    if (claimedBy.has(mac)) contested.add(mac);
    else claimedBy.set(mac, i);
  }
  if (contested.size > 0) {
    const claimants = all.map((_, i) => i).filter((i) => reasons[i] === undefined && contested.has((all[i] as Lease).vtepMAC as string));
    claimants.sort((a, b) => olderFirst(all[a] as Lease, all[b] as Lease));
    const owner = new Map<string, string>();
    for (const i of claimants) {
      const mac = (all[i] as Lease).vtepMAC as string;
      const held = owner.get(mac);
      if (held !== undefined) reasons[i] = `VtepMAC ${mac} is already used by ${held}, which etcd created earlier`;
      else owner.set(mac, (verdicts[i] as LeaseVerdict).subnet);
    }
  }
  const order = all.map((_, i) => i);
  order.sort((a, b) => (all[a] as Lease).subnet.ip - (all[b] as Lease).subnet.ip || (all[a] as Lease).subnet.prefixLen - (all[b] as Lease).subnet.prefixLen);
  const peers = new Map<string, PeerEntries>();
  const skipped: Array<{ subnet: string; reason: string }> = [];
  for (const i of order) {
    const lease = all[i] as Lease;
    const verdict = verdicts[i] as LeaseVerdict;
    const reason = reasons[i];
    if (reason === undefined) peers.set(verdict.subnet, (verdict.entries ??= peerEntries({ ...lease, vtepMAC: lease.vtepMAC as string })));
    else if (reason !== 'own lease') skipped.push({ subnet: verdict.subnet, reason });
  }
  return { peers, skipped };
}
