/**
 * The in-memory `LeaseStore` fake: etcd's revisions, leases with TTLs on an
 * injected clock, watch history with compaction, and an outage switch, so
 * the lease manager and reconciler are tested without etcd. The same contract
 * suite runs against this and `EtcdLeaseStore`.
 */
import { StoreUnavailableError } from '../util/errors';
import { configKey, createGuards, decodeLease, leaseKeyAt, parseSubnetKeyName, subnetsPrefix } from './codec';
import { LeaseAt, LeaseRecord } from './lease';
import { CompactedError, CreatedLease, LeaseEvent, LeaseSnapshot, LeaseStore, RenewResult, WatchHandlers } from './store';

interface Entry {
  readonly value: string;
  readonly lease: string | undefined;
  readonly modRevision: bigint;
  /** The revision that created the key (kept by later puts, as in etcd). */
  readonly createRevision: bigint;
}

interface Change {
  readonly key: string;
  /** undefined deletes the key. */
  readonly entry: { value: string; lease: string | undefined } | undefined;
}

interface HistoryEvent {
  readonly key: string;
  readonly entry: Entry | undefined;
  readonly revision: bigint;
}

interface ActiveWatch {
  next: bigint;
  disconnected: boolean;
  readonly handlers: WatchHandlers;
  readonly fail: (err: Error) => void;
}

export interface MemoryLeaseStoreOptions {
  /** Default `/coreos.com/network`. */
  readonly prefix?: string;
  /** Unix ms; drives lease expiry. Default `Date.now`. */
  readonly now?: () => number;
}

/** In-memory fake of etcd under one prefix. Leases expire by the injected clock (checked on every call). */
export class MemoryLeaseStore implements LeaseStore {
  private readonly prefix: string;
  private readonly subnets: string;
  private readonly now: () => number;
  private readonly kv = new Map<string, Entry>();
  private readonly leases = new Map<string, { ttlSeconds: number; expiresAt: number }>();
  private readonly watches = new Set<ActiveWatch>();
  private history: HistoryEvent[] = [];
  private revision = 1n;
  private compactRevision = 0n;
  private nextLeaseId = 7_000_000_000_000_000_001n;
  private unavailable = false;

  constructor(opts: MemoryLeaseStoreOptions = {}) {
    this.prefix = opts.prefix ?? '/coreos.com/network';
    this.subnets = subnetsPrefix(this.prefix);
    this.now = opts.now ?? Date.now;
  }

  async getConfig(): Promise<string | undefined> {
    this.check('read network config');
    return this.kv.get(configKey(this.prefix))?.value;
  }

  async list(): Promise<LeaseSnapshot> {
    this.check('list leases');
    const records: LeaseRecord[] = [];
    const keys = [...this.kv.keys()].filter((k) => k.startsWith(this.subnets)).sort();
    for (const key of keys) records.push(this.decode(key, this.kv.get(key) as Entry));
    return { records, revision: this.revision };
  }

  async leaseExpiries(etcdLeases: readonly string[]): Promise<Map<string, number>> {
    this.check('read etcd lease TTLs');
    const out = new Map<string, number>();
    for (const id of etcdLeases) {
      const lease = this.leases.get(id);
      if (lease) out.set(id, lease.expiresAt);
    }
    return out;
  }

  async get(at: LeaseAt): Promise<LeaseRecord | undefined> {
    const key = leaseKeyAt(this.prefix, at);
    this.check(`read lease ${key}`);
    const entry = this.kv.get(key);
    return entry ? this.decode(key, entry) : undefined;
  }

