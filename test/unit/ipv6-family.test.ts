import { describe, expect, it } from 'vitest';
import { cidr6Contains, formatCidr6, formatIPv6, ipv6FromBytes, ipv6ToBytes, makeCidr6, parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { anyCidrEquals, formatAnyCidr, formatIp, IPV4, IPV6, parseIp } from '../../src/net/family';

describe('IPv6 text as Go writes it', () => {
  it.each([
    ['fc00:0:0:5::', 'fc00:0:0:5::'],
    ['FC00:0000:0000:0005:0000:0000:0000:0000', 'fc00:0:0:5::'],
    ['2001:db8::10', '2001:db8::10'],
    ['::1', '::1'],
    ['::', '::'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:cafe:42::1', '2001:cafe:42::1'],
    ['fe80::1:2', 'fe80::1:2'],
  ])('%s is written %s', (text, go) => {
    expect(formatIPv6(parseIPv6(text))).toBe(go);
  });

  it.each(['', '1.2.3.4', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7::8', 'fe80::1%eth0', '::1.2.3'])(
    'refuses %j',
    (text) => {
      expect(() => parseIPv6(text)).toThrow(RangeError);
    },
  );

  it('round-trips bytes in network order', () => {
    const ip = parseIPv6('2001:db8::10');
    const b = ipv6ToBytes(ip);
    expect(b.toString('hex')).toBe('20010db8000000000000000000000010');
    expect(ipv6FromBytes(b)).toBe(ip);
  });

  it('masks host bits and tests containment', () => {
    const net = parseCidr6('fc00::/48');
    expect(formatCidr6(net)).toBe('fc00::/48');
    expect(formatCidr6(makeCidr6(parseIPv6('fc00:0:0:5::9'), 64))).toBe('fc00:0:0:5::/64');
    expect(cidr6Contains(net, parseIPv6('fc00:0:0:ffff::1'))).toBe(true);
    expect(cidr6Contains(net, parseIPv6('fc00:0:1::'))).toBe(false);
    expect(() => parseCidr6('fc00::/129')).toThrow(RangeError);
  });
});

describe('the family as a value', () => {
  it('dispatches on the address type', () => {
    expect(formatIp(IPV4.parse('10.7.5.0'))).toBe('10.7.5.0');
    expect(formatIp(IPV6.parse('fc00:0:0:5::'))).toBe('fc00:0:0:5::');
    expect(formatAnyCidr(IPV6.parseCidr('fc00:0:0:5::/64'))).toBe('fc00:0:0:5::/64');
    expect(parseIp('fc00::1')).toBe(1n + (0xfc00n << 112n));
    expect(anyCidrEquals(IPV4.parseCidr('0.0.0.0/0'), IPV6.parseCidr('::/0'))).toBe(false);
    expect(IPV4.toBytes(IPV4.parse('10.0.0.1')).length).toBe(4);
    expect(IPV6.toBytes(IPV6.zero).length).toBe(16);
  });
});
