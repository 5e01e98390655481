/**
 * Reading the host's own routes, every table, for the underlay checks
 * (`ip -4 route show table all`). Decoding is a pure function of the bytes of
 * one RTM_NEWROUTE; the dump itself goes through the socket NetlinkKernel owns.
 */
import { RtNetlinkSocket } from 'netlink';
import { HostRoute } from './kernel';

const AF_INET = 2;
const RTM_GETROUTE = 26;
const NLM_F_DUMP = 0x300;
const RTMSG_LEN = 12;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
// struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; } then its attributes.
const RTNEXTHOP_LEN = 8;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * One route message body (struct rtmsg + attributes) as a HostRoute, or
 * undefined for another family or a short message, and for a route whose every
 * device is `exceptDevice` (the overlay device's thousands of routes are ours:
 * issue 10, they were decoded again on every listing pass only to be dropped).
 */
export function decodeHostRoute(data: Buffer, exceptDevice?: number): HostRoute | undefined {
  if (data.length < RTMSG_LEN || data[0] !== AF_INET) return undefined;
  let table = data[4] as number;
  let dst = 0;
  let gateway: number | undefined;
  const devices: number[] = [];
  let at = RTMSG_LEN;
  while (at + 4 <= data.length) {
    const len = data.readUInt16LE(at);
    if (len < 4 || at + len > data.length) break;
    const type = data.readUInt16LE(at + 2) & 0x3fff;
    const body = at + 4;
    if (type === RTA_TABLE && len === 8) table = data.readUInt32LE(body);
    else if (type === RTA_DST && len === 8) dst = data.readUInt32BE(body);
    else if (type === RTA_GATEWAY && len === 8) gateway = data.readUInt32BE(body);
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
  return { dst: { ip: dst >>> 0, prefixLen: data[1] as number }, table, protocol: data[5] as number, scope: data[6] as number, type: data[7] as number, devices, gateway };
}

/** Dumps every IPv4 route of every table on `socket`, but those only on `exceptDevice`. */
export async function dumpHostRoutes(socket: RtNetlinkSocket, exceptDevice?: number): Promise<HostRoute[]> {
  const request = Buffer.alloc(RTMSG_LEN);
  request[0] = AF_INET;
  const [messages] = await socket.socket.request(RTM_GETROUTE, request, { flags: NLM_F_DUMP, timeout: REQUEST_TIMEOUT_MS, localPort: 0 });
  return messages.flatMap((m) => {
    const route = m.type === 24 ? decodeHostRoute(m.data, exceptDevice) : undefined;
    return route ? [route] : [];
  });
}
