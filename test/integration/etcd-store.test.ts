import { createServer, Server, Socket } from 'node:net';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeLeaseValue, subnetsPrefix } from '../../src/lease/codec';
import { EtcdLeaseStore, etcdClientOptions } from '../../src/lease/etcd-store';
import { LeaseEvent } from '../../src/lease/store';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { EtcdProcess, startEtcd } from '../../src/testbed/etcd-process';
import { StoreUnavailableError, UsageError } from '../../src/util/errors';
import { silentLogger } from '../../src/util/log';
import { leaseStoreContract } from '../helpers/lease-store-contract';
import { sharedEtcd } from '../helpers/shared-etcd';

const shared = sharedEtcd();
let prefixSeq = 0;

function need<T>(v: T | undefined): T {
  if (v === undefined) throw new Error('etcd did not start');
  return v;
}

const value = (ip: string): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: '6e:d5:a3:cb:6a:6b' });

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

leaseStoreContract('EtcdLeaseStore', async () => {
  const client = shared.admin();
  const prefix = `/t${++prefixSeq}/coreos.com/network`;
  const store = new EtcdLeaseStore({ endpoints: [shared.etcd().endpoint], prefix, log: silentLogger() });
  return {
    store,
    prefix,
    raw: {
      put: async (key, v, ttl) => {
        if (ttl === undefined) await client.put(key).value(v);
        else await client.put(key).value(v).lease((await client.leaseClient.leaseGrant({ TTL: ttl })).ID);
      },
      del: async (key) => void (await client.delete().key(key)),
      compact: async () => {
        const rev = (await client.get('/').exec()).header.revision;
        await client.kv.compact({ revision: rev, physical: true });
      },
      leases: async () => (await client.leaseClient.leaseLeases()).leases.map((l) => l.ID),
    },
    cleanup: () => store.close(),
  };
});

describe('EtcdLeaseStore against a real etcd', () => {
  it('keeps watching across an etcd restart, reporting one outage and one recovery, and loses no event', async () => {
    const proc = shared.etcd();
    const prefix = '/restart/coreos.com/network';
    const dir = subnetsPrefix(prefix);
    const store = new EtcdLeaseStore({ endpoints: [proc.endpoint], prefix, log: silentLogger() });
    const events: LeaseEvent[] = [];
    let down = 0;
    let up = 0;
    const ac = new AbortController();
    try {
      const snap = await store.list();
      const done = store.watch(snap.revision + 1n, {
        onEvents: (evs) => events.push(...evs),
        onDisconnected: () => down++,
        onReconnected: () => up++,
      }, ac.signal);
      await shared.admin().put(`${dir}10.7.1.0-24`).value(value('10.65.0.1'));
      await until('the first event', () => events.length === 1);
      await proc.stop();
      await until('onDisconnected', () => down === 1);
      await new Promise((r) => setTimeout(r, 1_000));
      await proc.restart();
      const second = new Etcd3({ hosts: proc.endpoint });
      try {
        await second.put(`${dir}10.7.2.0-24`).value(value('10.65.0.2'));
        await second.delete().key(`${dir}10.7.1.0-24`);
      } finally {
        second.close();
      }
      await until('the events written after the restart', () => events.length === 3);
      await until('onReconnected', () => up === 1);
      expect(events.map((e) => e.type)).toEqual(['put', 'put', 'delete']);
      expect(down).toBe(1);
      expect(up).toBe(1);
      ac.abort();
      await done;
    } finally {
      ac.abort();
      await store.close();
    }
  }, 60_000);

  it('fails list() against a closed port with StoreUnavailableError naming the endpoint within 5 s', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
      });
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const store = new EtcdLeaseStore({ endpoints: [endpoint], prefix: '/coreos.com/network', log: silentLogger(), dialTimeoutMs: 2_000 });
    const started = Date.now();
    try {
      const err = await store.list().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toContain(`failed to list leases at ${endpoint}`);
      expect(Date.now() - started).toBeLessThan(5_000);
      await expect(store.create(parseCidr('10.7.5.0/24'), value('10.65.0.5'), 60)).rejects.toThrow(StoreUnavailableError);
      await expect(store.renew('12345')).rejects.toThrow(`failed to renew etcd lease 12345 at ${endpoint}`);
      const ac = new AbortController();
      let down = 0;
      const done = store.watch(1n, { onEvents: () => undefined, onDisconnected: () => down++ }, ac.signal);
      await until('onDisconnected', () => down === 1);
      ac.abort();
      await done;
    } finally {
      await store.close();
    }
  });

  it('revokes the granted etcd lease when the create transaction fails', async () => {
    const client = shared.admin();
    const store = new EtcdLeaseStore({ endpoints: [shared.etcd().endpoint], prefix: '/oversize/coreos.com/network', log: silentLogger() });
    try {
      const before = (await client.leaseClient.leaseLeases()).leases.map((l) => l.ID).sort();
      // Over etcd's 1.5 MiB request limit: the grant succeeds, the transaction is refused.
      const huge = 'x'.repeat(1_600_000);
      const err = await store.create(parseCidr('10.7.5.0/24'), huge, 60).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toMatch(/^failed to create lease \/oversize\/coreos.com\/network\/subnets\/10.7.5.0-24 at .*: .*request is too large/);
      expect((await client.leaseClient.leaseLeases()).leases.map((l) => l.ID).sort()).toEqual(before);
    } finally {
      await store.close();
    }
  });

  it('gives up on a server that accepts connections but never answers, by the call deadline', async () => {
    const sockets: Socket[] = [];
    const srv: Server = createServer((s) => sockets.push(s));
    const port = await new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));
    const endpoint = `http://127.0.0.1:${port}`;
    const store = new EtcdLeaseStore({ endpoints: [endpoint], prefix: '/coreos.com/network', log: silentLogger(), dialTimeoutMs: 500 });
    const started = Date.now();
    try {
      await expect(store.getConfig()).rejects.toThrow(`failed to read network config /coreos.com/network/config at ${endpoint}`);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await store.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    }
  });

  it('names the flag of an unreadable TLS file', () => {
    const call = (): unknown => etcdClientOptions({ endpoints: ['https://127.0.0.1:2379'], tls: { caFile: '/nonexistent/ca.pem' } });
    expect(call).toThrow(UsageError);
    expect(call).toThrow('failed to read --etcd-cafile /nonexistent/ca.pem: ENOENT');
  });
});

