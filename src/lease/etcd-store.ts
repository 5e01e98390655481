/**
 * `LeaseStore` over etcd v3 (contract §1, §6); the only importer of `etcd3`.
 *
 * The watch and lease renewal use etcd3's raw gRPC clients rather than its
 * `Watcher`/`Lease` helpers, because in etcd3@1.1.2:
 * - a compacted watch surfaces only as `EtcdError("Watcher canceled: ")` with
 *   the compact revision dropped (the raw response carries `compact_revision`);
 * - the `Watcher` resumes after a reconnect from the last response header's
 *   revision + 1, and a catch-up watch's `created` header already carries the
 *   current revision, so events still in flight at a disconnect would be
 *   skipped; we resume after the last event's mod revision instead;
 * - `Lease` cannot adopt an existing lease ID, and we renew explicitly.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCResourceExhastedError,
  IDuplexStream,
  IEvent,
  IKeyValue,
  ILeaseKeepAliveRequest,
  ILeaseKeepAliveResponse,
  IOptions,
  IWatchRequest,
  IWatchResponse,
  Range,
} from 'etcd3';
import { systemClock } from '../util/clock';
import { FlannelError, StoreUnavailableError, UsageError, errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { backoffDelay } from '../util/retry';
import { configKey, createGuards, decodeLease, leaseKeyAt, parseSubnetKeyName, subnetsPrefix } from './codec';
import { LeaseAt, LeaseRecord } from './lease';
import { CompactedError, CreatedLease, LeaseEvent, LeaseSnapshot, LeaseStore, RenewResult, WatchHandlers } from './store';

export interface EtcdStoreOptions {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly tls?: { readonly keyFile?: string; readonly certFile?: string; readonly caFile?: string };
  readonly auth?: { readonly username: string; readonly password: string };
  /** Deadline for each unary etcd call (etcd3 ignores its own `dialTimeout`); default 5000. */
  readonly dialTimeoutMs?: number;
  readonly log: Logger;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const WATCH_BACKOFF = { initialMs: 200, maxMs: 5_000 };
/**
 * The lease list is read in pages of at most this many keys, at one revision,
 * and no answer may exceed MAX_RECEIVE_BYTES: junk values (etcd takes up to
 * 1.5 MiB each by default) cannot push a listing past gRPC's limit. A page that
 * is still too large is asked again with half the keys; a single value too large
 * to receive becomes an invalid lease named by its key.
 */
const LIST_PAGE_KEYS = 500;
const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;
// Enough to read a thousand leases' TTLs in a few round trips without flooding etcd.
const EXPIRY_CALLS_IN_FLIGHT = 32;

function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`failed to read ${flag} ${path}: ${code ?? errorMessage(err)}`);
  }
}

/** Builds the etcd3 client options: TLS files read here (errors name the flag), per-call deadlines, keepalive pings. */
export function etcdClientOptions(opts: Pick<EtcdStoreOptions, 'endpoints' | 'tls' | 'auth' | 'dialTimeoutMs'>): IOptions {
  if (opts.endpoints.length === 0) throw new UsageError('--etcd-endpoints is empty');
  for (const ep of opts.endpoints) {
    if (!/^https?:\/\/[^/]+$/.test(ep)) throw new UsageError(`invalid --etcd-endpoints entry ${JSON.stringify(ep)}: want http(s)://host:port`);
  }
  const secure = opts.endpoints.filter((ep) => ep.startsWith('https://')).length;
  if (secure !== 0 && secure !== opts.endpoints.length) throw new UsageError('--etcd-endpoints mixes http:// and https:// endpoints');
  const { keyFile, certFile, caFile } = opts.tls ?? {};
  if (Boolean(keyFile) !== Boolean(certFile)) throw new UsageError('--etcd-keyfile and --etcd-certfile must be given together');
  const timeout = opts.dialTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const options: IOptions = {
    hosts: [...opts.endpoints],
    // Streams (watch, keepalive) carry their own deadlines or none; unary calls must never hang.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    grpcOptions: {
      // Detects a silently dead peer under a long-lived watch; etcd permits pings every 5 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    },
  };
  if (caFile || keyFile) {
    options.credentials = {
      // Client certs without --etcd-cafile verify the server against the system roots.
      rootCertificate: caFile ? readFlagFile('--etcd-cafile', caFile) : Buffer.from(rootCertificates.join('\n')),
      ...(keyFile && certFile ? { privateKey: readFlagFile('--etcd-keyfile', keyFile), certChain: readFlagFile('--etcd-certfile', certFile) } : {}),
    };
  }
  if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
  return options;
}

type WatchEnd = { kind: 'aborted' } | { kind: 'compacted'; revision: bigint } | { kind: 'error'; err: unknown };

