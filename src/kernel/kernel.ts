/**
 * The `Kernel` seam: everything flanneld-ts asks of the Linux kernel, as plain
 * value types plus a small interface. `NetlinkKernel` is the real one (the only
 * importer of the `netlink` package); `MemoryKernel` is the fake for unit tests.
 * One contract test suite runs against both.
 */
import { Cidr } from '../net/ipv4';
import { Cidr6 } from '../net/ipv6';
import { AnyCidr, IpAddr, formatAnyCidr, formatIp } from '../net/family';

/**
 * `ip [-6] route replace <dst> via <gateway> dev <device> onlink` (main table), or with
 * `direct`: `ip [-6] route replace <dst> via <gateway> proto 152` (main table, no
 * device: the kernel picks it), a DirectRouting peer's route (see RTPROT_FLANNELD_TS).
 * The family is the address's: IPv4 numbers, IPv6 bigints (net/family.ts).
 */
export interface RouteEntry {
  readonly kind: 'route';
  readonly dst: AnyCidr;
  readonly gateway: IpAddr;
  readonly onlink: boolean;
  /** A direct route: not on the overlay device, owned through its route protocol RTPROT_FLANNELD_TS. */
  readonly direct?: true | undefined;
}

/**
 * The route protocol (rtm_protocol) of our direct routes, which is how they are
 * told apart from every route we did not make: `ip [-6] route show proto 152` lists
 * exactly ours. 152 is in no iproute2 rt_protos file (which names 0–18, 42, 99
 * and 186–192); flanneld's direct routes carry proto boot (3).
 */
export const RTPROT_FLANNELD_TS = 152;

/** `ip [-6] neigh replace <ip> lladdr <mac> dev <device> nud permanent` */
export interface NeighborEntry {
  readonly kind: 'neighbor';
  readonly ip: IpAddr;
  readonly mac: string;
  /** NUD_PERMANENT; entries the kernel made itself are not permanent. */
  readonly permanent: boolean;
}

/** `bridge fdb replace <mac> dev <device> dst <dst> self permanent` (dst: the peer's PublicIP, or PublicIPv6 on flannel-v6.N) */
export interface FdbEntry {
  readonly kind: 'fdb';
  readonly mac: string;
  readonly dst: IpAddr;
  readonly permanent: boolean;
}

export type Entry = RouteEntry | NeighborEntry | FdbEntry;

/** One change to apply on the overlay device. `replace` creates or overwrites (idempotent); `delete` of a missing entry succeeds. */
export interface Operation {
  readonly op: 'replace' | 'delete';
  readonly entry: Entry;
}

export interface OperationResult {
  readonly operation: Operation;
  /** Undefined on success. */
  readonly error?: Error;
}

import type { DefaultRoute, RouteLookup } from './interfaces';

export interface InterfaceAddress {
  readonly ip: number;
  readonly prefixLen: number;
  /** 0 = global (universe), 253 = link, 254 = host. */
  readonly scope: number;
  /** ifa_flags (IFA_F_PERMANENT, IFA_F_TEMPORARY/secondary, IFA_F_DEPRECATED); unknown = permanent. See interfaces.ts. */
  readonly flags?: number;
}

/** An IPv6 address of an interface (`ip -6 addr`); flags as for IPv4, IFA_F_TEMPORARY (0x01) being a privacy address. */
export interface InterfaceAddress6 {
  readonly ip: bigint;
  readonly prefixLen: number;
  /** 0 = global, 253 = link (fe80::/10), 254 = host (::1). */
  readonly scope: number;
  readonly flags?: number;
}

export interface InterfaceInfo {
  readonly index: number;
  readonly name: string;
  readonly mtu: number;
  readonly up: boolean;
  readonly addresses: readonly InterfaceAddress[];
  /**
   * IPv6 addresses with their flags, in kernel order. Filled where IPv6 matters
   * (interfaces.ts readInterfaceFacts, MemoryKernel); undefined = not read.
   */
  readonly addresses6?: readonly InterfaceAddress6[] | undefined;
}

