import { describe, expect, it } from 'vitest';
import { encodeLeaseValue, subnetKey } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { CompactedError, LeaseEvent } from '../../src/lease/store';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { StoreUnavailableError } from '../../src/util/errors';
import { leaseStoreContract } from '../helpers/lease-store-contract';

leaseStoreContract('MemoryLeaseStore', async () => {
  const prefix = '/coreos.com/network';
  const store = new MemoryLeaseStore({ prefix });
  return {
    store,
    prefix,
    raw: {
      put: async (key, value, ttl) => void store.putRaw(key, value, ttl === undefined ? {} : { ttlSeconds: ttl }),
      del: async (key) => store.deleteRaw(key),
      compact: async () => store.compact(),
      leases: async () => store.leaseIds(),
    },
    cleanup: () => store.close(),
  };
});

const value = encodeLeaseValue({ publicIP: parseIPv4('10.65.0.5'), vni: 1, vtepMAC: '6e:d5:a3:cb:6a:6b' });
const subnet = parseCidr('10.7.5.0/24');
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('MemoryLeaseStore test helpers', () => {
  it('expires leases by the injected clock, with a delete event per key', async () => {
    let now = 1_000_000;
    const store = new MemoryLeaseStore({ now: () => now });
    const created = await store.create(subnet, value, 60);
    expect(created?.expiresAt).toBe(now + 60_000);
    const events: LeaseEvent[] = [];
    const ac = new AbortController();
    const done = store.watch(store.currentRevision + 1n, { onEvents: (e) => events.push(...e) }, ac.signal);
    now += 59_000;
    store.expireLeases();
    expect(await store.get(subnet)).toBeDefined();
    expect((await store.renew(created!.etcdLease)).ok).toBe(true);
    now += 60_001;
    store.expireLeases();
    await tick();
    expect(events.map((e) => e.type)).toEqual(['delete']);
    expect(await store.renew(created!.etcdLease)).toMatchObject({ ok: false });
    ac.abort();
    await done;
  });

  it('rejects every call while unavailable, and a watch reports one outage and catches up', async () => {
    const store = new MemoryLeaseStore();
    const seen: string[] = [];
    const ac = new AbortController();
    const done = store.watch(store.currentRevision + 1n, {
      onEvents: (evs) => seen.push(...evs.map((e) => e.type)),
      onDisconnected: () => seen.push('down'),
      onReconnected: () => seen.push('up'),
    }, ac.signal);
    store.setUnavailable(true);
    store.setUnavailable(true);
    await expect(store.list()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.create(subnet, value, 60)).rejects.toThrow(/failed to create lease .*10\.7\.5\.0-24 at memory/);
    store.putRaw(subnetKey('/coreos.com/network', subnet), value);
    await tick();
    expect(seen).toEqual(['down']);
    store.setUnavailable(false);
    await tick();
    expect(seen).toEqual(['down', 'up', 'put']);
    ac.abort();
    await done;
  });

  it('fails a disconnected watch with CompactedError when history it needs is compacted meanwhile', async () => {
    const store = new MemoryLeaseStore();
    const done = store.watch(store.currentRevision + 1n, { onEvents: () => undefined }, new AbortController().signal);
    store.setUnavailable(true);
    store.putRaw(subnetKey('/coreos.com/network', subnet), value);
    store.putRaw(subnetKey('/coreos.com/network', parseCidr('10.7.6.0/24')), value);
    store.compact();
    store.setUnavailable(false);
    await expect(done).rejects.toBeInstanceOf(CompactedError);
  });

  it('setConfig and deleteRaw write like another client', async () => {
    const store = new MemoryLeaseStore({ prefix: '/x/' });
    store.setConfig('{"Network":"10.7.0.0/16"}');
    expect(await store.getConfig()).toBe('{"Network":"10.7.0.0/16"}');
    store.putRaw(subnetKey('/x', subnet), value);
    store.deleteRaw(subnetKey('/x', subnet));
    expect((await store.list()).records).toEqual([]);
  });
});
