/**
 * Route, neighbour and FDB rtnetlink messages, built and read by hand: pure
 * functions from entries to message bodies and back, tested on bytes in
 * test/unit/rtnl-codec.test.ts. `NetlinkKernel` sends and receives them.
 *
 * Why by hand: the `netlink` package's generic formatter and parser turn every
 * attribute of every message into objects. Measured with 5,000 peers, that cost
 * 60–70 µs of CPU per request and 80–240 ms per 15,000-entry listing, against
 * 35 µs and 15–40 ms here (`npm run bench` has the end-to-end figures). A body
 * is the fixed header (struct rtmsg or struct ndmsg) followed by attributes, each
 * a 4-byte header (u16 length including the header, u16 type) and a payload
 * padded to 4 bytes (linux/rtnetlink.h, linux/neighbour.h).
 */
import { Entry, Operation, RTPROT_FLANNELD_TS, RouteEntry } from './kernel';
import { parseMac } from '../net/mac';
import { IpAddr, ipToBytes } from '../net/family';
import { ipv6FromBytes } from '../net/ipv6';

export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_DUMP = 0x300;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const RT_TABLE_MAIN = 254;
const RTPROT_KERNEL = 2;
// What `ip route replace` uses when no `proto` is given.
const RTPROT_BOOT = 3;
export const RT_SCOPE_UNIVERSE = 0;
// Deletes with scope NOWHERE match a route of any scope, as `ip route del` does.
const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;
// RTNH_F_ONLINK; the package's RouteFlags has no name for it.
const RTNH_F_ONLINK = 4;
// rtnetlink message types.
export const RTM_NEWLINK = 16;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_TABLE = 15;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_IFINDEX = 8;
const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x02;
// struct nlmsghdr is 16 bytes, struct rtmsg and struct ndmsg 12, struct ifinfomsg 16.
export const NLMSG_HDRLEN = 16;
const RTMSG_LEN = 12;
const NDMSG_LEN = 12;
const IFINFOMSG_LEN = 16;

// An attribute to encode: an address of either family (network order), a u32 (host order) or a MAC.
type Attr = readonly [type: number, kind: 'ip', value: IpAddr] | readonly [type: number, kind: 'u32', value: number] | readonly [type: number, kind: 'mac', value: string];

// Payload bytes of an attribute (its header and padding come on top).
function payloadSize(a: Attr): number {
  if (a[1] === 'ip') return typeof a[2] === 'bigint' ? 16 : 4;
  return a[1] === 'mac' ? 6 : 4;
}

// A message body in one allocation: the fixed header `fill` writes, then the attributes. From
// Node's buffer pool (zeroed by hand): Buffer.alloc gave each of a storm's 15,000 requests its own malloc.
function message(headerLen: number, fill: (b: Buffer) => void, attrs: readonly Attr[]): Buffer {
  let size = headerLen;
  for (const a of attrs) size += (4 + payloadSize(a) + 3) & ~3;
  const out = Buffer.allocUnsafe(size).fill(0);
  fill(out);
  let at = headerLen;
  for (const a of attrs) {
    const len = payloadSize(a);
    out.writeUInt16LE(4 + len, at);
    out.writeUInt16LE(a[0], at + 2);
    if (a[1] === 'mac') out.write(parseMac(a[2]).replace(/:/g, ''), at + 4, 6, 'hex');
    else if (a[1] === 'ip') {
      if (typeof a[2] === 'bigint') ipToBytes(a[2]).copy(out, at + 4);
      else out.writeUInt32BE(a[2] >>> 0, at + 4);
    } else out.writeUInt32LE(a[2] >>> 0, at + 4);
    at += (4 + len + 3) & ~3;
  }
  return out;
}

