/**
 * `ip -d link show <name>` + `ip [-6] addr show dev <name>` over the
 * NetlinkKernel's request socket: the overlay device as `DeviceState`, its
 * VXLAN attributes decoded by `vxlan-linkinfo.ts`. Kept apart from
 * netlink-kernel.ts, which serialises the call and delegates here.
 */
import type { RtNetlinkSocket, rt } from 'netlink';
import { ipv4FromBytes } from '../net/ipv4';
import { ipv6FromBytes } from '../net/ipv6';
import { macFromBytes } from '../net/mac';
import { errnoName } from './netlink-errors';
import type { DeviceState } from './kernel';
import { decodeLinkInfo } from './vxlan-linkinfo';

const AF_INET = 2;
const AF_INET6 = 10;
const REQUEST_TIMEOUT_MS = 10_000;
// Port 0 in the header: see netlink-kernel.ts.
const opts = { flags: 0, timeout: REQUEST_TIMEOUT_MS, localPort: 0 };

/** The link named `name` with its addresses, or undefined when there is none. */
export async function readDevice(socket: RtNetlinkSocket, name: string): Promise<DeviceState | undefined> {
  let link: rt.LinkMessage | undefined;
  try {
    [link] = await socket.getLink({}, { ifname: name }, opts);
  } catch (err) {
    if (errnoName(err) === 'ENODEV') return undefined;
    throw err;
  }
  if (!link) return undefined;
  const { data, attrs } = link;
  const index = data.index ?? 0;
  const info = decodeLinkInfo(attrs.linkinfo);
  const addrs = await socket.getAddresses({ family: AF_INET }, {}, opts);
  const addrs6 = await socket.getAddresses({ family: AF_INET6 }, {}, opts);
  return {
    index,
    name: attrs.ifname ?? name,
    kind: info.kind,
    mac: attrs.address && attrs.address.length === 6 ? macFromBytes(attrs.address) : '',
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    ...info.vxlan,
    addresses: addrs.flatMap((a) => {
      const b = a.attrs.local ?? a.attrs.address;
      return a.data.index === index && b && b.length === 4 ? [{ ip: ipv4FromBytes(b), prefixLen: a.data.prefixlen ?? 32 }] : [];
    }),
    addresses6: addrs6.flatMap((a) => {
      const b = a.attrs.local ?? a.attrs.address;
      return a.data.index === index && b && b.length === 16 ? [{ ip: ipv6FromBytes(b), prefixLen: a.data.prefixlen ?? 128 }] : [];
    }),
  };
}
