/**
 * An in-memory `Kernel` for unit tests, with the observable semantics of the real
 * one (checked by the shared contract suite): replace keyed by route dst,
 * neighbour IP and FDB MAC; deleting a missing thing succeeds; routes need the
 * device up and, without onlink, a connected gateway; taking a device down drops
 * its routes and neighbours but keeps permanent FDB entries, as Linux does.
 * Direct routes (`direct: true`) belong to no device: listed with every
 * device's entries, they need a connected gateway, and a route replace for a
 * destination swaps out the other kind's route for it (one main-table slot per
 * destination, as in the kernel).
 */
import { cidrContains, makeCidr, prefixMask } from '../net/ipv4';
import { Cidr6, cidr6Contains, makeCidr6 } from '../net/ipv6';
import { AnyCidr, IpAddr, anyCidrEquals, formatAnyCidr, isCidr6 } from '../net/family';
import { DefaultRoute, RouteLookup, addressKey } from './interfaces';
import { KernelError } from '../util/errors';
import {
  RTPROT_FLANNELD_TS,
  DeviceState,
  Entry,
  FdbEntry,
  HostNetwork,
  HostRoute,
  InterfaceAddress,
  InterfaceAddress6,
  InterfaceInfo,
  Kernel,
  LinkChange,
  NeighborEntry,
  Operation,
  OperationResult,
  RouteEntry,
  VxlanSpec,
} from './kernel';
import { ChangeCause, describeEntry } from './kernel';

/** A mutating call, as seen by `failNext` predicates and recorded in `calls`. */
export type KernelCall =
  | { readonly method: 'createVxlan'; readonly spec: VxlanSpec; readonly mac: string }
  | { readonly method: 'deleteLink'; readonly index: number }
  | { readonly method: 'setLink'; readonly index: number; readonly change: LinkChange }
  | { readonly method: 'addAddress'; readonly index: number; readonly address: AnyCidr }
  | { readonly method: 'deleteAddress'; readonly index: number; readonly address: AnyCidr }
  | { readonly method: 'apply'; readonly index: number; readonly operation: Operation };

interface Link {
  info: InterfaceInfo;
  kind: string;
  mac: string;
  vxlan?: VxlanSpec;
  /** IPv6 addresses (InterfaceInfo holds the IPv4 ones). */
  addresses6: Cidr6[];
  routes: Map<string, RouteEntry>;
  neighbors: Map<IpAddr, NeighborEntry>;
  fdb: Map<string, FdbEntry>;
}

function fail(what: string, errno: string): KernelError {
  return new KernelError(`failed to ${what}: ${errno}`, errno, false);
}

export class MemoryKernel implements Kernel {
  /** Every mutating call, in order. */
  readonly calls: KernelCall[] = [];
  private readonly links = new Map<number, Link>();
  private readonly failures: Array<{ predicate: (call: KernelCall) => boolean; error: Error }> = [];
  private readonly listeners = new Set<(cause: ChangeCause) => void>();
  private defaultIndex: number | 'multipath' | undefined;
  private defaultIndex6: number | 'multipath' | undefined;
  private defaultGateway6: bigint | undefined;
  private nextIndex = 1;
  private readonly hostRoutes: HostRoute[] = [];
  /** Our direct routes (main table, proto RTPROT_FLANNELD_TS), by destination. */
  private readonly direct = new Map<string, RouteEntry>();
  private defaultGateway: number | undefined;
  private readonly hostRoutes6: HostRoute<Cidr6>[] = [];

  /** Adds a plain (non-VXLAN) interface, e.g. the underlay. */
  addInterface(info: InterfaceInfo, mac = '02:00:00:00:00:01'): void {
    this.links.set(info.index, { info, kind: '', mac, addresses6: [], routes: new Map(), neighbors: new Map(), fdb: new Map() });
    this.nextIndex = Math.max(this.nextIndex, info.index + 1);
  }

  /** Adds a route that is not on any device's entry list (another daemon's, the operator's); either family. */
  addHostRoute(route: HostRoute | HostRoute<Cidr6>): void {
    if (typeof route.dst.ip === 'bigint') this.hostRoutes6.push(route as HostRoute<Cidr6>);
    else this.hostRoutes.push(route as HostRoute);
    this.changed('external');
  }

