/**
 * IPv6 addresses as unsigned 128-bit bigints, and CIDR blocks built on them.
 * Text is read as Go's net.ParseIP reads it and written as Go's net.IP.String
 * writes it (lowercase, the longest run of two or more zero groups as `::`, the
 * first run on a tie), because flannel's etcd keys and subnet.env hold that form.
 * Everything here is pure; parse functions throw `RangeError` naming the bad text.
 */
import { parseIPv4 } from './ipv4';

/** An IPv6 network: `ip` is the network address (host bits zero). */
export interface Cidr6 {
  readonly ip: bigint;
  readonly prefixLen: number;
}

const ALL_ONES = (1n << 128n) - 1n;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function groupsOf(text: string, bad: () => RangeError): number[] {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  parts.forEach((part, i) => {
    if (i === parts.length - 1 && part.includes('.')) {
      let v4: number;
      try {
        v4 = parseIPv4(part);
      } catch {
        throw bad();
      }
      groups.push(v4 >>> 16, v4 & 0xffff);
      return;
    }
    if (!HEX_GROUP.test(part)) throw bad();
    groups.push(parseInt(part, 16));
  });
  return groups;
}

/** Parses "fc00:0:0:5::" (any RFC 4291 text form, an IPv4 tail allowed, no zone) into a bigint; throws on anything else. */
export function parseIPv6(text: string): bigint {
  const bad = () => new RangeError(`invalid IPv6 address ${JSON.stringify(text)}`);
  if (text.length > 45 || !text.includes(':')) throw bad();
  const halves = text.split('::');
  if (halves.length > 2) throw bad();
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0] as string, bad);
    const tail = groupsOf(halves[1] as string, bad);
    const missing = 8 - head.length - tail.length;
    if (missing < 1) throw bad();
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = groupsOf(text, bad);
    if (groups.length !== 8) throw bad();
  }
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** Returns the address, or undefined when the text is not an IPv6 address. */
export function tryParseIPv6(text: string): bigint | undefined {
  try {
    return parseIPv6(text);
  } catch {
    return undefined;
  }
}

/** Go's net.IP.String form: "fc00:0:0:5::", "2001:db8::10", "::1". */
export function formatIPv6(ip: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** 16 bytes, network order, as netlink wants them. */
export function ipv6ToBytes(ip: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE((ip >> 64n) & 0xffffffffffffffffn, 0);
  b.writeBigUInt64BE(ip & 0xffffffffffffffffn, 8);
  return b;
}

export function ipv6FromBytes(b: Uint8Array): bigint {
  if (b.length !== 16) throw new RangeError(`expected 16 address bytes, got ${b.length}`);
  const buf = Buffer.from(b);
  return (buf.readBigUInt64BE(0) << 64n) | buf.readBigUInt64BE(8);
}

/** The netmask of a prefix length (0n for /0). */
export function prefixMask6(prefixLen: number): bigint {
  return prefixLen === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLen)) & ALL_ONES;
}

/** Size of a block of the given prefix length, in addresses. */
export function blockSize6(prefixLen: number): bigint {
  return 1n << BigInt(128 - prefixLen);
}

/** Builds a CIDR from an address and length, masking host bits. */
export function makeCidr6(ip: bigint, prefixLen: number): Cidr6 {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 128) {
    throw new RangeError(`invalid prefix length ${prefixLen}`);
  }
  return { ip: ip & prefixMask6(prefixLen), prefixLen };
}

/** Parses "fc00::/48". Host bits are masked, as Go's net.ParseCIDR does for the network. */
export function parseCidr6(text: string): Cidr6 {
  const slash = text.indexOf('/');
  if (slash < 0) throw new RangeError(`invalid CIDR ${JSON.stringify(text)}: no prefix length`);
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) {
    throw new RangeError(`invalid CIDR ${JSON.stringify(text)}: bad prefix length`);
  }
  return makeCidr6(parseIPv6(text.slice(0, slash)), Number(lenText));
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIPv6(c.ip)}/${c.prefixLen}`;
}

export function cidr6Contains(net: Cidr6, ip: bigint): boolean {
  return (ip & prefixMask6(net.prefixLen)) === net.ip;
}

/** True when `inner` lies entirely inside `outer`. */
export function cidr6ContainsCidr(outer: Cidr6, inner: Cidr6): boolean {
  return inner.prefixLen >= outer.prefixLen && cidr6Contains(outer, inner.ip);
}

export function cidr6Overlaps(a: Cidr6, b: Cidr6): boolean {
  return cidr6Contains(a, b.ip) || cidr6Contains(b, a.ip);
}

export function cidr6Equals(a: Cidr6, b: Cidr6): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** Last address of the block. */
export function cidr6Last(c: Cidr6): bigint {
  return c.ip + blockSize6(c.prefixLen) - 1n;
}
