import { describe, expect, it } from 'vitest';
import { decodeLease, encodeLeaseValue, leaseAttrsOf, parseSubnetKeyName, recordSubnet, recordSubnet6, subnetKey, subnetKeyName } from '../../src/lease/codec';
import { formatCidr, makeCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { formatCidr6, parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { LeaseView } from '../../src/lease/lease-view';
import { silentLogger } from '../../src/util/log';

// Literal bytes of flanneld's format (contract §11; flannel: pkg/lease/lease.go, pkg/subnet/subnet.go).
const DUAL_KEY = '10.7.5.0-24&fc00:0:0:5::-64';
const DUAL_VALUE =
  '{"PublicIP":"192.168.1.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"6e:d5:a3:cb:6a:6b"},"BackendV6Data":{"VNI":1,"VtepMAC":"a2:15:7c:0e:91:3d"}}';
const V6ONLY_KEY = '0.0.0.0-0&fc00:0:0:5::-64';
const V6ONLY_VALUE = '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"a2:15:7c:0e:91:3d"}}';

describe('dual-stack and IPv6-only keys', () => {
  it('writes the & key with the IPv6 part in Go text form', () => {
    expect(subnetKeyName(parseCidr('10.7.5.0/24'), parseCidr6('fc00:0:0:5::/64'))).toBe(DUAL_KEY);
    expect(subnetKey('/coreos.com/network', makeCidr(0, 0), parseCidr6('fc00:0000:0000:0005::/64'))).toBe(`/coreos.com/network/subnets/${V6ONLY_KEY}`);
    expect(subnetKeyName(parseCidr('10.7.5.0/24'))).toBe('10.7.5.0-24');
  });
  it('reads both forms back', () => {
    expect(parseSubnetKeyName(DUAL_KEY)).toEqual({ kind: 'ok', subnet: parseCidr('10.7.5.0/24'), hasIPv4: true, subnet6: parseCidr6('fc00:0:0:5::/64') });
    expect(parseSubnetKeyName(V6ONLY_KEY)).toEqual({ kind: 'ok', subnet: makeCidr(0, 0), hasIPv4: false, subnet6: parseCidr6('fc00:0:0:5::/64') });
  });
  it.each([
    ['10.7.5.0-24&fc00:0:0:5::1-64', 'host bits'],
    ['10.7.5.0-24&fc00:0:0:5::-129', 'prefix length 129'],
    ['10.7.5.0-24&FC00:0:0:5::-64', 'no valid'],
    ['10.7.5.0-24&fc00:0000:0:5::-64', 'canonical'],
    ['10.7.5.0-24&', 'no valid'],
    ['10.7.5.0-24&zz-64', 'no valid'],
  ])('refuses %s (%s) but keeps its IPv4 part taken', (name, reason) => {
    const p = parseSubnetKeyName(name);
    expect(p.kind).toBe('bad');
    if (p.kind !== 'bad') return;
    expect(p.reason).toContain(reason);
    expect(p.subnet && formatCidr(p.subnet)).toBe('10.7.5.0/24');
  });
  it('refuses 0.0.0.0-0 without an IPv6 part', () => {
    expect(parseSubnetKeyName('0.0.0.0-0').kind).toBe('bad');
  });
});

describe('dual-stack and IPv6-only values', () => {
  it('encodes a dual-stack value byte for byte', () => {
    const v = encodeLeaseValue({
      publicIP: parseIPv4('192.168.1.10'),
      vni: 1,
      vtepMAC: '6E:D5:A3:CB:6A:6B',
      v6: { publicIP: parseIPv6('2001:0db8::0010'), vni: 1, vtepMAC: 'a2-15-7c-0e-91-3d' },
    });
    expect(v).toBe(DUAL_VALUE);
  });
  it('encodes an IPv6-only value byte for byte: PublicIP 0.0.0.0, no BackendData', () => {
    expect(encodeLeaseValue({ publicIP: 0, vni: 1, vtepMAC: undefined, v6: { publicIP: parseIPv6('2001:db8::10'), vni: 1, vtepMAC: 'a2:15:7c:0e:91:3d' } })).toBe(V6ONLY_VALUE);
  });
  it('decodes a dual-stack lease with both halves', () => {
    const r = decodeLease(`/p/subnets/${DUAL_KEY}`, DUAL_KEY, DUAL_VALUE);
    expect(r.kind).toBe('lease');
    if (r.kind !== 'lease') return;
    expect(formatCidr(r.lease.subnet)).toBe('10.7.5.0/24');
    expect(r.lease.hasIPv4).toBe(true);
    expect(r.lease.vtepMAC).toBe('6e:d5:a3:cb:6a:6b');
    expect(r.lease.v6 && formatCidr6(r.lease.v6.subnet)).toBe('fc00:0:0:5::/64');
    expect(r.lease.v6?.publicIP).toBe(parseIPv6('2001:db8::10'));
    expect(r.lease.v6?.vtepMAC).toBe('a2:15:7c:0e:91:3d');
    expect(encodeLeaseValue(leaseAttrsOf(r.lease))).toBe(DUAL_VALUE);
    expect(recordSubnet(r) && formatCidr(recordSubnet(r)!)).toBe('10.7.5.0/24');
    expect(recordSubnet6(r) && formatCidr6(recordSubnet6(r)!)).toBe('fc00:0:0:5::/64');
  });
  it('decodes a lease holding only an IPv6 subnet', () => {
    const r = decodeLease(`/p/subnets/${V6ONLY_KEY}`, V6ONLY_KEY, V6ONLY_VALUE);
    expect(r.kind).toBe('lease');
    if (r.kind !== 'lease') return;
    expect(r.lease.hasIPv4).toBe(false);
    expect(r.lease.publicIP).toBe(0);
    expect(r.lease.vtepMAC).toBeUndefined();
    expect(r.lease.vni).toBe(1);
    expect(r.lease.v6?.vtepMAC).toBe('a2:15:7c:0e:91:3d');
    expect(recordSubnet(r)).toBeUndefined();
    expect(encodeLeaseValue(leaseAttrsOf(r.lease))).toBe(V6ONLY_VALUE);
  });
  it('keeps PublicIPv6 null as undefined (peers skip such a lease), and re-encodes it as null', () => {
    const value = DUAL_VALUE.replace('"2001:db8::10"', 'null');
    const r = decodeLease('k', DUAL_KEY, value);
    expect(r.kind === 'lease' && r.lease.v6?.publicIP).toBeUndefined();
    expect(r.kind === 'lease' && encodeLeaseValue(leaseAttrsOf(r.lease))).toBe(value);
  });
  it('ignores the IPv6 half of a value under an IPv4-only key', () => {
    const r = decodeLease('k', '10.7.5.0-24', DUAL_VALUE);
    expect(r.kind === 'lease' && r.lease.v6).toBeUndefined();
  });
  it.each([
    ['PublicIPv6 is an IPv4 address', DUAL_VALUE.replace('"2001:db8::10"', '"10.0.0.1"'), 'PublicIPv6'],
    ['PublicIPv6 is a number', DUAL_VALUE.replace('"2001:db8::10"', '5'), 'PublicIPv6'],
    ['no BackendV6Data', DUAL_VALUE.replace(/,"BackendV6Data":\{[^}]*\}/, ''), 'BackendV6Data is missing'],
    ['bad v6 MAC', DUAL_VALUE.replace('a2:15:7c:0e:91:3d', 'nope'), 'BackendV6Data.VtepMAC'],
    ['bad v6 VNI', DUAL_VALUE.replace('"BackendV6Data":{"VNI":1', '"BackendV6Data":{"VNI":-1'), 'BackendV6Data.VNI'],
  ])('skips the whole dual-stack event when %s, IPv4 part included', (_what, value, reason) => {
    const r = decodeLease('k', DUAL_KEY, value);
    expect(r.kind).toBe('invalid');
    if (r.kind !== 'invalid') return;
    expect(r.invalid.reason).toContain(reason);
    expect(r.invalid.subnet && formatCidr(r.invalid.subnet)).toBe('10.7.5.0/24');
    expect(r.invalid.subnet6 && formatCidr6(r.invalid.subnet6)).toBe('fc00:0:0:5::/64');
  });
  it('an invalid IPv6-only value holds no IPv4 subnet', () => {
    const r = decodeLease('k', V6ONLY_KEY, '{"PublicIP":"0.0.0.0","BackendType":"vxlan"}');
    expect(r.kind === 'invalid' && r.invalid.subnet).toBeUndefined();
    expect(r.kind === 'invalid' && recordSubnet6(r) && formatCidr6(recordSubnet6(r)!)).toBe('fc00:0:0:5::/64');
  });
});

describe('LeaseView with dual-stack values', () => {
  it('counts a PUT that changes only the IPv6 half as a change, and an identical re-put as none', () => {
    const view = new LeaseView(silentLogger());
    const key = `/p/subnets/${DUAL_KEY}`;
    const put = (value: string) => ({ type: 'put' as const, record: decodeLease(key, DUAL_KEY, value), revision: 1n });
    expect(view.reset([decodeLease(key, DUAL_KEY, DUAL_VALUE)])).toBe(1);
    expect(view.apply([put(DUAL_VALUE)])).toBe(0);
    expect(view.apply([put(DUAL_VALUE.replace('a2:15:7c:0e:91:3d', 'a2:15:7c:0e:91:3e'))])).toBe(1);
    expect(view.apply([put(DUAL_VALUE.replace('"2001:db8::10"', '"2001:db8::11"'))])).toBe(1);
  });
});

describe('decodeLease fuzzed with dual-stack input', () => {
  // A small deterministic PRNG (mulberry32), so a failure replays.
  function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const ALPHABET = '0123456789abcdefABCDEF:.-&/{}",[]nulltrue PublicIPv6BackendV6DataVtepMAC';
  function mutate(text: string, rand: () => number): string {
    const chars = [...text];
    const n = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(rand() * (chars.length + 1));
      const op = rand();
      const c = ALPHABET[Math.floor(rand() * ALPHABET.length)] as string;
      if (op < 0.4) chars.splice(at, 1);
      else if (op < 0.8) chars.splice(at, 0, c);
      else chars[at] = c;
    }
    return chars.join('');
  }

  it('never throws; whatever decodes as a lease re-encodes to a value that decodes the same', () => {
    const rand = prng(12);
    let leases = 0;
    for (let i = 0; i < 5000; i++) {
      const [k, v] = rand() < 0.5 ? [DUAL_KEY, DUAL_VALUE] : [V6ONLY_KEY, V6ONLY_VALUE];
      const key = rand() < 0.3 ? mutate(k, rand) : k;
      const value = rand() < 0.8 ? mutate(v, rand) : v;
      const r = decodeLease(`/p/subnets/${key}`, key, value);
      expect(['lease', 'invalid']).toContain(r.kind);
      if (r.kind !== 'lease') continue;
      leases++;
      if (r.lease.backendType !== 'vxlan') continue;
      const again = decodeLease(`/p/subnets/${key}`, key, encodeLeaseValue(leaseAttrsOf(r.lease)));
      expect(again.kind === 'lease' && [again.lease.publicIP, again.lease.vtepMAC, again.lease.v6]).toEqual([r.lease.publicIP, r.lease.vtepMAC, r.lease.v6]);
    }
    expect(leases).toBeGreaterThan(100);
  });
});
