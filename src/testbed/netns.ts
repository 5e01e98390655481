/**
 * Named network namespaces (`ip netns`) as the testbed uses them: list, kill what
 * runs inside, delete by prefix, and sweep what crashed runs left behind.
 *
 * Several test runs may share one machine, so nothing here deletes a namespace
 * another live run still uses: the sweep spares the caller's own namespace,
 * any group with a process inside, and any group younger than `minAgeMs`.
 *
 * Mount namespaces matter: `ip netns add` bind-mounts the namespace on its file
 * in the caller's mount namespace only, and `ip netns exec` runs in a private
 * copy. So namespaces made inside a test run (itself under `ip netns exec`) are,
 * seen from outside, plain files whose processes `ip netns pids` cannot find.
 */
import { readdirSync, statfsSync, statSync } from 'node:fs';
import { run } from './exec';

/** Where `ip netns add` bind-mounts namespaces (CNI_NETNS paths point here too). */
export const NETNS_DIR = '/var/run/netns';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Names of all named network namespaces. */
export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR).sort();
  } catch {
    return []; // no namespace was ever created on this machine
  }
}

/** True when `name` is the namespace this process runs in (never delete that one). */
export function isCurrentNetns(name: string): boolean {
  try {
    const self = statSync('/proc/self/ns/net');
    const other = statSync(`${NETNS_DIR}/${name}`);
    return self.dev === other.dev && self.ino === other.ino;
  } catch {
    return false;
  }
}

const NSFS_MAGIC = 0x6e736673;

/** True when the namespace is mounted on its file in this mount namespace (else only the name is visible here). */
export function isMountedHere(name: string): boolean {
  try {
    return statfsSync(`${NETNS_DIR}/${name}`).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** PIDs of the processes inside a namespace (`ip netns pids`). */
export async function netnsPids(name: string): Promise<number[]> {
  const res = await run('ip', ['netns', 'pids', name]);
  return res.stdout.split(/\s+/).filter(Boolean).map(Number);
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

/**
 * Stops every process inside the namespaces: SIGTERM, then SIGKILL after `graceMs`.
 * A namespace with a process inside outlives `ip netns del` (and keeps its veths), so this comes first.
 */
export async function killNetnsProcesses(names: readonly string[], graceMs = 3000): Promise<void> {
  const all = async (): Promise<number[]> => (await Promise.all(names.map(netnsPids))).flat();
  let pids = await all();
  if (pids.length === 0) return;
  signal(pids, 'SIGTERM');
  for (let waited = 0; pids.length > 0 && waited < graceMs; waited += 100) {
    await sleep(100);
    pids = await all();
  }
  signal(pids, 'SIGKILL');
  for (let waited = 0; pids.length > 0 && waited < 2000; waited += 100) {
    await sleep(100);
    pids = await all();
  }
}

/** The namespaces of one group: `prefix` itself and every `prefix-…`. */
export function netnsWithPrefix(prefix: string, names: readonly string[] = listNetns()): string[] {
  return names.filter((n) => n === prefix || n.startsWith(`${prefix}-`));
}

/**
 * Kills the processes in, then deletes, every namespace of the group (never the
 * caller's own). Deleting a namespace destroys its veths, and the peer end of a
 * veth goes with it, so no interface is left anywhere. Returns the deleted names;
 * a namespace that is already gone is not an error.
 */
export async function deleteNetnsGroup(prefix: string): Promise<string[]> {
  const names = netnsWithPrefix(prefix).filter((n) => !isCurrentNetns(n));
  await killNetnsProcesses(names);
  const deleted: string[] = [];
  for (const n of names) {
    const res = await run('ip', ['netns', 'del', n]);
    if (res.code === 0) deleted.push(n);
  }
  return deleted;
}

/** Options for `cleanupStale`. */
export interface CleanupOptions {
  /** A group whose newest namespace is younger than this is left alone (default 10 minutes). */
  readonly minAgeMs?: number;
  readonly now?: number;
}

/**
 * Deletes namespaces named `prefixRoot…` that earlier, crashed runs left behind.
 * A cluster is the group of names under a `<prefix>-ul` namespace; any other name
 * is a group of its own. A group goes only when no process runs in any of its
 * namespaces, it does not hold the caller's namespace, and its newest namespace
 * is older than `minAgeMs`. A group not mounted here may belong to another live
 * run's mount namespace, so it goes only when no other `<prefixRoot>suite-…`
 * namespace (the one scripts/test.sh runs vitest in) has a process. Returns the deleted names.
 */
export async function cleanupStale(prefixRoot = 'flts-', opts: CleanupOptions = {}): Promise<string[]> {
  const minAgeMs = opts.minAgeMs ?? 10 * 60_000;
  const now = opts.now ?? Date.now();
  const names = listNetns().filter((n) => n.startsWith(prefixRoot));
  const clusters = names.filter((n) => n.endsWith('-ul')).map((n) => n.slice(0, -3));
  const groups = new Map<string, string[]>();
  for (const n of names) {
    const key = clusters.find((p) => n.startsWith(`${p}-`)) ?? n;
    groups.set(key, [...(groups.get(key) ?? []), n]);
  }
  const suites = names.filter((n) => n.startsWith(`${prefixRoot}suite-`) && !isCurrentNetns(n));
  const otherRunLive = (await Promise.all(suites.map(netnsPids))).some((p) => p.length > 0);
  const deleted: string[] = [];
  for (const [key, members] of groups) {
    if (members.some(isCurrentNetns)) continue;
    const newest = Math.max(...members.map((n) => mtimeMs(n)));
    if (now - newest < minAgeMs) continue;
    if (otherRunLive && !members.every(isMountedHere)) continue;
    const busy = (await Promise.all(members.map(netnsPids))).some((p) => p.length > 0);
    if (busy) continue;
    deleted.push(...(await deleteNetnsGroup(key)));
  }
  return deleted;
}

function mtimeMs(name: string): number {
  try {
    // The nsfs inode behind the bind mount carries the namespace's creation time.
    return statSync(`${NETNS_DIR}/${name}`).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY; // vanished meanwhile: treat as fresh and leave it
  }
}
