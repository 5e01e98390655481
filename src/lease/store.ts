/**
 * The `LeaseStore` seam: the raw key/value calls flanneld-ts makes on etcd, with
 * no policy (which subnet to pick lives in allocate.ts / lease-manager.ts).
 * `EtcdLeaseStore` is the real one (the only importer of `etcd3`);
 * `MemoryLeaseStore` is the fake. One contract test suite runs against both.
 */
import { Cidr } from '../net/ipv4';
import { LeaseAt, LeaseRecord } from './lease';

export interface LeaseSnapshot {
  readonly records: LeaseRecord[];
  /** The store revision the list was read at; watch from revision + 1. */
  readonly revision: bigint;
}

export type LeaseEvent =
  | { readonly type: 'put'; readonly record: LeaseRecord; readonly revision: bigint }
  | { readonly type: 'delete'; readonly key: string; readonly subnet: Cidr | undefined; readonly revision: bigint };

export interface CreatedLease {
  /** etcd lease ID as a decimal string. */
  readonly etcdLease: string;
  /** Unix ms. */
  readonly expiresAt: number;
  /** The store revision of the put that created the key. */
  readonly revision: bigint;
}

export type RenewResult = { readonly ok: true; readonly expiresAt: number } | { readonly ok: false; readonly reason: string };

export interface WatchHandlers {
  onEvents(events: LeaseEvent[]): void;
  /** The watch stream was interrupted; it is being re-established. */
  onDisconnected?(err: Error): void;
  onReconnected?(): void;
}

export interface LeaseStore {
  /** Raw text at `<prefix>/config`, or undefined when the key does not exist. */
  getConfig(): Promise<string | undefined>;
  /** One range read of `<prefix>/subnets/`, with the revision it was read at. */
  list(): Promise<LeaseSnapshot>;
  /**
   * When each of these etcd leases expires (Unix ms); leases etcd no longer has
   * are absent from the map. One call per lease, so only `status` asks (the
   * daemon's list stays one range request). Optional: a store that cannot tell
   * leaves it out and status shows the expiry as unknown.
   */
  leaseExpiries?(etcdLeases: readonly string[]): Promise<Map<string, number>>;
  /** The decoded record at one subnet's key, or undefined when there is none. */
  get(at: LeaseAt): Promise<LeaseRecord | undefined>;
  /**
   * Watches `<prefix>/subnets/` from `fromRevision` (inclusive) until `signal`
   * aborts (then resolves). Reconnects by itself on transient errors, resuming
   * after the last revision seen. Rejects with `CompactedError` when the revision
   * it needs is compacted (the caller re-lists and watches again).
   */
  watch(fromRevision: bigint, handlers: WatchHandlers, signal: AbortSignal): Promise<void>;
  /**
   * Grants an etcd lease of `ttlSeconds`, then `if version(key) == 0 then put(key, value, lease)`;
   * no other key may hold its IPv4 subnet either (codec createGuards: the bare key and every `&` key of it).
   * Returns undefined (and revokes the granted lease) when the key exists.
   */
  create(at: LeaseAt, value: string, ttlSeconds: number): Promise<CreatedLease | undefined>;
  /**
   * Rewrites an existing key only if it is unchanged since `modRevision`
   * (`if mod_revision(key) == modRevision then put(key, value, lease)`); `etcdLease`
   * undefined writes with no lease (a reservation stays a reservation). False when
   * the key changed or vanished.
   */
  update(at: LeaseAt, value: string, modRevision: string, etcdLease: string | undefined): Promise<boolean>;
  /**
   * Writes our unchanged value again so that watchers learn it anew (flanneld
   * peers learn only from PUTs, contract §13): `if value(key) == value then
   * put(key, value, lease)`. `etcdLease` undefined writes with no lease (a
   * reservation stays one). False when the key holds another value, is gone, or
   * its etcd lease no longer exists.
   */
  rewrite(at: LeaseAt, value: string, etcdLease: string | undefined): Promise<boolean>;
  /** Keeps an etcd lease alive (resets its TTL). `ok: false` when the etcd lease no longer exists. */
  renew(etcdLease: string): Promise<RenewResult>;
  /** Deletes the key only if it still holds `value` (so another node's lease is never removed). Revokes `etcdLease` if given. */
  deleteIfValue(at: LeaseAt, value: string, etcdLease?: string): Promise<boolean>;
  /** Revokes an etcd lease (its keys vanish); a missing lease is success. */
  revoke(etcdLease: string): Promise<void>;
  close(): Promise<void>;
}

/** The watch revision was compacted away: re-list and diff. */
export class CompactedError extends Error {
  constructor(readonly compactRevision: bigint) {
    super(`watch revision compacted (oldest available ${compactRevision})`);
    this.name = 'CompactedError';
  }
}