// struct ndmsg { u8 family; u8 pad[3]; s32 ifindex; u16 state; u8 flags; u8 type; }
function ndmsg(family: number, ifindex: number, state: number, flags: number, attrs: readonly Attr[]): Buffer {
  return message(NDMSG_LEN, (h) => {
    h[0] = family;
    h.writeInt32LE(ifindex, 4);
    h.writeUInt16LE(state, 8);
    h[10] = flags;
  }, attrs);
}

// struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; } in the main table.
function rtmsg(family: number, dstLen: number, protocol: number, scope: number, type: number, flags: number, attrs: readonly Attr[]): Buffer {
  return message(RTMSG_LEN, (h) => {
    h[0] = family;
    h[1] = dstLen;
    h[4] = RT_TABLE_MAIN;
    h[5] = protocol;
    h[6] = scope;
    h[7] = type;
    h.writeUInt32LE(flags, 8);
  }, attrs);
}

// Calls `fn(type, offset, length)` for each attribute of a message body from `at`; stops at a malformed one.
function eachAttr(data: Buffer, at: number, fn: (type: number, offset: number, length: number) => void): void {
  while (at + 4 <= data.length) {
    const len = data.readUInt16LE(at);
    if (len < 4 || at + len > data.length) return;
    // The top two bits are the nested / byte-order flags, not part of the type.
    fn(data.readUInt16LE(at + 2) & 0x3fff, at + 4, len - 4);
    at += (len + 3) & ~3;
  }
}

function macAt(data: Buffer, at: number): string {
  const h = data.toString('hex', at, at + 6);
  return `${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${h.slice(8, 10)}:${h.slice(10, 12)}`;
}

// An address attribute's payload: 4 bytes IPv4 (a number), 16 bytes IPv6 (a bigint), else undefined.
function ipAt(data: Buffer, at: number, len: number): IpAddr | undefined {
  if (len === 4) return data.readUInt32BE(at);
  if (len === 16) return ipv6FromBytes(data.subarray(at, at + 16));
  return undefined;
}

/**
 * One RTM_NEWROUTE / RTM_DELROUTE body (IPv4 or IPv6) as a route on `index`, or
 * as one of our direct routes (main table, proto RTPROT_FLANNELD_TS, any
 * device), or undefined (another device or table, proto kernel).
 */
export function decodeRoute(data: Buffer, index: number): RouteEntry | undefined {
  if (data.length < RTMSG_LEN || data[5] === RTPROT_KERNEL) return undefined;
  const family = data[0];
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const direct = data[5] === RTPROT_FLANNELD_TS;
  const size = family === AF_INET ? 4 : 16;
  let table = data[4] as number;
  let oif: number | undefined;
  // A route without a destination or gateway is reported with the zero address, so it can be compared and removed.
  let dst: IpAddr = family === AF_INET ? 0 : 0n;
  let gateway: IpAddr = dst;
  let malformed = false;
  eachAttr(data, RTMSG_LEN, (type, at, len) => {
    if (type === RTA_TABLE && len === 4) table = data.readUInt32LE(at);
    else if (type === RTA_OIF && len === 4) oif = data.readUInt32LE(at);
    else if (type === RTA_DST || type === RTA_GATEWAY) {
      // An address of the other family's size: not a route we could have made.
      if (len !== size) malformed = true;
      else if (type === RTA_DST) dst = ipAt(data, at, len) as IpAddr;
      else gateway = ipAt(data, at, len) as IpAddr;
    }
  });
  if (malformed || table !== RT_TABLE_MAIN || (!direct && oif !== index)) return undefined;
  const prefixLen = data[1] as number;
  const route = direct
    ? ({ kind: 'route', gateway, onlink: false, direct: true } as const)
    : ({ kind: 'route', gateway, onlink: (data.readUInt32LE(8) & RTNH_F_ONLINK) !== 0 } as const);
  return typeof dst === 'bigint' ? { ...route, dst: { ip: dst, prefixLen } } : { ...route, dst: { ip: dst, prefixLen } };
}

