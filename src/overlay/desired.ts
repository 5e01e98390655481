/**
 * Desired kernel state: a pure function of our own lease, every other lease and
 * the config, for one address family at a time (STYLE: one code path, the
 * family a value). See reconciler.ts for the design note on the three entries
 * per peer. IPv4 entries go on flannel.<VNI> and come from the lease's IPv4
 * half (key, PublicIP, BackendData); IPv6 entries go on flannel-v6.<VNI> and
 * come from its IPv6 half (`&` key part, PublicIPv6, BackendV6Data; contract §11).
 */
import { NetworkConfig } from '../config';
import { AddressFamily, AnyCidr, IPV4, IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { Lease } from '../lease/lease';
import { FdbEntry, NeighborEntry, RouteEntry } from '../kernel/kernel';
import { LINK_LOCAL, LINK_LOCAL6, publicIPProblem, publicIPv6Problem, vtepMacProblem } from '../net/address-kind';
import { cidrContains } from '../net/ipv4';
import { cidr6Contains } from '../net/ipv6';

/** How a peer is reached: through flannel.<VNI>, or (DirectRouting) by a plain route via its PublicIP. */
export type PeerMode = 'vxlan' | 'direct';

/**
 * The entries one remote lease calls for: {neighbour, FDB, onlink route on
 * flannel.<VNI>} for a vxlan peer, {direct route} for a direct one. The plan
 * treats both alike (STYLE.md "Direct routes are peer entries too").
 */
export interface PeerEntries {
  readonly subnet: AnyCidr;
  readonly mode: PeerMode;
  /** vxlan peers only. */
  readonly neighbor?: NeighborEntry | undefined;
  /** vxlan peers only. */
  readonly fdb?: FdbEntry | undefined;
  readonly route: RouteEntry;
}

export interface DesiredState {
  /** Keyed by subnet text ("10.7.12.0/24", "fc00:0:0:c::/64"): one family's peers. */
  readonly peers: ReadonlyMap<string, PeerEntries>;
  /** Leases that are valid JSON but cannot be programmed, with why (shown by status, logged once). */
  readonly skipped: ReadonlyArray<{ readonly subnet: string; readonly reason: string }>;
}

/** This node in one family: its subnet, public IP and that family's device MAC. */
export interface SelfInfo {
  readonly subnet: AnyCidr;
  readonly publicIP: IpAddr;
  /** This node's VTEP MAC: no peer is ever programmed with it. */
  readonly vtepMAC?: string | undefined;
}

/** One family's half of a lease: what that family's device entries are made of. */
export interface LeaseHalf {
  readonly subnet: AnyCidr;
  /** PublicIP or PublicIPv6; undefined when the value holds `null`. */
  readonly publicIP: IpAddr | undefined;
  readonly vni: number;
  readonly vtepMAC: string | undefined;
}

/** The lease's half for `family`, or undefined when it has none (an IPv6-only lease has no IPv4 half, an IPv4-only one no IPv6 half). */
export function leaseHalf(lease: Lease, family: AddressFamily = IPV4): LeaseHalf | undefined {
  if (family.family === 6) return lease.v6;
  return lease.hasIPv4 === false ? undefined : lease;
}

/** The config's pool for `family`, or undefined when the config does not enable it. */
export function familyPool(config: NetworkConfig, family: AddressFamily = IPV4): { readonly network: AnyCidr; readonly subnetLen: number } | undefined {
  if (family.family === 6) return config.ipv6;
  return config.enableIPv4 === false ? undefined : config;
}

/** Subnet text of a lease's half, for keys, logs and status ("0.0.0.0/0" never appears for an IPv6 peer). */
export function halfSubnetText(lease: Lease, family: AddressFamily = IPV4): string {
  return formatAnyCidr(leaseHalf(lease, family)?.subnet ?? lease.subnet);
}

/** Subnet order: by address, then prefix length (either family, not mixed). */
export function compareCidr(a: AnyCidr, b: AnyCidr): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  return a.prefixLen - b.prefixLen;
}

function isLinkLocal(ip: IpAddr): boolean {
  return typeof ip === 'bigint' ? cidr6Contains(LINK_LOCAL6, ip) : cidrContains(LINK_LOCAL, ip);
}

