/**
 * The real `Kernel`, over rtnetlink with the `netlink` package (the only module
 * that imports it). Facts it relies on are measured in shared/netlink-notes.md.
 *
 * One socket carries requests, one separate socket listens to multicast groups
 * for `watch`. Public calls are serialised: a dump must not overlap other
 * requests on its socket (the package groups multipart replies per socket, and
 * the kernel runs one dump per socket at a time). Within `apply`, requests are
 * pipelined with at most MAX_IN_FLIGHT outstanding.
 *
 * Why the window and the paused watch matter: when a socket's receive queue
 * overflows, the package's native poll handler fails while building the ENOBUFS
 * error and aborts the process (`terminate called after throwing an instance of
 * 'Napi::Error'`), which no JavaScript handler can catch. Measured: 300 requests
 * in flight on a default 208 KiB receive buffer abort; 200 do not. So requests
 * stay windowed, and the watch socket leaves its groups while we make a burst of
 * changes ourselves (thousands of notifications), then reports one change.
 *
 * Route, neighbour and FDB messages — the thousands of requests of a storm and
 * the dumps of every reconcile pass — are built and read here by hand (a few
 * fixed offsets and attributes) and sent through the package's request layer.
 * Its generic formatter and parser turn every attribute of every message into
 * objects: measured with 5,000 peers, that cost 60–70 µs of CPU per request and
 * 80–240 ms per 15,000-entry listing, against 35 µs and 15–40 ms by hand
 * (`npm run bench` has the end-to-end figures). Links and addresses, a handful
 * per pass, keep the package's typed calls. The watch socket is a raw one: a
 * notification only has to say "something changed", so only its message type
 * and, for neighbour and FDB changes, its device index are read.
 */
import { createRtNetlink, Protocol, RawNetlinkSocket, rt, RtNetlinkSocket } from 'netlink';
import { Cidr, formatIPv4, ipv4FromBytes, ipv4ToBytes } from '../net/ipv4';
import { macFromBytes, macToBytes, parseMac } from '../net/mac';
import { KernelError, errorMessage } from '../util/errors';
import {
  DeviceState,
  Entry,
  InterfaceInfo,
  Kernel,
  LinkChange,
  Operation,
  OperationResult,
  RouteEntry,
  VxlanSpec,
} from './kernel';
import { decodeLinkInfo, encodeVxlanLinkInfo } from './vxlan-linkinfo';
import { ChangeCause, describeEntry } from './kernel';
import { LinkDetail, RouteLookup, RouteQuery, RouteReader, queryLinks, queryNetnsId, queryRoute } from './route-query';

const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const AF_INET = 2;
const AF_BRIDGE = 7;
const RT_TABLE_MAIN = 254;
const RTPROT_KERNEL = 2;
// What `ip route replace` uses when no `proto` is given.
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
// Deletes with scope NOWHERE match a route of any scope, as `ip route del` does.
const RT_SCOPE_NOWHERE = 255;
const RTN_UNICAST = 1;
// RTNH_F_ONLINK; the package's RouteFlags has no name for it.
const RTNH_F_ONLINK = 4;
const MAX_IN_FLIGHT = 64;
const REQUEST_TIMEOUT_MS = 10_000;
const REQUEST_RCVBUF = 1 << 20;
// Asked for; the kernel caps it at net.core.rmem_max.
const WATCH_RCVBUF = 16 << 20;
const WATCH_GROUPS = [rt.MulticastGroups.LINK, rt.MulticastGroups.IPV4_IFADDR, rt.MulticastGroups.IPV4_ROUTE, rt.MulticastGroups.NEIGH];
// rtnetlink message types and attributes (linux/rtnetlink.h, linux/neighbour.h).
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;
const NLM_F_DUMP = 0x300;
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
const NLMSG_HDRLEN = 16;
const RTMSG_LEN = 12;
const NDMSG_LEN = 12;
const IFINFOMSG_LEN = 16;
const TRANSIENT_ERRNOS = new Set(['EBUSY', 'EAGAIN', 'ENOBUFS', 'EINTR', 'ETIMEDOUT']);