/** RTA_OIF of a route body, or undefined (multipath routes have none). */
export function routeOif(data: Buffer): number | undefined {
  let oif: number | undefined;
  eachAttr(data, RTMSG_LEN, (type, at, len) => {
    if (type === RTA_OIF && len === 4) oif = data.readUInt32LE(at);
  });
  return oif;
}

/** struct ndmsg's ifindex of a neighbour or FDB body, or undefined when too short. */
export function neighborIfindex(data: Buffer): number | undefined {
  return data.length < NDMSG_LEN ? undefined : data.readInt32LE(4);
}

/**
 * One RTM_NEWNEIGH / RTM_DELNEIGH body of a neighbour (AF_INET, AF_INET6) or FDB
 * (AF_BRIDGE, dst of either family) as an entry on `index`, or undefined.
 * Incomplete neighbours (no lladdr) and FDB entries without a dst have nothing
 * to compare and are left out.
 */
export function decodeNeighbor(data: Buffer, index: number): Entry | undefined {
  if (data.length < NDMSG_LEN || data.readInt32LE(4) !== index) return undefined;
  const family = data[0];
  if (family !== AF_INET && family !== AF_INET6 && family !== AF_BRIDGE) return undefined;
  let ip: IpAddr | undefined;
  let mac: string | undefined;
  eachAttr(data, NDMSG_LEN, (type, at, len) => {
    if (type === NDA_DST) ip = ipAt(data, at, len);
    else if (type === NDA_LLADDR && len === 6) mac = macAt(data, at);
  });
  if (ip === undefined || mac === undefined) return undefined;
  // A neighbour's address is of its table's family.
  if ((family === AF_INET && typeof ip !== 'number') || (family === AF_INET6 && typeof ip !== 'bigint')) return undefined;
  // The kernel's own NOARP entries for the IPv6 multicast groups the device joined (ff02::1:ff…, lladdr 33:33:…): never a peer's.
  if (family === AF_INET6 && (ip as bigint) >> 120n === 0xffn) return undefined;
  const permanent = (data.readUInt16LE(8) & NUD_PERMANENT) !== 0;
  return family === AF_BRIDGE ? { kind: 'fdb', mac, dst: ip, permanent } : { kind: 'neighbor', ip, mac, permanent };
}

