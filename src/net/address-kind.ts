/**
 * Which addresses a lease may point the kernel at. A peer's PublicIP becomes an
 * FDB destination and its VtepMAC a neighbour and FDB entry; anything but a
 * unicast host address (or MAC) there sends overlay traffic to a whole segment,
 * to this host itself, or is refused by the kernel (ENOTSUP for a multicast
 * FDB MAC). Pure.
 */
import { Cidr, cidrContains, formatIPv4, parseCidr } from './ipv4';
import { Cidr6, cidr6Contains, formatIPv6, parseCidr6 } from './ipv6';

const NOT_UNICAST: ReadonlyArray<readonly [Cidr, string]> = [
  [parseCidr('0.0.0.0/8'), '"this network" (0.0.0.0/8)'],
  [parseCidr('127.0.0.0/8'), 'loopback (127.0.0.0/8)'],
  [parseCidr('224.0.0.0/4'), 'multicast (224.0.0.0/4)'],
  [parseCidr('240.0.0.0/4'), 'reserved or broadcast (240.0.0.0/4)'],
];

export const LINK_LOCAL = parseCidr('169.254.0.0/16');

/**
 * Why `ip` cannot be a peer's public IP, or undefined when it can. Link-local
 * addresses (169.254.0.0/16) are refused unless `allowLinkLocal` (this node's own
 * public IP is link-local, so the operator configured the underlay that way).
 */
export function publicIPProblem(ip: number, allowLinkLocal = false): string | undefined {
  for (const [block, what] of NOT_UNICAST) {
    if (cidrContains(block, ip)) return `PublicIP ${formatIPv4(ip)} is not a unicast host address: ${what}`;
  }
  if (!allowLinkLocal && cidrContains(LINK_LOCAL, ip)) return `PublicIP ${formatIPv4(ip)} is link-local (169.254.0.0/16) and this node's is not`;
  return undefined;
}

const NOT_UNICAST6: ReadonlyArray<readonly [Cidr6, string]> = [
  [parseCidr6('::/128'), 'unspecified (::)'],
  [parseCidr6('::1/128'), 'loopback (::1)'],
  [parseCidr6('::ffff:0:0/96'), 'IPv4-mapped (::ffff:0:0/96)'],
  [parseCidr6('ff00::/8'), 'multicast (ff00::/8)'],
];

export const LINK_LOCAL6 = parseCidr6('fe80::/10');

/** `publicIPProblem` for a PublicIPv6 (the FDB destination on flannel-v6.<VNI>). */
export function publicIPv6Problem(ip: bigint, allowLinkLocal = false): string | undefined {
  for (const [block, what] of NOT_UNICAST6) {
    if (cidr6Contains(block, ip)) return `PublicIPv6 ${formatIPv6(ip)} is not a unicast host address: ${what}`;
  }
  if (!allowLinkLocal && cidr6Contains(LINK_LOCAL6, ip)) return `PublicIPv6 ${formatIPv6(ip)} is link-local (fe80::/10) and this node's is not`;
  return undefined;
}

/** Why `mac` (canonical text) cannot be a peer's VtepMAC, or undefined when it can. */
export function vtepMacProblem(mac: string): string | undefined {
  const first = parseInt(mac.slice(0, 2), 16);
  if (mac === '00:00:00:00:00:00') return `VtepMAC ${mac} is all zero`;
  if ((first & 1) === 1) return `VtepMAC ${mac} is ${mac === 'ff:ff:ff:ff:ff:ff' ? 'broadcast' : 'multicast'}, not unicast`;
  return undefined;
}
