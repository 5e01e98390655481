/**
 * IPv4 addresses as unsigned 32-bit numbers, and CIDR blocks built on them.
 * Everything here is pure; parse functions throw `RangeError` naming the bad text.
 */

/** An IPv4 network: `ip` is the network address (host bits zero). */
export interface Cidr {
  readonly ip: number;
  readonly prefixLen: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses dotted-quad text ("10.7.5.0") into a number; throws on anything else. */
export function parseIPv4(text: string): number {
  const m = IPV4_RE.exec(text);
  if (!m) throw new RangeError(`invalid IPv4 address ${JSON.stringify(text)}`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    const octet = Number(part);
    if (octet > 255 || (part.length > 1 && part.startsWith('0'))) {
      throw new RangeError(`invalid IPv4 address ${JSON.stringify(text)}`);
    }
    n = n * 256 + octet;
  }
  return n;
}

/** Returns the address, or undefined when the text is not a dotted quad. */
export function tryParseIPv4(text: string): number | undefined {
  try {
    return parseIPv4(text);
  } catch {
    return undefined;
  }
}

export function formatIPv4(ip: number): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** 4 bytes, network order, as netlink wants them. */
export function ipv4ToBytes(ip: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip >>> 0, 0);
  return b;
}

export function ipv4FromBytes(b: Uint8Array): number {
  if (b.length !== 4) throw new RangeError(`expected 4 address bytes, got ${b.length}`);
  return Buffer.from(b).readUInt32BE(0);
}

/** The netmask of a prefix length as a number (0 for /0). */
export function prefixMask(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Size of a block of the given prefix length, in addresses. */
export function blockSize(prefixLen: number): number {
  return 2 ** (32 - prefixLen);
}

/** Builds a CIDR from an address and length, masking host bits. */
export function makeCidr(ip: number, prefixLen: number): Cidr {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) {
    throw new RangeError(`invalid prefix length ${prefixLen}`);
  }
  return { ip: (ip & prefixMask(prefixLen)) >>> 0, prefixLen };
}

/**
 * Parses "10.7.0.0/16". Host bits are masked (as Go's net.ParseCIDR does for the
 * network), so "10.7.3.4/16" gives 10.7.0.0/16.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new RangeError(`invalid CIDR ${JSON.stringify(text)}: no prefix length`);
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    throw new RangeError(`invalid CIDR ${JSON.stringify(text)}: bad prefix length`);
  }
  return makeCidr(parseIPv4(text.slice(0, slash)), Number(lenText));
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.ip)}/${c.prefixLen}`;
}

export function cidrContains(net: Cidr, ip: number): boolean {
  return ((ip & prefixMask(net.prefixLen)) >>> 0) === net.ip;
}

/** True when `inner` lies entirely inside `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefixLen >= outer.prefixLen && cidrContains(outer, inner.ip);
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b.ip) || cidrContains(b, a.ip);
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** Last address of the block. */
export function cidrLast(c: Cidr): number {
  return (c.ip + blockSize(c.prefixLen) - 1) >>> 0;
}
