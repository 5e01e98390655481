/**
 * The address family as a value (STYLE: "two address families, one code path").
 * An IPv4 address is a `number`, an IPv6 address a `bigint`, so any address or
 * CIDR knows its family by `typeof`; code that works for both takes an
 * `AddressFamily` and calls through it instead of copying an IPv6 branch.
 */
import {
  Cidr,
  cidrContains,
  cidrContainsCidr,
  cidrEquals,
  cidrOverlaps,
  formatCidr,
  formatIPv4,
  ipv4FromBytes,
  ipv4ToBytes,
  makeCidr,
  parseCidr,
  parseIPv4,
  tryParseIPv4,
} from './ipv4';
import {
  Cidr6,
  cidr6Contains,
  cidr6ContainsCidr,
  cidr6Equals,
  cidr6Overlaps,
  formatCidr6,
  formatIPv6,
  ipv6FromBytes,
  ipv6ToBytes,
  makeCidr6,
  parseCidr6,
  parseIPv6,
  tryParseIPv6,
} from './ipv6';

/** An address of either family: IPv4 as a number, IPv6 as a bigint. */
export type IpAddr = number | bigint;
/** A network of either family. */
export type AnyCidr = Cidr | Cidr6;

export interface AddressFamily<A extends IpAddr = IpAddr, C extends { readonly ip: A; readonly prefixLen: number } = { readonly ip: A; readonly prefixLen: number }> {
  readonly family: 4 | 6;
  readonly name: 'IPv4' | 'IPv6';
  readonly bits: 32 | 128;
  /** AF_INET (2) or AF_INET6 (10), as netlink messages carry it. */
  readonly af: 2 | 10;
  /** The unspecified address (0.0.0.0 or ::). */
  readonly zero: A;
  parse(text: string): A;
  tryParse(text: string): A | undefined;
  format(ip: A): string;
  toBytes(ip: A): Buffer;
  fromBytes(b: Uint8Array): A;
  makeCidr(ip: A, prefixLen: number): C;
  parseCidr(text: string): C;
  formatCidr(c: C): string;
  contains(net: C, ip: A): boolean;
  containsCidr(outer: C, inner: C): boolean;
  overlaps(a: C, b: C): boolean;
  equals(a: C, b: C): boolean;
  /** The host route of one address (/32 or /128). */
  hostCidr(ip: A): C;
}

export const IPV4: AddressFamily<number, Cidr> = {
  family: 4,
  name: 'IPv4',
  bits: 32,
  af: 2,
  zero: 0,
  parse: parseIPv4,
  tryParse: tryParseIPv4,
  format: formatIPv4,
  toBytes: ipv4ToBytes,
  fromBytes: ipv4FromBytes,
  makeCidr,
  parseCidr,
  formatCidr,
  contains: cidrContains,
  containsCidr: cidrContainsCidr,
  overlaps: cidrOverlaps,
  equals: cidrEquals,
  hostCidr: (ip) => makeCidr(ip, 32),
};

export const IPV6: AddressFamily<bigint, Cidr6> = {
  family: 6,
  name: 'IPv6',
  bits: 128,
  af: 10,
  zero: 0n,
  parse: parseIPv6,
  tryParse: tryParseIPv6,
  format: formatIPv6,
  toBytes: ipv6ToBytes,
  fromBytes: ipv6FromBytes,
  makeCidr: makeCidr6,
  parseCidr: parseCidr6,
  formatCidr: formatCidr6,
  contains: cidr6Contains,
  containsCidr: cidr6ContainsCidr,
  overlaps: cidr6Overlaps,
  equals: cidr6Equals,
  hostCidr: (ip) => makeCidr6(ip, 128),
};

export function isIPv6(ip: IpAddr): ip is bigint {
  return typeof ip === 'bigint';
}

export function isCidr6(c: AnyCidr): c is Cidr6 {
  return typeof c.ip === 'bigint';
}

/** "10.7.5.0" or "fc00:0:0:5::". */
export function formatIp(ip: IpAddr): string {
  return typeof ip === 'bigint' ? formatIPv6(ip) : formatIPv4(ip);
}

/** "10.7.5.0/24" or "fc00:0:0:5::/64". */
export function formatAnyCidr(c: AnyCidr): string {
  return isCidr6(c) ? formatCidr6(c) : formatCidr(c);
}

/** Netlink bytes of either family (4 or 16). */
export function ipToBytes(ip: IpAddr): Buffer {
  return typeof ip === 'bigint' ? ipv6ToBytes(ip) : ipv4ToBytes(ip);
}

/** Equal family, address and length. */
export function anyCidrEquals(a: AnyCidr, b: AnyCidr): boolean {
  return typeof a.ip === typeof b.ip && a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** True when `inner` lies inside `outer` and both are of one family. */
export function anyCidrContainsCidr(outer: AnyCidr, inner: AnyCidr): boolean {
  if (isCidr6(outer)) return isCidr6(inner) && cidr6ContainsCidr(outer, inner);
  return !isCidr6(inner) && cidrContainsCidr(outer, inner);
}

/** Parses an address of either family ("10.7.0.1", "fc00::1"); throws RangeError naming the text. */
export function parseIp(text: string): IpAddr {
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text);
}