/** Why a lease is not programmed as a peer of `family` ("no IPv6 half" when it has none), or undefined when it is. */
export function peerSkipReason(self: SelfInfo, lease: Lease, config: NetworkConfig, family: AddressFamily = IPV4): string | undefined {
  const half = leaseHalf(lease, family);
  const pool = familyPool(config, family);
  if (!half || !pool) return `no ${family.name} half`;
  const v6 = family.family === 6;
  if (self.subnet.prefixLen === half.subnet.prefixLen && self.subnet.ip === half.subnet.ip) return 'own lease';
  if (lease.backendType !== 'vxlan') return `backend type ${JSON.stringify(lease.backendType)} is not vxlan`;
  if (half.vtepMAC === undefined) return v6 ? 'no VtepMAC in BackendV6Data' : 'no VtepMAC';
  const networkName = v6 ? 'IPv6Network' : 'Network';
  if (typeof half.subnet.ip !== typeof pool.network.ip || !family.containsCidr(pool.network, half.subnet)) return `subnet is outside ${networkName} ${formatAnyCidr(pool.network)}`;
  if (half.subnet.prefixLen !== pool.subnetLen) return `subnet length is not /${pool.subnetLen}`;
  const ipName = v6 ? 'PublicIPv6' : 'PublicIP';
  if (half.publicIP === undefined) return `no ${ipName}`;
  if (half.publicIP === self.publicIP) return `${ipName} ${formatIp(half.publicIP)} is this node's own`;
  if (half.vni !== config.backend.vni) return `VNI ${half.vni} differs from ours (${config.backend.vni})`;
  const ownLinkLocal = typeof self.publicIP === typeof half.publicIP && isLinkLocal(self.publicIP);
  const ipProblem = typeof half.publicIP === 'bigint' ? publicIPv6Problem(half.publicIP, ownLinkLocal) : publicIPProblem(half.publicIP, ownLinkLocal);
  if (ipProblem !== undefined) return ipProblem;
  const macProblem = vtepMacProblem(half.vtepMAC);
  if (macProblem !== undefined) return macProblem;
  if (self.vtepMAC !== undefined && half.vtepMAC === self.vtepMAC) return `VtepMAC ${half.vtepMAC} is this node's own`;
  return undefined;
}

/**
 * A peer half's entries. VXLAN: neighbour → FDB → route (§5, §11), the gateway
 * is the subnet's network address. Direct: `ip [-6] route replace <subnet> via
 * <PublicIP|PublicIPv6> proto 152` (contract §12, with our own protocol for ownership).
 */
export function peerEntries(half: LeaseHalf & { readonly vtepMAC: string; readonly publicIP: IpAddr }, mode: PeerMode = 'vxlan'): PeerEntries {
  if (mode === 'direct') {
    return { subnet: half.subnet, mode, route: { kind: 'route', dst: half.subnet, gateway: half.publicIP, onlink: false, direct: true } };
  }
  const gw = half.subnet.ip;
  return {
    subnet: half.subnet,
    mode,
    neighbor: { kind: 'neighbor', ip: gw, mac: half.vtepMAC, permanent: true },
    fdb: { kind: 'fdb', mac: half.vtepMAC, dst: half.publicIP, permanent: true },
    route: { kind: 'route', dst: half.subnet, gateway: gw, onlink: true },
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
  return a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen || compareCidr(a.v6?.subnet ?? { ip: 0n, prefixLen: 0 }, b.v6?.subnet ?? { ip: 0n, prefixLen: 0 });
}

/**
 * What desiredState works out for one lease half that depends only on the
 * lease, our own lease, the config and the family. A caller that keeps a
 * LeaseMemo across calls (for one self, config and family) pays for these once
 * per lease value, so a lease event at 5,000 peers costs one lease's checks,
 * not 5,000 (issue 10).
 */
export interface LeaseVerdict {
  readonly reason: string | undefined;
  readonly subnet: string;
  /** The entries last built for this half (their `mode` says for which mode). */
  entries?: PeerEntries;
}
export type LeaseMemo = WeakMap<Lease, LeaseVerdict>;
