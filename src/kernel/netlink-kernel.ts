/**
 * The real `Kernel`, over rtnetlink with the `netlink` package (the only module
 * that imports it). Facts it relies on are measured in shared/netlink-notes.md.
 *
 * One socket carries requests; notifications for `watch` are read by an
 * `ip monitor` child process (`kernel-watch.ts` says why: an overflowing socket
 * of the package aborts the process; `change-watch.ts` wires it to listeners).
 * Public calls are serialised: a dump must not overlap other requests on its
 * socket (the kernel runs one dump per socket at a time). Within `apply`,
 * requests are pipelined with at most MAX_IN_FLIGHT outstanding, so their acks
 * always fit the receive buffer (with the package's layer, 300 in flight on a
 * default 208 KiB buffer overflowed and aborted the process; our transport
 * fails the pending requests instead, which the reconciler retries).
 *
 * The watch keeps listening while we change things: `change-filter.ts` tells our
 * own notifications from someone else's, so an outside change made during one
 * of our applies is reported at once. Link and address reads are
 * `read-interfaces.ts` and `read-device.ts`.
 *
 * Route, neighbour and FDB messages — the thousands of requests of a storm and
 * the dumps of every reconcile pass — are built and read by hand in
 * `rtnl-codec.ts` and go over a second socket with our own request layer
 * (`rtnl-transport.ts`: no objects per received message, a dump decoded as it
 * arrives); links and addresses, a handful per pass, keep the package's typed
 * calls on the first. The order and window of an apply are `apply-order.ts`.
 */
import { createRtNetlink, RtNetlinkSocket } from 'netlink';
import { AnyCidr, IpAddr, formatIp, ipToBytes, isCidr6 } from '../net/family';
import { macToBytes } from '../net/mac';
import { KernelError } from '../util/errors';
import { ignoring, kernelError } from './netlink-errors';
import { ChangeWatch, ChangeWatchOptions } from './change-watch';
import {
  DeviceState,
  Entry,
  InterfaceAddress6,
  InterfaceInfo,
  Kernel,
  LinkChange,
  Operation,
  OperationResult,
  VxlanSpec,
} from './kernel';
import { encodeVxlanLinkInfo } from './vxlan-linkinfo';
import { readDevice } from './read-device';
import { readInterfaces } from './read-interfaces';
import { runInOrder } from './apply-order';
import {
  AF_INET,
  AF_INET6,
  decodeNeighbor,
  decodeRoute,
  encodeOperation,
  fdbDumpRequest,
  neighborDumpRequest,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  routeDumpRequest,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTM_GETNEIGH,
  RTM_GETROUTE,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTN_UNICAST,
} from './rtnl-codec';
import { dumpHostRoutes, dumpHostRoutes6 } from './host-routes';
import { RtnlTransport } from './rtnl-transport';
import type { HostNetwork } from './kernel';
import type { DefaultRoute, RouteLookup } from './interfaces';
import { readAddressFlags, readAddresses6, readDefaultRoute } from './route-lookup';
import { ChangeCause, describeEntry } from './kernel';
import { LinkDetail, RouteLookup as RouteAnswer, RouteQuery, RouteReader, lookupRoute, queryLinks, queryNetnsId, queryRoute } from './route-query';

const MAX_IN_FLIGHT = 64;
const REQUEST_TIMEOUT_MS = 10_000;
const REQUEST_RCVBUF = 1 << 20;

// Port 0 in the header: the kernel answers the sending socket whatever it says, and without it the
// package asks the socket for its address (a getsockname and an object) on every request.
const opts = (flags: number) => ({ flags, timeout: REQUEST_TIMEOUT_MS, localPort: 0 });

/** Where the watch logs that its `ip monitor` died or came back, and which `ip` it runs. */
export type NetlinkKernelOptions = ChangeWatchOptions;

