/** The lease model: what one node holds in etcd. */
import { Cidr } from '../net/ipv4';
import { Cidr6 } from '../net/ipv6';

/** A decoded, valid lease. */
export interface Lease {
  readonly subnet: Cidr;
  /** The node's public IP: FDB dst and VXLAN local on every peer. */
  readonly publicIP: number;
  /** `vxlan` for us and for flannel's VXLAN nodes; peers of other types are not programmed. */
  readonly backendType: string;
  readonly vni: number;
  /** Canonical lowercase MAC, or undefined if the backend data had none. */
  readonly vtepMAC: string | undefined;
  /** etcd lease ID (decimal string) or undefined for a reservation (no TTL). */
  readonly etcdLease?: string | undefined;
  /** Unix ms of expiry, when known (status shows it). */
  readonly expiresAt?: number | undefined;
  /** etcd mod revision of the key (for compare-and-swap). */
  readonly modRevision?: string | undefined;
  /** etcd create revision of the key: the older lease keeps a VtepMAC two leases claim. */
  readonly createRevision?: string | undefined;
  /**
   * False for an IPv6-only lease (key `0.0.0.0-0&…`, contract §11): `subnet` is
   * then 0.0.0.0/0, `publicIP` 0 and there is no IPv4 backend data. Absent = true.
   */
  readonly hasIPv4?: boolean | undefined;
  /** The IPv6 half of a dual-stack or IPv6-only lease (`&` key, PublicIPv6, BackendV6Data). */
  readonly v6?: LeaseV6 | undefined;
}

/** The IPv6 half of a lease: flannel-v6.<VNI>'s FDB dst and VXLAN local, and its MAC. */
export interface LeaseV6 {
  readonly subnet: Cidr6;
  /** PublicIPv6; undefined when the value holds `null`. */
  readonly publicIP: bigint | undefined;
  /** BackendV6Data.VNI. */
  readonly vni: number;
  /** BackendV6Data.VtepMAC, canonical lowercase, or undefined when absent. */
  readonly vtepMAC: string | undefined;
}

/**
 * What names one lease key: the IPv4 subnet (0.0.0.0/0 for an IPv6-only lease)
 * and, for an `&` key, the IPv6 subnet. A bare `Cidr` names an IPv4-only key.
 */
export interface LeaseSubnets {
  readonly subnet: Cidr;
  readonly subnet6?: Cidr6 | undefined;
}

/** Where a store call writes: an IPv4-only key's subnet, or both subnets of an `&` key. */
export type LeaseAt = Cidr | LeaseSubnets;

/** A key under `<prefix>/subnets/` whose key or value did not decode. Logged once, skipped, shown by status. */
export interface InvalidLease {
  readonly key: string;
  readonly reason: string;
  /** The IPv4 subnet the key holds (taken whatever the value), if the key names one. */
  readonly subnet?: Cidr | undefined;
  /** The IPv6 subnet an `&` key holds, if it parsed. */
  readonly subnet6?: Cidr6 | undefined;
}

/** One key under `<prefix>/subnets/`, decoded. */
export type LeaseRecord = { kind: 'lease'; key: string; lease: Lease } | { kind: 'invalid'; key: string; invalid: InvalidLease } | { kind: 'ignored'; key: string; reason: string; subnet?: Cidr | undefined };