  /** `multipath`: a default route with several next hops (no single interface). */
  setDefaultRoute(index: number | 'multipath' | undefined, gateway?: number): void {
    this.defaultIndex = index;
    this.defaultGateway = gateway;
  }

  /** The IPv6 default route (`ip -6 route show default`). */
  setDefaultRoute6(index: number | 'multipath' | undefined, gateway?: bigint): void {
    this.defaultIndex6 = index;
    this.defaultGateway6 = gateway;
  }

  /** The next call matching `predicate` fails with `error` (once). */
  failNext(predicate: (call: KernelCall) => boolean, error: Error): void {
    this.failures.push({ predicate, error });
  }

  /** Adds or overwrites an entry behind the daemon's back (drift). */
  putEntry(index: number, entry: Entry): void {
    this.store(this.link(index), entry);
    this.changed('external');
  }

  /** Tells watchers that notifications were lost, as a kernel watch that overflowed does. */
  loseNotifications(): void {
    this.changed('overflow');
  }

  /** Removes an entry behind the daemon's back (drift). */
  removeEntry(index: number, entry: Entry): void {
    this.remove(this.link(index), entry);
    this.changed('external');
  }

  async listInterfaces(): Promise<InterfaceInfo[]> {
    return [...this.links.values()].map((l) => ({ ...l.info, addresses: [...l.info.addresses] }));
  }

  /** Connected routes for every non-/32 (non-/128) address, the routes on each device, the added host routes and the default route. */
  async readHostNetwork(exceptDevice?: number): Promise<HostNetwork> {
    const addrs6 = await this.listAddresses6();
    const interfaces = (await this.listInterfaces()).map((i) => ({ ...i, addresses6: addrs6.get(i.index) ?? [] }));
    const routes: HostRoute[] = [...this.hostRoutes];
    const routes6: HostRoute<Cidr6>[] = [...this.hostRoutes6];
    for (const link of this.links.values()) {
      for (const a of link.info.up ? (addrs6.get(link.info.index) ?? []) : []) {
        if (a.prefixLen < 128) routes6.push({ dst: makeCidr6(a.ip, a.prefixLen), table: 254, protocol: 2, scope: 0, type: 1, devices: [link.info.index] });
      }
      for (const r of link.routes.values()) {
        if (typeof r.dst.ip === 'bigint' && typeof r.gateway === 'bigint') routes6.push({ dst: { ip: r.dst.ip, prefixLen: r.dst.prefixLen }, table: 254, protocol: 3, scope: 0, type: 1, devices: [link.info.index], gateway: r.gateway });
      }
      for (const a of link.info.up ? link.info.addresses : []) {
        if (a.prefixLen < 32) routes.push({ dst: makeCidr(a.ip, a.prefixLen), table: 254, protocol: 2, scope: 253, type: 1, devices: [link.info.index] });
      }
      for (const r of link.routes.values()) {
        if (typeof r.dst.ip === 'number' && typeof r.gateway === 'number') routes.push({ dst: { ip: r.dst.ip, prefixLen: r.dst.prefixLen }, table: 254, protocol: 3, scope: 0, type: 1, devices: [link.info.index], gateway: r.gateway });
      }
    }
    for (const r of this.direct.values()) {
      const device = this.connectedLink(r.gateway);
      const rest = { table: 254, protocol: RTPROT_FLANNELD_TS, scope: 0, type: 1, devices: device ? [device.info.index] : [] };
      if (typeof r.dst.ip === 'bigint' && typeof r.gateway === 'bigint') routes6.push({ dst: { ip: r.dst.ip, prefixLen: r.dst.prefixLen }, ...rest, gateway: r.gateway });
      else if (typeof r.dst.ip === 'number' && typeof r.gateway === 'number') routes.push({ dst: { ip: r.dst.ip, prefixLen: r.dst.prefixLen }, ...rest, gateway: r.gateway });
    }
    if (typeof this.defaultIndex === 'number') routes.push({ dst: makeCidr(0, 0), table: 254, protocol: 3, scope: 0, type: 1, devices: [this.defaultIndex] });
    const kept = (r: { readonly devices: readonly number[] }): boolean => !(r.devices.length > 0 && r.devices.every((d) => d === exceptDevice));
    return { interfaces, routes: routes.filter(kept), routes6: routes6.filter(kept) };
  }