/** The etcd-backed lease store. All etcd failures reject with `StoreUnavailableError` naming the endpoints. */
export class EtcdLeaseStore implements LeaseStore {
  private readonly client: Etcd3;
  private readonly log: Logger;
  private readonly where: string;
  private readonly prefix: string;
  private readonly subnets: string;
  private readonly callTimeoutMs: number;

  constructor(private readonly opts: EtcdStoreOptions) {
    this.client = new Etcd3(etcdClientOptions(opts));
    this.log = opts.log;
    this.where = opts.endpoints.join(',');
    this.prefix = opts.prefix;
    this.subnets = subnetsPrefix(opts.prefix);
    this.callTimeoutMs = opts.dialTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  async getConfig(): Promise<string | undefined> {
    const key = configKey(this.prefix);
    const res = await this.call(`read network config ${key}`, () => this.client.get(key).exec());
    return res.kvs[0]?.value.toString();
  }

  async list(): Promise<LeaseSnapshot> {
    const { start, end } = Range.prefix(this.subnets);
    const records: LeaseRecord[] = [];
    let key = start;
    let revision: string | undefined;
    let limit = LIST_PAGE_KEYS;
    for (;;) {
      const at = revision;
      let res;
      try {
        res = await this.client.kv.range({ key, range_end: end, limit, ...(at === undefined ? {} : { revision: at }) });
      } catch (err) {
        if (!(err instanceof GRPCResourceExhastedError)) throw this.fail('list leases', err);
        if (limit > 1) {
          limit = Math.max(1, limit >> 1);
          continue;
        }
        // One value alone is over the limit: name its key, skip it.
        const only = await this.call('list leases', () => this.client.kv.range({ key, range_end: end, limit: 1, keys_only: true, ...(at === undefined ? {} : { revision: at }) }));
        const kv = only.kvs[0];
        if (!kv) throw this.fail('list leases', err);
        revision ??= only.header.revision;
        records.push(this.tooLarge(kv));
        key = Buffer.concat([kv.key, Buffer.from([0])]);
        continue;
      }
      revision ??= res.header.revision;
      records.push(...res.kvs.map((kv) => this.decode(kv)));
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || !last) break;
      key = Buffer.concat([last.key, Buffer.from([0])]);
      limit = LIST_PAGE_KEYS;
    }
    return { records, revision: BigInt(revision) };
  }

  private tooLarge(kv: IKeyValue): LeaseRecord {
    const key = kv.key.toString();
    const record = decodeLease(key, key.slice(this.subnets.length), '');
    const reason = `value is larger than ${MAX_RECEIVE_BYTES / (1024 * 1024)} MiB (too large to read)`;
    return { kind: 'invalid', key, invalid: { key, reason, subnet: record.kind === 'invalid' ? record.invalid.subnet : record.kind === 'lease' ? record.lease.subnet : record.subnet } };
  }

  /** One `LeaseTimeToLive` call per distinct lease, at most EXPIRY_CALLS_IN_FLIGHT at a time. */
  async leaseExpiries(etcdLeases: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const ids = [...new Set(etcdLeases)];
    for (let i = 0; i < ids.length; i += EXPIRY_CALLS_IN_FLIGHT) {
      await Promise.all(
        ids.slice(i, i + EXPIRY_CALLS_IN_FLIGHT).map(async (id) => {
          const asked = Date.now();
          let ttl: number;
          try {
            const res = await this.client.leaseClient.leaseTimeToLive({ ID: id });
            ttl = Number(res.TTL);
          } catch (err) {
            if (err instanceof EtcdLeaseInvalidError) return;
            throw this.fail(`read the TTL of etcd lease ${id}`, err);
          }
          // etcd answers TTL -1 for a lease it no longer has.
          if (ttl >= 0) out.set(id, asked + ttl * 1000);
        }),
      );
    }
    return out;
  }

  async get(at: LeaseAt): Promise<LeaseRecord | undefined> {
    const key = leaseKeyAt(this.prefix, at);
    const res = await this.call(`read lease ${key}`, () => this.client.get(key).exec());
    const kv = res.kvs[0];
    return kv ? this.decode(kv) : undefined;
  }

