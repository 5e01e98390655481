/** KernelIndex.canonical / holdsExactly: how a listing of an unchanged device reuses the index it was read through. */
import { describe, expect, it } from 'vitest';
import { rng } from '../helpers/rng';
import { Entry } from '../../src/kernel/kernel';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { KernelIndex } from '../../src/overlay/kernel-index';

const held = (): Entry[] => [
  { kind: 'route', dst: parseCidr('10.7.1.0/24'), gateway: parseIPv4('10.7.1.0'), onlink: true },
  { kind: 'route', dst: parseCidr('10.7.2.0/24'), gateway: parseIPv4('192.0.2.2'), onlink: false, direct: true },
  { kind: 'neighbor', ip: parseIPv4('10.7.1.0'), mac: '02:00:00:00:00:01', permanent: true },
  { kind: 'fdb', mac: '02:00:00:00:00:01', dst: parseIPv4('192.0.2.1'), permanent: true },
  { kind: 'fdb', mac: '02:00:00:00:00:01', dst: parseIPv4('192.0.2.9'), permanent: true },
  { kind: 'route', dst: parseCidr6('fd00:7:1::/64'), gateway: parseIPv6('fd00:7:1::'), onlink: true },
];
// The same entries as a fresh listing decodes them: equal values, new objects.
const copy = (e: Entry): Entry => JSON.parse(JSON.stringify(e, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)), (_, v: unknown) => (typeof v === 'string' && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as Entry;

describe('KernelIndex.canonical', () => {
  it('answers an equal entry with the object it holds, whatever the kind', () => {
    const entries = held();
    const idx = KernelIndex.of(entries);
    entries.forEach((e) => {
      const fresh = copy(e);
      expect(fresh).not.toBe(e);
      expect(fresh).toEqual(e);
      expect(idx.canonical(fresh)).toBe(e);
    });
  });

  it('answers an entry that differs in anything compared with itself', () => {
    const idx = KernelIndex.of(held());
    const differing: Entry[] = [
      { kind: 'route', dst: parseCidr('10.7.1.0/24'), gateway: parseIPv4('10.7.1.1'), onlink: true },
      { kind: 'route', dst: parseCidr('10.7.1.0/24'), gateway: parseIPv4('10.7.1.0'), onlink: false },
      { kind: 'route', dst: parseCidr('10.7.1.0/25'), gateway: parseIPv4('10.7.1.0'), onlink: true },
      // Same destination as the held direct route, but on the device: another slot.
      { kind: 'route', dst: parseCidr('10.7.2.0/24'), gateway: parseIPv4('192.0.2.2'), onlink: false },
      { kind: 'neighbor', ip: parseIPv4('10.7.1.0'), mac: '02:00:00:00:00:02', permanent: true },
      { kind: 'neighbor', ip: parseIPv4('10.7.1.0'), mac: '02:00:00:00:00:01', permanent: false },
      { kind: 'fdb', mac: '02:00:00:00:00:01', dst: parseIPv4('192.0.2.3'), permanent: true },
      { kind: 'fdb', mac: '02:00:00:00:00:01', dst: parseIPv4('192.0.2.1'), permanent: false },
      { kind: 'fdb', mac: '02:00:00:00:00:03', dst: parseIPv4('192.0.2.1'), permanent: true },
    ];
    for (const e of differing) expect(idx.canonical(e)).toBe(e);
  });
});

describe('KernelIndex.holdsExactly', () => {
  it('is true for a listing read through the index when nothing changed, in any order', () => {
    const idx = KernelIndex.of(held());
    const listed = held().map(copy).reverse().map((e) => idx.canonical(e));
    expect(idx.holdsExactly(listed)).toBe(true);
  });

  it('is false when an entry is missing, added, changed or listed twice, or for equal but other objects', () => {
    const idx = KernelIndex.of(held());
    const listed = held().map((e) => idx.canonical(copy(e)));
    expect(idx.holdsExactly(listed.slice(1))).toBe(false);
    const extra: Entry = { kind: 'neighbor', ip: parseIPv4('10.7.9.0'), mac: '02:00:00:00:00:09', permanent: true };
    expect(idx.holdsExactly([...listed, extra])).toBe(false);
    const changed = [...listed];
    changed[2] = idx.canonical({ kind: 'neighbor', ip: parseIPv4('10.7.1.0'), mac: '02:00:00:00:00:07', permanent: true });
    expect(idx.holdsExactly(changed)).toBe(false);
    expect(idx.holdsExactly([...listed.slice(1), listed[1] as Entry])).toBe(false);
    expect(idx.holdsExactly(held().map(copy))).toBe(false);
  });

  it('follows what the index records', () => {
    const idx = KernelIndex.of(held());
    const route: Entry = { kind: 'route', dst: parseCidr('10.7.3.0/24'), gateway: parseIPv4('10.7.3.0'), onlink: true };
    idx.record({ op: 'replace', entry: route });
    const listed = [...held(), route].map((e) => idx.canonical(copy(e)));
    expect(idx.holdsExactly(listed)).toBe(true);
    idx.record({ op: 'delete', entry: route });
    expect(idx.holdsExactly(listed)).toBe(false);
    expect(idx.holdsExactly(listed.slice(0, -1))).toBe(true);
  });
});

describe('KernelIndex.adopt', () => {
  const peer = (n: number, remote: number): Entry[] => [
    { kind: 'route', dst: parseCidr(`10.7.${n}.0/24`), gateway: parseIPv4(`10.7.${n}.0`), onlink: true },
    { kind: 'neighbor', ip: parseIPv4(`10.7.${n}.0`), mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`, permanent: true },
    { kind: 'fdb', mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`, dst: parseIPv4(`192.0.2.${remote}`), permanent: true },
  ];
  // What the index holds, key by key (insertion order is not part of it).
  const sorted = <K, V>(m: Map<K, V>): Array<[K, V]> => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const shape = (idx: KernelIndex): unknown => [sorted(idx.routes), sorted(idx.direct), sorted(idx.neighbors), sorted(idx.fdb).map(([k, l]) => [k, [...l].sort((a, b) => Number(a.dst) - Number(b.dst))])];

  it('returns false and keeps every object when the listing is what it holds', () => {
    const entries = [1, 2, 3].flatMap((n) => peer(n, n));
    const idx = KernelIndex.of(entries);
    const routes = idx.routes;
    expect(idx.adopt(entries.map((e) => idx.canonical(copy(e))))).toBe(false);
    expect(idx.routes).toBe(routes);
    expect([...idx.neighbors.values()]).toEqual(entries.filter((e) => e.kind === 'neighbor'));
  });

  it('ends equal to an index built from the listing, after random removals, additions and changes (200 rounds)', () => {
    const r = rng(0x5eed);
    for (let round = 0; round < 200; round++) {
      // Every third MAC with a second remote, so that some MACs keep one of two.
      const held = Array.from({ length: 12 }, (_, n) => [...peer(n + 1, n + 1), ...(n % 3 === 0 ? [{ ...(peer(n + 1, 0)[2] as Entry), dst: parseIPv4(`192.0.2.${200 + n}`) } as Entry] : [])]).flat();
      const idx = KernelIndex.of(held);
      const listed: Entry[] = [];
      for (const e of held) {
        const roll = r();
        if (roll < 0.15) continue; // gone
        if (roll < 0.3 && e.kind === 'fdb') listed.push({ ...e, dst: parseIPv4(`192.0.2.${100 + Math.floor(r() * 50)}`) });
        else if (roll < 0.3 && e.kind === 'neighbor') listed.push({ ...e, permanent: false });
        else listed.push(copy(e));
      }
      // New ones: peers it never held, a second remote for a held MAC.
      for (let n = 20; n < 20 + Math.floor(r() * 3); n++) listed.push(...peer(n, n));
      if (r() < 0.5) listed.push({ ...(peer(1, 1)[2] as Entry), dst: parseIPv4('192.0.2.250') } as Entry);
      const canonical = listed.map((e) => idx.canonical(e));
      const changed = idx.adopt(canonical);
      expect(shape(idx)).toEqual(shape(KernelIndex.of(canonical)));
      expect(idx.holdsExactly(canonical)).toBe(true);
      expect(changed).toBe(true);
    }
  });
});
