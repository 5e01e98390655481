/**
 * `ip -4 addr` over the NetlinkKernel's request socket: every link with its
 * MTU, state and IPv4 addresses, as the interface choice (contract §14) and the
 * underlay checks read them. Kept apart from netlink-kernel.ts, which
 * serialises the call and delegates here.
 */
import type { RtNetlinkSocket } from 'netlink';
import { ipv4FromBytes } from '../net/ipv4';
import type { InterfaceInfo } from './kernel';

const AF_INET = 2;
const REQUEST_TIMEOUT_MS = 10_000;
// Port 0 in the header: see netlink-kernel.ts.
const opts = { flags: 0, timeout: REQUEST_TIMEOUT_MS, localPort: 0 };

/** Every link, kernel order kept, with its IPv4 addresses (scope included). */
export async function readInterfaces(socket: RtNetlinkSocket): Promise<InterfaceInfo[]> {
  const links = await socket.getLinks({}, {}, opts);
  const addrs = await socket.getAddresses({ family: AF_INET }, {}, opts);
  return links.map(({ data, attrs }) => ({
    index: data.index ?? 0,
    name: attrs.ifname ?? '',
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    addresses: addrs
      .filter((a) => a.data.index === data.index)
      .flatMap((a) => {
        const b = a.attrs.local ?? a.attrs.address;
        return b && b.length === 4 ? [{ ip: ipv4FromBytes(b), prefixLen: a.data.prefixlen ?? 32, scope: a.data.scope ?? 0 }] : [];
      }),
  }));
}