/** The wanted VXLAN device (contract §4). */
export interface VxlanSpec {
  readonly name: string;
  readonly vni: number;
  /** IFLA_VXLAN_LOCAL (IPv4, flannel.<VNI>) or IFLA_VXLAN_LOCAL6 (IPv6, flannel-v6.<VNI>). */
  readonly localIP: IpAddr;
  readonly underlayIndex: number;
  readonly port: number;
  readonly learning: boolean;
  readonly gbp: boolean;
  readonly mtu: number;
}

/** What the kernel holds for a link. VXLAN fields are undefined for other kinds. */
export interface DeviceState {
  readonly index: number;
  readonly name: string;
  /** IFLA_INFO_KIND, e.g. "vxlan", "veth"; "" when none. */
  readonly kind: string;
  readonly mac: string;
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  readonly vni?: number | undefined;
  /** IFLA_VXLAN_LOCAL, or IFLA_VXLAN_LOCAL6 as a bigint. */
  readonly localIP?: IpAddr | undefined;
  readonly underlayIndex?: number | undefined;
  readonly port?: number | undefined;
  readonly learning?: boolean | undefined;
  readonly gbp?: boolean | undefined;
  /** IPv4 addresses on the device. */
  readonly addresses: readonly Cidr[];
  /** IPv6 addresses on the device, link-local ones included; absent when not read. */
  readonly addresses6?: readonly Cidr6[] | undefined;
}

export interface LinkChange {
  readonly mtu?: number;
  readonly up?: boolean;
}

/**
 * Why `Kernel.watch` calls back: someone else changed something, we just did,
 * or notifications were lost (the listening socket overflowed: re-read everything).
 */
export type ChangeCause = 'external' | 'own' | 'overflow';
/** One route of any table (`ip -4|-6 route show table all`), as far as ownership checks need it; IPv4 by default. */
export interface HostRoute<C extends AnyCidr = Cidr> {
  readonly dst: C;
  readonly table: number;
  /** RTPROT_*: 2 = kernel (a connected route), 3 = boot (`ip route add`, and our own routes). */
  readonly protocol: number;
  /** RT_SCOPE_*: 253 = link (connected), 0 = universe. */
  readonly scope: number;
  /** RTN_*: 1 = unicast, 2 = local, 3 = broadcast, 6 = blackhole, 7 = unreachable… */
  readonly type: number;
  /** Output devices (several for a multipath route, none for a blackhole). */
  readonly devices: readonly number[];
  readonly gateway?: C['ip'] | undefined;
}

/** What the host's own network looks like: read once per reconcile pass to keep peers off the underlay. */
export interface HostNetwork {
  /** With `addresses6` where the kernel reads them. */
  readonly interfaces: readonly InterfaceInfo[];
  readonly routes: readonly HostRoute[];
  /** IPv6 routes of every table (`ip -6 route show table all`); absent when not read, empty without IPv6. */
  readonly routes6?: readonly HostRoute<Cidr6>[];
}


