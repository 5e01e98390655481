/**
 * Reading the host's own routes, every table, for the underlay checks
 * (`ip -4 route show table all`, and `ip -6 …` for IPv6). Decoding is a pure
 * function of the bytes of one RTM_NEWROUTE; the dump itself goes through the
 * socket NetlinkKernel owns.
 */
import { Cidr6, ipv6FromBytes } from '../net/ipv6';
import { HostRoute } from './kernel';
import { AF_INET, AF_INET6, NLM_F_DUMP, RTM_GETROUTE, RTM_NEWROUTE, routeDumpRequest } from './rtnl-codec';

const RTMSG_LEN = 12;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
// struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; } then its attributes.
const RTNEXTHOP_LEN = 8;

/** Where the dump runs: `RtnlTransport.dump`, each message decoded as it arrives. */
export interface RouteDumper {
  dump(type: number, flags: number, body: Buffer, onMessage: (type: number, body: Buffer) => void): Promise<void>;
}

/**
 * One IPv4 route message body (struct rtmsg + attributes) as a HostRoute, or
 * undefined for another family or a short message, and for a route whose every
 * device is `exceptDevice` (the overlay device's thousands of routes are ours:
 * issue 10, they were decoded again on every listing pass only to be dropped).
 */
export function decodeHostRoute(data: Buffer, exceptDevice?: number): HostRoute | undefined {
  const r = decodeAnyHostRoute(data, AF_INET, exceptDevice);
  return r as HostRoute | undefined;
}

/** The same for an IPv6 route (16-byte RTA_DST and RTA_GATEWAY). */
export function decodeHostRoute6(data: Buffer, exceptDevice?: number): HostRoute<Cidr6> | undefined {
  return decodeAnyHostRoute(data, AF_INET6, exceptDevice) as HostRoute<Cidr6> | undefined;
}

// One code path for both families: only the address size and reading differ.
function decodeAnyHostRoute(data: Buffer, family: number, exceptDevice: number | undefined): HostRoute | HostRoute<Cidr6> | undefined {
  if (data.length < RTMSG_LEN || data[0] !== family) return undefined;
  const size = family === AF_INET ? 4 : 16;
  const read = (at: number): number | bigint => (size === 4 ? data.readUInt32BE(at) : ipv6FromBytes(data.subarray(at, at + 16)));
  let table = data[4] as number;
  let dst: number | bigint = size === 4 ? 0 : 0n;
  let gateway: number | bigint | undefined;
  const devices: number[] = [];
  let at = RTMSG_LEN;
  while (at + 4 <= data.length) {
    const len = data.readUInt16LE(at);
    if (len < 4 || at + len > data.length) break;
    const type = data.readUInt16LE(at + 2) & 0x3fff;
    const body = at + 4;
    if (type === RTA_TABLE && len === 8) table = data.readUInt32LE(body);
    else if (type === RTA_DST && len === 4 + size) dst = read(body);
    else if (type === RTA_GATEWAY && len === 4 + size) gateway = read(body);
    else if (type === RTA_OIF && len === 8) devices.push(data.readUInt32LE(body));
    else if (type === RTA_MULTIPATH) {
      for (let nh = body; nh + RTNEXTHOP_LEN <= at + len; ) {
        const nhLen = data.readUInt16LE(nh);
        if (nhLen < RTNEXTHOP_LEN) break;
        devices.push(data.readInt32LE(nh + 4));
        nh += (nhLen + 3) & ~3;
      }
    }
    at += (len + 3) & ~3;
  }
  if (exceptDevice !== undefined && devices.length > 0 && devices.every((d) => d === exceptDevice)) return undefined;
  const rest = { table, protocol: data[5] as number, scope: data[6] as number, type: data[7] as number, devices };
  const prefixLen = data[1] as number;
  return typeof dst === 'bigint'
    ? { dst: { ip: dst, prefixLen }, ...rest, gateway: gateway as bigint | undefined }
    : { dst: { ip: dst >>> 0, prefixLen }, ...rest, gateway: gateway as number | undefined };
}

// Every route of `family` in every table, each decoded as it arrives; `decode` drops those it does not want.
async function dumpRoutes<R>(dumper: RouteDumper, family: number, decode: (data: Buffer) => R | undefined): Promise<R[]> {
  const out: R[] = [];
  await dumper.dump(RTM_GETROUTE, NLM_F_DUMP, routeDumpRequest(family), (type, data) => {
    const r = type === RTM_NEWROUTE ? decode(data) : undefined;
    if (r) out.push(r);
  });
  return out;
}

/** Dumps every IPv4 route of every table, but those only on `exceptDevice`. */
export function dumpHostRoutes(dumper: RouteDumper, exceptDevice?: number): Promise<HostRoute[]> {
  return dumpRoutes(dumper, AF_INET, (d) => decodeHostRoute(d, exceptDevice));
}

/** Dumps every IPv6 route of every table, but those only on `exceptDevice`; a kernel without IPv6 has none. */
export function dumpHostRoutes6(dumper: RouteDumper, exceptDevice?: number): Promise<HostRoute<Cidr6>[]> {
  return dumpRoutes(dumper, AF_INET6, (d) => decodeHostRoute6(d, exceptDevice)).catch(() => []);
}
