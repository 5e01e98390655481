/**
 * Desired kernel state: a pure function of our own lease, every other lease and
 * the config. See reconciler.ts for the design note on the three entries per peer.
 */
import { NetworkConfig } from '../config';
import { Cidr, cidrContains, cidrContainsCidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { Lease } from '../lease/lease';
import { FdbEntry, NeighborEntry, RouteEntry } from '../kernel/kernel';
import { LINK_LOCAL, publicIPProblem, vtepMacProblem } from '../net/address-kind';

/** How a peer is reached: through flannel.<VNI>, or (DirectRouting) by a plain route via its PublicIP. */
export type PeerMode = 'vxlan' | 'direct';

/**
 * The entries one remote lease calls for: {neighbour, FDB, onlink route on
 * flannel.<VNI>} for a vxlan peer, {direct route} for a direct one. The plan
 * treats both alike (STYLE.md "Direct routes are peer entries too").
 */
export interface PeerEntries {
  readonly subnet: Cidr;
  readonly mode: PeerMode;
  /** vxlan peers only. */
  readonly neighbor?: NeighborEntry | undefined;
  /** vxlan peers only. */
  readonly fdb?: FdbEntry | undefined;
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

/**
 * A peer's entries. Direct: `ip route replace <subnet> via <PublicIP> proto 152`
 * (contract §12, with our own protocol for ownership). VXLAN: contract §5.
 */
export function peerEntries(lease: Lease & { vtepMAC: string }, mode: PeerMode = 'vxlan'): PeerEntries {
  if (mode === 'direct') {
    return { subnet: lease.subnet, mode, route: { kind: 'route', dst: lease.subnet, gateway: lease.publicIP, onlink: false, direct: true } };
  }
  const gw = lease.subnet.ip;
  return {
    subnet: lease.subnet,
    mode,
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
 * One neighbour, FDB entry and route per remote vxlan lease; never our own.
 * Two leases with one VtepMAC would fight over one FDB entry: the MAC stays with
 * the lease etcd created first (an established peer keeps its traffic when a new
 * key copies its MAC) and the newcomer is skipped with a reason.
 * `extraSkip` adds reasons that need more than the leases (the host's routes,
 * entries the kernel refused); a lease it refuses never owns a MAC.
 * `modeOf` says which peers are direct (DirectRouting); without it every peer is vxlan.
 */
export function desiredState(
  self: SelfInfo,
  leases: Iterable<Lease>,
  config: NetworkConfig,
  extraSkip?: (lease: Lease) => string | undefined,
  modeOf?: (lease: Lease) => PeerMode,
): DesiredState {
  const peers = new Map<string, PeerEntries>();
  const reasons = new Map<Lease, string>();
  const macOwner = new Map<string, string>();
  const all = [...leases];
  for (const lease of [...all].sort(olderFirst)) {
    const reason = peerSkipReason(self, lease, config) ?? extraSkip?.(lease);
    if (reason !== undefined) {
      reasons.set(lease, reason);
      continue;
    }
    const mac = lease.vtepMAC as string;
    const owner = macOwner.get(mac);
    if (owner !== undefined) reasons.set(lease, `VtepMAC ${mac} is already used by ${owner}, which etcd created earlier`);
    else macOwner.set(mac, formatCidr(lease.subnet));
  }
  const skipped: Array<{ subnet: string; reason: string }> = [];
  for (const lease of all.sort((a, b) => a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen)) {
    const subnet = formatCidr(lease.subnet);
    const reason = reasons.get(lease);
    if (reason === undefined) peers.set(subnet, peerEntries({ ...lease, vtepMAC: lease.vtepMAC as string }, modeOf?.(lease)));
    else if (reason !== 'own lease') skipped.push({ subnet, reason });
  }
  return { peers, skipped };
}
