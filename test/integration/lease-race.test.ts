/**
 * The lost-create-race path of acquireLease (lease-manager.ts), driven
 * deterministically against a real etcd: a store wrapper lets a rival node
 * (a second EtcdLeaseStore) create the chosen key just before our create(),
 * so the real transaction genuinely loses.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { encodeLeaseValue, subnetsPrefix } from '../../src/lease/codec';
import { EtcdLeaseStore } from '../../src/lease/etcd-store';
import { acquireLease } from '../../src/lease/lease-manager';
import { CreatedLease, LeaseStore } from '../../src/lease/store';
import { Cidr, formatCidr, parseIPv4 } from '../../src/net/ipv4';
import { StoreUnavailableError } from '../../src/util/errors';
import { createLogger, silentLogger } from '../../src/util/log';
import { sharedEtcd } from '../helpers/shared-etcd';

const shared = sharedEtcd();
let seq = 0;

const CONFIG = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const OUR_IP = '10.65.154.11';
const RIVAL_IP = '10.65.154.12';
const leaseValue = (ip: string, mac: string): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });

/** `inner`, except that the first `losses` create() calls are beaten by `rival`, which creates the same key first. */
function losingStore(inner: LeaseStore, rival: LeaseStore, losses: number): { store: LeaseStore; lost: Cidr[] } {
  const lost: Cidr[] = [];
  const store: LeaseStore = {
    getConfig: () => inner.getConfig(),
    list: () => inner.list(),
    get: (subnet) => inner.get(subnet),
    watch: (from, handlers, signal) => inner.watch(from, handlers, signal),
    async create(subnet: Cidr, value: string, ttlSeconds: number): Promise<CreatedLease | undefined> {
      if (lost.length < losses) {
        const theirs = await rival.create(subnet, leaseValue(RIVAL_IP, '02:00:00:00:00:12'), ttlSeconds);
        if (!theirs) throw new Error(`the rival could not create ${formatCidr(subnet)}`);
        lost.push(subnet);
      }
      return inner.create(subnet, value, ttlSeconds);
    },
    update: (subnet, value, modRevision, etcdLease) => inner.update(subnet, value, modRevision, etcdLease),
    renew: (etcdLease) => inner.renew(etcdLease),
    rewrite: (subnet, value, etcdLease) => inner.rewrite(subnet, value, etcdLease),
    deleteIfValue: (subnet, value, etcdLease) => inner.deleteIfValue(subnet, value, etcdLease),
    revoke: (etcdLease) => inner.revoke(etcdLease),
    close: () => inner.close(),
  };
  return { store, lost };
}

function logLines(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

async function setup(losses: number): Promise<{ store: LeaseStore; lost: Cidr[]; prefix: string; close: () => Promise<void> }> {
  const { endpoint } = shared.etcd();
  const prefix = `/race${++seq}/coreos.com/network`;
  const ours = new EtcdLeaseStore({ endpoints: [endpoint], prefix, log: silentLogger() });
  const rival = new EtcdLeaseStore({ endpoints: [endpoint], prefix, log: silentLogger() });
  const { store, lost } = losingStore(ours, rival, losses);
  return { store, lost, prefix, close: async () => void (await Promise.all([ours.close(), rival.close()])) };
}

/** Every etcd lease etcd holds. */
async function grantedLeases(): Promise<string[]> {
  return (await shared.admin().leaseClient.leaseLeases()).leases.map((l) => l.ID).sort();
}

/** The etcd leases the keys under `prefix` are attached to. */
async function attachedLeases(prefix: string): Promise<string[]> {
  const kvs = (await shared.admin().getAll().prefix(subnetsPrefix(prefix)).exec()).kvs;
  return kvs.map((kv) => kv.lease).filter((l) => l !== '0').sort();
}

describe('acquireLease when create() loses a race (real etcd)', () => {
  it('chooses again: a different subnet, one log line per loss, no leaked etcd lease', async () => {
    const { store, lost, prefix, close } = await setup(2);
    const { log, lines } = logLines();
    try {
      const before = await grantedLeases();
      const own = await acquireLease({ store, config: CONFIG, publicIP: parseIPv4(OUR_IP), vtepMAC: '02:00:00:00:00:11', previous: undefined, ttlSeconds: 60, rand: Math.random, log });
      expect(lost).toHaveLength(2);
      for (const l of lost) expect(formatCidr(own.subnet)).not.toBe(formatCidr(l));
      const msgs = lines.map((l) => String((JSON.parse(l) as { msg: string }).msg));
      expect(msgs).toEqual([
        ...lost.map((l) => `subnet ${formatCidr(l)} was taken by another node meanwhile; choosing again`),
        `acquired lease ${formatCidr(own.subnet)}`,
      ]);
      // Three keys (two rivals, ours), each on its own etcd lease; the two leases our losing creates granted are revoked.
      const attached = await attachedLeases(prefix);
      expect(attached).toHaveLength(3);
      expect(attached).toContain(own.etcdLease);
      expect((await grantedLeases()).filter((id) => !before.includes(id))).toEqual(attached);
    } finally {
      await close();
    }
  }, 30_000);

  it('gives up after the retry limit with an error naming the network, and leaks no etcd lease', async () => {
    const { store, lost, prefix, close } = await setup(Number.MAX_SAFE_INTEGER);
    const { log } = logLines();
    try {
      const before = await grantedLeases();
      const err = await acquireLease({ store, config: CONFIG, publicIP: parseIPv4(OUR_IP), vtepMAC: '02:00:00:00:00:11', previous: undefined, ttlSeconds: 60, rand: Math.random, log }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toBe('failed to acquire a subnet lease in 10.7.0.0/16: lost 10 races in a row');
      expect(lost).toHaveLength(10);
      const attached = await attachedLeases(prefix);
      // Only the rivals' ten leases exist; none of ours.
      expect(attached).toHaveLength(10);
      expect((await grantedLeases()).filter((id) => !before.includes(id))).toEqual(attached);
      const keys = (await shared.admin().getAll().prefix(subnetsPrefix(prefix)).strings());
      expect(Object.values(keys).every((v) => v.includes(RIVAL_IP))).toBe(true);
    } finally {
      await close();
    }
  }, 30_000);
});
