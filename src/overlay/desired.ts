/**
 * Desired kernel state: a pure function of our own lease, every other lease and
 * the config. See reconciler.ts for the design note on the three entries per peer.
 */
import { NetworkConfig } from '../config';
import { Cidr, cidrContainsCidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { Lease } from '../lease/lease';
import { FdbEntry, NeighborEntry, RouteEntry } from '../kernel/kernel';

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

/**
 * One neighbour, FDB entry and route per remote vxlan lease; never our own.
 * Two leases with one VtepMAC would fight over one FDB entry: the lower subnet wins
 * and the other is skipped with a reason (both nodes' traffic cannot be right).
 */
export function desiredState(self: SelfInfo, leases: Iterable<Lease>, config: NetworkConfig): DesiredState {
  const peers = new Map<string, PeerEntries>();
  const skipped: Array<{ subnet: string; reason: string }> = [];
  const macOwner = new Map<string, string>();
  const sorted = [...leases].sort((a, b) => a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen);
  for (const lease of sorted) {
    const subnet = formatCidr(lease.subnet);
    const reason = peerSkipReason(self, lease, config);
    if (reason !== undefined) {
      if (reason !== 'own lease') skipped.push({ subnet, reason });
      continue;
    }
    const mac = lease.vtepMAC as string;
    const owner = macOwner.get(mac);
    if (owner !== undefined) {
      skipped.push({ subnet, reason: `VtepMAC ${mac} is already used by ${owner}` });
      continue;
    }
    macOwner.set(mac, subnet);
    peers.set(subnet, peerEntries({ ...lease, vtepMAC: mac }));
  }
  return { peers, skipped };
}