  async defaultRouteInterface(): Promise<number | undefined> {
    return typeof this.defaultIndex === 'number' && this.links.has(this.defaultIndex) ? this.defaultIndex : undefined;
  }

  async addressFlags(): Promise<ReadonlyMap<string, number>> {
    const out = new Map<string, number>();
    for (const l of this.links.values()) for (const a of l.info.addresses) if (a.flags !== undefined) out.set(addressKey(l.info.index, a.ip), a.flags);
    return out;
  }

  /** The `addresses6` each interface was added with. */
  async listAddresses6(): Promise<ReadonlyMap<number, readonly InterfaceAddress6[]>> {
    const out = new Map<number, readonly InterfaceAddress6[]>();
    for (const l of this.links.values()) if (l.info.addresses6?.length) out.set(l.info.index, [...l.info.addresses6]);
    return out;
  }

  async defaultRoute6(): Promise<DefaultRoute> {
    const d = this.defaultIndex6;
    return d === 'multipath' || (d !== undefined && this.links.has(d)) ? d : undefined;
  }

  async defaultRoute(): Promise<DefaultRoute> {
    if (this.defaultIndex === 'multipath') return 'multipath';
    return this.defaultRouteInterface();
  }

  /** Connected subnets first (longest prefix, source = that address), else the default route with its first address; either family. */
  async routeGet<A extends IpAddr>(dst: A): Promise<RouteLookup<A> | undefined> {
    return (typeof dst === 'bigint' ? this.routeGet6(dst) : this.routeGet4(dst as number)) as Promise<RouteLookup<A> | undefined>;
  }

  private async routeGet6(dst: bigint): Promise<RouteLookup<bigint> | undefined> {
    let best: { index: number; src: bigint; len: number } | undefined;
    for (const l of this.links.values()) {
      for (const a of [...(l.info.addresses6 ?? []), ...l.addresses6]) {
        if (cidr6Contains(makeCidr6(a.ip, a.prefixLen), dst) && (!best || a.prefixLen > best.len)) best = { index: l.info.index, src: a.ip, len: a.prefixLen };
      }
    }
    if (best) return { index: best.index, src: best.src, gateway: undefined, type: 'unicast' };
    const def = await this.defaultRoute6();
    if (typeof def !== 'number') return undefined;
    return { index: def, src: this.links.get(def)?.info.addresses6?.[0]?.ip, gateway: this.defaultGateway6, type: 'unicast' };
  }

  private async routeGet4(dst: number): Promise<RouteLookup | undefined> {
    let best: { index: number; src: number; len: number } | undefined;
    for (const l of this.links.values()) {
      for (const a of l.info.addresses) {
        if (cidrContains({ ip: (a.ip & prefixMask(a.prefixLen)) >>> 0, prefixLen: a.prefixLen }, dst) && (!best || a.prefixLen > best.len)) best = { index: l.info.index, src: a.ip, len: a.prefixLen };
      }
    }
    if (best) return { index: best.index, src: best.src, gateway: undefined, type: 'unicast' };
    const def = await this.defaultRouteInterface();
    if (def === undefined) return undefined;
    return { index: def, src: this.links.get(def)?.info.addresses[0]?.ip, gateway: this.defaultGateway, type: 'unicast' };
  }

  async getDevice(name: string): Promise<DeviceState | undefined> {
    const link = [...this.links.values()].find((l) => l.info.name === name);
    if (!link) return undefined;
    const { info, vxlan } = link;
    return {
      index: info.index,
      name: info.name,
      kind: link.kind,
      mac: link.mac,
      mtu: info.mtu,
      up: info.up,
      vni: vxlan?.vni,
      localIP: vxlan?.localIP,
      underlayIndex: vxlan?.underlayIndex,
      port: vxlan?.port,
      learning: vxlan?.learning,
      gbp: vxlan?.gbp,
      addresses: info.addresses.map((a) => ({ ip: a.ip, prefixLen: a.prefixLen })),
      addresses6: [...link.addresses6],
    };
  }

