/**
 * The entries on the overlay device, indexed the way desired entries are keyed:
 * routes by destination, neighbours by IP, FDB entries by MAC; our direct routes
 * (any device, proto RTPROT_FLANNELD_TS) by destination in their own map. The reconciler
 * keeps one from its last listing and records what it applies since, so a pass
 * caused only by lease events plans without re-reading thousands of entries.
 */
import { AnyCidr, IpAddr } from '../net/family';
import { Entry, FdbEntry, NeighborEntry, Operation, RouteEntry } from '../kernel/kernel';
import type { PeerEntries } from './desired';

/**
 * A value that identifies a CIDR (address and length); cheaper than its text.
 * IPv4 gives a number, IPv6 a bigint, so the two families never share a key.
 */
export function cidrKey(c: AnyCidr): number | bigint {
  return typeof c.ip === 'bigint' ? (c.ip << 8n) | BigInt(c.prefixLen) : c.ip * 64 + c.prefixLen;
}

export class KernelIndex {
  readonly routes = new Map<number | bigint, RouteEntry>();
  /** Our direct routes. A destination has one main-table slot: a replace of either kind evicts the other. */
  readonly direct = new Map<number | bigint, RouteEntry>();
  /** By address: a number for IPv4, a bigint for IPv6. */
  readonly neighbors = new Map<IpAddr, NeighborEntry>();
  readonly fdb = new Map<string, FdbEntry[]>();

  static of(entries: readonly Entry[]): KernelIndex {
    const idx = new KernelIndex();
    for (const e of entries) idx.put(e);
    return idx;
  }

  /**
   * A new index with only the entries at the keys of these peers: the route at
   * their destination of either kind (onlink or direct: a mode move swaps one
   * for the other), the neighbour at their gateway (the subnet's address) and
   * the FDB entries of their MAC.
   */
  pick(peers: Iterable<PeerEntries>): KernelIndex {
    const out = new KernelIndex();
    for (const p of peers) {
      const key = cidrKey(p.route.dst);
      const route = this.routes.get(key);
      if (route) out.routes.set(key, route);
      const direct = this.direct.get(key);
      if (direct) out.direct.set(key, direct);
      const neighbor = this.neighbors.get(p.subnet.ip);
      if (neighbor) out.neighbors.set(p.subnet.ip, neighbor);
      const fdb = p.fdb && this.fdb.get(p.fdb.mac);
      if (p.fdb && fdb) out.fdb.set(p.fdb.mac, [...fdb]);
    }
    return out;
  }

  /** Records an operation the kernel accepted. */
  record({ op, entry }: Operation): void {
    if (op === 'replace') {
      // `bridge fdb replace` rewrites the MAC's remote: one entry remains.
      if (entry.kind === 'fdb') this.fdb.set(entry.mac, [entry]);
      else this.put(entry);
      // `ip route replace` takes the destination's slot (same dst, tos and metric) whatever the device.
      if (entry.kind === 'route') (entry.direct ? this.routes : this.direct).delete(cidrKey(entry.dst));
      return;
    }
    if (entry.kind === 'route') (entry.direct ? this.direct : this.routes).delete(cidrKey(entry.dst));
    else if (entry.kind === 'neighbor') this.neighbors.delete(entry.ip);
    else {
      const rest = (this.fdb.get(entry.mac) ?? []).filter((f) => f.dst !== entry.dst);
      if (rest.length > 0) this.fdb.set(entry.mac, rest);
      else this.fdb.delete(entry.mac);
    }
  }

  /**
   * The entry held here that equals `e` (same key, gateway, onlink and kind of
   * route; same MAC and permanence of a neighbour; same remote and permanence of
   * an FDB entry), or `e` itself when there is none. A listing passed through this
   * returns the index's own objects for every entry that did not change.
   */
  canonical(e: Entry): Entry {
    if (e.kind === 'route') {
      const have = (e.direct ? this.direct : this.routes).get(cidrKey(e.dst));
      return have && have.gateway === e.gateway && have.onlink === e.onlink ? have : e;
    }
    if (e.kind === 'neighbor') {
      const have = this.neighbors.get(e.ip);
      return have && have.mac === e.mac && have.permanent === e.permanent ? have : e;
    }
    const list = this.fdb.get(e.mac);
    return list?.find((f) => f.dst === e.dst && f.permanent === e.permanent) ?? e;
  }

  /**
   * True when `listed` is exactly what this index holds: every entry the very
   * object held at its key (`canonical` returns them), each once, and as many as
   * it holds. The reconciler then keeps what it knows to match. (Each once: two routes to one
   * destination with different metrics both come back as the held object, and
   * must not stand in for a held route that is gone.)
   */
  holdsExactly(listed: readonly Entry[]): boolean {
    let size = this.routes.size + this.direct.size + this.neighbors.size;
    for (const list of this.fdb.values()) size += list.length;
    if (listed.length !== size) return false;
    const seen = new Set<Entry>();
    for (const e of listed) {
      if (seen.has(e) || !this.holds(e)) return false;
      seen.add(e);
    }
    return true;
  }

  /**
   * Makes this index hold exactly `listed` (a listing read through `canonical`),
   * in place: what is no longer listed goes, what is new comes in, the rest and
   * the maps stay. Returns false when it already held exactly that.
   */
  adopt(listed: readonly Entry[]): boolean {
    if (this.holdsExactly(listed)) return false;
    const keep = new Set(listed);
    for (const map of [this.routes, this.direct, this.neighbors] as Array<Map<unknown, Entry>>) {
      for (const [key, e] of map) if (!keep.has(e)) map.delete(key);
    }
    for (const [mac, list] of this.fdb) {
      const rest = list.filter((f) => keep.has(f));
      if (rest.length === 0) this.fdb.delete(mac);
      else if (rest.length !== list.length) this.fdb.set(mac, rest);
    }
    for (const e of listed) if (!this.holds(e)) this.put(e);
    return true;
  }

  // True when `e` is the very object held at its key.
  private holds(e: Entry): boolean {
    if (e.kind === 'route') return (e.direct ? this.direct : this.routes).get(cidrKey(e.dst)) === e;
    if (e.kind === 'neighbor') return this.neighbors.get(e.ip) === e;
    return this.fdb.get(e.mac)?.includes(e) === true;
  }

  private put(e: Entry): void {
    if (e.kind === 'route') (e.direct ? this.direct : this.routes).set(cidrKey(e.dst), e);
    else if (e.kind === 'neighbor') this.neighbors.set(e.ip, e);
    else {
      const list = this.fdb.get(e.mac);
      if (list) list.push(e);
      else this.fdb.set(e.mac, [e]);
    }
  }
}