/** The request for one operation on device `index`: message type, header flags and body. */
export function encodeOperation(index: number, { op, entry }: Operation): { type: number; flags: number; body: Buffer } {
  const replace = NLM_F_CREATE | NLM_F_REPLACE;
  switch (entry.kind) {
    case 'route': {
      const family = typeof entry.dst.ip === 'bigint' ? AF_INET6 : AF_INET;
      const dst: Attr[] = entry.dst.prefixLen > 0 ? [[RTA_DST, 'ip', entry.dst.ip]] : [];
      if (entry.direct) {
        const via: Attr[] = [...dst, [RTA_GATEWAY, 'ip', entry.gateway]];
        // `ip [-6] route del <dst> via <gateway> proto 152`: the kernel matches the protocol and gateway, so only our route goes.
        if (op === 'delete') return { type: RTM_DELROUTE, flags: 0, body: rtmsg(family, entry.dst.prefixLen, RTPROT_FLANNELD_TS, RT_SCOPE_NOWHERE, 0, 0, via) };
        // `ip [-6] route replace <dst> via <gateway> proto 152`: no device, the kernel picks it (as flanneld's direct route).
        return { type: RTM_NEWROUTE, flags: replace, body: rtmsg(family, entry.dst.prefixLen, RTPROT_FLANNELD_TS, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0, via) };
      }
      if (op === 'delete') {
        // `ip [-6] route del <dst> dev <index>`: scope NOWHERE matches a route of any scope, whatever its gateway.
        return { type: RTM_DELROUTE, flags: 0, body: rtmsg(family, entry.dst.prefixLen, 0, RT_SCOPE_NOWHERE, 0, 0, [...dst, [RTA_OIF, 'u32', index]]) };
      }
      // `ip [-6] route replace <dst> via <gateway> dev <index> [onlink]`
      const attrs: Attr[] = [...dst, [RTA_GATEWAY, 'ip', entry.gateway], [RTA_OIF, 'u32', index]];
      return { type: RTM_NEWROUTE, flags: replace, body: rtmsg(family, entry.dst.prefixLen, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, entry.onlink ? RTNH_F_ONLINK : 0, attrs) };
    }
    case 'neighbor': {
      const family = typeof entry.ip === 'bigint' ? AF_INET6 : AF_INET;
      const dst: Attr = [NDA_DST, 'ip', entry.ip];
      // `ip [-6] neigh del <ip> dev <index>`
      if (op === 'delete') return { type: RTM_DELNEIGH, flags: 0, body: ndmsg(family, index, 0, 0, [dst]) };
      // `ip [-6] neigh replace <ip> lladdr <mac> dev <index> nud permanent`
      return { type: RTM_NEWNEIGH, flags: replace, body: ndmsg(family, index, NUD_PERMANENT, 0, [dst, [NDA_LLADDR, 'mac', entry.mac]]) };
    }
    case 'fdb': {
      // With NDA_DST the VXLAN driver removes only that remote of the MAC (`bridge fdb del <mac> dev <index> dst <ip> self`),
      // so dropping an extra appended remote leaves the wanted one in place. The dst is 4 or 16 bytes.
      const attrs: Attr[] = [[NDA_LLADDR, 'mac', entry.mac], [NDA_DST, 'ip', entry.dst]];
      if (op === 'delete') return { type: RTM_DELNEIGH, flags: 0, body: ndmsg(AF_BRIDGE, index, 0, NTF_SELF, attrs) };
      // `bridge fdb replace <mac> dev <index> dst <ip> self permanent`
      return { type: RTM_NEWNEIGH, flags: replace, body: ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, attrs) };
    }
  }
}

/** Every route of one family (`ip [-6] route show`): the kernel filters by device only on strict-checking sockets. */
export function routeDumpRequest(family: number = AF_INET): Buffer {
  const h = Buffer.alloc(RTMSG_LEN);
  h[0] = family;
  return h;
}

/** The device's neighbours of one family (`ip [-6] neigh show dev <dev>`): NDA_IFINDEX filters in the kernel. */
export function neighborDumpRequest(index: number, family: number = AF_INET): Buffer {
  return ndmsg(family, 0, 0, 0, [[NDA_IFINDEX, 'u32', index]]);
}

/** The device's FDB (`bridge fdb show dev <dev>`): an ifinfomsg naming the device filters in the kernel. */
export function fdbDumpRequest(index: number): Buffer {
  const ifinfo = Buffer.alloc(IFINFOMSG_LEN);
  ifinfo[0] = AF_BRIDGE;
  ifinfo.writeInt32LE(index, 4);
  return ifinfo;
}

/** One message of a datagram: struct nlmsghdr's type, flags, sequence and port, and the body after it. */
export interface NlMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  /** nlmsg_pid: for a notification, the port of the socket whose request caused it (0 for the kernel's own). */
  readonly port: number;
  readonly data: Buffer;
}

/** Splits a datagram into its messages; stops at a malformed header. The bodies share the datagram's memory. */
export function splitDatagram(datagram: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  for (let at = 0; at + NLMSG_HDRLEN <= datagram.length; ) {
    const len = datagram.readUInt32LE(at);
    if (len < NLMSG_HDRLEN || at + len > datagram.length) break;
    out.push({
      type: datagram.readUInt16LE(at + 4),
      flags: datagram.readUInt16LE(at + 6),
      seq: datagram.readUInt32LE(at + 8),
      port: datagram.readUInt32LE(at + 12),
      data: datagram.subarray(at + NLMSG_HDRLEN, at + len),
    });
    at += (len + 3) & ~3;
  }
  return out;
}
