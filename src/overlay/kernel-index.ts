/**
 * The entries on the overlay device, indexed the way desired entries are keyed:
 * routes by destination, neighbours by IP, FDB entries by MAC. The reconciler
 * keeps one from its last listing and records what it applies since, so a pass
 * caused only by lease events plans without re-reading thousands of entries.
 */
import { Cidr } from '../net/ipv4';
import { Entry, FdbEntry, NeighborEntry, Operation, RouteEntry } from '../kernel/kernel';
import type { PeerEntries } from './desired';

/** A number that identifies a CIDR (address and length); cheaper than its text. */
export function cidrKey(c: Cidr): number {
  return c.ip * 64 + c.prefixLen;
}

export class KernelIndex {
  readonly routes = new Map<number, RouteEntry>();
  readonly neighbors = new Map<number, NeighborEntry>();
  readonly fdb = new Map<string, FdbEntry[]>();

  static of(entries: readonly Entry[]): KernelIndex {
    const idx = new KernelIndex();
    for (const e of entries) idx.put(e);
    return idx;
  }

  /** A new index with only the entries at the keys of these peers' route, neighbour and FDB MAC. */
  pick(peers: Iterable<PeerEntries>): KernelIndex {
    const out = new KernelIndex();
    for (const p of peers) {
      const key = cidrKey(p.route.dst);
      const route = this.routes.get(key);
      if (route) out.routes.set(key, route);
      const neighbor = this.neighbors.get(p.neighbor.ip);
      if (neighbor) out.neighbors.set(p.neighbor.ip, neighbor);
      const fdb = this.fdb.get(p.fdb.mac);
      if (fdb) out.fdb.set(p.fdb.mac, [...fdb]);
    }
    return out;
  }

  /** Records an operation the kernel accepted. */
  record({ op, entry }: Operation): void {
    if (op === 'replace') {
      // `bridge fdb replace` rewrites the MAC's remote: one entry remains.
      if (entry.kind === 'fdb') this.fdb.set(entry.mac, [entry]);
      else this.put(entry);
      return;
    }
    if (entry.kind === 'route') this.routes.delete(cidrKey(entry.dst));
    else if (entry.kind === 'neighbor') this.neighbors.delete(entry.ip);
    else {
      const rest = (this.fdb.get(entry.mac) ?? []).filter((f) => f.dst !== entry.dst);
      if (rest.length > 0) this.fdb.set(entry.mac, rest);
      else this.fdb.delete(entry.mac);
    }
  }

  private put(e: Entry): void {
    if (e.kind === 'route') this.routes.set(cidrKey(e.dst), e);
    else if (e.kind === 'neighbor') this.neighbors.set(e.ip, e);
    else {
      const list = this.fdb.get(e.mac);
      if (list) list.push(e);
      else this.fdb.set(e.mac, [e]);
    }
  }
}
