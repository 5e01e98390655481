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
 * the dumps of every reconcile pass — are built and read by hand in
 * `rtnl-codec.ts` and sent through the package's request layer; links and
 * addresses, a handful per pass, keep the package's typed calls. The order and
 * window of an apply are `apply-order.ts`.
 */
import { createRtNetlink, Protocol, RawNetlinkSocket, rt, RtNetlinkSocket } from 'netlink';
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
  VxlanSpec,
} from './kernel';
import { decodeLinkInfo, encodeVxlanLinkInfo } from './vxlan-linkinfo';
import { runInOrder } from './apply-order';
import {
  AF_INET,
  decodeNeighbor,
  decodeRoute,
  encodeOperation,
  fdbDumpRequest,
  neighborDumpRequest,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLMSG_HDRLEN,
  routeDumpRequest,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
} from './rtnl-codec';
import { ChangeCause, describeEntry } from './kernel';

const MAX_IN_FLIGHT = 64;
const REQUEST_TIMEOUT_MS = 10_000;
const REQUEST_RCVBUF = 1 << 20;
// Asked for; the kernel caps it at net.core.rmem_max.
const WATCH_RCVBUF = 16 << 20;
const WATCH_GROUPS = [rt.MulticastGroups.LINK, rt.MulticastGroups.IPV4_IFADDR, rt.MulticastGroups.IPV4_ROUTE, rt.MulticastGroups.NEIGH];
// struct ndmsg is 12 bytes.
const NDMSG_LEN = 12;
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


export class NetlinkKernel implements Kernel {
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
}
