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
 */
import { createRtNetlink, rt, RtNetlinkSocket } from 'netlink';
import { Cidr, ipv4FromBytes, ipv4ToBytes } from '../net/ipv4';
import { macFromBytes, macToBytes } from '../net/mac';
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
import { describeEntry } from './kernel';

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
const WATCH_GROUPS = ['LINK', 'IPV4_IFADDR', 'IPV4_ROUTE', 'NEIGH'] as const;
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

const opts = (flags: number) => ({ flags, timeout: REQUEST_TIMEOUT_MS });

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

// `ip route` / `ip neigh` / `bridge fdb` rows of one device, as entries.
function toEntries(index: number, routes: rt.RouteMessage[], neighs: rt.NeighborMessage[], fdb: rt.NeighborMessage[]): Entry[] {
  const out: Entry[] = [];
  for (const { data, attrs } of routes) {
    const protocol = data.protocol === 'KERNEL' || data.protocol === RTPROT_KERNEL;
    if (data.family !== AF_INET || (attrs.table ?? data.table) !== RT_TABLE_MAIN || attrs.oif !== index || protocol) continue;
    const dst: Cidr = { ip: ipOf(attrs.dst) ?? 0, prefixLen: data.dstLen ?? 0 };
    // A route without a gateway is reported with gateway 0 so it can be compared and removed.
    const onlink = (rt.formatRouteFlags(data.flags ?? {}) & RTNH_F_ONLINK) !== 0;
    out.push({ kind: 'route', dst, gateway: ipOf(attrs.gateway) ?? 0, onlink });
  }
  for (const { data, attrs } of neighs) {
    const ip = ipOf(attrs.dst);
    const mac = macOf(attrs.lladdr);
    // Incomplete or failed entries have no lladdr: nothing to compare.
    if (data.family !== AF_INET || data.ifindex !== index || ip === undefined || mac === undefined) continue;
    out.push({ kind: 'neighbor', ip, mac, permanent: data.state?.permanent === true });
  }
  for (const { data, attrs } of fdb) {
    const dst = ipOf(attrs.dst);
    const mac = macOf(attrs.lladdr);
    if (data.ifindex !== index || dst === undefined || mac === undefined) continue;
    out.push({ kind: 'fdb', mac, dst, permanent: data.state?.permanent === true });
  }
  return out;
}

export class NetlinkKernel implements Kernel {
  private readonly socket: RtNetlinkSocket;
  private watcher: RtNetlinkSocket | undefined;
  private readonly listeners = new Set<() => void>();
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
    return this.exclusive(`list entries of ifindex ${index}`, async () => {
      const routes = await this.socket.getRoutes({ family: AF_INET }, {}, opts(0));
      const neighs = await this.socket.getNeighbors({ family: AF_INET }, {}, opts(0));
      const fdb = await this.socket.getNeighbors({ family: AF_BRIDGE }, {}, opts(0));
      return toEntries(index, routes, neighs, fdb);
    });
  }

  /**
   * `ip -batch` of the operations' `ip route|neigh` / `bridge fdb` commands, at most
   * MAX_IN_FLIGHT at a time, in the order `runInOrder` allows.
   */
  async apply(index: number, operations: readonly Operation[]): Promise<OperationResult[]> {
    if (operations.length === 0) return [];
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

  /** `ip monitor link address route neigh` */
  watch(onChange: () => void): () => void {
    if (this.closed) return () => undefined;
    if (!this.watcher) this.watcher = this.openWatcher();
    const listener = (): void => onChange();
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.watcher) {
        this.watcher.socket.close();
        this.watcher = undefined;
      }
    };
  }

  /** Closes both sockets; nothing keeps the event loop alive afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.watcher?.socket.close();
    this.watcher = undefined;
    this.socket.socket.close();
  }

  // One line of the batch: `ip neigh replace|del`, `bridge fdb replace|del` or `ip route replace|del`.
  private send(index: number, { op, entry }: Operation): Promise<unknown> {
    const replace = opts(NLM_F_CREATE | NLM_F_REPLACE);
    switch (entry.kind) {
      case 'route':
        return op === 'replace' ? this.replaceRoute(index, entry) : this.deleteRoute(index, entry);
      case 'neighbor': {
        const data = { family: AF_INET, ifindex: index };
        if (op === 'delete') return ignoring(['ENOENT', 'ENODEV'], () => this.socket.delNeighbor(data, { dst: ipv4ToBytes(entry.ip) }, opts(0)));
        const attrs = { dst: ipv4ToBytes(entry.ip), lladdr: macToBytes(entry.mac) };
        return this.socket.newNeighbor({ ...data, state: { permanent: true } }, attrs, replace);
      }
      case 'fdb': {
        const data = { family: AF_BRIDGE, ifindex: index, flags: { self: true as const } };
        // With NDA_DST the VXLAN driver removes only that remote of the MAC (`bridge fdb del <mac> dst <ip>`),
        // so dropping an extra appended remote leaves the wanted one in place.
        if (op === 'delete') return ignoring(['ENOENT', 'ENODEV'], () => this.socket.delNeighbor(data, { lladdr: macToBytes(entry.mac), dst: ipv4ToBytes(entry.dst) }, opts(0)));
        const attrs = { lladdr: macToBytes(entry.mac), dst: ipv4ToBytes(entry.dst) };
        return this.socket.newNeighbor({ ...data, state: { permanent: true } }, attrs, replace);
      }
    }
  }

  // `ip route replace <dst> via <gateway> dev <index> [onlink]`
  private replaceRoute(index: number, entry: RouteEntry): Promise<unknown> {
    const data = {
      family: AF_INET,
      dstLen: entry.dst.prefixLen,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_BOOT,
      scope: RT_SCOPE_UNIVERSE,
      type: RTN_UNICAST,
      flags: entry.onlink ? { __unknown: RTNH_F_ONLINK } : {},
    };
    const attrs = { ...(entry.dst.prefixLen > 0 ? { dst: ipv4ToBytes(entry.dst.ip) } : {}), gateway: ipv4ToBytes(entry.gateway), oif: index };
    return this.socket.newRoute(data, attrs, opts(NLM_F_CREATE | NLM_F_REPLACE));
  }

  // `ip route del <dst> dev <index>` (whatever its gateway)
  private deleteRoute(index: number, entry: RouteEntry): Promise<void> {
    const data = { family: AF_INET, dstLen: entry.dst.prefixLen, table: RT_TABLE_MAIN, scope: RT_SCOPE_NOWHERE };
    const attrs = { ...(entry.dst.prefixLen > 0 ? { dst: ipv4ToBytes(entry.dst.ip) } : {}), oif: index };
    return ignoring(['ESRCH', 'ENOENT', 'ENODEV'], () => this.socket.delRoute(data, attrs, opts(0)));
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
  private openWatcher(): RtNetlinkSocket {
    const watcher = createRtNetlink({ recvBufferSize: WATCH_RCVBUF, sendBufferSize: 0 });
    for (const group of WATCH_GROUPS) watcher.addMembership(group);
    // Parse failures arrive as 'invalid' events, which we ignore; errors mean lost notifications.
    watcher.on('message', () => this.notify());
    watcher.socket.on('error', () => this.notify());
    return watcher;
  }

  // Listener exceptions must not reach the package's native callback (that aborts).
  private notify(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
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
          setImmediate(() => this.notify());
        }
      }
    });
  }
}
