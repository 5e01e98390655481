/**
 * LeaseView's change log and record counts (issue 10): each family's desired
 * state reads the leases that changed instead of all of them, so the log must
 * hold every replaced lease object, and say when it no longer can.
 */
import { describe, expect, it } from 'vitest';
import { Lease, LeaseRecord } from '../../src/lease/lease';
import { CHANGE_LOG_LIMIT, LeaseView } from '../../src/lease/lease-view';
import { LeaseEvent } from '../../src/lease/store';
import { parseCidr } from '../../src/net/ipv4';
import { silentLogger } from '../../src/util/log';

const key = (n: number): string => `10.7.${n}.0-24`;
const lease = (n: number, mac = '02:00:00:00:00:01'): LeaseRecord => ({
  kind: 'lease',
  key: key(n),
  lease: { subnet: parseCidr(`10.7.${n}.0/24`), publicIP: 0x0a419b00 + n, backendType: 'vxlan', vni: 1, vtepMAC: mac },
});
const put = (record: LeaseRecord): LeaseEvent => ({ type: 'put', record, revision: 1n });
const del = (n: number): LeaseEvent => ({ type: 'delete', key: key(n), subnet: parseCidr(`10.7.${n}.0/24`), revision: 1n });
const leaseOf = (r: LeaseRecord): Lease => (r as { lease: Lease }).lease;

describe('LeaseView change log', () => {
  it('logs arrivals, departures, replacements (a re-put of the same value too) and a lease that turns invalid', () => {
    const view = new LeaseView(silentLogger());
    const [a, b] = [lease(1), lease(2)];
    view.reset([a]);
    const v0 = view.version;
    expect(view.changesSince(v0)).toEqual([]);
    const a2 = lease(1);
    expect(view.apply([put(b), put(a2)])).toBe(1); // a2 means what a meant
    expect(view.changesSince(v0)).toEqual([
      { before: undefined, after: leaseOf(b) },
      { before: leaseOf(a), after: leaseOf(a2) },
    ]);
    const v1 = view.version;
    view.apply([put({ kind: 'invalid', key: key(2), invalid: { key: key(2), reason: 'bad JSON' } }), del(1), del(9)]);
    expect(view.changesSince(v1)).toEqual([
      { before: leaseOf(b), after: undefined },
      { before: leaseOf(a2), after: undefined },
    ]);
    expect(view.recordCounts()).toEqual({ lease: 0, invalid: 1, ignored: 0 });
    expect(view.changesSince(view.version + 1)).toBeUndefined();
  });

  it('a reset or a reader more than CHANGE_LOG_LIMIT changes behind gets no log (it reads every lease)', () => {
    const view = new LeaseView(silentLogger());
    view.reset([lease(1)]);
    const before = view.version;
    view.reset([lease(1), lease(2)]);
    expect(view.changesSince(before)).toBeUndefined();
    expect(view.changesSince(view.version)).toEqual([]);
    const start = view.version;
    for (let i = 0; i <= 2 * CHANGE_LOG_LIMIT; i++) view.apply([put(lease(3, `02:00:00:00:00:${(i % 200).toString(16).padStart(2, '0')}`))]);
    expect(view.changesSince(start)).toBeUndefined();
    const recent = view.changesSince(view.version - 10);
    expect(recent).toHaveLength(10);
    expect(recent?.[9]?.after).toBe(leaseOf(view.get(key(3)) as LeaseRecord));
  });

  it('counts records by kind as they come and go', () => {
    const view = new LeaseView(silentLogger());
    view.reset([lease(1), lease(2), { kind: 'ignored', key: 'x', reason: 'not ours' }]);
    expect(view.recordCounts()).toEqual({ lease: 2, invalid: 0, ignored: 1 });
    view.apply([put(lease(1)), put(lease(3)), del(2)]);
    expect(view.recordCounts()).toEqual({ lease: 2, invalid: 0, ignored: 1 });
  });
});
