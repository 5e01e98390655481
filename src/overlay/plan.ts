/**
 * planChanges: the ordered operations that turn the kernel state on the overlay
 * device into the desired state. Pure; the reconciler applies the result.
 *
 * Order: removals first, each peer's in reverse (route → FDB → neighbour), then
 * additions and corrections per peer as neighbour → FDB → route, so the kernel
 * never holds a route whose gateway it cannot resolve.
 *
 * Direct peers (DirectRouting) have one entry, a route via the peer's PublicIP.
 * A peer that changes mode is never left without a route: a destination has one
 * main-table slot, so the new kind's `route replace` takes the old route's place
 * in one step (the old route is not deleted first). VXLAN → direct: the direct
 * route replaces the onlink one, then the peer's neighbour and FDB entry go
 * (planned after every addition, so traffic keeps flowing through the overlay
 * until the route has moved). Direct → VXLAN: neighbour and FDB first, then the
 * onlink route replaces the direct one; for IPv6 the kernel refuses that
 * replace while the direct route covers the onlink gateway, so the direct route
 * is deleted just before it (one netlink round trip without a route, after the
 * neighbour and FDB entry are in place). flanneld does the same replaces but
 * leaves the old neighbour and FDB entry behind (contract §12); the same
 * kernel check should refuse its IPv6 direct → VXLAN replace (inferred).
 */
import { IpAddr, formatIp } from '../net/family';
import { Entry, FdbEntry, NeighborEntry, Operation, RouteEntry } from '../kernel/kernel';

export { describeEntry } from '../kernel/kernel';
import { DesiredState, PeerEntries } from './desired';
import { KernelIndex, cidrKey } from './kernel-index';

export interface PlannedOperation extends Operation {
  /** Why, for the log: "missing", "wrong mac 6e:..", "stale". */
  readonly reason: string;
}

function routeProblem(want: RouteEntry, have: RouteEntry | undefined): string | undefined {
  if (!have) return 'missing';
  if (have.gateway !== want.gateway) return `wrong gateway ${formatIp(have.gateway)}`;
  if (want.onlink && !have.onlink) return 'not onlink';
  return undefined;
}

function neighborProblem(want: NeighborEntry, have: NeighborEntry | undefined): string | undefined {
  if (!have) return 'missing';
  if (have.mac !== want.mac) return `wrong mac ${have.mac}`;
  if (!have.permanent) return 'not permanent';
  return undefined;
}

function fdbProblem(want: FdbEntry, have: readonly FdbEntry[]): string | undefined {
  if (have.length === 0) return 'missing';
  if (!have.some((f) => f.dst === want.dst)) return `wrong dst ${formatIp((have[0] as FdbEntry).dst)}`;
  if (!have.some((f) => f.dst === want.dst && f.permanent)) return 'not permanent';
  return undefined;
}

/** `actual`: the entries on the device (and our direct routes), as a list or already indexed. */
export function planChanges(desired: DesiredState, actual: readonly Entry[] | KernelIndex): PlannedOperation[] {
  const idx = actual instanceof KernelIndex ? actual : KernelIndex.of(actual);
  const wantRoutes = new Set<number | bigint>();
  const wantDirect = new Set<number | bigint>();
  const wantNeighbors = new Set<IpAddr>();
  const wantFdb = new Map<string, IpAddr>();
  // Destinations whose route is replaced in this plan: the replace evicts the other kind's route.
  const replacing = new Set<number | bigint>();
  // Neighbour IPs and FDB remotes of direct peers: their old vxlan entries go after the route moved.
  const directNeighbors = new Set<IpAddr>();
  const directRemotes = new Set<IpAddr>();
  const adds: PlannedOperation[] = [];
  for (const peer of desired.peers.values()) {
    const key = cidrKey(peer.route.dst);
    if (peer.mode === 'direct' || !peer.neighbor || !peer.fdb) {
      wantDirect.add(key);
      directNeighbors.add(peer.subnet.ip);
      directRemotes.add(peer.route.gateway);
      const r = routeProblem(peer.route, idx.direct.get(key));
      if (r) adds.push({ op: 'replace', entry: peer.route, reason: r });
      if (r) replacing.add(key);
      continue;
    }
    wantRoutes.add(key);
    wantNeighbors.add(peer.neighbor.ip);
    wantFdb.set(peer.fdb.mac, peer.fdb.dst);
    const n = neighborProblem(peer.neighbor, idx.neighbors.get(peer.neighbor.ip));
    if (n) adds.push({ op: 'replace', entry: peer.neighbor, reason: n });
    const f = fdbProblem(peer.fdb, idx.fdb.get(peer.fdb.mac) ?? []);
    if (f) adds.push({ op: 'replace', entry: peer.fdb, reason: f });
    const r = routeProblem(peer.route, idx.routes.get(key));
    const direct = r ? idx.direct.get(key) : undefined;
    // IPv6 refuses an onlink route whose gateway (the subnet's own address) another route covers, the direct one included
    // (EINVAL, "Nexthop has invalid gateway or device mismatch": ip6_route_check_nh_onlink), so that one goes first.
    if (direct && typeof key === 'bigint') adds.push({ op: 'delete', entry: direct, reason: 'peer is vxlan' });
    if (r) adds.push({ op: 'replace', entry: peer.route, reason: r });
    if (r) replacing.add(key);
  }
  const removeRoutes: PlannedOperation[] = [];
  const removeFdb: PlannedOperation[] = [];
  const removeNeighbors: PlannedOperation[] = [];
  const afterwards: PlannedOperation[] = [];
  for (const [key, route] of idx.routes) {
    if (!wantRoutes.has(key) && !replacing.has(key)) removeRoutes.push({ op: 'delete', entry: route, reason: 'stale' });
  }
  for (const [key, route] of idx.direct) {
    if (!wantDirect.has(key) && !replacing.has(key)) removeRoutes.push({ op: 'delete', entry: route, reason: 'stale' });
  }
  for (const [mac, entries] of idx.fdb) {
    const dst = wantFdb.get(mac);
    for (const e of entries) {
      // A wanted MAC with an extra (appended) remote: drop the extra one.
      if (dst === undefined || (e.dst !== dst && entries.some((x) => x.dst === dst))) {
        if (dst === undefined && directRemotes.has(e.dst)) afterwards.push({ op: 'delete', entry: e, reason: 'peer is direct' });
        else removeFdb.push({ op: 'delete', entry: e, reason: 'stale' });
      }
    }
  }
  for (const [ip, n] of idx.neighbors) {
    // Non-permanent neighbours are the kernel's own (failed ARP for an unknown IP); not ours to sweep.
    if (wantNeighbors.has(ip) || !n.permanent) continue;
    if (directNeighbors.has(ip)) afterwards.push({ op: 'delete', entry: n, reason: 'peer is direct' });
    else removeNeighbors.push({ op: 'delete', entry: n, reason: 'stale' });
  }
  return [...removeRoutes, ...removeFdb, ...removeNeighbors, ...adds, ...afterwards];
}

