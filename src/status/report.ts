/**
 * The `flanneld-ts status` report: what `--json` prints, and what the table and
 * the brief line are rendered from. docs/status.schema.json documents the same
 * shape as a JSON Schema; change both together and bump the version on any
 * change that is not a pure addition.
 */

/**
 * Version of the `--json` document; scripts should check it. 2: IPv6 (issue 12) —
 * a valid IPv6-only lease has `subnet` null, dual-stack keys are decoded (state
 * `ignored` and `pool.ignored` are no longer produced), an IPv6-only config has
 * null IPv4 fields, and subnets/IPs in problems, peers and stale entries may be IPv6.
 */
export const STATUS_SCHEMA_VERSION = 2;

export type Severity = 'error' | 'warning';

export type ProblemKind =
  | 'config'
  | 'invalid-lease'
  | 'duplicate-public-ip'
  | 'duplicate-vtep-mac'
  | 'overlap'
  | 'outside-network'
  | 'wrong-length'
  | 'outside-range'
  | 'not-programmable'
  | 'expiring'
  | 'subnet-file'
  | 'own-lease'
  | 'device'
  | 'drift'
  | 'stale'
  | 'underlay'
  | 'mixed-family';

/** One finding. Errors make the exit code 1; warnings are shown but leave it 0. */
export interface Problem {
  readonly severity: Severity;
  readonly kind: ProblemKind;
  /** Subnets it concerns ("10.7.5.0/24", "fc00:0:0:5::/64"); empty for host-wide problems. */
  readonly subnets: readonly string[];
  /** Public IPs it concerns; empty when none. */
  readonly publicIPs: readonly string[];
  readonly message: string;
}

export interface ConfigReport {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  /** The IPv4 pool; null for an IPv6-only config. */
  readonly network: string | null;
  readonly subnetLen: number | null;
  readonly subnetMin: string | null;
  readonly subnetMax: string | null;
  /** The IPv6 pool; null unless EnableIPv6. */
  readonly ipv6: { readonly network: string; readonly subnetLen: number; readonly subnetMin: string; readonly subnetMax: string } | null;
  readonly backend: { readonly type: 'vxlan'; readonly vni: number; readonly port: number; readonly mtu: number };
}

export interface PoolReport {
  /** Subnets in SubnetMin..SubnetMax. */
  readonly capacity: number;
  /** Valid keys with an etcd lease (TTL). */
  readonly leased: number;
  /** Valid keys without an etcd lease. */
  readonly reserved: number;
  readonly invalid: number;
  /** Always 0 since schema 2 (dual-stack keys are decoded); kept for readers of schema 1. */
  readonly ignored: number;
  /** Distinct allocatable subnets held by any key, valid or not (what allocation skips). */
  readonly used: number;
  readonly free: number;
  /** used / capacity × 100, one decimal (0 when the capacity is 0: an IPv6-only config). */
  readonly usedPercent: number;
  /** The IPv6 pool's counts (IPv6SubnetMin..IPv6SubnetMax); null unless EnableIPv6. */
  readonly ipv6: Pool6Report | null;
}

export interface Pool6Report {
  /** Subnets in IPv6SubnetMin..IPv6SubnetMax (exact up to 2^53). */
  readonly capacity: number;
  /** Distinct allocatable IPv6 subnets held by any key, valid or not. */
  readonly used: number;
  readonly free: number;
  readonly usedPercent: number;
}

export type SubnetFileState = 'agrees' | 'absent' | 'unreadable' | 'unparsable' | 'no-lease' | 'disagrees';

export interface SelfReport {
  /** This host's public IP, or null when it could not be told (or the config is IPv6-only). */
  readonly publicIP: string | null;
  /** This host's public IPv6, when the config enables IPv6 and it could be told; else null. */
  readonly publicIPv6: string | null;
  /** The external interface (as the daemon would choose it), or null. */
  readonly interface: string | null;
  /** This node's lease subnet, or null when this host holds none (or only an IPv6 one). */
  readonly subnet: string | null;
  /** This node's IPv6 lease subnet, or null. */
  readonly subnet6: string | null;
  readonly matchedBy: 'subnet-file' | 'public-ip' | null;
  readonly subnetFile: {
    readonly path: string;
    readonly state: SubnetFileState;
    /** FLANNEL_SUBNET as a network (10.7.5.1/24 → 10.7.5.0/24), or null. */
    readonly subnet: string | null;
    /** FLANNEL_IPV6_SUBNET as a network (fc00:0:0:5::1/64 → fc00:0:0:5::/64), or null. */
    readonly subnet6: string | null;
    readonly detail: string | null;
  };
  /** Why publicIP/interface are null, or null. */
  readonly note: string | null;
}