  async watch(fromRevision: bigint, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    if (fromRevision < this.compactRevision) throw new CompactedError(this.compactRevision);
    await new Promise<void>((resolve, reject) => {
      const w: ActiveWatch = {
        next: fromRevision,
        disconnected: false,
        handlers,
        fail: (err) => {
          stop();
          reject(err);
        },
      };
      const stop = (): void => {
        this.watches.delete(w);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        stop();
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.watches.add(w);
      if (this.unavailable) this.disconnect(w);
      else this.schedule(w);
    });
  }

  async create(at: LeaseAt, value: string, ttlSeconds: number): Promise<CreatedLease | undefined> {
    const key = leaseKeyAt(this.prefix, at);
    this.check(`create lease ${key}`);
    const held = (g: { key: string; rangeEnd?: string | undefined }): boolean =>
      g.rangeEnd === undefined ? this.kv.has(g.key) : [...this.kv.keys()].some((k) => k >= g.key && k < (g.rangeEnd as string));
    if (this.kv.has(key) || createGuards(this.prefix, at).some(held)) return undefined;
    const etcdLease = this.grant(ttlSeconds);
    this.commit([{ key, entry: { value, lease: etcdLease } }]);
    return { etcdLease, expiresAt: (this.leases.get(etcdLease) as { expiresAt: number }).expiresAt, revision: this.revision };
  }

  async update(at: LeaseAt, value: string, modRevision: string, etcdLease: string | undefined): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    this.check(`update lease ${key}`);
    const entry = this.kv.get(key);
    if ((entry?.modRevision ?? 0n) !== BigInt(modRevision)) return false;
    if (etcdLease !== undefined && !this.leases.has(etcdLease)) return false;
    this.commit([{ key, entry: { value, lease: etcdLease } }]);
    return true;
  }