export interface Kernel {
  /** All interfaces with their IPv4 addresses (`ip -4 addr`). */
  listInterfaces(): Promise<InterfaceInfo[]>;
  /** Index of the interface of the IPv4 default route in the main table (`ip route show default`), if any. */
  defaultRouteInterface(): Promise<number | undefined>;
  /**
   * Every interface with its addresses and every route of every table (`ip addr; ip -4 route show table all; ip -6 route show table all`),
   * leaving out routes whose every device is `exceptDevice` (the overlay device's own routes).
   */
  readHostNetwork(exceptDevice?: number): Promise<HostNetwork>;
  /** Flags of every IPv4 address, keyed by `addressKey(index, ip)` (`ip -4 addr` shows them as dynamic, secondary, deprecated). */
  addressFlags(): Promise<ReadonlyMap<string, number>>;
  /** The main table's first IPv4 default route: its interface index, `multipath`, or undefined (`ip route show default`). */
  defaultRoute(): Promise<DefaultRoute>;
  /** `ip [-6] route get <dst>`: output interface, preferred source and gateway, of the address's family; undefined when unreachable. */
  routeGet<A extends IpAddr>(dst: A): Promise<RouteLookup<A> | undefined>;
  /** Every IPv6 address with its flags, by interface index, in kernel order (`ip -6 addr`). */
  listAddresses6(): Promise<ReadonlyMap<number, readonly InterfaceAddress6[]>>;
  /** The main table's first IPv6 default route: its interface index, `multipath`, or undefined (`ip -6 route show default`). */
  defaultRoute6(): Promise<DefaultRoute>;
  /** The link called `name` (`ip -d link show <name>`), or undefined. */
  getDevice(name: string): Promise<DeviceState | undefined>;
  /** `ip link add <name> address <mac> mtu <mtu> type vxlan id <vni> local <ip> dev <underlay> dstport <port> nolearning`; fails if it exists. */
  createVxlan(spec: VxlanSpec, mac: string): Promise<DeviceState>;
  /** `ip link del dev <index>`; a missing link is success. */
  deleteLink(index: number): Promise<void>;
  /** `ip link set dev <index> mtu <mtu> up|down` */
  setLink(index: number, change: LinkChange): Promise<void>;
  /** `ip [-6] addr replace <cidr> dev <index>` (a /32 or /128 for the overlay). */
  addAddress(index: number, address: AnyCidr): Promise<void>;
  /** `ip addr del <cidr> dev <index>`; a missing address is success. */
  deleteAddress(index: number, address: AnyCidr): Promise<void>;
  /**
   * Routes (main table, IPv4, oif = index, not proto kernel), IPv4 neighbours and
   * FDB entries (AF_BRIDGE with a dst) on the device, and our direct routes (main
   * table, proto RTPROT_FLANNELD_TS, any device; `direct: true`): one route dump serves both.
   * Each entry is passed through `canonical` as it is read: the reconciler hands in
   * its index of the last listing, which answers an equal entry with the object it
   * already holds, so a listing of an unchanged device keeps nothing new alive.
   */
  listEntries(index: number, canonical?: (entry: Entry) => Entry): Promise<Entry[]>;
  /**
   * Applies the operations on the device, in order of the array for entries that
   * depend on each other (callers put neighbour and FDB before route), pipelined
   * with a bounded number of requests in flight. Never rejects: each result says
   * whether its operation failed.
   */
  apply(index: number, operations: readonly Operation[]): Promise<OperationResult[]>;
  /**
   * Calls `onChange` (coalescing is the caller's job) when the kernel reports a
   * link, address, route or neighbour change that may concern the devices this
   * kernel was asked about (`external`; NetlinkKernel drops neighbour and FDB
   * notifications of other devices), and once after each of our own mutating
   * calls (`own`; NetlinkKernel tells its own notifications from others', so an
   * outside change made while we apply is still `external`), and `overflow`
   * when notifications were lost and everything must be re-read.
   * Returns an unsubscribe function.
   */
  watch(onChange: (cause: ChangeCause) => void): () => void;
  close(): void;
}

/** An entry in iproute2 words, for logs and errors: "route 10.7.12.0/24 via 10.7.12.0 onlink". */
export function describeEntry(e: Entry): string {
  switch (e.kind) {
    case 'route':
      return `route ${formatAnyCidr(e.dst)} via ${formatIp(e.gateway)}${e.onlink ? ' onlink' : ''}${e.direct ? ` proto ${RTPROT_FLANNELD_TS}` : ''}`;
    case 'neighbor':
      return `neighbor ${formatIp(e.ip)} lladdr ${e.mac}`;
    case 'fdb':
      return `fdb ${e.mac} dst ${formatIp(e.dst)}`;
  }
}

/**
 * True for an entry of `family` (4 or 6). `listEntries` returns our direct
 * routes of both families whatever device is asked about; each family's
 * overlay keeps only its own.
 */
export function isEntryOfFamily(e: Entry, family: 4 | 6): boolean {
  const ip = e.kind === 'route' ? e.dst.ip : e.kind === 'neighbor' ? e.ip : e.dst;
  return (typeof ip === 'bigint') === (family === 6);
}
