/**
 * planChanges: the ordered operations that turn the kernel state on the overlay
 * device into the desired state. Pure; the reconciler applies the result.
 *
 * Order: removals first, each peer's in reverse (route → FDB → neighbour), then
 * additions and corrections per peer as neighbour → FDB → route, so the kernel
 * never holds a route whose gateway it cannot resolve.
 */
import { formatIPv4 } from '../net/ipv4';
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
  if (have.gateway !== want.gateway) return `wrong gateway ${formatIPv4(have.gateway)}`;
  if (!have.onlink) return 'not onlink';
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
  if (!have.some((f) => f.dst === want.dst)) return `wrong dst ${formatIPv4((have[0] as FdbEntry).dst)}`;
  if (!have.some((f) => f.dst === want.dst && f.permanent)) return 'not permanent';
  return undefined;
}

/** `actual`: the entries on the device, as a list or already indexed. */
export function planChanges(desired: DesiredState, actual: readonly Entry[] | KernelIndex): PlannedOperation[] {
  const idx = actual instanceof KernelIndex ? actual : KernelIndex.of(actual);
  const wantRoutes = new Set<number>();
  const wantNeighbors = new Set<number>();
  const wantFdb = new Map<string, number>();
  const adds: PlannedOperation[] = [];
  for (const peer of desired.peers.values()) {
    const key = cidrKey(peer.route.dst);
    wantRoutes.add(key);
    wantNeighbors.add(peer.neighbor.ip);
    wantFdb.set(peer.fdb.mac, peer.fdb.dst);
    const n = neighborProblem(peer.neighbor, idx.neighbors.get(peer.neighbor.ip));
    if (n) adds.push({ op: 'replace', entry: peer.neighbor, reason: n });
    const f = fdbProblem(peer.fdb, idx.fdb.get(peer.fdb.mac) ?? []);
    if (f) adds.push({ op: 'replace', entry: peer.fdb, reason: f });
    const r = routeProblem(peer.route, idx.routes.get(key));
    if (r) adds.push({ op: 'replace', entry: peer.route, reason: r });
  }
  const removeRoutes: PlannedOperation[] = [];
  const removeFdb: PlannedOperation[] = [];
  const removeNeighbors: PlannedOperation[] = [];
  for (const [key, route] of idx.routes) {
    if (!wantRoutes.has(key)) removeRoutes.push({ op: 'delete', entry: route, reason: 'stale' });
  }
  for (const [mac, entries] of idx.fdb) {
    const dst = wantFdb.get(mac);
    for (const e of entries) {
      // A wanted MAC with an extra (appended) remote: drop the extra one.
      if (dst === undefined || (e.dst !== dst && entries.some((x) => x.dst === dst))) {
        removeFdb.push({ op: 'delete', entry: e, reason: 'stale' });
      }
    }
  }
  for (const [ip, n] of idx.neighbors) {
    // Non-permanent neighbours are the kernel's own (failed ARP for an unknown IP); not ours to sweep.
    if (!wantNeighbors.has(ip) && n.permanent) removeNeighbors.push({ op: 'delete', entry: n, reason: 'stale' });
  }
  return [...removeRoutes, ...removeFdb, ...removeNeighbors, ...adds];
}

function samePeer(a: PeerEntries, b: PeerEntries): boolean {
  if (a === b) return true;
  const [ra, rb, na, nb, fa, fb] = [a.route, b.route, a.neighbor, b.neighbor, a.fdb, b.fdb];
  return (
    ra.dst.ip === rb.dst.ip && ra.dst.prefixLen === rb.dst.prefixLen && ra.gateway === rb.gateway && ra.onlink === rb.onlink &&
    na.ip === nb.ip && na.mac === nb.mac && na.permanent === nb.permanent &&
    fa.mac === fb.mac && fa.dst === fb.dst && fa.permanent === fb.permanent
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
  const changed = new Map<string, PeerEntries>();
  const touched: PeerEntries[] = [];
  for (const [subnet, was] of prev.peers) {
    const now = next.peers.get(subnet);
    if (now && samePeer(was, now)) continue;
    touched.push(was);
    if (now) {
      touched.push(now);
      changed.set(subnet, now);
    }
  }
  for (const [subnet, now] of next.peers) {
    if (prev.peers.has(subnet)) continue;
    touched.push(now);
    changed.set(subnet, now);
  }
  if (touched.length === 0) return [];
  return planChanges({ peers: changed, skipped: [] }, known.pick(touched));
}