function sameNeighbor(a: NeighborEntry | undefined, b: NeighborEntry | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.ip === b.ip && a.mac === b.mac && a.permanent === b.permanent);
}

function sameFdb(a: FdbEntry | undefined, b: FdbEntry | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.mac === b.mac && a.dst === b.dst && a.permanent === b.permanent);
}

/** Same entries, mode included (a direct peer has a direct route and no neighbour or FDB entry). */
function samePeer(a: PeerEntries, b: PeerEntries): boolean {
  if (a === b) return true;
  const [ra, rb] = [a.route, b.route];
  return (
    a.mode === b.mode &&
    ra.dst.ip === rb.dst.ip && ra.dst.prefixLen === rb.dst.prefixLen && ra.gateway === rb.gateway && ra.onlink === rb.onlink && ra.direct === rb.direct &&
    sameNeighbor(a.neighbor, b.neighbor) && sameFdb(a.fdb, b.fdb)
  );
}

/**
 * planChanges(next, known) for a kernel that matched `prev` exactly (the last
 * pass planned against `known` and every operation succeeded), looking only at
 * the peers that differ between `prev` and `next` (issue 10: one lease event at
 * 5,000 peers plans one peer). The result is the same operations: every entry
 * in `known` was wanted by `prev`, and a route, neighbour IP or FDB MAC belongs
 * to one peer only (desiredState gives a MAC to one lease), so an entry of an
 * unchanged peer is neither stale nor wrong now.
 */
export function planChangesSince(prev: DesiredState, next: DesiredState, known: KernelIndex): PlannedOperation[] {
  const changed = new Map<string, PeerEntries | undefined>();
  for (const [subnet, was] of prev.peers) {
    const now = next.peers.get(subnet);
    if (!now || !samePeer(was, now)) changed.set(subnet, was);
  }
  for (const subnet of next.peers.keys()) if (!prev.peers.has(subnet)) changed.set(subnet, undefined);
  return planChangedPeers(changed, next, known);
}

/**
 * The same for a desired state kept in place that logged its changes
 * (desired-book.ts): `changed` holds each changed peer's entries as they were
 * when the kernel matched (undefined: it had none); `desired` is the state now.
 */
export function planChangedPeers(changed: ReadonlyMap<string, PeerEntries | undefined>, desired: DesiredState, known: KernelIndex): PlannedOperation[] {
  const peers = new Map<string, PeerEntries>();
  const touched: PeerEntries[] = [];
  for (const [subnet, was] of changed) {
    const now = desired.peers.get(subnet);
    if (was && now && samePeer(was, now)) continue;
    if (was) touched.push(was);
    if (now) {
      touched.push(now);
      peers.set(subnet, now);
    }
  }
  if (touched.length === 0) return [];
  return planChanges({ peers, skipped: [] }, known.pick(touched));
}
