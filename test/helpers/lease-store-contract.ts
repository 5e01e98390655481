/**
 * The `LeaseStore` contract: one suite run against `MemoryLeaseStore` (unit)
 * and `EtcdLeaseStore` on a real etcd (integration), so the fake cannot drift
 * from the real thing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configKey, encodeLeaseValue, subnetKey, subnetsPrefix } from '../../src/lease/codec';
import { CompactedError, LeaseEvent, LeaseStore } from '../../src/lease/store';
import { formatCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';

/** Writes as another etcd client would, beside the store under test. */
export interface RawStoreAccess {
  /** Full key; `ttlSeconds` attaches a fresh etcd lease. */
  put(key: string, value: string, ttlSeconds?: number): Promise<void>;
  del(key: string): Promise<void>;
  /** Compacts history at the current revision. */
  compact(): Promise<void>;
  /** Live etcd lease IDs. */
  leases(): Promise<string[]>;
}

export interface ContractFixture {
  readonly store: LeaseStore;
  readonly raw: RawStoreAccess;
  /** The `--etcd-prefix` the store was made with. */
  readonly prefix: string;
  cleanup(): Promise<void>;
}

const TTL = 3600;
const valueFor = (ip: string, mac = '6e:d5:a3:cb:6a:6b'): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Registers the contract suite for one `LeaseStore` implementation; `setup` runs before each test. */
export function leaseStoreContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`LeaseStore contract: ${name}`, () => {
    let fx: ContractFixture;
    const watchers: AbortController[] = [];
    beforeEach(async () => {
      fx = await setup();
    });
    afterEach(async () => {
      for (const ac of watchers.splice(0)) ac.abort();
      await fx.cleanup();
    });

    const watchInto = (from: bigint): { events: LeaseEvent[]; done: Promise<void> } => {
      const ac = new AbortController();
      watchers.push(ac);
      const events: LeaseEvent[] = [];
      const done = fx.store.watch(from, { onEvents: (evs) => events.push(...evs) }, ac.signal);
      done.catch(() => undefined);
      return { events, done };
    };

    it('getConfig is undefined without a config key and returns the raw text when present', async () => {
      expect(await fx.store.getConfig()).toBeUndefined();
      const text = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
      await fx.raw.put(configKey(fx.prefix), text);
      expect(await fx.store.getConfig()).toBe(text);
    });

    it('list decodes valid and invalid records, dual-stack and IPv6-only too, and returns a revision', async () => {
      const dir = subnetsPrefix(fx.prefix);
      await fx.raw.put(`${dir}10.7.5.0-24`, valueFor('10.65.0.5'));
      await fx.raw.put(`${dir}10.7.6.0-24`, 'not json');
      await fx.raw.put(`${dir}10.7.7.0-24`, '{"PublicIP":"300.1.1.1","BackendType":"vxlan","BackendData":{"VtepMAC":"6e:d5:a3:cb:6a:6b"}}');
      await fx.raw.put(`${dir}10.7.8.0-24&fc00::-64`, encodeLeaseValue({ publicIP: parseIPv4('10.65.0.8'), vni: 1, vtepMAC: '6e:d5:a3:cb:6a:6b', v6: { publicIP: parseIPv6('fd65::8'), vni: 1, vtepMAC: '02:00:00:00:00:08' } }));
      await fx.raw.put(`${dir}0.0.0.0-0&fc00:0:0:9::-64`, encodeLeaseValue({ publicIP: 0, vni: 1, vtepMAC: undefined, v6: { publicIP: parseIPv6('fd65::9'), vni: 1, vtepMAC: '02:00:00:00:00:09' } }));
      await fx.raw.put(configKey(fx.prefix), '{}');
      const snap = await fx.store.list();
      expect(snap.revision).toBeGreaterThan(0n);
      const byKey = new Map(snap.records.map((r) => [r.key, r]));
      expect(byKey.size).toBe(5);
      const good = byKey.get(`${dir}10.7.5.0-24`);
      expect(good?.kind).toBe('lease');
      if (good?.kind === 'lease') {
        expect(formatCidr(good.lease.subnet)).toBe('10.7.5.0/24');
        expect(good.lease.publicIP).toBe(parseIPv4('10.65.0.5'));
        expect(good.lease.vtepMAC).toBe('6e:d5:a3:cb:6a:6b');
        expect(good.lease.etcdLease).toBeUndefined();
        expect(BigInt(good.lease.modRevision ?? '0')).toBeGreaterThan(0n);
      }
      expect(byKey.get(`${dir}10.7.6.0-24`)?.kind).toBe('invalid');
      expect(byKey.get(`${dir}10.7.7.0-24`)?.kind).toBe('invalid');
      const dual = byKey.get(`${dir}10.7.8.0-24&fc00::-64`);
      expect(dual?.kind === 'lease' && [formatCidr(dual.lease.subnet), dual.lease.v6?.publicIP, dual.lease.v6?.vtepMAC]).toEqual(['10.7.8.0/24', parseIPv6('fd65::8'), '02:00:00:00:00:08']);
      const v6only = byKey.get(`${dir}0.0.0.0-0&fc00:0:0:9::-64`);
      expect(v6only?.kind === 'lease' && [v6only.lease.hasIPv4, v6only.lease.v6?.publicIP]).toEqual([false, parseIPv6('fd65::9')]);
      await fx.raw.put(`${dir}10.7.9.0-24`, valueFor('10.65.0.9'));
      expect((await fx.store.list()).revision).toBeGreaterThan(snap.revision);
    });

    it('creates a key only while no key holds its IPv4 subnet (bare or &); addresses an & key in update, rewrite and delete', async () => {
      const at = { subnet: parseCidr('10.7.5.0/24'), subnet6: parseCidr6('fc00:0:0:5::/64') };
      const dual = encodeLeaseValue({ publicIP: parseIPv4('10.65.0.5'), vni: 1, vtepMAC: '6e:d5:a3:cb:6a:6b', v6: { publicIP: parseIPv6('fd65::5'), vni: 1, vtepMAC: '02:00:00:00:00:05' } });
      const leasesBefore = await fx.raw.leases();
      await fx.raw.put(subnetKey(fx.prefix, at.subnet), valueFor('10.65.0.9'));
      expect(await fx.store.create(at, dual, TTL)).toBeUndefined();
      expect(await fx.raw.leases()).toEqual(leasesBefore);
      await fx.raw.del(subnetKey(fx.prefix, at.subnet));
      // Another & key of the same IPv4 subnet holds it too (flanneld would create both).
      await fx.raw.put(subnetKey(fx.prefix, at.subnet, parseCidr6('fc00:0:0:99::/64')), dual);
      expect(await fx.store.create(at, dual, TTL)).toBeUndefined();
      expect(await fx.store.create(at.subnet, valueFor('10.65.0.9'), TTL)).toBeUndefined();
      expect(await fx.raw.leases()).toEqual(leasesBefore);
      await fx.raw.del(subnetKey(fx.prefix, at.subnet, parseCidr6('fc00:0:0:99::/64')));
      // Neighbouring subnets' keys do not count (10.7.5.0-240 cannot exist; 10.7.50.0-24 sorts elsewhere).
      await fx.raw.put(subnetKey(fx.prefix, parseCidr('10.7.50.0/24'), parseCidr6('fc00:0:0:50::/64')), dual);
      const created = await fx.store.create(at, dual, TTL);
      expect(created).toBeDefined();
      expect(await fx.store.create(at, dual, TTL)).toBeUndefined();
      const rec = await fx.store.get(at);
      expect(rec?.key).toBe(`${subnetsPrefix(fx.prefix)}10.7.5.0-24&fc00:0:0:5::-64`);
      expect(rec?.kind === 'lease' && rec.lease.v6?.vtepMAC).toBe('02:00:00:00:00:05');
      expect(await fx.store.rewrite(at, dual, created?.etcdLease)).toBe(true);
      const moved = dual.replace('02:00:00:00:00:05', '02:00:00:00:00:06');
      expect(await fx.store.update(at, moved, (rec?.kind === 'lease' && rec.lease.modRevision) || '0', created?.etcdLease)).toBe(false);
      const now = await fx.store.get(at);
      expect(await fx.store.update(at, moved, (now?.kind === 'lease' && now.lease.modRevision) || '0', created?.etcdLease)).toBe(true);
      expect(await fx.store.deleteIfValue(at, dual)).toBe(false);
      expect(await fx.store.deleteIfValue(at, moved, created?.etcdLease)).toBe(true);
      expect(await fx.store.get(at)).toBeUndefined();
    });

    it('create succeeds once; a second create of the subnet returns undefined and leaks no etcd lease', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      const before = Date.now();
      const created = await fx.store.create(subnet, valueFor('10.65.0.5'), TTL);
      expect(created).toBeDefined();
      expect(created?.expiresAt).toBeGreaterThanOrEqual(before + TTL * 1000 - 1000);
      const rec = await fx.store.get(subnet);
      expect(rec?.kind === 'lease' && rec.lease.etcdLease).toBe(created?.etcdLease);
      expect(rec?.kind === 'lease' && rec.lease.modRevision).toBe(String(created?.revision)); // the revision of its own put
      const leasesBefore = await fx.raw.leases();
      expect(leasesBefore).toContain(created?.etcdLease);
      expect(await fx.store.create(subnet, valueFor('10.65.0.6'), TTL)).toBeUndefined();
      expect((await fx.raw.leases()).sort()).toEqual(leasesBefore.sort());
      const again = await fx.store.get(subnet);
      expect(again?.kind === 'lease' && again.lease.publicIP).toBe(parseIPv4('10.65.0.5'));
      expect(await fx.store.get(parseCidr('10.7.99.0/24'))).toBeUndefined();
    });

    it('renew extends a live lease; a revoked lease renews with ok:false and its key is gone', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      const created = await fx.store.create(subnet, valueFor('10.65.0.5'), TTL);
      if (!created) throw new Error('create failed');
      const renewed = await fx.store.renew(created.etcdLease);
      expect(renewed.ok).toBe(true);
      if (renewed.ok) expect(renewed.expiresAt).toBeGreaterThan(Date.now() + (TTL - 5) * 1000);
      await fx.store.revoke(created.etcdLease);
      await fx.store.revoke(created.etcdLease);
      const after = await fx.store.renew(created.etcdLease);
      expect(after.ok).toBe(false);
      expect(await fx.store.get(subnet)).toBeUndefined();
    });

    it('update rewrites only an unchanged key and keeps a reservation without a lease', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      await fx.raw.put(subnetKey(fx.prefix, subnet), valueFor('10.65.0.5'));
      const rec = await fx.store.get(subnet);
      if (rec?.kind !== 'lease') throw new Error('expected a lease record');
      const rev = rec.lease.modRevision ?? '0';
      expect(await fx.store.update(subnet, valueFor('10.65.0.5', 'aa:bb:cc:dd:ee:01'), rev, undefined)).toBe(true);
      expect(await fx.store.update(subnet, valueFor('10.65.0.5', 'aa:bb:cc:dd:ee:02'), rev, undefined)).toBe(false);
      const now = await fx.store.get(subnet);
      expect(now?.kind === 'lease' && now.lease.vtepMAC).toBe('aa:bb:cc:dd:ee:01');
      expect(now?.kind === 'lease' && now.lease.etcdLease).toBeUndefined();
      expect(await fx.store.update(parseCidr('10.7.6.0/24'), valueFor('10.65.0.6'), rev, undefined)).toBe(false);
    });

    it('rewrite puts our unchanged value again on the same etcd lease, and only while the key holds it', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      const value = valueFor('10.65.0.5');
      const created = await fx.store.create(subnet, value, TTL);
      if (!created) throw new Error('create failed');
      const before = await fx.store.get(subnet);
      const leasesBefore = (await fx.raw.leases()).sort();
      const { revision } = await fx.store.list();
      const w = watchInto(revision + 1n);
      expect(await fx.store.rewrite(subnet, value, created.etcdLease)).toBe(true);
      await until('the PUT of the rewrite', () => w.events.length === 1);
      const ev = w.events[0];
      expect(ev?.type === 'put' && ev.record.kind === 'lease' && ev.record.lease.etcdLease).toBe(created.etcdLease);
      const after = await fx.store.get(subnet);
      expect(after?.kind === 'lease' && after.lease.etcdLease).toBe(created.etcdLease);
      expect(BigInt(after?.kind === 'lease' ? after.lease.modRevision ?? '0' : '0')).toBeGreaterThan(BigInt(before?.kind === 'lease' ? before.lease.modRevision ?? '0' : '0'));
      expect((await fx.raw.leases()).sort()).toEqual(leasesBefore);
      // Another node's value, a reservation, a missing key.
      await fx.raw.put(subnetKey(fx.prefix, subnet), valueFor('10.65.0.9'));
      expect(await fx.store.rewrite(subnet, value, created.etcdLease)).toBe(false);
      const reserved = parseCidr('10.7.6.0/24');
      await fx.raw.put(subnetKey(fx.prefix, reserved), valueFor('10.65.0.6'));
      expect(await fx.store.rewrite(reserved, valueFor('10.65.0.6'), undefined)).toBe(true);
      const res = await fx.store.get(reserved);
      expect(res?.kind === 'lease' && res.lease.etcdLease).toBeUndefined();
      expect(await fx.store.rewrite(parseCidr('10.7.7.0/24'), valueFor('10.65.0.7'), undefined)).toBe(false);
    });

    it('watch delivers puts and deletes after the list revision', async () => {
      const dir = subnetsPrefix(fx.prefix);
      await fx.raw.put(`${dir}10.7.1.0-24`, valueFor('10.65.0.1'));
      const snap = await fx.store.list();
      // Written after the list but before the watch starts: must still arrive.
      await fx.raw.put(`${dir}10.7.2.0-24`, valueFor('10.65.0.2'));
      const w = watchInto(snap.revision + 1n);
      await fx.raw.del(`${dir}10.7.1.0-24`);
      await fx.raw.put(`${dir}bogus`, 'x');
      await fx.raw.put(configKey(fx.prefix), '{}');
      await until('three events', () => w.events.length >= 3);
      expect(w.events.map((e) => e.type)).toEqual(['put', 'delete', 'put']);
      const [put, del, bogus] = w.events;
      expect(put?.type === 'put' && put.record.kind === 'lease' && formatCidr(put.record.lease.subnet)).toBe('10.7.2.0/24');
      expect(del?.type === 'delete' && del.subnet && formatCidr(del.subnet)).toBe('10.7.1.0/24');
      expect(del?.type === 'delete' && del.key).toBe(`${dir}10.7.1.0-24`);
      expect(bogus?.type === 'put' && bogus.record.kind).toBe('invalid');
      for (const e of w.events) expect(e.revision).toBeGreaterThan(snap.revision);
      expect(put!.revision < del!.revision && del!.revision < bogus!.revision).toBe(true);
    });

    it('list and watch carry each key\'s create revision, kept across later puts', async () => {
      const dir = subnetsPrefix(fx.prefix);
      await fx.raw.put(`${dir}10.7.1.0-24`, valueFor('10.65.0.1'));
      await fx.raw.put(`${dir}10.7.2.0-24`, valueFor('10.65.0.2'));
      await fx.raw.put(`${dir}10.7.1.0-24`, valueFor('10.65.0.1', 'aa:bb:cc:dd:ee:01'));
      const snap = await fx.store.list();
      const created = new Map(snap.records.flatMap((r) => (r.kind === 'lease' ? [[formatCidr(r.lease.subnet), r.lease] as const] : [])));
      const first = created.get('10.7.1.0/24');
      const second = created.get('10.7.2.0/24');
      expect(BigInt(first?.createRevision ?? '0')).toBeGreaterThan(0n);
      expect(BigInt(first?.createRevision ?? '0')).toBeLessThan(BigInt(second?.createRevision ?? '0'));
      expect(BigInt(first?.modRevision ?? '0')).toBeGreaterThan(BigInt(second?.modRevision ?? '0'));
      const w = watchInto(snap.revision + 1n);
      await fx.raw.put(`${dir}10.7.2.0-24`, valueFor('10.65.0.2', 'aa:bb:cc:dd:ee:02'));
      await until('one event', () => w.events.length >= 1);
      const ev = w.events[0];
      expect(ev?.type === 'put' && ev.record.kind === 'lease' && ev.record.lease.createRevision).toBe(second?.createRevision);
    });

    it('list works whatever the value sizes: five 1 MB junk values are invalid leases beside the valid one', async () => {
      const dir = subnetsPrefix(fx.prefix);
      await fx.raw.put(`${dir}10.7.1.0-24`, valueFor('10.65.0.1'));
      for (let i = 0; i < 5; i++) await fx.raw.put(`${dir}10.7.${10 + i}.0-24`, 'x'.repeat(1_000_000));
      const snap = await fx.store.list();
      expect(snap.records.filter((r) => r.kind === 'lease')).toHaveLength(1);
      const invalid = snap.records.flatMap((r) => (r.kind === 'invalid' ? [r.invalid.reason] : []));
      expect(invalid).toEqual(Array(5).fill('value is 1000000 bytes (limit 65536)'));
    }, 30_000);

    it('list returns every key of a prefix larger than one page, at one revision', async () => {
      const dir = subnetsPrefix(fx.prefix);
      await Promise.all(Array.from({ length: 1100 }, (_, i) => fx.raw.put(`${dir}10.${70 + (i >> 8)}.${i & 255}.0-24`, valueFor('10.65.0.1'))));
      const snap = await fx.store.list();
      expect(snap.records).toHaveLength(1100);
      expect(new Set(snap.records.map((r) => r.key)).size).toBe(1100);
    }, 60_000);

    it('watch resolves when its signal aborts', async () => {
      const snap = await fx.store.list();
      const ac = new AbortController();
      const done = fx.store.watch(snap.revision + 1n, { onEvents: () => undefined }, ac.signal);
      await new Promise((r) => setTimeout(r, 50));
      ac.abort();
      await expect(done).resolves.toBeUndefined();
    });

    it('watch rejects with CompactedError when its start revision was compacted', async () => {
      const dir = subnetsPrefix(fx.prefix);
      const snap = await fx.store.list();
      await fx.raw.put(`${dir}10.7.1.0-24`, valueFor('10.65.0.1'));
      await fx.raw.put(`${dir}10.7.2.0-24`, valueFor('10.65.0.2'));
      await fx.raw.compact();
      const w = watchInto(snap.revision + 1n);
      const err = await w.done.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(CompactedError);
      expect((err as CompactedError).compactRevision).toBeGreaterThan(snap.revision + 1n);
    });

    it('deleteIfValue never deletes another value, and deletes and revokes a matching one', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      const mine = valueFor('10.65.0.5');
      const created = await fx.store.create(subnet, mine, TTL);
      if (!created) throw new Error('create failed');
      expect(await fx.store.deleteIfValue(subnet, valueFor('10.65.0.6'))).toBe(false);
      expect((await fx.store.get(subnet))?.kind).toBe('lease');
      expect(await fx.store.deleteIfValue(subnet, mine, created.etcdLease)).toBe(true);
      expect(await fx.store.get(subnet)).toBeUndefined();
      expect(await fx.raw.leases()).not.toContain(created.etcdLease);
      expect(await fx.store.deleteIfValue(subnet, mine)).toBe(false);
    });

    it('of two concurrent creates of one subnet exactly one wins, and only its lease remains', async () => {
      const subnet = parseCidr('10.7.5.0/24');
      const leasesBefore = await fx.raw.leases();
      const results = await Promise.all([fx.store.create(subnet, valueFor('10.65.0.1'), TTL), fx.store.create(subnet, valueFor('10.65.0.2'), TTL)]);
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(1);
      const winner = results[0] ? '10.65.0.1' : '10.65.0.2';
      const rec = await fx.store.get(subnet);
      expect(rec?.kind === 'lease' && rec.lease.publicIP).toBe(parseIPv4(winner));
      expect(rec?.kind === 'lease' && rec.lease.etcdLease).toBe(winners[0]?.etcdLease);
      expect((await fx.raw.leases()).sort()).toEqual([...leasesBefore, winners[0]?.etcdLease].sort());
    });
  });
}
