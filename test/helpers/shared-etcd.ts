/**
 * One real etcd (a loopback port of its own) for a whole test file or
 * describe, with an etcd3 admin client beside it for checking what the code
 * under test wrote. Tests share it: each should keep to its own key prefix.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll } from 'vitest';
import { EtcdProcess, startEtcd } from '../../src/testbed/etcd-process';

export interface SharedEtcd {
  /** The etcd process; throws when it did not start. */
  etcd(): EtcdProcess;
  /** A client of that etcd with no prefix; throws when etcd did not start. */
  admin(): Etcd3;
}

/** Starts etcd before the tests of the calling scope and stops it after them. */
export function sharedEtcd(): SharedEtcd {
  let etcd: EtcdProcess | undefined;
  let admin: Etcd3 | undefined;
  beforeAll(async () => {
    etcd = await startEtcd();
    admin = new Etcd3({ hosts: etcd.endpoint });
  });
  afterAll(async () => {
    admin?.close();
    await etcd?.cleanup();
  });
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('etcd did not start');
    return v;
  };
  return { etcd: () => need(etcd), admin: () => need(admin) };
}
