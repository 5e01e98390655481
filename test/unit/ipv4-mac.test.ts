import { describe, expect, it } from 'vitest';
import { cidrContainsCidr, cidrOverlaps, formatCidr, formatIPv4, ipv4FromBytes, ipv4ToBytes, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { macFromBytes, macToBytes, parseMac, randomMac } from '../../src/net/mac';

describe('ipv4', () => {
  it.each([
    ['0.0.0.0', 0],
    ['10.7.5.0', 0x0a070500],
    ['255.255.255.255', 0xffffffff],
  ])('parses %s', (text, n) => {
    expect(parseIPv4(text)).toBe(n);
    expect(formatIPv4(n)).toBe(text);
  });
  it.each(['', '10.7.5', '10.7.5.256', '10.07.5.1', 'a.b.c.d', '10.7.5.1 ', '1.2.3.4.5'])('rejects %j', (text) => {
    expect(() => parseIPv4(text)).toThrow(/invalid IPv4/);
  });
  it('round-trips bytes', () => {
    expect(ipv4FromBytes(ipv4ToBytes(parseIPv4('10.65.154.19')))).toBe(parseIPv4('10.65.154.19'));
  });
  it('masks host bits of a CIDR', () => {
    expect(formatCidr(parseCidr('10.7.3.4/16'))).toBe('10.7.0.0/16');
    expect(formatCidr(parseCidr('0.0.0.0/0'))).toBe('0.0.0.0/0');
  });
  it.each(['10.7.0.0', '10.7.0.0/33', '10.7.0.0/', '10.7.0.0/x'])('rejects CIDR %j', (t) => {
    expect(() => parseCidr(t)).toThrow();
  });
  it('contains and overlaps', () => {
    const net = parseCidr('10.7.0.0/16');
    expect(cidrContainsCidr(net, parseCidr('10.7.5.0/24'))).toBe(true);
    expect(cidrContainsCidr(net, parseCidr('10.8.5.0/24'))).toBe(false);
    expect(cidrContainsCidr(parseCidr('10.7.5.0/24'), net)).toBe(false);
    expect(cidrOverlaps(parseCidr('10.7.5.0/24'), net)).toBe(true);
    expect(cidrOverlaps(parseCidr('10.7.5.0/24'), parseCidr('10.7.6.0/24'))).toBe(false);
  });
});

describe('mac', () => {
  it('canonicalises colon and dash forms', () => {
    expect(parseMac('6E-D5-A3-CB-6A-6B')).toBe('6e:d5:a3:cb:6a:6b');
    expect(parseMac('6e:d5:a3:cb:6a:6b')).toBe('6e:d5:a3:cb:6a:6b');
  });
  it.each(['6e:d5:a3:cb:6a', '6e:d5-a3:cb:6a:6b', 'zz:d5:a3:cb:6a:6b', ''])('rejects %j', (t) => {
    expect(() => parseMac(t)).toThrow(/invalid MAC/);
  });
  it('round-trips bytes', () => {
    expect(macFromBytes(macToBytes('02:00:00:00:00:ff'))).toBe('02:00:00:00:00:ff');
  });
  it('makes locally administered unicast MACs', () => {
    expect(randomMac(() => new Uint8Array([0xff, 1, 2, 3, 4, 5]))).toBe('fe:01:02:03:04:05');
    expect(randomMac(() => new Uint8Array([0x00, 1, 2, 3, 4, 5]))).toBe('02:01:02:03:04:05');
  });
});
