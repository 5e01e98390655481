/**
 * The status run loop on the memory fakes: one-shot exit codes and outputs, a
 * bounded wait on a store that never answers, and --watch refreshing on etcd
 * changes, on kernel changes and through an etcd outage.
 */
import { describe, expect, it } from 'vitest';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { parseIPv4 } from '../../src/net/ipv4';
import { runStatus, unreachableMessage } from '../../src/status/command';
import { StatusStore } from '../../src/status/collect';
import { waitFor } from '../../src/testbed/scene';
import { statusFixture, statusOptions } from '../helpers/status-fixture';
import { StoreUnavailableError } from '../../src/util/errors';

const PFX = '/coreos.com/network/subnets/';
const value = (ip: string, mac: string): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });


const never = new AbortController().signal;

describe('status, once', () => {
  it('prints the table and exits 0 when healthy, 1 with an invalid lease', async () => {
    const { store, out, deps } = statusFixture();
    expect(await runStatus(statusOptions([]), deps, never)).toBe(0);
    expect(out.join('')).toMatch(/\nOK: 1 lease in 10\.7\.0\.0\/16/);
    store.putRaw(`${PFX}10.7.250.0-24`, 'garbage');
    expect(await runStatus(statusOptions(['--brief']), deps, never)).toBe(1);
    expect(out[1]).toBe('UNHEALTHY: 1 error: lease 10.7.250.0/24 is invalid: value is not JSON\n');
  });

  it('prints JSON without colour even on a terminal', async () => {
    const { out, deps } = statusFixture({ isTTY: true });
    expect(await runStatus(statusOptions(['--json']), deps, never)).toBe(0);
    expect(JSON.parse(out.join(''))).toMatchObject({ schemaVersion: 2, healthy: true, exitCode: 0 });
    expect(out.join('')).not.toContain('\u001b[');
  });

  it.each([
    [[], true, {}, true],
    [[], false, {}, false],
    [['--no-color'], true, {}, false],
    [['--color'], false, {}, true],
    [[], true, { NO_COLOR: '1' }, false],
    [[], true, { TERM: 'dumb' }, false],
  ])('colours the table with %j on a terminal=%s and env %j: %s', async (args, isTTY, env, colored) => {
    const { out, deps } = statusFixture({ isTTY, env });
    await runStatus(statusOptions(args), deps, never);
    expect(out.join('').includes('\u001b[')).toBe(colored);
  });

  it('rejects with StoreUnavailableError when etcd is unreachable', async () => {
    const { store, deps } = statusFixture();
    store.setUnavailable(true);
    await expect(runStatus(statusOptions([]), deps, never)).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('gives up on a store that never answers, naming the endpoint', async () => {
    const hanging: StatusStore = { getConfig: () => new Promise(() => undefined), list: () => new Promise(() => undefined), watch: async () => undefined };
    // The deadline's sleep returns at once: the budget is spent without waiting for it.
    const { deps } = statusFixture({ store: hanging, clock: { now: Date.now, sleep: async () => undefined } });
    const err = await runStatus(statusOptions(['--etcd-endpoints', 'http://10.9.9.9:2379']), deps, never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toBe('failed to read leases at http://10.9.9.9:2379: no answer within 3.0 s');
  });

  it('leaves out grpc\'s empty "Resolution note" and the final full stop from the message', () => {
    const err = new StoreUnavailableError('failed to list leases at http://127.0.0.1:1: 14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ');
    expect(unreachableMessage(err)).toBe('failed to list leases at http://127.0.0.1:1: 14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1');
    expect(unreachableMessage(new StoreUnavailableError('failed to list leases at http://e:2379: connect ECONNREFUSED 10.0.0.1:2379.'))).toBe('failed to list leases at http://e:2379: connect ECONNREFUSED 10.0.0.1:2379');
    expect(unreachableMessage(new StoreUnavailableError('failed to read leases at http://e:2379: no answer within 3.0 s'))).toBe('failed to read leases at http://e:2379: no answer within 3.0 s');
  });
});

describe('status --watch', () => {
  it('refreshes on every etcd change and returns the last exit code when stopped', async () => {
    const { store, out, deps } = statusFixture();
    const ctl = new AbortController();
    const done = runStatus(statusOptions(['--watch', '--brief']), deps, ctl.signal);
    await waitFor('the first refresh', () => out.length === 1, 2000, 5);
    expect(out[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z OK: 1 lease/);
    store.putRaw(`${PFX}10.7.41.0-24`, value('10.65.154.13', '02:00:00:00:00:41'), { ttlSeconds: 86_400 });
    await waitFor('a refresh after the put', () => out.some((l) => l.includes('OK: 2 leases')), 2000, 5);
    store.putRaw(`${PFX}10.7.250.0-24`, 'garbage');
    await waitFor('a refresh after the garbage value', () => out.some((l) => l.includes('UNHEALTHY')), 2000, 5);
    ctl.abort();
    expect(await done).toBe(1);
  });

  it('refreshes on a kernel change on this host', async () => {
    const { store, kernel, out, deps } = statusFixture();
    const ctl = new AbortController();
    const done = runStatus(statusOptions(['--watch', '--brief']), deps, ctl.signal);
    await waitFor('the first refresh', () => out.length === 1, 2000, 5);
    // The host becomes a node: its flannel.1 appears (the lease for its IP is in etcd already).
    store.putRaw(`${PFX}10.7.23.0-24`, value('192.168.1.5', '02:00:00:00:00:23'), { ttlSeconds: 86_400 });
    await waitFor('the refresh after the put', () => out.length === 2, 2000, 5);
    await kernel.createVxlan({ name: 'flannel.1', vni: 1, localIP: parseIPv4('192.168.1.5'), underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 }, '02:00:00:00:00:23');
    await waitFor('a refresh after the kernel change', () => out.length === 3, 2000, 5);
    expect(out[2]).toMatch(/UNHEALTHY: .*flannel\.1 is wrong: address missing, up wrong down/);
    ctl.abort();
    expect(await done).toBe(1);
  });

  it('shows an etcd outage, keeps retrying, and recovers', async () => {
    const { store, out, deps } = statusFixture();
    const ctl = new AbortController();
    store.setUnavailable(true);
    const done = runStatus(statusOptions(['--watch']), deps, ctl.signal);
    await waitFor('the outage shown', () => out.length === 1, 2000, 5);
    expect(out[0]).toMatch(/^flanneld-ts status --watch: refreshed .*\n\nUNREACHABLE: etcd unreachable: failed to .* at memory: store unavailable; retrying in 0\.4 s\n\n$/);
    store.setUnavailable(false);
    await waitFor('the recovery', () => out.some((l) => l.includes('\nOK: 1 lease')), 3000, 5);
    ctl.abort();
    expect(await done).toBe(0);
  });

  it('redraws the screen on a terminal', async () => {
    const { store, out, deps } = statusFixture({ isTTY: true });
    const ctl = new AbortController();
    const done = runStatus(statusOptions(['--watch']), deps, ctl.signal);
    await waitFor('the first frame', () => out.length === 1, 2000, 5);
    store.putRaw(`${PFX}10.7.41.0-24`, value('10.65.154.13', '02:00:00:00:00:41'), { ttlSeconds: 86_400 });
    await waitFor('the second frame', () => out.length === 2, 2000, 5);
    ctl.abort();
    expect(await done).toBe(0);
    for (const frame of out) expect(frame.startsWith('\u001b[H\u001b[2Jflanneld-ts status --watch: refreshed ')).toBe(true);
    expect(out[1]).toContain('10.7.41.0/24');
  });

  it('writes one JSON document per line, outages on stderr only', async () => {
    const { store, out, err, deps } = statusFixture();
    const ctl = new AbortController();
    const done = runStatus(statusOptions(['--watch', '--json']), deps, ctl.signal);
    await waitFor('the first document', () => out.length === 1, 2000, 5);
    store.setUnavailable(true);
    store.putRaw(`${PFX}10.7.41.0-24`, value('10.65.154.13', '02:00:00:00:00:41'));
    await waitFor('the outage on stderr', () => err.length >= 1, 2000, 5);
    store.setUnavailable(false);
    await waitFor('the second document', () => out.length === 2, 3000, 5);
    ctl.abort();
    await done;
    for (const line of out) {
      expect(line.endsWith('\n') && !line.slice(0, -1).includes('\n')).toBe(true);
      expect(JSON.parse(line).schemaVersion).toBe(2);
    }
    expect(JSON.parse(out[1] as string).leases).toHaveLength(2);
    expect(err[0]).toMatch(/^flanneld-ts status: etcd unreachable: /);
  });
});

describe('MemoryLeaseStore.leaseExpiries', () => {
  it('follows renewals and leaves out revoked leases', async () => {
    let now = 1_000_000;
    const store = new MemoryLeaseStore({ now: () => now });
    const a = store.putRaw(`${PFX}10.7.1.0-24`, value('10.65.154.1', '02:00:00:00:00:01'), { ttlSeconds: 60 }) as string;
    const b = store.putRaw(`${PFX}10.7.2.0-24`, value('10.65.154.2', '02:00:00:00:00:02'), { ttlSeconds: 600 }) as string;
    now += 30_000;
    await store.renew(a);
    await store.revoke(b);
    expect(await store.leaseExpiries([a, b, '12345'])).toEqual(new Map([[a, now + 60_000]]));
  });
});
