/**
 * Lease policy (contract §3, §11): which subnet(s) this node takes, and keeping them.
 * Only raw store calls go through `LeaseStore`; every decision is here.
 *
 * Both families are one lease (one key, one value). The IPv4 half follows
 * flanneld; the IPv6 half differs where flanneld's is broken (contract §11):
 * - IPv6-only: our lease is recognised by PublicIPv6 (flanneld compares PublicIP,
 *   0.0.0.0 on every IPv6-only node, so each new node re-puts the first one's key);
 * - the previous IPv6 subnet (FLANNEL_IPV6_SUBNET) is reused when free, IPv6-only too;
 * - a lease of ours dropped for a family change (EnableIPv6 toggled) hands its
 *   IPv4 subnet on as the previous one, where flanneld draws a new random one.
 */
import { NetworkConfig, subnet6FitsConfig, subnetFitsConfig } from '../config';
import { Cidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { Cidr6, cidr6Equals, formatCidr6, formatIPv6 } from '../net/ipv6';
import { OutOfSubnetsError, StoreUnavailableError } from '../util/errors';
import { Logger } from '../util/log';
import { allocateSubnet, allocateSubnet6 } from './allocate';
import { encodeLeaseValue, leaseAt, leaseAttrsOf, leaseName, recordSubnet, recordSubnet6 } from './codec';
import { Lease, LeaseAt, LeaseRecord, LeaseSubnets } from './lease';
import { LeaseStore } from './store';

/** The lease this node holds. `subnet` is 0.0.0.0/0 for an IPv6-only lease; `subnet6` is set when IPv6 is enabled. */
export interface OwnLease extends LeaseSubnets {
  readonly subnet: Cidr;
  readonly subnet6?: Cidr6 | undefined;
  /** The exact value we wrote (or adopted). */
  readonly value: string;
  /** etcd lease ID; undefined for a reservation (a key with no TTL), which is never renewed. */
  readonly etcdLease: string | undefined;
  /** Unix ms; undefined for a reservation. */
  readonly expiresAt: number | undefined;
  /**
   * The store revision this holding is known from: the put that created the key,
   * or the list that showed it to be ours. A watch event or list at or before it
   * describes an earlier holding (e.g. the delete of a lease that expired while
   * etcd was unreachable, delivered after the lease was re-acquired).
   */
  readonly since: bigint;
}

/** This node's IPv6 half: needed when the config enables IPv6. */
export interface OwnV6 {
  readonly publicIP: bigint;
  /** flannel-v6.<VNI>'s MAC. */
  readonly vtepMAC: string;
  /** From FLANNEL_IPV6_SUBNET of the last run, or the IPv6 subnet we held before losing it. */
  readonly previous: Cidr6 | undefined;
}

export interface AcquireOptions {
  readonly store: LeaseStore;
  readonly config: NetworkConfig;
  /** Our PublicIP; ignored (written 0.0.0.0) when the config is IPv6-only. */
  readonly publicIP: number;
  /** flannel.<VNI>'s MAC; ignored when the config is IPv6-only. */
  readonly vtepMAC: string;
  /** From the subnet file of the last run, or the subnet we held before losing it. */
  readonly previous: Cidr | undefined;
  /** Required when `config.enableIPv6`. */
  readonly v6?: OwnV6 | undefined;
  readonly ttlSeconds: number;
  readonly rand: () => number;
  readonly log: Logger;
}

/** A create that loses a race is retried on a fresh list this many times. */
const MAX_ATTEMPTS = 10;

/** The value this node writes: flanneld's bytes for the enabled families. */
export function ownLeaseValue(opts: Pick<AcquireOptions, 'config' | 'publicIP' | 'vtepMAC' | 'v6'>): string {
  const { config } = opts;
  const vni = config.backend.vni;
  const v6 = config.enableIPv6 ? requireV6(opts) : undefined;
  return encodeLeaseValue({
    publicIP: config.enableIPv4 ? opts.publicIP : 0,
    vni,
    vtepMAC: config.enableIPv4 ? opts.vtepMAC : undefined,
    v6: v6 && { publicIP: v6.publicIP, vni, vtepMAC: v6.vtepMAC },
  });
}

function requireV6(opts: Pick<AcquireOptions, 'v6'>): OwnV6 {
  if (!opts.v6) throw new Error('the config enables IPv6 but no public IPv6 and flannel-v6 MAC were given');
  return opts.v6;
}

/** Names the pool(s) for errors: "10.7.0.0/16", "10.7.0.0/16 and fc00::/48" or "fc00::/48". */
function poolName(config: NetworkConfig): string {
  const v6 = config.ipv6 && formatCidr6(config.ipv6.network);
  if (!config.enableIPv4) return v6 ?? '(no network)';
  return v6 ? `${formatCidr(config.network)} and ${v6}` : formatCidr(config.network);
}

/**
 * Acquires a lease: (1) an existing one of ours that fits the config, (2) the
 * previous subnet(s) where free, (3) a random free one per family. Never
 * overwrites a key another node holds: every write is a transaction on absence
 * or on mod revision.
 */
export async function acquireLease(opts: AcquireOptions): Promise<OwnLease> {
  const value = ownLeaseValue(opts);
  const { config } = opts;
  let previous = opts.previous;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const { records, revision } = await opts.store.list();
    const own = await reuseOwn(opts, records, value, revision);
    if (own === 'retry') continue;
    if (own !== undefined && 'value' in own) return own;
    if (own !== undefined) {
      // A lease of ours dropped for not fitting: its IPv4 subnet is the next best previous one. List again without it.
      previous ??= own.dropped;
      continue;
    }
    const at = chooseFree(opts, records, previous);
    if (typeof at === 'string') throw new OutOfSubnetsError(at);
    const created = await opts.store.create(leaseAt(at.key.subnet, at.key.subnet6), value, opts.ttlSeconds);
    const name = leaseName(at.key);
    if (created) {
      opts.log.info({ subnet: name, reused: at.reused }, `acquired lease ${name}`);
      return { ...at.key, value, etcdLease: created.etcdLease, expiresAt: created.expiresAt, since: created.revision };
    }
    opts.log.info({ subnet: name }, `subnet ${name} was taken by another node meanwhile; choosing again`);
  }
  throw new StoreUnavailableError(`failed to acquire a subnet lease in ${poolName(config)}: lost ${MAX_ATTEMPTS} races in a row`);
}