  async rewrite(at: LeaseAt, value: string, etcdLease: string | undefined): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    this.check(`rewrite lease ${key}`);
    if (this.kv.get(key)?.value !== value) return false;
    if (etcdLease !== undefined && !this.leases.has(etcdLease)) return false;
    this.commit([{ key, entry: { value, lease: etcdLease } }]);
    return true;
  }

  async renew(etcdLease: string): Promise<RenewResult> {
    this.check(`renew etcd lease ${etcdLease}`);
    const lease = this.leases.get(etcdLease);
    if (!lease) return { ok: false, reason: `etcd lease ${etcdLease} no longer exists (expired or revoked)` };
    lease.expiresAt = this.now() + lease.ttlSeconds * 1000;
    return { ok: true, expiresAt: lease.expiresAt };
  }

  async deleteIfValue(at: LeaseAt, value: string, etcdLease?: string): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    this.check(`delete lease ${key}`);
    const matched = this.kv.get(key)?.value === value;
    if (matched) this.commit([{ key, entry: undefined }]);
    if (etcdLease !== undefined) this.dropLease(etcdLease);
    return matched;
  }

  async revoke(etcdLease: string): Promise<void> {
    this.check(`revoke etcd lease ${etcdLease}`);
    this.dropLease(etcdLease);
  }

  async close(): Promise<void> {
    for (const w of [...this.watches]) w.fail(new StoreUnavailableError('failed to watch leases at memory: store closed'));
  }

  // ---- test helpers ----

  /** Writes any key (full path) as another etcd client would; `ttlSeconds` attaches a fresh lease. Returns the lease ID, if any. */
  putRaw(key: string, value: string, opts: { ttlSeconds?: number; etcdLease?: string } = {}): string | undefined {
    const lease = opts.etcdLease ?? (opts.ttlSeconds !== undefined ? this.grant(opts.ttlSeconds) : undefined);
    this.commit([{ key, entry: { value, lease } }]);
    return lease;
  }

  deleteRaw(key: string): void {
    if (this.kv.has(key)) this.commit([{ key, entry: undefined }]);
  }

  setConfig(text: string): void {
    this.putRaw(configKey(this.prefix), text);
  }

  /** Drops every lease whose TTL ran out by the clock, with its keys (one revision per lease, as etcd does). */
  expireLeases(): void {
    const now = this.now();
    for (const [id, lease] of [...this.leases]) if (lease.expiresAt <= now) this.dropLease(id);
  }

  /** Forgets history before `revision` (default: the current one); watches from older revisions then fail. */
  compact(revision: bigint = this.revision): void {
    this.compactRevision = revision;
    this.history = this.history.filter((ev) => ev.revision >= revision);
  }

  /** While true every call rejects with `StoreUnavailableError` and watches report a disconnection. */
  setUnavailable(down: boolean): void {
    this.unavailable = down;
    for (const w of this.watches) {
      if (down) this.disconnect(w);
      else if (w.disconnected) {
        w.disconnected = false;
        w.handlers.onReconnected?.();
        this.schedule(w);
      }
    }
  }

  /** Live etcd lease IDs (after expiring those past their TTL). */
  leaseIds(): string[] {
    this.expireLeases();
    return [...this.leases.keys()];
  }

  get currentRevision(): bigint {
    return this.revision;
  }

  // ---- internals ----

  private check(verb: string): void {
    if (this.unavailable) throw new StoreUnavailableError(`failed to ${verb} at memory: store unavailable`);
    this.expireLeases();
  }

  private grant(ttlSeconds: number): string {
    const id = String(this.nextLeaseId++);
    this.leases.set(id, { ttlSeconds, expiresAt: this.now() + ttlSeconds * 1000 });
    return id;
  }

  private dropLease(id: string): void {
    if (!this.leases.delete(id)) return;
    const owned = [...this.kv].filter(([, e]) => e.lease === id).map(([key]) => ({ key, entry: undefined }));
    if (owned.length > 0) this.commit(owned);
  }

  /** Applies changes at one new revision (as one etcd txn does) and wakes the watches. */
  private commit(changes: readonly Change[]): void {
    const revision = ++this.revision;
    for (const { key, entry } of changes) {
      const stored = entry ? { value: entry.value, lease: entry.lease, modRevision: revision, createRevision: this.kv.get(key)?.createRevision ?? revision } : undefined;
      if (stored) this.kv.set(key, stored);
      else this.kv.delete(key);
      this.history.push({ key, entry: stored, revision });
    }
    for (const w of this.watches) this.schedule(w);
  }

  private disconnect(w: ActiveWatch): void {
    if (w.disconnected) return;
    w.disconnected = true;
    w.handlers.onDisconnected?.(new StoreUnavailableError('failed to watch leases at memory: store unavailable'));
  }

  /** Delivers pending events in a microtask, as etcd delivers them after the write returns. */
  private schedule(w: ActiveWatch): void {
    queueMicrotask(() => {
      if (!this.watches.has(w) || w.disconnected) return;
      if (w.next < this.compactRevision) return w.fail(new CompactedError(this.compactRevision));
      const events: LeaseEvent[] = [];
      for (const ev of this.history) {
        if (ev.revision < w.next || !ev.key.startsWith(this.subnets)) continue;
        events.push(this.toEvent(ev));
      }
      const last = this.history[this.history.length - 1];
      if (last && last.revision >= w.next) w.next = last.revision + 1n;
      if (events.length > 0) w.handlers.onEvents(events);
    });
  }

  private toEvent(ev: HistoryEvent): LeaseEvent {
    if (ev.entry) return { type: 'put', record: this.decode(ev.key, ev.entry), revision: ev.revision };
    const parsed = parseSubnetKeyName(ev.key.slice(this.subnets.length));
    return { type: 'delete', key: ev.key, subnet: parsed.kind === 'bad' ? undefined : parsed.subnet, revision: ev.revision };
  }

  private decode(key: string, entry: Entry): LeaseRecord {
    // Like EtcdLeaseStore: no expiresAt (a range read does not carry lease TTLs).
    return decodeLease(key, key.slice(this.subnets.length), entry.value, { etcdLease: entry.lease, modRevision: String(entry.modRevision), createRevision: String(entry.createRevision) });
  }
}