  async createVxlan(spec: VxlanSpec, mac: string): Promise<DeviceState> {
    this.check({ method: 'createVxlan', spec, mac });
    const what = `create VXLAN device ${spec.name}`;
    if ([...this.links.values()].some((l) => l.info.name === spec.name)) throw fail(what, 'EEXIST');
    if (!this.links.has(spec.underlayIndex)) throw fail(what, 'ENODEV');
    const index = this.nextIndex++;
    const info: InterfaceInfo = { index, name: spec.name, mtu: spec.mtu, up: false, addresses: [] };
    this.links.set(index, { info, kind: 'vxlan', mac, vxlan: spec, addresses6: [], routes: new Map(), neighbors: new Map(), fdb: new Map() });
    this.changed();
    return (await this.getDevice(spec.name)) as DeviceState;
  }

  async deleteLink(index: number): Promise<void> {
    this.check({ method: 'deleteLink', index });
    if (this.links.delete(index)) this.changed();
  }

  async setLink(index: number, change: LinkChange): Promise<void> {
    this.check({ method: 'setLink', index, change });
    const link = this.links.get(index);
    if (!link) throw fail(`set link ifindex ${index}`, 'ENODEV');
    const up = change.up ?? link.info.up;
    if (!up) {
      link.routes.clear();
      link.neighbors.clear();
    }
    link.info = { ...link.info, mtu: change.mtu ?? link.info.mtu, up };
    this.changed();
  }

  async addAddress(index: number, address: AnyCidr): Promise<void> {
    this.check({ method: 'addAddress', index, address });
    const link = this.links.get(index);
    if (!link) throw fail(`add address ${formatAnyCidr(address)} to ifindex ${index}`, 'ENODEV');
    if (isCidr6(address)) {
      link.addresses6 = [...link.addresses6.filter((a) => !anyCidrEquals(a, address)), address];
    } else {
      const others = link.info.addresses.filter((a) => a.ip !== address.ip || a.prefixLen !== address.prefixLen);
      const added: InterfaceAddress = { ip: address.ip, prefixLen: address.prefixLen, scope: 0 };
      link.info = { ...link.info, addresses: [...others, added] };
    }
    this.changed();
  }

  async deleteAddress(index: number, address: AnyCidr): Promise<void> {
    this.check({ method: 'deleteAddress', index, address });
    const link = this.links.get(index);
    if (!link) return;
    if (isCidr6(address)) {
      const kept6 = link.addresses6.filter((a) => !anyCidrEquals(a, address));
      if (kept6.length === link.addresses6.length) return;
      link.addresses6 = kept6;
    } else {
      const kept = link.info.addresses.filter((a) => a.ip !== address.ip || a.prefixLen !== address.prefixLen);
      if (kept.length === link.info.addresses.length) return;
      link.info = { ...link.info, addresses: kept };
    }
    this.changed();
  }

  async listEntries(index: number, canonical?: (entry: Entry) => Entry): Promise<Entry[]> {
    const link = this.links.get(index);
    if (!link) return [];
    const all = [...link.routes.values(), ...this.direct.values(), ...link.neighbors.values(), ...link.fdb.values()];
    return canonical ? all.map(canonical) : all;
  }

