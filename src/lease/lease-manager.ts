/**
 * Lease policy (contract §3): which subnet this node takes, and keeping it.
 * Only raw store calls go through `LeaseStore`; every decision is here.
 */
import { NetworkConfig, subnetFitsConfig } from '../config';
import { Cidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { OutOfSubnetsError, StoreUnavailableError } from '../util/errors';
import { Logger } from '../util/log';
import { allocateSubnet } from './allocate';
import { encodeLeaseValue, recordSubnet } from './codec';
import { Lease, LeaseRecord } from './lease';
import { LeaseStore } from './store';

/** The lease this node holds. */
export interface OwnLease {
  readonly subnet: Cidr;
  /** The exact value we wrote (or adopted). */
  readonly value: string;
  /** etcd lease ID; undefined for a reservation (a key with no TTL), which is never renewed. */
  readonly etcdLease: string | undefined;
  /** Unix ms; undefined for a reservation. */
  readonly expiresAt: number | undefined;
  /**
   * Store revision of the list this lease was chosen from: a watch event for our
   * key at or below it happened before we (re)took the key and says nothing about it now.
   */
  readonly chosenAt?: bigint;
}

export interface AcquireOptions {
  readonly store: LeaseStore;
  readonly config: NetworkConfig;
  readonly publicIP: number;
  readonly vtepMAC: string;
  /** From the subnet file of the last run, or the subnet we held before losing it. */
  readonly previous: Cidr | undefined;
  readonly ttlSeconds: number;
  readonly rand: () => number;
  readonly log: Logger;
}

/** A create that loses a race is retried on a fresh list this many times. */
const MAX_ATTEMPTS = 10;

/**
 * Acquires a lease: (1) an existing one with our PublicIP that fits the config,
 * (2) the previous subnet if free, (3) a random free one. Never overwrites a key
 * another node holds: every write is a transaction on absence or on mod revision.
 */
export async function acquireLease(opts: AcquireOptions): Promise<OwnLease> {
  const value = encodeLeaseValue({ publicIP: opts.publicIP, vni: opts.config.backend.vni, vtepMAC: opts.vtepMAC });
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const { records, revision } = await opts.store.list();
    const own = await reuseOwn(opts, records, value);
    if (own === 'retry') continue;
    if (own) return { ...own, chosenAt: revision };
    const taken = records.map(recordSubnet).filter((s): s is Cidr => s !== undefined);
    const prev = opts.previous;
    const prevFree = prev && subnetFitsConfig(opts.config, prev) && !taken.some((t) => cidrEquals(t, prev));
    const subnet = prevFree ? prev : allocateSubnet(opts.config, taken, opts.rand);
    if (!subnet) throw new OutOfSubnetsError(formatCidr(opts.config.network));
    const created = await opts.store.create(subnet, value, opts.ttlSeconds);
    if (created) {
      opts.log.info({ subnet: formatCidr(subnet), reused: prevFree === true }, `acquired lease ${formatCidr(subnet)}`);
      return { subnet, value, etcdLease: created.etcdLease, expiresAt: created.expiresAt, chosenAt: revision };
    }
    opts.log.info({ subnet: formatCidr(subnet) }, `subnet ${formatCidr(subnet)} was taken by another node meanwhile; choosing again`);
  }
  throw new StoreUnavailableError(`failed to acquire a subnet lease in ${formatCidr(opts.config.network)}: lost ${MAX_ATTEMPTS} races in a row`);
}

async function reuseOwn(opts: AcquireOptions, records: readonly LeaseRecord[], value: string): Promise<OwnLease | undefined | 'retry'> {
  const mine = records
    .filter((r): r is Extract<LeaseRecord, { kind: 'lease' }> => r.kind === 'lease' && r.lease.publicIP === opts.publicIP)
    .map((r) => r.lease);
  // Prefer the previous subnet when several leases carry our IP.
  mine.sort((a, b) => Number(!!opts.previous && cidrEquals(b.subnet, opts.previous)) - Number(!!opts.previous && cidrEquals(a.subnet, opts.previous)));
  for (const lease of mine) {
    const name = formatCidr(lease.subnet);
    if (!subnetFitsConfig(opts.config, lease.subnet)) {
      opts.log.warn({ subnet: name }, `removing lease ${name} of this node: it does not fit the network config`);
      await opts.store.deleteIfValue(lease.subnet, encodeLeaseValue({ publicIP: lease.publicIP, vni: lease.vni, vtepMAC: lease.vtepMAC ?? '00:00:00:00:00:00' }), lease.etcdLease);
      continue;
    }
    return adopt(opts, lease, value);
  }
  return undefined;
}

async function adopt(opts: AcquireOptions, lease: Lease, value: string): Promise<OwnLease | 'retry'> {
  const name = formatCidr(lease.subnet);
  const sameValue = lease.vtepMAC === opts.vtepMAC && lease.backendType === 'vxlan' && lease.vni === opts.config.backend.vni;
  if (!sameValue) {
    const ok = await opts.store.update(lease.subnet, value, lease.modRevision ?? '0', lease.etcdLease);
    if (!ok) return 'retry';
  }
  if (lease.etcdLease === undefined) {
    opts.log.info({ subnet: name }, `using reservation ${name} for ${formatIPv4(opts.publicIP)}`);
    return { subnet: lease.subnet, value, etcdLease: undefined, expiresAt: undefined };
  }
  const renewed = await opts.store.renew(lease.etcdLease);
  if (!renewed.ok) return 'retry';
  opts.log.info({ subnet: name }, `reusing lease ${name} held by ${formatIPv4(opts.publicIP)}`);
  return { subnet: lease.subnet, value, etcdLease: lease.etcdLease, expiresAt: renewed.expiresAt };
}

/**
 * When to renew: `marginMs` before expiry, but never later than half the TTL
 * (a short test TTL with the default 60-minute margin would otherwise renew in a loop).
 */
export function renewAt(expiresAt: number, ttlMs: number, marginMs: number): number {
  return expiresAt - Math.max(Math.min(marginMs, ttlMs / 2), 0);
}

/** Is this record (from a list or a watch event) still our lease? */
export function isOwnRecord(record: LeaseRecord | undefined, publicIP: number, vtepMAC: string): boolean {
  return record?.kind === 'lease' && record.lease.publicIP === publicIP && record.lease.vtepMAC === vtepMAC;
}