/** The free subnet(s) to create, per enabled family, or the pool name when a family is full. */
function chooseFree(opts: AcquireOptions, records: readonly LeaseRecord[], previous: Cidr | undefined): { key: LeaseSubnets; reused: boolean } | string {
  const { config, rand } = opts;
  let subnet: Cidr = { ip: 0, prefixLen: 0 };
  let reused = false;
  if (config.enableIPv4) {
    const taken = records.map(recordSubnet).filter((s): s is Cidr => s !== undefined);
    const prevFree = previous !== undefined && subnetFitsConfig(config, previous) && !taken.some((t) => cidrEquals(t, previous));
    const chosen = prevFree ? previous : allocateSubnet(config, taken, rand);
    if (!chosen) return formatCidr(config.network);
    subnet = chosen;
    reused = prevFree;
  }
  if (!config.ipv6) return { key: { subnet }, reused };
  const taken6 = records.map(recordSubnet6).filter((s): s is Cidr6 => s !== undefined);
  const prev6 = requireV6(opts).previous;
  const prev6Free = prev6 !== undefined && subnet6FitsConfig(config, prev6) && !taken6.some((t) => cidr6Equals(t, prev6));
  const subnet6 = prev6Free ? prev6 : allocateSubnet6(config.ipv6, taken6, rand);
  if (!subnet6) return formatCidr6(config.ipv6.network);
  return { key: { subnet, subnet6 }, reused: reused || prev6Free };
}

/** Is `lease` this node's? By PublicIP (flanneld's rule), or by PublicIPv6 when the config is IPv6-only. */
function isOurs(opts: Pick<AcquireOptions, 'config' | 'publicIP' | 'v6'>, lease: Lease): boolean {
  if (opts.config.enableIPv4) return lease.hasIPv4 !== false && lease.publicIP === opts.publicIP;
  const ip6 = opts.v6?.publicIP;
  return ip6 !== undefined && lease.v6?.publicIP === ip6;
}

