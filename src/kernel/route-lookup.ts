/**
 * The host facts flanneld's interface choice needs beyond `ip -4 addr`
 * (contract §14), read over the NetlinkKernel's request socket:
 * - address flags (`ip -4 addr` shows them as dynamic / secondary / deprecated);
 * (`ip route get <ip>` for --iface-can-reach and DirectRouting is route-query.ts's `lookupRoute`, the one route lookup);
 * - the main table's first default route, which may be multipath.
 * Kept apart from netlink-kernel.ts, which delegates here.
 */
import type { RtNetlinkSocket, rt } from 'netlink';
import { ipv4FromBytes } from '../net/ipv4';
import { ipv6FromBytes } from '../net/ipv6';
import { DefaultRoute, IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_TEMPORARY, addressKey } from './interfaces';
import type { InterfaceAddress6 } from './kernel';

const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const RTN_UNICAST = 1;
const REQUEST_TIMEOUT_MS = 5_000;
const opts = { flags: 0, timeout: REQUEST_TIMEOUT_MS, localPort: 0 };

const ipOf = (b: Buffer | undefined): number | undefined => (b && b.length === 4 ? ipv4FromBytes(b) : undefined);

/** The ifa_flags bits flanneld looks at; the u32 IFA_FLAGS attribute wins over the u8 header field, as in the kernel. */
function flagBits(f: rt.AddressFlags | undefined): number {
  if (!f) return 0;
  return (f.secondary ? IFA_F_TEMPORARY : 0) | (f.deprecated ? IFA_F_DEPRECATED : 0) | (f.permanent ? IFA_F_PERMANENT : 0);
}

/** `ip -4 addr`: flags of each address, keyed by `addressKey(index, ip)`. */
export async function readAddressFlags(socket: RtNetlinkSocket): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const a of await socket.getAddresses({ family: AF_INET }, {}, opts)) {
    const ip = ipOf(a.attrs.local ?? a.attrs.address);
    if (ip !== undefined) out.set(addressKey(a.data.index ?? 0, ip), flagBits(a.attrs.flags ?? a.data.flags));
  }
  return out;
}

/** `ip -6 addr`: every IPv6 address with scope and flags, by interface index, kernel order kept. */
export async function readAddresses6(socket: RtNetlinkSocket): Promise<Map<number, InterfaceAddress6[]>> {
  const out = new Map<number, InterfaceAddress6[]>();
  for (const a of await socket.getAddresses({ family: AF_INET6 }, {}, opts)) {
    const b = a.attrs.local ?? a.attrs.address;
    if (!b || b.length !== 16) continue;
    const index = a.data.index ?? 0;
    const list = out.get(index) ?? [];
    list.push({ ip: ipv6FromBytes(b), prefixLen: a.data.prefixlen ?? 128, scope: a.data.scope ?? 0, flags: flagBits(a.attrs.flags ?? a.data.flags) });
    out.set(index, list);
  }
  return out;
}

/** `ip [-6] route show default` in the main table: the lowest-metric one's interface, or `multipath`. */
export async function readDefaultRoute(socket: RtNetlinkSocket, family: 2 | 10 = AF_INET): Promise<DefaultRoute> {
  const routes = await socket.getRoutes({ family }, {}, opts);
  const defaults = routes.filter(({ data, attrs }) => {
    const unicast = data.type === 'UNICAST' || data.type === RTN_UNICAST;
    return data.dstLen === 0 && (attrs.table ?? data.table) === RT_TABLE_MAIN && unicast;
  });
  defaults.sort((a, b) => (a.attrs.priority ?? 0) - (b.attrs.priority ?? 0));
  const first = defaults[0];
  if (!first) return undefined;
  if (first.attrs.oif !== undefined) return first.attrs.oif;
  return first.attrs.multipath ? 'multipath' : undefined;
}