  async create(at: LeaseAt, value: string, ttlSeconds: number): Promise<CreatedLease | undefined> {
    const key = leaseKeyAt(this.prefix, at);
    const guards = createGuards(this.prefix, at);
    const started = Date.now();
    const grant = await this.call(`grant an etcd lease for ${key}`, () => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    // Until the put commits, this lease is ours to revoke on every path (lost race, error, ambiguous outcome).
    let orphan: string | undefined = grant.ID;
    try {
      const res = await this.call(`create lease ${key}`, () =>
        this.client.kv.txn({
          // Version 0 over a range holds when no key in it exists (etcd compares an empty range against a zero key).
          compare: [{ key }, ...guards].map((g) => ({
            key: Buffer.from(g.key),
            ...('rangeEnd' in g && g.rangeEnd !== undefined ? { range_end: Buffer.from(g.rangeEnd) } : {}),
            target: 'Version' as const,
            result: 'Equal' as const,
            version: 0,
          })),
          success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: grant.ID } }],
        }),
      );
      if (!res.succeeded) return undefined;
      orphan = undefined;
      return { etcdLease: grant.ID, expiresAt: started + Number(grant.TTL) * 1000, revision: BigInt(res.header.revision) };
    } finally {
      if (orphan !== undefined) await this.revokeOrphan(orphan, key);
    }
  }

  async update(at: LeaseAt, value: string, modRevision: string, etcdLease: string | undefined): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    try {
      const res = await this.client.kv.txn({
        compare: [{ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: modRevision }],
        success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: etcdLease ?? '0' } }],
      });
      return res.succeeded;
    } catch (err) {
      // A vanished etcd lease took its keys with it: the key is gone, as far as the caller is concerned.
      if (err instanceof EtcdLeaseInvalidError) return false;
      throw this.fail(`update lease ${key}`, err);
    }
  }

  async rewrite(at: LeaseAt, value: string, etcdLease: string | undefined): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    const bytes = Buffer.from(value);
    try {
      const res = await this.client.kv.txn({
        compare: [{ key: Buffer.from(key), target: 'Value', result: 'Equal', value: bytes }],
        success: [{ request_put: { key: Buffer.from(key), value: bytes, lease: etcdLease ?? '0' } }],
      });
      return res.succeeded;
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) return false;
      throw this.fail(`rewrite lease ${key}`, err);
    }
  }

  async renew(etcdLease: string): Promise<RenewResult> {
    const started = Date.now();
    const verb = `renew etcd lease ${etcdLease}`;
    let stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
    try {
      const s = await this.client.leaseClient.leaseKeepAlive({ deadline: started + this.callTimeoutMs });
      stream = s;
      const res = await new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
        s.on('data', resolve);
        s.on('error', reject);
        s.on('end', () => reject(new Error('keepalive stream ended without an answer')));
        s.write({ ID: etcdLease });
      });
      // etcd answers TTL 0 for a lease it no longer has (expired or revoked).
      if (Number(res.TTL) <= 0) return { ok: false, reason: `etcd lease ${etcdLease} no longer exists (expired or revoked)` };
      return { ok: true, expiresAt: started + Number(res.TTL) * 1000 };
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) return { ok: false, reason: `etcd lease ${etcdLease} no longer exists` };
      throw this.fail(verb, err);
    } finally {
      stream?.end();
      stream?.cancel();
    }
  }

  async deleteIfValue(at: LeaseAt, value: string, etcdLease?: string): Promise<boolean> {
    const key = leaseKeyAt(this.prefix, at);
    const res = await this.call(`delete lease ${key}`, () =>
      this.client.kv.txn({
        compare: [{ key: Buffer.from(key), target: 'Value', result: 'Equal', value: Buffer.from(value) }],
        success: [{ request_delete_range: { key: Buffer.from(key) } }],
      }),
    );
    if (etcdLease !== undefined) await this.revoke(etcdLease);
    return res.succeeded;
  }

  async revoke(etcdLease: string): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: etcdLease });
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) return;
      throw this.fail(`revoke etcd lease ${etcdLease}`, err);
    }
  }

  async watch(fromRevision: bigint, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
    let next = fromRevision;
    let outage = false;
    let attempt = 0;
    const sink = {
      created: (): void => {
        attempt = 0;
        if (!outage) return;
        outage = false;
        // The daemon logs the recovery (handlers.onReconnected): one line per state change.
        this.log.debug({ fromRevision: String(next) }, `lease watch re-established at ${this.where}`);
        handlers.onReconnected?.();
      },
      response: (res: IWatchResponse): void => {
        const events = res.events.map((ev) => this.toEvent(ev));
        for (const ev of events) if (ev.revision >= next) next = ev.revision + 1n;
        // A progress notification (no events) promises nothing at or below header.revision is still to come.
        if (events.length === 0 && BigInt(res.header.revision) >= next) next = BigInt(res.header.revision) + 1n;
        if (events.length === 0) return;
        try {
          handlers.onEvents(events);
        } catch (err) {
          this.log.error({ err }, 'lease watch handler threw');
        }
      },
    };
    while (!signal.aborted) {
      const end = await this.watchOnce(next, signal, sink);
      if (end.kind === 'aborted' || signal.aborted) return;
      if (end.kind === 'compacted') throw new CompactedError(end.revision);
      if (!outage) {
        outage = true;
        const err = this.fail('watch leases', end.err);
        this.log.debug({ err: err.message }, 'lease watch interrupted; reconnecting with backoff');
        handlers.onDisconnected?.(err);
      }
      try {
        await systemClock.sleep(backoffDelay(WATCH_BACKOFF, attempt++, Math.random), signal);
      } catch {
        return;
      }
    }
  }

  async close(): Promise<void> {
    this.client.close();
  }

  /** One watch stream from `start` until it ends; reports how it ended. */
  private async watchOnce(
    start: bigint,
    signal: AbortSignal,
    sink: { created(): void; response(res: IWatchResponse): void },
  ): Promise<WatchEnd> {
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.client.watchClient.watch();
    } catch (err) {
      return { kind: 'error', err };
    }
    const range = Range.prefix(this.subnets);
    return new Promise<WatchEnd>((resolve) => {
      let done = false;
      const finish = (end: WatchEnd): void => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        // end() first: etcd3 marks the host failed on errors of still-writable streams, and our cancel is not a failure.
        stream.end();
        stream.cancel();
        resolve(end);
      };
      const onAbort = (): void => finish({ kind: 'aborted' });
      stream.on('error', (err) => finish({ kind: 'error', err }));
      stream.on('end', () => finish({ kind: 'error', err: new Error('the watch stream ended') }));
      stream.on('data', (res) => {
        if (done) return;
        if (BigInt(res.compact_revision || '0') > 0n) return finish({ kind: 'compacted', revision: BigInt(res.compact_revision) });
        if (res.canceled) return finish({ kind: 'error', err: new Error(`etcd canceled the watch: ${res.cancel_reason || 'no reason given'}`) });
        if (res.created) return sink.created();
        sink.response(res);
      });
      if (signal.aborted) return finish({ kind: 'aborted' });
      signal.addEventListener('abort', onAbort, { once: true });
      stream.write({
        create_request: { key: range.start, range_end: range.end, start_revision: start.toString(), progress_notify: true },
      });
    });
  }

  private toEvent(ev: IEvent): LeaseEvent {
    const key = ev.kv.key.toString();
    const revision = BigInt(ev.kv.mod_revision);
    if (String(ev.type).toUpperCase() !== 'DELETE') return { type: 'put', record: this.decode(ev.kv), revision };
    const parsed = parseSubnetKeyName(key.slice(this.subnets.length));
    return { type: 'delete', key, subnet: parsed.kind === 'bad' ? undefined : parsed.subnet, revision };
  }

  private decode(kv: IKeyValue): LeaseRecord {
    const key = kv.key.toString();
    return decodeLease(key, key.slice(this.subnets.length), kv.value, {
      etcdLease: kv.lease === '0' ? undefined : kv.lease,
      modRevision: kv.mod_revision,
      createRevision: kv.create_revision,
    });
  }

  private async revokeOrphan(id: string, key: string): Promise<void> {
    try {
      await this.revoke(id);
    } catch (err) {
      // Nothing else holds this ID; etcd drops it when its TTL runs out.
      this.log.warn({ err: errorMessage(err), etcdLease: id }, `failed to revoke unused etcd lease ${id} for ${key}; it expires by TTL`);
    }
  }

  private async call<T>(verb: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.fail(verb, err);
    }
  }

  private fail(verb: string, err: unknown): FlannelError {
    if (err instanceof FlannelError) return err;
    const user = this.opts.auth?.username;
    if (err instanceof EtcdAuthenticationFailedError) {
      return new StoreUnavailableError(`failed to ${verb}: etcd rejected the credentials for user ${user} at ${this.where}`, { cause: err });
    }
    if (err instanceof EtcdPermissionDeniedError) {
      const who = user === undefined ? 'an unauthenticated client' : `user ${user}`;
      return new StoreUnavailableError(`failed to ${verb}: etcd denied permission to ${who} at ${this.where}`, { cause: err });
    }
    // grpc/OpenSSL causes can span lines and end in a "Resolution note"; an operator gets one line.
    const cause = this.scrub(errorMessage(err)).replace(/\s+/g, ' ').replace(/\s*Resolution note:\s*$/, '').trim();
    return new StoreUnavailableError(`failed to ${verb} at ${this.where}: ${cause}`, { cause: err });
  }

  /** etcd never echoes the password, but a cause text is not ours to trust with it. */
  private scrub(text: string): string {
    const pw = this.opts.auth?.password;
    // Very short passwords would mangle ordinary words; they cannot be told apart from them anyway.
    return pw && pw.length >= 4 ? text.split(pw).join('[redacted]') : text;
  }
}
