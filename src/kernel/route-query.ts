/**
 * The reads `flanneld-ts trace` makes of this host's kernel beyond what status
 * reads: a route lookup as the kernel does it for a packet (RTM_GETROUTE, what
 * `ip route get` sends), every link with its kind, master and veth peer, and the
 * id this namespace gives another one (RTM_GETNSID, what `ip netns list-id`
 * shows), so a host veth's `link-netnsid` can be tied to a pod's namespace file.
 *
 * Encoding and decoding are pure functions with byte-level tests; the requests go
 * through NetlinkKernel's socket (its few delegating methods call these).
 */
import { open } from 'node:fs/promises';
import type { RtNetlinkSocket } from 'netlink';
import { IpAddr, formatIp } from '../net/family';
import { ipv6FromBytes, ipv6ToBytes } from '../net/ipv6';
import { macFromBytes } from '../net/mac';
import { parseAttributes, decodeLinkInfo } from './vxlan-linkinfo';
import type { RouteLookup as HostRouteLookup } from './interfaces';

const AF_INET = 2;
const AF_INET6 = 10;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_IIF = 3;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
const RTMSG_LEN = 12;
const RTGENMSG_LEN = 4;
const REQUEST_TIMEOUT_MS = 10_000;
/** rtm_type values (linux/rtnetlink.h) by name, for messages. */
const ROUTE_TYPES: Record<number, string> = { 1: 'unicast', 2: 'local', 3: 'broadcast', 4: 'anycast', 5: 'multicast', 6: 'blackhole', 7: 'unreachable', 8: 'prohibit', 9: 'throw', 10: 'nat' };

/** `ip [-6] route get <dst> [from <src>] [iif <dev>]`: a packet to look up (IPv4 numbers by default, IPv6 bigints). */
export interface RouteQuery<A extends IpAddr = number> {
  readonly dst: A;
  readonly src?: A | undefined;
  /** ifindex the packet arrives on (a forwarded packet); undefined for one this host sends. */
  readonly iif?: number | undefined;
}

/** What the kernel answered for a RouteQuery (addresses of the query's family). */
export interface RouteLookup<A extends IpAddr = number> {
  /** "unicast", "local", "unreachable", … */
  readonly type: string;
  readonly table: number;
  readonly oif: number | undefined;
  readonly gateway: A | undefined;
  /** The source address the host would pick (RTA_PREFSRC). */
  readonly prefsrc: A | undefined;
}

/** One link with what a path walk needs: kind, MAC, bridge master, veth peer. */
export interface LinkDetail {
  readonly index: number;
  readonly name: string;
  /** IFLA_INFO_KIND: "veth", "bridge", "vxlan", "" for a plain device. */
  readonly kind: string;
  readonly mac: string;
  readonly mtu: number;
  readonly up: boolean;
  /** ifindex of the bridge it is a port of (IFLA_MASTER). */
  readonly master: number | undefined;
  /** IFLA_LINK: for a veth, the peer's ifindex (in the namespace `linkNetnsid` names, if set). */
  readonly peerIndex: number | undefined;
  /** IFLA_LINK_NETNSID: the namespace the peer lives in, as this namespace numbers it. */
  readonly linkNetnsid: number | undefined;
}

/** The host-side reads of `trace`, implemented by NetlinkKernel. */
export interface RouteReader {
  /** `ip route get <dst> [from <src>] [iif <dev>]`; rejects with the kernel's errno (EXDEV: rp_filter, ENETUNREACH, …). */
  routeQuery<A extends IpAddr>(query: RouteQuery<A>): Promise<RouteLookup<A>>;
  /** `ip -d link show` */
  listLinks(): Promise<LinkDetail[]>;
  /** `ip netns list-id` for the namespace file at `path`; undefined when this namespace gave it no id. */
  netnsId(path: string): Promise<number | undefined>;
}

function u32Attr(type: number, value: number, bigEndian: boolean): Buffer {
  const a = Buffer.alloc(8);
  a.writeUInt16LE(8, 0);
  a.writeUInt16LE(type, 2);
  if (bigEndian) a.writeUInt32BE(value >>> 0, 4);
  else a.writeUInt32LE(value >>> 0, 4);
  return a;
}

// An address attribute: 4 bytes (IPv4, network order) or 16 bytes (IPv6).
function ipAttr(type: number, ip: IpAddr): Buffer {
  if (typeof ip === 'number') return u32Attr(type, ip, true);
  const a = Buffer.alloc(20);
  a.writeUInt16LE(20, 0);
  a.writeUInt16LE(type, 2);
  Buffer.from(ipv6ToBytes(ip)).copy(a, 4);
  return a;
}

/** The RTM_GETROUTE body `ip [-6] route get` sends: struct rtmsg, then RTA_DST, RTA_SRC, RTA_IIF; the family is the address's. */
export function encodeRouteQuery(q: RouteQuery<IpAddr>): Buffer {
  const v6 = typeof q.dst === 'bigint';
  const bits = v6 ? 128 : 32;
  const h = Buffer.alloc(RTMSG_LEN);
  h[0] = v6 ? AF_INET6 : AF_INET;
  h[1] = bits;
  h[2] = q.src === undefined ? 0 : bits;
  const attrs = [ipAttr(RTA_DST, q.dst)];
  if (q.src !== undefined) attrs.push(ipAttr(RTA_SRC, q.src));
  if (q.iif !== undefined) attrs.push(u32Attr(RTA_IIF, q.iif, false));
  return Buffer.concat([h, ...attrs]);
}

