/**
 * Watches flannel.1's entries appear and disappear as the kernel announces
 * them (`ip monitor route neigh` and `bridge monitor fdb` inside the host's
 * namespace), for the single-join latency: a join is complete when the
 * route, the neighbour and the FDB entry of the new peer have all been
 * announced with the right contents. Each announcement is stamped with the
 * monotonic time its line arrived.
 */
import { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { Cluster } from '../testbed/netns-cluster';
import { DEVICE } from './kernel-view';
import { BenchPeer } from './peers';
import { monotonicMs } from './proc';

export type KernelEvent =
  | { readonly kind: 'route'; readonly deleted: boolean; readonly dst: string; readonly gateway: string; readonly onlink: boolean }
  | { readonly kind: 'neighbor'; readonly deleted: boolean; readonly ip: string; readonly mac: string | undefined; readonly permanent: boolean }
  | { readonly kind: 'fdb'; readonly deleted: boolean; readonly mac: string; readonly dst: string; readonly permanent: boolean };

const DEV = DEVICE.replace('.', '\\.');
const ROUTE = new RegExp(`^(\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+) via (\\S+) dev ${DEV}\\b(.*)$`);
const NEIGH = new RegExp(`^(\\d+\\.\\d+\\.\\d+\\.\\d+) dev ${DEV}(?: lladdr (\\S+))?(.*)$`);
const FDB = new RegExp(`^([0-9a-f]{2}(?::[0-9a-f]{2}){5}) dev ${DEV} dst (\\S+)(.*)$`);

/**
 * One line of `ip monitor route neigh` or `bridge monitor fdb`, or undefined
 * for anything else. `ip monitor neigh` also prints FDB entries (as NOARP
 * neighbours); those are left to the bridge monitor's line.
 */
export function parseMonitorLine(raw: string): KernelEvent | undefined {
  let line = raw.trim();
  const deleted = line.startsWith('Deleted ');
  if (deleted) line = line.slice('Deleted '.length);
  let m = ROUTE.exec(line);
  if (m) return { kind: 'route', deleted, dst: m[1] as string, gateway: m[2] as string, onlink: /\bonlink\b/.test(m[3] as string) };
  m = FDB.exec(line);
  if (m) return { kind: 'fdb', deleted, mac: m[1] as string, dst: m[2] as string, permanent: /\bpermanent\b/.test(m[3] as string) };
  m = NEIGH.exec(line);
  if (m && !/\bNOARP\b/.test(m[3] as string)) return { kind: 'neighbor', deleted, ip: m[1] as string, mac: m[2], permanent: /\bPERMANENT\b/.test(m[3] as string) };
  return undefined;
}

/** Which of a peer's three entries `ev` announces (added with the right contents, or deleted), if any. */
export function matchPeer(ev: KernelEvent, peer: BenchPeer, deleted: boolean): 'route' | 'neighbor' | 'fdb' | undefined {
  if (ev.deleted !== deleted) return undefined;
  const gw = formatIPv4(peer.gateway);
  switch (ev.kind) {
    case 'route':
      return ev.dst === formatCidr(peer.subnet) && (deleted || (ev.gateway === gw && ev.onlink)) ? 'route' : undefined;
    case 'neighbor':
      return ev.ip === gw && (deleted || (ev.mac === peer.mac && ev.permanent)) ? 'neighbor' : undefined;
    case 'fdb':
      return ev.mac === peer.mac && (deleted || (ev.dst === formatIPv4(peer.publicIP) && ev.permanent)) ? 'fdb' : undefined;
  }
}

interface Waiter {
  readonly peer: BenchPeer;
  readonly deleted: boolean;
  readonly seen: Map<string, number>;
  readonly resolve: (lastMs: number) => void;
}

export class JoinMonitor {
  private readonly waiters = new Set<Waiter>();
  private readonly children: ChildProcess[];

  constructor(cluster: Cluster, netns: string) {
    this.children = [
      cluster.spawn(netns, 'ip', ['monitor', 'route', 'neigh'], { stdio: ['ignore', 'pipe', 'ignore'] }),
      cluster.spawn(netns, 'bridge', ['monitor', 'fdb'], { stdio: ['ignore', 'pipe', 'ignore'] }),
    ];
    for (const child of this.children) {
      createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line, monotonicMs()));
    }
  }

  /**
   * Resolves with the arrival time of the last of the peer's three announcements
   * (additions, or deletions when `deleted`); register before making the change.
   * Rejects after `timeoutMs`, naming what never came.
   */
  waitForPeer(peer: BenchPeer, deleted: boolean, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const seen = new Map<string, number>();
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const missing = ['route', 'neighbor', 'fdb'].filter((k) => !seen.has(k));
        reject(new Error(`the kernel did not announce the ${missing.join(', ')} ${deleted ? 'removal' : 'addition'} for ${formatCidr(peer.subnet)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        peer,
        deleted,
        seen,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
      };
      this.waiters.add(waiter);
    });
  }

  close(): void {
    for (const child of this.children) child.kill('SIGTERM');
  }

  private onLine(line: string, at: number): void {
    const ev = parseMonitorLine(line);
    if (!ev) return;
    for (const w of this.waiters) {
      const kind = matchPeer(ev, w.peer, w.deleted);
      if (kind === undefined || w.seen.has(kind)) continue;
      w.seen.set(kind, at);
      if (w.seen.size === 3) {
        this.waiters.delete(w);
        w.resolve(Math.max(...w.seen.values()));
      }
    }
  }
}
