/**
 * planChangesSince (a lease-event pass after a clean one) must plan exactly what
 * planChanges would against the same kept entries, while looking only at the
 * peers that changed; and desiredState's LeaseMemo must not change its answer.
 */
import { describe, expect, it } from 'vitest';
import { rng } from '../helpers/rng';
import { parseNetworkConfig } from '../../src/config';
import { Lease } from '../../src/lease/lease';
import { parseCidr } from '../../src/net/ipv4';
import { LeaseHalf, LeaseMemo, PeerMode } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';
import { IPV4, IpAddr } from '../../src/net/family';
import { KernelIndex } from '../../src/overlay/kernel-index';
import { PlannedOperation, describeEntry, planChanges, planChangesSince } from '../../src/overlay/plan';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: 0x0a419a0b };

// Few MACs and public IPs, so that MAC conflicts (one FDB entry claimed by two leases) happen often.
function randomLease(r: () => number, revision: number): Lease {
  const n = 10 + Math.floor(r() * 40);
  return {
    subnet: parseCidr(`10.7.${n}.0/24`),
    publicIP: 0x0a419b00 + Math.floor(r() * 8),
    backendType: r() < 0.05 ? 'host-gw' : 'vxlan',
    vni: 1,
    vtepMAC: `02:00:00:00:00:${(Math.floor(r() * 12) + 16).toString(16)}`,
    createRevision: String(revision),
  };
}

const text = (ops: readonly PlannedOperation[]): string[] => ops.map((o) => `${o.op} ${describeEntry(o.entry)} (${o.reason})`).sort();

/** The kept index after a clean pass: whatever was there, with the full plan applied. */
function applied(known: KernelIndex, ops: readonly PlannedOperation[]): KernelIndex {
  for (const op of ops) known.record(op);
  return known;
}

describe('planChangesSince', () => {
  it('equals planChanges against the kept entries over 300 random lease changes, MAC conflicts included', () => {
    const r = rng(42);
    let revision = 1;
    const leases = new Map<string, Lease>();
    for (let i = 0; i < 25; i++) {
      const l = randomLease(r, revision++);
      leases.set(`${l.subnet.ip}`, l);
    }
    let prev = desiredState(self, leases.values(), config);
    const known = applied(new KernelIndex(), planChanges(prev, []));
    expect(planChanges(prev, known)).toEqual([]);
    let nonEmpty = 0;
    for (let step = 0; step < 300; step++) {
      // One to three changes: a join, a leave, or a changed value of an existing key.
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
        const l = randomLease(r, revision++);
        const key = `${l.subnet.ip}`;
        if (leases.has(key) && r() < 0.4) leases.delete(key);
        else leases.set(key, leases.has(key) && r() < 0.5 ? { ...l, createRevision: leases.get(key)?.createRevision } : l);
      }
      const next = desiredState(self, leases.values(), config);
      const since = planChangesSince(prev, next, known);
      expect(text(since)).toEqual(text(planChanges(next, known)));
      if (since.length > 0) nonEmpty++;
      applied(known, since);
      expect(planChanges(next, known)).toEqual([]);
      prev = next;
    }
    expect(nonEmpty).toBeGreaterThan(100); // 146 with this seed
  });

  it('equals planChanges with DirectRouting: peers moving between direct and vxlan as their PublicIP\'s decision flips', () => {
    const r = rng(1212);
    let revision = 1;
    const leases = new Map<string, Lease>();
    for (let i = 0; i < 25; i++) {
      const l = randomLease(r, revision++);
      leases.set(`${l.subnet.ip}`, l);
    }
    const direct = new Set<IpAddr>();
    const modeOf = (h: LeaseHalf): PeerMode => (h.publicIP !== undefined && direct.has(h.publicIP) ? 'direct' : 'vxlan');
    const memo: LeaseMemo = new WeakMap();
    let prev = desiredState(self, leases.values(), config, undefined, IPV4, modeOf, memo);
    const known = applied(new KernelIndex(), planChanges(prev, []));
    let moves = 0;
    for (let step = 0; step < 300; step++) {
      // A PublicIP's decision flips now and then (the host's addressing changed), besides lease changes.
      if (r() < 0.3) {
        const ip = 0x0a419b00 + Math.floor(r() * 8);
        if (direct.has(ip)) direct.delete(ip);
        else direct.add(ip);
      }
      if (r() < 0.7) {
        const l = randomLease(r, revision++);
        const key = `${l.subnet.ip}`;
        if (leases.has(key) && r() < 0.4) leases.delete(key);
        else leases.set(key, l);
      }
      const next = desiredState(self, leases.values(), config, undefined, IPV4, modeOf, memo);
      const since = planChangesSince(prev, next, known);
      expect(text(since)).toEqual(text(planChanges(next, known)));
      if (since.some((o) => o.reason === 'peer is direct')) moves++;
      applied(known, since);
      expect(planChanges(next, known)).toEqual([]);
      prev = next;
    }
    expect(moves).toBeGreaterThan(10);
  });

  it('plans nothing when nothing changed, and looks at no unchanged peer', () => {
    const leases = Array.from({ length: 50 }, (_, i) => randomLease(rng(i), i + 1)).map((l, i) => ({ ...l, subnet: parseCidr(`10.7.${i + 10}.0/24`), vtepMAC: `02:00:00:00:01:${(i + 16).toString(16)}` }));
    const d = desiredState(self, leases, config);
    const known = applied(new KernelIndex(), planChanges(d, []));
    expect(planChangesSince(d, desiredState(self, leases, config), known)).toEqual([]);
    // An unchanged peer whose entries someone deleted is not this pass's business (a listing pass repairs it).
    const gone = [...d.peers.values()][0]!;
    known.record({ op: 'delete', entry: gone.route });
    expect(planChangesSince(d, desiredState(self, leases, config), known)).toEqual([]);
    expect(planChanges(d, known)).toHaveLength(1);
  });
});

describe('desiredState with a LeaseMemo', () => {
  it('gives the same peers and skips as without, after the leases change under it', () => {
    const r = rng(7);
    const memo: LeaseMemo = new WeakMap();
    let leases = Array.from({ length: 40 }, (_, i) => randomLease(r, i + 1));
    for (let step = 0; step < 50; step++) {
      const a = desiredState(self, leases, config, undefined, IPV4, undefined, memo);
      const b = desiredState(self, leases, config);
      expect([...a.peers]).toEqual([...b.peers]);
      expect(a.skipped).toEqual(b.skipped);
      leases = leases.map((l) => (r() < 0.1 ? randomLease(r, 100 + step) : l));
    }
  });
});