/** Both halves fit the config, and the lease has an IPv6 half exactly when the config enables IPv6 (flannel: isIPv6SubnetConfigCompat). */
function fitsConfig(config: NetworkConfig, lease: Lease): boolean {
  const v4ok = config.enableIPv4 ? lease.hasIPv4 !== false && subnetFitsConfig(config, lease.subnet) : lease.hasIPv4 === false;
  const v6ok = config.enableIPv6 ? lease.v6 !== undefined && subnet6FitsConfig(config, lease.v6.subnet) : lease.v6 === undefined;
  return v4ok && v6ok;
}

const atOf = (lease: Lease): LeaseAt => leaseAt(lease.subnet, lease.v6?.subnet);

async function reuseOwn(opts: AcquireOptions, records: readonly LeaseRecord[], value: string, listed: bigint): Promise<OwnLease | { dropped: Cidr | undefined } | undefined | 'retry'> {
  const prev = opts.previous;
  const prev6 = opts.v6?.previous;
  const mine = records.filter((r): r is Extract<LeaseRecord, { kind: 'lease' }> => r.kind === 'lease' && isOurs(opts, r.lease)).map((r) => r.lease);
  // Prefer the previous subnet(s) when several leases carry our IP.
  const isPrev = (l: Lease): number =>
    Number(prev !== undefined && l.hasIPv4 !== false && cidrEquals(l.subnet, prev)) + Number(prev6 !== undefined && l.v6 !== undefined && cidr6Equals(l.v6.subnet, prev6));
  mine.sort((a, b) => isPrev(b) - isPrev(a));
  let dropped: Cidr | undefined;
  for (const lease of mine) {
    if (!fitsConfig(opts.config, lease)) {
      const name = leaseName(atOf(lease));
      opts.log.warn({ subnet: name }, `removing lease ${name} of this node: it does not fit the network config`);
      const deleted = await opts.store.deleteIfValue(atOf(lease), encodeLeaseValue(leaseAttrsOf(lease)), lease.etcdLease);
      if (deleted && lease.hasIPv4 !== false) dropped ??= lease.subnet;
      continue;
    }
    return adopt(opts, lease, value, listed);
  }
  return dropped === undefined ? undefined : { dropped };
}

async function adopt(opts: AcquireOptions, lease: Lease, value: string, listed: bigint): Promise<OwnLease | 'retry'> {
  const at = atOf(lease);
  const name = leaseName(at);
  const own = { subnet: lease.subnet, subnet6: lease.v6?.subnet };
  const sameValue = encodeLeaseValue(leaseAttrsOf(lease)) === value && lease.backendType === 'vxlan';
  if (!sameValue) {
    const ok = await opts.store.update(at, value, lease.modRevision ?? '0', lease.etcdLease);
    if (!ok) return 'retry';
  }
  const who = opts.config.enableIPv4 ? formatIPv4(opts.publicIP) : formatIPv6(opts.v6?.publicIP ?? 0n);
  if (lease.etcdLease === undefined) {
    opts.log.info({ subnet: name }, `using reservation ${name} for ${who}`);
    return { ...own, value, etcdLease: undefined, expiresAt: undefined, since: listed };
  }
  const renewed = await opts.store.renew(lease.etcdLease);
  if (!renewed.ok) return 'retry';
  opts.log.info({ subnet: name }, `reusing lease ${name} held by ${who}`);
  return { ...own, value, etcdLease: lease.etcdLease, expiresAt: renewed.expiresAt, since: listed };
}

/**
 * When to renew: `marginMs` before expiry, but never later than half the TTL
 * (a short test TTL with the default 60-minute margin would otherwise renew in a loop).
 */
export function renewAt(expiresAt: number, ttlMs: number, marginMs: number): number {
  return expiresAt - Math.max(Math.min(marginMs, ttlMs / 2), 0);
}

/** Is this record (from a list or a watch event) still our lease? Compares the value we wrote. */
export function isOwnRecord(record: LeaseRecord | undefined, value: string): boolean {
  return record?.kind === 'lease' && encodeLeaseValue(leaseAttrsOf(record.lease)) === value && record.lease.backendType === 'vxlan';
}