describe('EtcdLeaseStore with etcd username/password auth', () => {
  const password = 'Sup3r-s3cret-pa55';
  let authEtcd: EtcdProcess | undefined;

  beforeAll(async () => {
    authEtcd = await startEtcd();
    const root = new Etcd3({ hosts: authEtcd.endpoint });
    try {
      await root.role('root').create();
      await root.user('root').create(password);
      await root.user('root').addRole('root');
      await root.auth.authEnable();
    } finally {
      root.close();
    }
  });

  afterAll(async () => {
    await authEtcd?.cleanup();
  });

  it('works with the right password, including the watch stream', async () => {
    const endpoint = need(authEtcd).endpoint;
    const store = new EtcdLeaseStore({ endpoints: [endpoint], prefix: '/coreos.com/network', auth: { username: 'root', password }, log: silentLogger() });
    const ac = new AbortController();
    try {
      const snap = await store.list();
      const events: LeaseEvent[] = [];
      const done = store.watch(snap.revision + 1n, { onEvents: (evs) => events.push(...evs) }, ac.signal);
      const created = await store.create(parseCidr('10.7.5.0/24'), value('10.65.0.5'), 60);
      expect(created).toBeDefined();
      expect((await store.renew(created!.etcdLease)).ok).toBe(true);
      await until('the watch event', () => events.length === 1);
      ac.abort();
      await done;
    } finally {
      ac.abort();
      await store.close();
    }
  });

  it('reports a wrong password clearly and never shows a password', async () => {
    const endpoint = need(authEtcd).endpoint;
    const wrong = 'Wr0ng-pa55word-xyz';
    const bad = new EtcdLeaseStore({ endpoints: [endpoint], prefix: '/coreos.com/network', auth: { username: 'root', password: wrong }, log: silentLogger() });
    const anon = new EtcdLeaseStore({ endpoints: [endpoint], prefix: '/coreos.com/network', log: silentLogger() });
    try {
      const err = await bad.list().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toBe(`failed to list leases: etcd rejected the credentials for user root at ${endpoint}`);
      const anonErr = await anon.getConfig().then(() => undefined, (e: unknown) => e);
      expect(anonErr).toBeInstanceOf(StoreUnavailableError);
      for (const e of [err, anonErr]) {
        const text = `${String(e)} ${(e as Error).stack} ${String((e as Error).cause)} ${JSON.stringify(e)}`;
        expect(text).not.toContain(wrong);
        expect(text).not.toContain(password);
      }
    } finally {
      await bad.close();
      await anon.close();
    }
  });
});