/** The errno name of a failed request: the package rejects with "Request rejected: ENOENT". */
export function errnoName(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  const message = errorMessage(err);
  if (message.includes('Timeout has been reached')) return 'ETIMEDOUT';
  return /Request rejected: (\S+)/.exec(message)?.[1];
}

function kernelError(what: string, err: unknown): KernelError {
  const errno = errnoName(err);
  const transient = errno !== undefined && TRANSIENT_ERRNOS.has(errno);
  return new KernelError(`failed to ${what}: ${errno ?? errorMessage(err)}`, errno, transient, { cause: err });
}

// Runs `request`, counting the listed errnos (the thing is already gone) as success.
async function ignoring(errnos: readonly string[], request: () => Promise<unknown>): Promise<void> {
  try {
    await request();
  } catch (err) {
    if (!errnos.includes(errnoName(err) ?? '')) throw err;
  }
}

function ipOf(b: Buffer | undefined): number | undefined {
  return b && b.length === 4 ? ipv4FromBytes(b) : undefined;
}

function macOf(b: Buffer | undefined): string | undefined {
  return b && b.length === 6 ? macFromBytes(b) : undefined;
}

// Port 0 in the header: the kernel answers the sending socket whatever it says, and without it the
// package asks the socket for its address (a getsockname and an object) on every request.
const opts = (flags: number) => ({ flags, timeout: REQUEST_TIMEOUT_MS, localPort: 0 });

function entryKey(entry: Entry): string {
  if (entry.kind === 'route') return `route ${entry.dst.ip}/${entry.dst.prefixLen}`;
  return entry.kind === 'neighbor' ? `neighbor ${entry.ip}` : `fdb ${entry.mac}`;
}

/**
 * Runs `exec(i)` for every operation, at most `window` at a time, starting each as
 * soon as the operations it depends on have completed. Operation j waits for an
 * earlier operation i when they touch the same entry, when j replaces a route and
 * i is a neighbour or FDB operation (the kernel must never need to resolve a
 * gateway it has no entries for), or when j deletes a neighbour or FDB entry and i
 * is a route operation (routes go first on removal). Everything else overlaps.
 * `exec` must not reject. Exported for tests.
 */
export function runInOrder(operations: readonly Operation[], window: number, exec: (i: number) => Promise<void>): Promise<void> {
  const n = operations.length;
  const done = new Uint8Array(n);
  const sameKeyBefore = new Int32Array(n).fill(-1);
  const last = new Map<string, number>();
  const routes: number[] = [];
  const others: number[] = [];
  operations.forEach(({ entry }, i) => {
    const key = entryKey(entry);
    sameKeyBefore[i] = last.get(key) ?? -1;
    last.set(key, i);
    (entry.kind === 'route' ? routes : others).push(i);
  });
  // Index of the first operation of each group not yet completed (n when none).
  let routeAt = 0;
  let otherAt = 0;
  const firstPending = (list: number[], at: number): number => (at < list.length ? (list[at] as number) : n);
  const ready = (i: number): boolean => {
    const before = sameKeyBefore[i] as number;
    if (before >= 0 && done[before] === 0) return false;
    const { op, entry } = operations[i] as Operation;
    if (entry.kind === 'route') return op === 'delete' || firstPending(others, otherAt) > i;
    return op === 'replace' || firstPending(routes, routeAt) > i;
  };
  // Operations from `next` on were never looked at; `blocked` holds earlier ones that were not ready.
  let next = 0;
  let blocked: number[] = [];
  let inFlight = 0;
  return new Promise((resolve) => {
    const start = (i: number): void => {
      inFlight++;
      void exec(i).then(() => {
        done[i] = 1;
        inFlight--;
        pump();
      });
    };
    const pump = (): void => {
      while (routeAt < routes.length && done[routes[routeAt] as number]) routeAt++;
      while (otherAt < others.length && done[others[otherAt] as number]) otherAt++;
      const still: number[] = [];
      for (const i of blocked) {
        if (inFlight < window && ready(i)) start(i);
        else still.push(i);
      }
      blocked = still;
      while (next < n && inFlight < window) {
        const i = next++;
        if (ready(i)) start(i);
        else blocked.push(i);
      }
      if (next === n && blocked.length === 0 && inFlight === 0) resolve();
    };
    pump();
  });
}