export class NetlinkKernel implements Kernel, RouteReader {
  private readonly socket: RtNetlinkSocket;
  /** Our own request layer for applies and dumps (rtnl-transport.ts says why). */
  private readonly transport: RtnlTransport;
  /** The watch's listeners and child; its filter knows the devices we manage and the changes we make. */
  private readonly changes: ChangeWatch;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: NetlinkKernelOptions = {}) {
    this.changes = new ChangeWatch(options);
    this.socket = createRtNetlink({ recvBufferSize: REQUEST_RCVBUF, sendBufferSize: 0 });
    // An unheard 'error' event would throw inside the package's native callback.
    this.socket.socket.on('error', () => undefined);
    this.transport = new RtnlTransport({ recvBufferSize: REQUEST_RCVBUF, timeoutMs: REQUEST_TIMEOUT_MS });
  }

  /** `ip -4 addr` */
  listInterfaces(): Promise<InterfaceInfo[]> {
    return this.exclusive('list interfaces', () => readInterfaces(this.socket));
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
    return this.exclusive(`get link ${name}`, () => readDevice(this.socket, name));
  }

  /** `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> local <ip> dev <underlay> dstport <port> nolearning [gbp]` */
  createVxlan(spec: VxlanSpec, mac: string): Promise<DeviceState> {
    return this.mutate(`create VXLAN device ${spec.name}`, spec.name, async () => {
      const linkinfo = encodeVxlanLinkInfo(spec);
      const attrs = { ifname: spec.name, linkinfo, mtu: spec.mtu, address: macToBytes(mac) };
      await this.socket.newLink({}, attrs, opts(NLM_F_CREATE | NLM_F_EXCL));
      const device = await readDevice(this.socket, spec.name);
      if (!device) throw new KernelError(`failed to create VXLAN device ${spec.name}: gone right after creation`, 'ENODEV', true);
      return device;
    });
  }

  /** `ip link del dev <index>` */
  deleteLink(index: number): Promise<void> {
    return this.mutate(`delete link ifindex ${index}`, index, async () => {
      await ignoring(['ENODEV'], () => this.socket.delLink({ index }, {}, opts(0)));
      this.changes.filter.forget(index);
    });
  }

  /** `ip link set dev <index> [mtu <mtu>] [up|down]` */
  setLink(index: number, change: LinkChange): Promise<void> {
    return this.mutate(`set link ifindex ${index}`, index, async () => {
      const up = change.up === undefined ? {} : { flags: change.up ? { up: true as const } : {}, change: { up: true as const } };
      await this.socket.setLink({ index, ...up }, change.mtu === undefined ? {} : { mtu: change.mtu }, opts(0));
    });
  }

  /** `ip [-6] addr replace <cidr> dev <index>` */
  addAddress(index: number, address: AnyCidr): Promise<void> {
    return this.mutate(`add address to ifindex ${index}`, index, async () => {
      const ip = ipToBytes(address.ip);
      const data = { family: isCidr6(address) ? AF_INET6 : AF_INET, prefixlen: address.prefixLen, index, scope: RT_SCOPE_UNIVERSE };
      await this.socket.newAddress(data, { local: ip, address: ip }, opts(NLM_F_CREATE | NLM_F_REPLACE));
    });
  }

  /** `ip [-6] addr del <cidr> dev <index>` */
  deleteAddress(index: number, address: AnyCidr): Promise<void> {
    return this.mutate(`delete address from ifindex ${index}`, index, () => {
      const ip = ipToBytes(address.ip);
      const data = { family: isCidr6(address) ? AF_INET6 : AF_INET, prefixlen: address.prefixLen, index };
      return ignoring(['EADDRNOTAVAIL', 'ENODEV'], () => this.socket.delAddress(data, { local: ip, address: ip }, opts(0)));
    });
  }

  /** `ip route show table main dev <dev>` + `ip neigh show dev <dev>` + `bridge fdb show dev <dev>`, each entry through `canonical` as it is decoded. */
  listEntries(index: number, canonical?: (entry: Entry) => Entry): Promise<Entry[]> {
    return this.exclusive(`list entries of ifindex ${index}`, async () => {
      await this.manage(index);
      this.changes.listed();
      const out: Entry[] = [];
      // Both families: flannel.<VNI> holds IPv4 entries, flannel-v6.<VNI> IPv6 ones; anything on our device is ours.
      for (const family of [AF_INET, AF_INET6]) {
        await this.transport.dump(RTM_GETROUTE, NLM_F_DUMP, routeDumpRequest(family), (type, data) => {
          const e = type === RTM_NEWROUTE ? decodeRoute(data, index) : undefined;
          if (e) out.push(canonical ? canonical(e) : e);
        });
      }
      for (const request of [neighborDumpRequest(index, AF_INET), neighborDumpRequest(index, AF_INET6), fdbDumpRequest(index)]) {
        await this.transport.dump(RTM_GETNEIGH, NLM_F_DUMP, request, (type, data) => {
          const e = type === RTM_NEWNEIGH ? decodeNeighbor(data, index) : undefined;
          if (e) out.push(canonical ? canonical(e) : e);
        });
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
    const failures = new Map<number, unknown>();
    let name = `ifindex ${index}`;
    try {
      await this.mutate('apply operations', index, async () => {
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
      }, operations);
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
   * `ip monitor link address route neigh`, less the route and neighbour changes
   * of devices other than those whose entries were listed or changed through
   * this module (once there are any): a route storm on the underlay, ARP churn or
   * a CNI bridge learning pod MACs cannot change those devices' entries, and on
   * a busy node it would make every listener re-list thousands of entries
   * several times a minute. Notifications of our own changes are 'own' (one call
   * after each change), everyone else's 'external', lost ones 'overflow'.
   */
  watch(onChange: (cause: ChangeCause) => void): () => void {
    return this.changes.subscribe(onChange);
  }

  /** True while the watch's `ip monitor` child has joined its groups: changes from now on are heard. */
  watchListening(): boolean {
    return this.changes.isListening();
  }

  /** Closes the socket and stops the watch; nothing keeps the event loop alive afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.changes.close();
    this.socket.socket.close();
    this.transport.close();
  }

  // One line of the batch: `ip neigh replace|del`, `bridge fdb replace|del` or `ip route replace|del`.
  private send(index: number, operation: Operation): Promise<unknown> {
    const { type, flags, body } = encodeOperation(index, operation);
    const request = this.transport.request(type, flags, body);
    if (operation.op === 'replace') return request;
    // Deleting what is already gone is success.
    const gone = operation.entry.kind === 'route' ? ['ESRCH', 'ENOENT', 'ENODEV'] : ['ENOENT', 'ENODEV'];
    return ignoring(gone, () => request);
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

  // Starts counting `index`'s route and neighbour notifications (its name is what `ip monitor` prints).
  private async manage(index: number): Promise<string | undefined> {
    const name = await this.lookupName(index);
    if (name !== undefined) this.changes.filter.manage(index, name);
    return name;
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

  // A change of ours to device `device` (a name, or an index whose name we look up): its link and
  // address notifications, or those of `operations` on it, are ours; one 'own' follows the change.
  private mutate<T>(what: string, device: string | number, fn: () => Promise<T>, operations?: readonly Operation[]): Promise<T> {
    return this.exclusive(what, async () => {
      const name = typeof device === 'string' ? device : operations ? await this.manage(device) : await this.lookupName(device);
      const keys = name === undefined ? [] : this.changes.filter.expect(name, operations, Date.now());
      try {
        return await fn();
      } finally {
        this.changes.filter.done(keys, Date.now());
        this.changes.changed();
      }
    });
  }

  // The device's name, known or asked for; undefined when it does not exist.
  private async lookupName(index: number): Promise<string | undefined> {
    const known = this.changes.filter.nameOf(index);
    if (known !== undefined) return known;
    const [link] = await this.socket.getLink({ index }, {}, opts(0)).catch(() => []);
    return link?.attrs.ifname;
  }

  /** `ip addr` + `ip -4 route show table all` + `ip -6 route show table all` (host-routes.ts reads the routes), without `exceptDevice`'s own routes. */
  async readHostNetwork(exceptDevice?: number): Promise<HostNetwork> {
    const listed = await this.listInterfaces();
    const addrs6 = await this.listAddresses6();
    const interfaces = listed.map((i) => ({ ...i, addresses6: addrs6.get(i.index) ?? [] }));
    const routes = await this.exclusive('list host routes', () => dumpHostRoutes(this.transport, exceptDevice));
    const routes6 = await this.exclusive('list IPv6 host routes', () => dumpHostRoutes6(this.transport, exceptDevice));
    return { interfaces, routes, routes6 };
  }

  // Interface choice as flanneld makes it (contract §14): read in route-lookup.ts.
  addressFlags(): Promise<Map<string, number>> {
    return this.exclusive('list addresses', () => readAddressFlags(this.socket));
  }

  defaultRoute(): Promise<DefaultRoute> {
    return this.exclusive('list routes', () => readDefaultRoute(this.socket));
  }

  routeGet<A extends IpAddr>(dst: A): Promise<RouteLookup<A> | undefined> {
    return this.exclusive('look up a route (ip route get)', () => lookupRoute(this.socket, dst));
  }

  /** `ip -6 addr` */
  listAddresses6(): Promise<Map<number, InterfaceAddress6[]>> {
    return this.exclusive('list IPv6 addresses', () => readAddresses6(this.socket));
  }

  /** `ip -6 route show default` */
  defaultRoute6(): Promise<DefaultRoute> {
    return this.exclusive('list IPv6 routes', () => readDefaultRoute(this.socket, 10));
  }

  // Reads of `flanneld-ts trace` (src/kernel/route-query.ts has the messages).
  routeQuery<A extends IpAddr>(query: RouteQuery<A>): Promise<RouteAnswer<A>> {
    return this.exclusive(`get route to ${formatIp(query.dst)}`, () => queryRoute(this.socket, query));
  }

  listLinks(): Promise<LinkDetail[]> {
    return this.exclusive('list links', () => queryLinks(this.socket));
  }

  netnsId(path: string): Promise<number | undefined> {
    return this.exclusive(`get the netns id of ${path}`, () => queryNetnsId(this.socket, path));
  }
}