export interface LeaseRow {
  readonly key: string;
  /** The key's IPv4 subnet; null for a key without one (a bad key, or an IPv6-only lease `0.0.0.0-0&…`). */
  readonly subnet: string | null;
  /** The IPv6 subnet of an `&` key, else null. */
  readonly subnet6: string | null;
  readonly state: 'valid' | 'invalid' | 'ignored';
  readonly own: boolean;
  /** PublicIP; null for invalid rows and IPv6-only leases. */
  readonly publicIP: string | null;
  readonly vtepMAC: string | null;
  /** PublicIPv6 and BackendV6Data.VtepMAC of a valid dual-stack or IPv6-only lease, else null. */
  readonly publicIPv6: string | null;
  readonly vtepMAC6: string | null;
  readonly backendType: string | null;
  readonly vni: number | null;
  /** etcd lease ID (decimal), null for a reservation or an invalid key. */
  readonly etcdLease: string | null;
  readonly reservation: boolean;
  /** ISO time, null for reservations and when unknown. */
  readonly expiresAt: string | null;
  readonly expiresInSeconds: number | null;
  /** Why the row is invalid or ignored, else null. */
  readonly reason: string | null;
}

/** "ok", "missing", or what is wrong ("wrong mac 6e:…", "not permanent"). */
export type EntryState = string;

export interface PeerRow {
  readonly subnet: string;
  readonly publicIP: string;
  readonly vtepMAC: string | null;
  /** False when this host does not program the lease (skipReason says why); the entries are then null. */
  readonly programmed: boolean;
  readonly skipReason: string | null;
  /** How this host reaches the peer: `direct` (DirectRouting: one route via its PublicIP) or `vxlan`; null when not programmed. */
  readonly mode: 'direct' | 'vxlan' | null;
  readonly route: EntryState | null;
  readonly neighbor: EntryState | null;
  readonly fdb: EntryState | null;
}

export interface StaleEntry {
  readonly kind: 'route' | 'neighbor' | 'fdb';
  /** In iproute2 words: "route 10.9.9.0/24 via 0.0.0.0". */
  readonly entry: string;
  /** The route's destination or the neighbour's address as a /32; null for FDB entries. */
  readonly subnet: string | null;
  /** The FDB entry's dst; null for routes and neighbours. */
  readonly publicIP: string | null;
}

export interface DeviceCheck {
  readonly name: 'exists' | 'vni' | 'port' | 'learning' | 'local' | 'underlay' | 'mtu' | 'address' | 'up';
  /** "ok", "missing", "wrong <have>" or "unknown" (nothing to compare with). */
  readonly state: string;
  readonly have: string | null;
  readonly want: string | null;
}

export interface DeviceReport {
  readonly name: string;
  readonly present: boolean;
  readonly checks: readonly DeviceCheck[];
  /** deviceMismatch(): why the daemon would delete and recreate this device; "" when it would keep it, null when unknown. */
  readonly replaceReason: string | null;
}

export interface KernelReport {
  readonly state: 'checked' | 'skipped';
  readonly skipReason: string | null;
  readonly device: DeviceReport | null;
  readonly peers: readonly PeerRow[];
  /** Entries on the device that no lease explains, in iproute2 words. */
  readonly stale: readonly StaleEntry[];
}

export interface StatusReport {
  readonly schemaVersion: typeof STATUS_SCHEMA_VERSION;
  readonly generatedAt: string;
  readonly healthy: boolean;
  /** 0 healthy, 1 errors found (2 and 3 never reach a report). */
  readonly exitCode: 0 | 1;
  readonly etcd: { readonly endpoints: readonly string[]; readonly prefix: string; readonly revision: string };
  readonly filter: { readonly subnet: string | null; readonly publicIP: string | null };
  /** null when the config is missing or invalid (a `config` problem says which). */
  readonly config: ConfigReport | null;
  readonly pool: PoolReport | null;
  readonly self: SelfReport;
  readonly leases: readonly LeaseRow[];
  readonly kernel: KernelReport;
  readonly problems: readonly Problem[];
}