  /** Applies in array order, one at a time (trivially within the ordering rules). */
  async apply(index: number, operations: readonly Operation[]): Promise<OperationResult[]> {
    const results: OperationResult[] = [];
    let changed = false;
    for (const operation of operations) {
      try {
        this.check({ method: 'apply', index, operation });
        this.applyOne(index, operation);
        changed = true;
        results.push({ operation });
      } catch (err) {
        results.push({ operation, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
    if (changed) this.changed();
    return results;
  }

  watch(onChange: (cause: ChangeCause) => void): () => void {
    const listener = (cause: ChangeCause): void => onChange(cause);
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): void {
    this.listeners.clear();
  }

  private applyOne(index: number, { op, entry }: Operation): void {
    const link = this.links.get(index);
    const what = `${op} ${describeEntry(entry)} on ${link?.info.name ?? `ifindex ${index}`}`;
    if (!link) {
      if (op === 'delete') return;
      throw fail(what, 'ENODEV');
    }
    if (op === 'delete') {
      this.remove(link, entry);
      return;
    }
    if (entry.kind === 'route' && entry.direct) {
      if (!this.connectedLink(entry.gateway)) throw fail(what, 'ENETUNREACH');
    } else if (entry.kind === 'route') {
      if (entry.onlink && !link.info.up) throw fail(what, 'ENETDOWN');
      // Without onlink the gateway must lie in a connected (non-/32) prefix of the device.
      const gateway = entry.gateway;
      const connected =
        link.info.up &&
        (typeof gateway === 'bigint'
          ? link.addresses6.some((a) => a.prefixLen < 128 && cidr6Contains(a, gateway))
          : link.info.addresses.some((a) => a.prefixLen < 32 && cidrContains(makeCidr(a.ip, a.prefixLen), gateway)));
      if (!entry.onlink && !connected) throw fail(what, 'ENETUNREACH');
      // IPv6 refuses an onlink gateway that another device's route covers, e.g. the direct route of that subnet (ip6_route_check_nh_onlink).
      const other = this.direct.get(formatAnyCidr(entry.dst));
      if (entry.onlink && typeof gateway === 'bigint' && other && typeof other.dst.ip === 'bigint' && cidr6Contains(other.dst as Cidr6, gateway)) throw fail(what, 'EINVAL');
    }
    this.store(link, entry.kind === 'route' ? entry : { ...entry, permanent: true });
  }

  // An up link with a connected (non-/32) prefix holding `ip`: where a route via `ip` without a device goes.
  private connectedLink(ip: IpAddr): Link | undefined {
    return [...this.links.values()].find(
      (l) =>
        l.info.up &&
        (typeof ip === 'bigint'
          ? [...(l.info.addresses6 ?? []), ...l.addresses6].some((a) => a.prefixLen < 128 && cidr6Contains(makeCidr6(a.ip, a.prefixLen), ip))
          : l.info.addresses.some((a) => a.prefixLen < 32 && cidrContains(makeCidr(a.ip, a.prefixLen), ip))),
    );
  }

  private store(link: Link, entry: Entry): void {
    const dst = entry.kind === 'route' ? formatAnyCidr(entry.dst) : '';
    // One main-table route per destination: a replace of either kind takes the other's place.
    if (entry.kind === 'route' && entry.direct) {
      for (const l of this.links.values()) l.routes.delete(dst);
      this.direct.set(dst, entry);
    } else if (entry.kind === 'route') {
      this.direct.delete(dst);
      link.routes.set(dst, entry);
    } else if (entry.kind === 'neighbor') link.neighbors.set(entry.ip, entry);
    else link.fdb.set(entry.mac, entry);
  }

  private remove(link: Link, entry: Entry): void {
    if (entry.kind === 'route' && entry.direct) {
      // The kernel matches the protocol and gateway: only our direct route to that gateway goes.
      const dst = formatAnyCidr(entry.dst);
      if (this.direct.get(dst)?.gateway === entry.gateway) this.direct.delete(dst);
    } else if (entry.kind === 'route') link.routes.delete(formatAnyCidr(entry.dst));
    else if (entry.kind === 'neighbor') link.neighbors.delete(entry.ip);
    else link.fdb.delete(entry.mac);
  }

  private link(index: number): Link {
    const link = this.links.get(index);
    if (!link) throw new RangeError(`no interface with index ${index}`);
    return link;
  }

  private check(call: KernelCall): void {
    this.calls.push(call);
    const i = this.failures.findIndex((f) => f.predicate(call));
    if (i < 0) return;
    const [failure] = this.failures.splice(i, 1);
    if (failure) throw failure.error;
  }

  // Like kernel notifications, listeners hear about a change after the call that made it.
  private changed(cause: ChangeCause = 'own'): void {
    for (const listener of [...this.listeners]) queueMicrotask(() => listener(cause));
  }
}