// An attribute to encode: an IPv4 address (network order), a u32 (host order) or a MAC.
type Attr = readonly [type: number, kind: 'ipv4' | 'u32', value: number] | readonly [type: number, kind: 'mac', value: string];

// Bytes an attribute takes: its 4-byte header and payload, padded to 4.
const ATTR_SIZE = { ipv4: 8, u32: 8, mac: 12 } as const;

// A message body in one allocation: the fixed header `fill` writes, then the attributes.
function message(headerLen: number, fill: (b: Buffer) => void, attrs: readonly Attr[]): Buffer {
  let size = headerLen;
  for (const a of attrs) size += ATTR_SIZE[a[1]];
  const out = Buffer.alloc(size);
  fill(out);
  let at = headerLen;
  for (const a of attrs) {
    out.writeUInt16LE(a[1] === 'mac' ? 10 : 8, at);
    out.writeUInt16LE(a[0], at + 2);
    if (a[1] === 'mac') out.write(parseMac(a[2]).replace(/:/g, ''), at + 4, 6, 'hex');
    else if (a[1] === 'ipv4') out.writeUInt32BE(a[2] >>> 0, at + 4);
    else out.writeUInt32LE(a[2] >>> 0, at + 4);
    at += ATTR_SIZE[a[1]];
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
function rtmsg(dstLen: number, protocol: number, scope: number, type: number, flags: number, attrs: readonly Attr[]): Buffer {
  return message(RTMSG_LEN, (h) => {
    h[0] = AF_INET;
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

// One RTM_NEWROUTE of a route dump as a route on `index`, or undefined (another device or table, IPv6, proto kernel).
function decodeRoute(data: Buffer, index: number): RouteEntry | undefined {
  if (data.length < RTMSG_LEN || data[0] !== AF_INET || data[5] === RTPROT_KERNEL) return undefined;
  let table = data[4] as number;
  let oif: number | undefined;
  let dst = 0;
  // A route without a gateway is reported with gateway 0 so it can be compared and removed.
  let gateway = 0;
  eachAttr(data, RTMSG_LEN, (type, at, len) => {
    if (type === RTA_TABLE && len === 4) table = data.readUInt32LE(at);
    else if (type === RTA_OIF && len === 4) oif = data.readUInt32LE(at);
    else if (type === RTA_DST && len === 4) dst = data.readUInt32BE(at);
    else if (type === RTA_GATEWAY && len === 4) gateway = data.readUInt32BE(at);
  });
  if (table !== RT_TABLE_MAIN || oif !== index) return undefined;
  return { kind: 'route', dst: { ip: dst, prefixLen: data[1] as number }, gateway, onlink: (data.readUInt32LE(8) & RTNH_F_ONLINK) !== 0 };
}

// One RTM_NEWNEIGH of a neighbour (AF_INET) or FDB (AF_BRIDGE) dump as an entry on `index`, or
// undefined. Incomplete neighbours (no lladdr) and FDB entries without an IPv4 dst have nothing
// to compare and are left out.
function decodeNeighbor(data: Buffer, index: number): Entry | undefined {
  if (data.length < NDMSG_LEN || data.readInt32LE(4) !== index) return undefined;
  const family = data[0];
  if (family !== AF_INET && family !== AF_BRIDGE) return undefined;
  let ip: number | undefined;
  let mac: string | undefined;
  eachAttr(data, NDMSG_LEN, (type, at, len) => {
    if (type === NDA_DST && len === 4) ip = data.readUInt32BE(at);
    else if (type === NDA_LLADDR && len === 6) mac = macAt(data, at);
  });
  if (ip === undefined || mac === undefined) return undefined;
  const permanent = (data.readUInt16LE(8) & NUD_PERMANENT) !== 0;
  return family === AF_INET ? { kind: 'neighbor', ip, mac, permanent } : { kind: 'fdb', mac, dst: ip, permanent };
}

// The request for one operation: message type, flags and body.
function encodeOperation(index: number, { op, entry }: Operation): { type: number; flags: number; body: Buffer } {
  const replace = NLM_F_CREATE | NLM_F_REPLACE;
  switch (entry.kind) {
    case 'route': {
      const dst: Attr[] = entry.dst.prefixLen > 0 ? [[RTA_DST, 'ipv4', entry.dst.ip]] : [];
      if (op === 'delete') {
        // `ip route del <dst> dev <index>`: scope NOWHERE matches a route of any scope, whatever its gateway.
        return { type: RTM_DELROUTE, flags: 0, body: rtmsg(entry.dst.prefixLen, 0, RT_SCOPE_NOWHERE, 0, 0, [...dst, [RTA_OIF, 'u32', index]]) };
      }
      // `ip route replace <dst> via <gateway> dev <index> [onlink]`
      const attrs: Attr[] = [...dst, [RTA_GATEWAY, 'ipv4', entry.gateway], [RTA_OIF, 'u32', index]];
      return { type: RTM_NEWROUTE, flags: replace, body: rtmsg(entry.dst.prefixLen, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, entry.onlink ? RTNH_F_ONLINK : 0, attrs) };
    }
    case 'neighbor': {
      const dst: Attr = [NDA_DST, 'ipv4', entry.ip];
      // `ip neigh del <ip> dev <index>`
      if (op === 'delete') return { type: RTM_DELNEIGH, flags: 0, body: ndmsg(AF_INET, index, 0, 0, [dst]) };
      // `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`
      return { type: RTM_NEWNEIGH, flags: replace, body: ndmsg(AF_INET, index, NUD_PERMANENT, 0, [dst, [NDA_LLADDR, 'mac', entry.mac]]) };
    }
    case 'fdb': {
      // With NDA_DST the VXLAN driver removes only that remote of the MAC (`bridge fdb del <mac> dev <index> dst <ip> self`),
      // so dropping an extra appended remote leaves the wanted one in place.
      const attrs: Attr[] = [[NDA_LLADDR, 'mac', entry.mac], [NDA_DST, 'ipv4', entry.dst]];
      if (op === 'delete') return { type: RTM_DELNEIGH, flags: 0, body: ndmsg(AF_BRIDGE, index, 0, NTF_SELF, attrs) };
      // `bridge fdb replace <mac> dev <index> dst <ip> self permanent`
      return { type: RTM_NEWNEIGH, flags: replace, body: ndmsg(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, attrs) };
    }
  }
}

// Dump requests: every IPv4 route (the kernel filters by device only on strict-checking sockets);
// the device's IPv4 neighbours (NDA_IFINDEX filters in the kernel); the device's FDB (an ifinfomsg
// naming the device filters in the kernel, as `bridge fdb show dev <dev>` asks).
function routeDumpRequest(): Buffer {
  const h = Buffer.alloc(RTMSG_LEN);
  h[0] = AF_INET;
  return h;
}

function neighborDumpRequest(index: number): Buffer {
  return ndmsg(AF_INET, 0, 0, 0, [[NDA_IFINDEX, 'u32', index]]);
}

function fdbDumpRequest(index: number): Buffer {
  const ifinfo = Buffer.alloc(IFINFOMSG_LEN);
  ifinfo[0] = AF_BRIDGE;
  ifinfo.writeInt32LE(index, 4);
  return ifinfo;
}

export class NetlinkKernel implements Kernel, RouteReader {
  private readonly socket: RtNetlinkSocket;
  private watcher: RawNetlinkSocket | undefined;
  private readonly listeners = new Set<(cause: ChangeCause) => void>();
  /** Devices whose entries we were asked to list or change: their neighbour and FDB notifications count. */
  private readonly devices = new Set<number>();
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor() {
    this.socket = createRtNetlink({ recvBufferSize: REQUEST_RCVBUF, sendBufferSize: 0 });
    // An unheard 'error' event would throw inside the package's native callback.
    this.socket.socket.on('error', () => undefined);
  }

  /** `ip -4 addr` */
  listInterfaces(): Promise<InterfaceInfo[]> {
    return this.exclusive('list interfaces', async () => {
      const links = await this.socket.getLinks({}, {}, opts(0));
      const addrs = await this.socket.getAddresses({ family: AF_INET }, {}, opts(0));
      return links.map(({ data, attrs }) => ({
        index: data.index ?? 0,
        name: attrs.ifname ?? '',
        mtu: attrs.mtu ?? 0,
        up: data.flags?.up === true,
        addresses: addrs
          .filter((a) => a.data.index === data.index)
          .flatMap((a) => {
            const ip = ipOf(a.attrs.local ?? a.attrs.address);
            return ip === undefined ? [] : [{ ip, prefixLen: a.data.prefixlen ?? 32, scope: a.data.scope ?? 0 }];
          }),
      }));
    });
  }

  /** `ip route show default` (main table; the lowest metric wins) */
  defaultRouteInterface(): Promise<number | undefined> {
    return this.exclusive('list routes', async () => {
      const routes = await this.socket.getRoutes({ family: AF_INET }, {}, opts(0));
      const defaults = routes.filter(({ data, attrs }) => {
        const unicast = data.type === 'UNICAST' || data.type === RTN_UNICAST;
        return data.dstLen === 0 && (attrs.table ?? data.table) === RT_TABLE_MAIN && unicast;
      });
      defaults.sort((a, b) => (a.attrs.priority ?? 0) - (b.attrs.priority ?? 0));
      for (const { attrs } of defaults) {
        if (attrs.oif !== undefined) return attrs.oif;
        // Multipath: the first struct rtnexthop holds its ifindex at offset 4.
        if (attrs.multipath && attrs.multipath.length >= 8) return attrs.multipath.readInt32LE(4);
      }
      return undefined;
    });
  }

  /** `ip -d link show <name>` + `ip -4 addr show dev <name>` */
  getDevice(name: string): Promise<DeviceState | undefined> {
    return this.exclusive(`get link ${name}`, () => this.readDevice(name));
  }

  /** `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> local <ip> dev <underlay> dstport <port> nolearning [gbp]` */
  createVxlan(spec: VxlanSpec, mac: string): Promise<DeviceState> {
    return this.mutate(`create VXLAN device ${spec.name}`, async () => {
      const linkinfo = encodeVxlanLinkInfo(spec);
      const attrs = { ifname: spec.name, linkinfo, mtu: spec.mtu, address: macToBytes(mac) };
      await this.socket.newLink({}, attrs, opts(NLM_F_CREATE | NLM_F_EXCL));
      const device = await this.readDevice(spec.name);
      if (!device) throw new KernelError(`failed to create VXLAN device ${spec.name}: gone right after creation`, 'ENODEV', true);
      return device;
    });
  }

  /** `ip link del dev <index>` */
  deleteLink(index: number): Promise<void> {
    this.devices.delete(index);
    return this.mutate(`delete link ifindex ${index}`, () => ignoring(['ENODEV'], () => this.socket.delLink({ index }, {}, opts(0))));
  }

  /** `ip link set dev <index> [mtu <mtu>] [up|down]` */
  setLink(index: number, change: LinkChange): Promise<void> {
    return this.mutate(`set link ifindex ${index}`, async () => {
      const up = change.up === undefined ? {} : { flags: change.up ? { up: true as const } : {}, change: { up: true as const } };
      await this.socket.setLink({ index, ...up }, change.mtu === undefined ? {} : { mtu: change.mtu }, opts(0));
    });
  }

  /** `ip addr replace <cidr> dev <index>` */
  addAddress(index: number, address: Cidr): Promise<void> {
    return this.mutate(`add address to ifindex ${index}`, async () => {
      const ip = ipv4ToBytes(address.ip);
      const data = { family: AF_INET, prefixlen: address.prefixLen, index, scope: RT_SCOPE_UNIVERSE };
      await this.socket.newAddress(data, { local: ip, address: ip }, opts(NLM_F_CREATE | NLM_F_REPLACE));
    });
  }

  /** `ip addr del <cidr> dev <index>` */
  deleteAddress(index: number, address: Cidr): Promise<void> {
    return this.mutate(`delete address from ifindex ${index}`, () => {
      const ip = ipv4ToBytes(address.ip);
      const data = { family: AF_INET, prefixlen: address.prefixLen, index };
      return ignoring(['EADDRNOTAVAIL', 'ENODEV'], () => this.socket.delAddress(data, { local: ip, address: ip }, opts(0)));
    });
  }

  /** `ip route show table main dev <dev>` + `ip neigh show dev <dev>` + `bridge fdb show dev <dev>` */
  listEntries(index: number): Promise<Entry[]> {
    this.devices.add(index);
    return this.exclusive(`list entries of ifindex ${index}`, async () => {
      const out: Entry[] = [];
      for (const m of await this.dump(RTM_GETROUTE, routeDumpRequest())) {
        const e = m.type === RTM_NEWROUTE ? decodeRoute(m.data, index) : undefined;
        if (e) out.push(e);
      }
      for (const request of [neighborDumpRequest(index), fdbDumpRequest(index)]) {
        for (const m of await this.dump(RTM_GETNEIGH, request)) {
          const e = m.type === RTM_NEWNEIGH ? decodeNeighbor(m.data, index) : undefined;
          if (e) out.push(e);
        }
      }
      return out;
    });
  }

  /**
   * `ip -batch` of the operations' `ip route|neigh` / `bridge fdb` commands, at most
   * MAX_IN_FLIGHT at a time, in the order `runInOrder` allows.
   */
  async apply(index: number, operations: readonly Operation[]): Promise<OperationResult[]> {
    if (operations.length === 0) return [];
    this.devices.add(index);
    const failures = new Map<number, unknown>();
    let name = `ifindex ${index}`;
    try {
      await this.mutate('apply operations', async () => {
        await runInOrder(operations, MAX_IN_FLIGHT, (i) =>
          Promise.resolve()
            .then(() => this.send(index, operations[i] as Operation))
            .then(
              () => undefined,
              (err: unknown) => {
                failures.set(i, err);
              },
            ),
        );
        if (failures.size > 0) name = await this.linkName(index);
      });
    } catch (err) {
      operations.forEach((_, i) => failures.has(i) || failures.set(i, err));
    }
    return operations.map((operation, i) =>
      failures.has(i)
        ? { operation, error: kernelError(`${operation.op} ${describeEntry(operation.entry)} on ${name}`, failures.get(i)) }
        : { operation },
    );
  }

  /**
   * `ip monitor link address route neigh`, less the neighbour and FDB changes of
   * devices other than those whose entries were listed or changed through this
   * module (once there are any): ARP churn on the underlay or a CNI bridge
   * learning pod MACs cannot change those devices' entries, and on a busy node it
   * would make every listener re-list thousands of entries several times a minute.
   */
  watch(onChange: (cause: ChangeCause) => void): () => void {
    if (this.closed) return () => undefined;
    if (!this.watcher) this.watcher = this.openWatcher();
    const listener = (cause: ChangeCause): void => onChange(cause);
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.watcher) {
        this.watcher.close();
        this.watcher = undefined;
      }
    };
  }

  /** Closes both sockets; nothing keeps the event loop alive afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.watcher?.close();
    this.watcher = undefined;
    this.socket.socket.close();
  }

  // One line of the batch: `ip neigh replace|del`, `bridge fdb replace|del` or `ip route replace|del`.
  private send(index: number, operation: Operation): Promise<unknown> {
    const { type, flags, body } = encodeOperation(index, operation);
    const request = this.socket.socket.request(type, body, opts(flags));
    if (operation.op === 'replace') return request;
    // Deleting what is already gone is success.
    const gone = operation.entry.kind === 'route' ? ['ESRCH', 'ENOENT', 'ENODEV'] : ['ENOENT', 'ENODEV'];
    return ignoring(gone, () => request);
  }

  // A dump on the request socket, as raw messages (type and body) for the decoders above.
  private async dump(type: number, body: Buffer): Promise<Array<{ type: number; data: Buffer }>> {
    const [messages] = await this.socket.socket.request(type, body, opts(NLM_F_DUMP));
    return messages;
  }

  // `ip -d link show <name>` + `ip -4 addr show dev <name>`, unlocked.
  private async readDevice(name: string): Promise<DeviceState | undefined> {
    let link: rt.LinkMessage | undefined;
    try {
      [link] = await this.socket.getLink({}, { ifname: name }, opts(0));
    } catch (err) {
      if (errnoName(err) === 'ENODEV') return undefined;
      throw err;
    }
    if (!link) return undefined;
    const { data, attrs } = link;
    const index = data.index ?? 0;
    const info = decodeLinkInfo(attrs.linkinfo);
    const addrs = await this.socket.getAddresses({ family: AF_INET }, {}, opts(0));
    return {
      index,
      name: attrs.ifname ?? name,
      kind: info.kind,
      mac: macOf(attrs.address) ?? '',
      mtu: attrs.mtu ?? 0,
      up: data.flags?.up === true,
      ...info.vxlan,
      addresses: addrs.flatMap((a) => {
        const ip = ipOf(a.attrs.local ?? a.attrs.address);
        return a.data.index === index && ip !== undefined ? [{ ip, prefixLen: a.data.prefixlen ?? 32 }] : [];
      }),
    };
  }

  // `ip link show dev <index>`, for the device's name in messages; never fails.
  private async linkName(index: number): Promise<string> {
    try {
      const [link] = await this.socket.getLink({ index }, {}, opts(0));
      return link?.attrs.ifname ?? `ifindex ${index}`;
    } catch {
      return `ifindex ${index}`;
    }
  }

  // `ip monitor`'s socket: joined to the link, IPv4 address, IPv4 route and neighbour groups.
  private openWatcher(): RawNetlinkSocket {
    const watcher = new RawNetlinkSocket(Protocol.ROUTE, { recvBufferSize: WATCH_RCVBUF, sendBufferSize: 0 });
    for (const group of WATCH_GROUPS) watcher.addMembership(group);
    // Errors mean lost notifications, which are news too.
    watcher.on('message', (datagram) => {
      if (this.concernsManagedDevices(datagram)) this.notify('external');
    });
    watcher.on('error', () => this.notify('external'));
    return watcher;
  }

  // False only when every message of the datagram is a neighbour or FDB change on another device.
  private concernsManagedDevices(datagram: Buffer): boolean {
    if (this.devices.size === 0) return true;
    for (let at = 0; at + NLMSG_HDRLEN <= datagram.length; ) {
      const len = datagram.readUInt32LE(at);
      const type = datagram.readUInt16LE(at + 4);
      if (len < NLMSG_HDRLEN || (type !== RTM_NEWNEIGH && type !== RTM_DELNEIGH) || at + NLMSG_HDRLEN + NDMSG_LEN > datagram.length) return true;
      // struct ndmsg's ifindex, 4 bytes into the body.
      if (this.devices.has(datagram.readInt32LE(at + NLMSG_HDRLEN + 4))) return true;
      at += (len + 3) & ~3;
    }
    return false;
  }

  // Listener exceptions must not reach the package's native callback (that aborts).
  private notify(cause: ChangeCause): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(cause);
      } catch {
        // A watcher's own failure is its business; the socket must keep reading.
      }
    }
  }

  // Runs one request sequence at a time; failures become KernelError("failed to <what>: <errno>").
  private exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(async () => {
      if (this.closed) throw new KernelError(`failed to ${what}: netlink socket closed`, undefined, false);
      try {
        return await fn();
      } catch (err) {
        throw err instanceof KernelError ? err : kernelError(what, err);
      }
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  // A change of ours: the watch socket leaves its groups meanwhile, then reports one change.
  private mutate<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return this.exclusive(what, async () => {
      const watcher = this.watcher;
      if (watcher) for (const group of WATCH_GROUPS) watcher.dropMembership(group);
      try {
        return await fn();
      } finally {
        if (watcher && watcher === this.watcher) {
          for (const group of WATCH_GROUPS) watcher.addMembership(group);
          setImmediate(() => this.notify('own'));
        }
      }
    });
  }
  // Reads of `flanneld-ts trace` (src/kernel/route-query.ts has the messages).
  routeGet(query: RouteQuery): Promise<RouteLookup> {
    return this.exclusive(`get route to ${formatIPv4(query.dst)}`, () => queryRoute(this.socket, query));
  }

  listLinks(): Promise<LinkDetail[]> {
    return this.exclusive('list links', () => queryLinks(this.socket));
  }

  netnsId(path: string): Promise<number | undefined> {
    return this.exclusive(`get the netns id of ${path}`, () => queryNetnsId(this.socket, path));
  }
}