/** The RTM_NEWROUTE answer to a RouteQuery: IPv4 addresses as numbers, IPv6 ones (an AF_INET6 answer) as bigints. */
export function decodeRouteLookup(data: Buffer): RouteLookup<IpAddr> {
  if (data.length < RTMSG_LEN) throw new Error(`route lookup answer of ${data.length} bytes is shorter than struct rtmsg`);
  const size = data[0] === AF_INET6 ? 16 : 4;
  let table = data[4] as number;
  let oif: number | undefined;
  let gateway: IpAddr | undefined;
  let prefsrc: IpAddr | undefined;
  const ip = (b: Buffer): IpAddr => (size === 16 ? ipv6FromBytes(b) : b.readUInt32BE(0));
  for (const { type, payload } of parseAttributes(data.subarray(RTMSG_LEN))) {
    if (type === RTA_TABLE && payload.length === 4) table = payload.readUInt32LE(0);
    else if (type === RTA_OIF && payload.length === 4) oif = payload.readUInt32LE(0);
    else if (type === RTA_GATEWAY && payload.length === size) gateway = ip(payload);
    else if (type === RTA_PREFSRC && payload.length === size) prefsrc = ip(payload);
  }
  const t = data[7] as number;
  return { type: ROUTE_TYPES[t] ?? `type ${t}`, table, oif, gateway, prefsrc };
}

/** RTM_GETNSID for the namespace behind an open file descriptor. */
export function encodeNsidQuery(fd: number): Buffer {
  return Buffer.concat([Buffer.alloc(RTGENMSG_LEN), u32Attr(NETNSA_FD, fd, false)]);
}

/** The NSID in an RTM_NEWNSID answer; undefined for NETNSA_NSID_NOT_ASSIGNED (-1). */
export function decodeNsid(data: Buffer): number | undefined {
  for (const { type, payload } of parseAttributes(data.subarray(RTGENMSG_LEN))) {
    if (type === NETNSA_NSID && payload.length === 4) {
      const id = payload.readInt32LE(0);
      return id < 0 ? undefined : id;
    }
  }
  return undefined;
}

/** A RouteQuery in `ip route get` words: "10.7.34.2 from 10.7.24.2 iif cni0". */
export function describeRouteQuery(q: RouteQuery<IpAddr>, ifName: (index: number) => string): string {
  return `${formatIp(q.dst)}${q.src === undefined ? '' : ` from ${formatIp(q.src)}`}${q.iif === undefined ? '' : ` iif ${ifName(q.iif)}`}`;
}

const opts = { timeout: REQUEST_TIMEOUT_MS, localPort: 0 };

/** `ip [-6] route get`, on `socket`; the answer's addresses are of the query's family. */
export async function queryRoute<A extends IpAddr = number>(socket: RtNetlinkSocket, q: RouteQuery<A>): Promise<RouteLookup<A>> {
  const [messages] = await socket.socket.request(RTM_GETROUTE, encodeRouteQuery(q), { ...opts, flags: 0 });
  const answer = messages.find((m) => m.type === RTM_NEWROUTE);
  if (!answer) throw new Error('no RTM_NEWROUTE in the answer');
  return decodeRouteLookup(answer.data) as RouteLookup<A>;
}

/**
 * `ip [-6] route get <dst>` as the daemon needs it (--iface-can-reach, DirectRouting
 * for either family): output interface, preferred source, gateway and type;
 * undefined when the kernel has no route (ENETUNREACH and the like). The same
 * RTM_GETROUTE as `trace`'s.
 */
export async function lookupRoute<A extends IpAddr>(socket: RtNetlinkSocket, dst: A): Promise<HostRouteLookup<A> | undefined> {
  let answer: RouteLookup<A>;
  try {
    answer = await queryRoute(socket, { dst });
  } catch (err) {
    if (/ENETUNREACH|EHOSTUNREACH|ENETDOWN|EINVAL/.test(String((err as Error).message ?? err))) return undefined;
    throw err;
  }
  if (answer.oif === undefined) return undefined;
  return { index: answer.oif, src: answer.prefsrc, gateway: answer.gateway, type: answer.type };
}

/** `ip -d link show`, on `socket`. */
export async function queryLinks(socket: RtNetlinkSocket): Promise<LinkDetail[]> {
  const links = await socket.getLinks({}, {}, { ...opts, flags: 0 });
  return links.map(({ data, attrs }) => ({
    index: data.index ?? 0,
    name: attrs.ifname ?? '',
    kind: decodeLinkInfo(attrs.linkinfo).kind,
    mac: attrs.address && attrs.address.length === 6 ? macFromBytes(attrs.address) : '',
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    master: attrs.master,
    peerIndex: attrs.link && attrs.link.length === 4 ? attrs.link.readUInt32LE(0) : undefined,
    linkNetnsid: attrs.linkNetnsid,
  }));
}

/** `ip netns list-id` for one namespace file, on `socket`: the file is opened so the kernel can resolve it by descriptor. */
export async function queryNetnsId(socket: RtNetlinkSocket, path: string): Promise<number | undefined> {
  const file = await open(path, 'r');
  try {
    const [messages] = await socket.socket.request(RTM_GETNSID, encodeNsidQuery(file.fd), { ...opts, flags: 0 });
    const answer = messages.find((m) => m.type === RTM_NEWNSID);
    return answer ? decodeNsid(answer.data) : undefined;
  } finally {
    await file.close();
  }
}
