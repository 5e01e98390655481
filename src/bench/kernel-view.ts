/**
 * What flannel.1 holds in a namespace, read with iproute2's JSON output
 * (`ip -j route|neigh show dev flannel.1`, `bridge -j fdb show dev flannel.1`),
 * and the check that it is exactly the entries the bench's peers call for:
 * counts, every peer's three entries with their contents, and nothing else.
 * This is what stops a fast but wrong result from passing.
 */
import { runChecked } from '../testbed/exec';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { BenchPeer } from './peers';

export const DEVICE = 'flannel.1';

interface JsonRoute { dst?: string; gateway?: string; flags?: string[] }
interface JsonNeighbor { dst?: string; lladdr?: string; state?: string[] }
interface JsonFdb { mac?: string; dst?: string; flags?: string[]; state?: string }

/** The device's entries in iproute2 words, one string per entry. */
export interface DeviceDump {
  /** "100.64.1.0/24 via 100.64.1.0 onlink" */
  readonly routes: string[];
  /** "100.64.1.0 lladdr 0e:66:00:00:00:01 PERMANENT" */
  readonly neighbors: string[];
  /** "0e:66:00:00:00:01 dst 10.66.0.1 self permanent" */
  readonly fdb: string[];
}

function parseArray<T>(what: string, text: string): T[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const v: unknown = JSON.parse(trimmed);
  if (!Array.isArray(v)) throw new Error(`${what}: expected a JSON array`);
  return v as T[];
}

/** Turns the three JSON outputs into `DeviceDump` lines (what `ip`/`bridge` print without -j). */
export function parseDeviceDump(routesJson: string, neighborsJson: string, fdbJson: string): DeviceDump {
  const routes = parseArray<JsonRoute>('ip -j route', routesJson).map(
    (r) => `${r.dst ?? '?'}${r.gateway ? ` via ${r.gateway}` : ''}${(r.flags ?? []).includes('onlink') ? ' onlink' : ''}`,
  );
  const neighbors = parseArray<JsonNeighbor>('ip -j neigh', neighborsJson).map(
    (n) => `${n.dst ?? '?'}${n.lladdr ? ` lladdr ${n.lladdr}` : ''} ${(n.state ?? []).join(',')}`,
  );
  // Entries without a dst are the device's own (e.g. its MAC on a bridge); ours always have one.
  const fdb = parseArray<JsonFdb>('bridge -j fdb', fdbJson)
    .filter((f) => f.dst !== undefined)
    .map((f) => `${f.mac ?? '?'} dst ${f.dst} ${(f.flags ?? []).join(' ')} ${f.state ?? ''}`.trim());
  return { routes, neighbors, fdb };
}

/** The three lines `parseDeviceDump` yields for a correctly programmed peer. */
export function expectedLines(p: BenchPeer): { route: string; neighbor: string; fdb: string } {
  const gw = formatIPv4(p.gateway);
  return {
    route: `${formatCidr(p.subnet)} via ${gw} onlink`,
    neighbor: `${gw} lladdr ${p.mac} PERMANENT`,
    fdb: `${p.mac} dst ${formatIPv4(p.publicIP)} self permanent`,
  };
}

export interface Verification {
  readonly ok: boolean;
  readonly routes: number;
  readonly neighbors: number;
  readonly fdb: number;
  /** Peers whose three entries were compared field by field. */
  readonly checked: number;
  /** The first few differences, for the error message. */
  readonly problems: string[];
}

const MAX_PROBLEMS = 5;

/** True when `dump` holds exactly the entries of `peers`: the same count of each kind, each with the right contents. */
export function verifyDump(dump: DeviceDump, peers: readonly BenchPeer[]): Verification {
  const problems: string[] = [];
  const have = { route: new Set(dump.routes), neighbor: new Set(dump.neighbors), fdb: new Set(dump.fdb) };
  const want = peers.length;
  if (dump.routes.length !== want) problems.push(`${dump.routes.length} routes on ${DEVICE}, want ${want}`);
  if (dump.neighbors.length !== want) problems.push(`${dump.neighbors.length} neighbours on ${DEVICE}, want ${want}`);
  if (dump.fdb.length !== want) problems.push(`${dump.fdb.length} FDB entries on ${DEVICE}, want ${want}`);
  for (const p of peers) {
    if (problems.length >= MAX_PROBLEMS) break;
    const lines = expectedLines(p);
    for (const kind of ['neighbor', 'fdb', 'route'] as const) {
      if (!have[kind].has(lines[kind])) problems.push(`missing or wrong ${kind}: want "${lines[kind]}"`);
    }
  }
  return { ok: problems.length === 0, routes: dump.routes.length, neighbors: dump.neighbors.length, fdb: dump.fdb.length, checked: peers.length, problems: problems.slice(0, MAX_PROBLEMS) };
}

/** Reads flannel.1 of namespace `netns` (`ip -n <netns> …`: the bench process itself stays where it is). */
export async function dumpDevice(netns: string): Promise<DeviceDump> {
  const [routes, neighbors, fdb] = await Promise.all([
    runChecked('ip', ['-n', netns, '-j', 'route', 'show', 'dev', DEVICE]),
    runChecked('ip', ['-n', netns, '-j', 'neigh', 'show', 'dev', DEVICE]),
    runChecked('bridge', ['-n', netns, '-j', 'fdb', 'show', 'dev', DEVICE]),
  ]);
  return parseDeviceDump(routes.stdout, neighbors.stdout, fdb.stdout);
}

/** Dumps and verifies in one step. */
export async function verifyDevice(netns: string, peers: readonly BenchPeer[]): Promise<Verification> {
  return verifyDump(await dumpDevice(netns), peers);
}
