/**
 * An in-memory `Kernel` for unit tests, with the observable semantics of the real
 * one (checked by the shared contract suite): replace keyed by route dst,
 * neighbour IP and FDB MAC; deleting a missing thing succeeds; routes need the
 * device up and, without onlink, a connected gateway; taking a device down drops
 * its routes and neighbours but keeps permanent FDB entries, as Linux does.
 */
import { Cidr, cidrContains, formatCidr, makeCidr, prefixMask } from '../net/ipv4';
import { DefaultRoute, RouteLookup, addressKey } from './interfaces';
import { KernelError } from '../util/errors';
import {
  DeviceState,
  Entry,
  FdbEntry,
  HostNetwork,
  HostRoute,
  InterfaceAddress,
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
  | { readonly method: 'addAddress'; readonly index: number; readonly address: Cidr }
  | { readonly method: 'deleteAddress'; readonly index: number; readonly address: Cidr }
  | { readonly method: 'apply'; readonly index: number; readonly operation: Operation };

interface Link {
  info: InterfaceInfo;
  kind: string;
  mac: string;
  vxlan?: VxlanSpec;
  routes: Map<string, RouteEntry>;
  neighbors: Map<number, NeighborEntry>;
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
  private nextIndex = 1;
  private readonly hostRoutes: HostRoute[] = [];

  /** Adds a plain (non-VXLAN) interface, e.g. the underlay. */
  addInterface(info: InterfaceInfo, mac = '02:00:00:00:00:01'): void {
    this.links.set(info.index, { info, kind: '', mac, routes: new Map(), neighbors: new Map(), fdb: new Map() });
    this.nextIndex = Math.max(this.nextIndex, info.index + 1);
  }

  /** Adds a route that is not on any device's entry list (another daemon's, the operator's). */
  addHostRoute(route: HostRoute): void {
    this.hostRoutes.push(route);
    this.changed('external');
  }

  /** `multipath`: a default route with several next hops (no single interface). */
  setDefaultRoute(index: number | 'multipath' | undefined): void {
    this.defaultIndex = index;
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

  /** Connected routes for every non-/32 address, the routes on each device, the added host routes and the default route. */
  async readHostNetwork(exceptDevice?: number): Promise<HostNetwork> {
    const interfaces = await this.listInterfaces();
    const routes: HostRoute[] = [...this.hostRoutes];
    for (const link of this.links.values()) {
      for (const a of link.info.up ? link.info.addresses : []) {
        if (a.prefixLen < 32) routes.push({ dst: makeCidr(a.ip, a.prefixLen), table: 254, protocol: 2, scope: 253, type: 1, devices: [link.info.index] });
      }
      for (const r of link.routes.values()) routes.push({ dst: r.dst, table: 254, protocol: 3, scope: 0, type: 1, devices: [link.info.index], gateway: r.gateway });
    }
    if (typeof this.defaultIndex === 'number') routes.push({ dst: makeCidr(0, 0), table: 254, protocol: 3, scope: 0, type: 1, devices: [this.defaultIndex] });
    return { interfaces, routes: routes.filter((r) => !(r.devices.length > 0 && r.devices.every((d) => d === exceptDevice))) };
  }

  async defaultRouteInterface(): Promise<number | undefined> {
    return typeof this.defaultIndex === 'number' && this.links.has(this.defaultIndex) ? this.defaultIndex : undefined;
  }

  async addressFlags(): Promise<ReadonlyMap<string, number>> {
    const out = new Map<string, number>();
    for (const l of this.links.values()) for (const a of l.info.addresses) if (a.flags !== undefined) out.set(addressKey(l.info.index, a.ip), a.flags);
    return out;
  }

  async defaultRoute(): Promise<DefaultRoute> {
    if (this.defaultIndex === 'multipath') return 'multipath';
    return this.defaultRouteInterface();
  }

  /** Connected subnets first (longest prefix, source = that address), else the default route with its first address. */
  async routeGet(dst: number): Promise<RouteLookup | undefined> {
    let best: { index: number; src: number; len: number } | undefined;
    for (const l of this.links.values()) {
      for (const a of l.info.addresses) {
        if (cidrContains({ ip: (a.ip & prefixMask(a.prefixLen)) >>> 0, prefixLen: a.prefixLen }, dst) && (!best || a.prefixLen > best.len)) best = { index: l.info.index, src: a.ip, len: a.prefixLen };
      }
    }
    if (best) return { index: best.index, src: best.src };
    const def = await this.defaultRouteInterface();
    if (def === undefined) return undefined;
    return { index: def, src: this.links.get(def)?.info.addresses[0]?.ip };
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
    };
  }

  async createVxlan(spec: VxlanSpec, mac: string): Promise<DeviceState> {
    this.check({ method: 'createVxlan', spec, mac });
    const what = `create VXLAN device ${spec.name}`;
    if ([...this.links.values()].some((l) => l.info.name === spec.name)) throw fail(what, 'EEXIST');
    if (!this.links.has(spec.underlayIndex)) throw fail(what, 'ENODEV');
    const index = this.nextIndex++;
    const info: InterfaceInfo = { index, name: spec.name, mtu: spec.mtu, up: false, addresses: [] };
    this.links.set(index, { info, kind: 'vxlan', mac, vxlan: spec, routes: new Map(), neighbors: new Map(), fdb: new Map() });
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

  async addAddress(index: number, address: Cidr): Promise<void> {
    this.check({ method: 'addAddress', index, address });
    const link = this.links.get(index);
    if (!link) throw fail(`add address ${formatCidr(address)} to ifindex ${index}`, 'ENODEV');
    const others = link.info.addresses.filter((a) => a.ip !== address.ip || a.prefixLen !== address.prefixLen);
    const added: InterfaceAddress = { ip: address.ip, prefixLen: address.prefixLen, scope: 0 };
    link.info = { ...link.info, addresses: [...others, added] };
    this.changed();
  }

  async deleteAddress(index: number, address: Cidr): Promise<void> {
    this.check({ method: 'deleteAddress', index, address });
    const link = this.links.get(index);
    if (!link) return;
    const kept = link.info.addresses.filter((a) => a.ip !== address.ip || a.prefixLen !== address.prefixLen);
    if (kept.length === link.info.addresses.length) return;
    link.info = { ...link.info, addresses: kept };
    this.changed();
  }

  async listEntries(index: number): Promise<Entry[]> {
    const link = this.links.get(index);
    if (!link) return [];
    return [...link.routes.values(), ...link.neighbors.values(), ...link.fdb.values()];
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
    if (entry.kind === 'route') {
      if (entry.onlink && !link.info.up) throw fail(what, 'ENETDOWN');
      // Without onlink the gateway must lie in a connected (non-/32) prefix of the device.
      const gateway = entry.gateway;
      const connected = link.info.up && link.info.addresses.some((a) => a.prefixLen < 32 && cidrContains(makeCidr(a.ip, a.prefixLen), gateway));
      if (!entry.onlink && !connected) throw fail(what, 'ENETUNREACH');
    }
    this.store(link, entry.kind === 'route' ? entry : { ...entry, permanent: true });
  }

  private store(link: Link, entry: Entry): void {
    if (entry.kind === 'route') link.routes.set(formatCidr(entry.dst), entry);
    else if (entry.kind === 'neighbor') link.neighbors.set(entry.ip, entry);
    else link.fdb.set(entry.mac, entry);
  }

  private remove(link: Link, entry: Entry): void {
    if (entry.kind === 'route') link.routes.delete(formatCidr(entry.dst));
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
