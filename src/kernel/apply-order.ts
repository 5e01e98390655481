/**
 * The order in which one apply's operations may run, several at a time: pure
 * scheduling (its tests are in test/integration/netlink-kernel.test.ts).
 */
import { Entry, Operation } from './kernel';

function entryKey(entry: Entry): string {
  if (entry.kind === 'route') return `route ${entry.dst.ip}/${entry.dst.prefixLen}`;
  return entry.kind === 'neighbor' ? `neighbor ${entry.ip}` : `fdb ${entry.mac}`;
}

/**
 * Runs `exec(i)` for every operation, at most `window` at a time, starting each as
 * soon as the operations it depends on have completed. Operation j waits for an
 * earlier operation i when they touch the same entry, when j replaces a route and
 * i is a neighbour or FDB operation (the kernel must never need to resolve a
 * gateway it has no entries for), or when j deletes a neighbour or FDB entry and i
 * is a route operation (routes go first on removal). Everything else overlaps.
 * `exec` must not reject. Exported for tests.
 */
export function runInOrder(operations: readonly Operation[], window: number, exec: (i: number) => Promise<void>): Promise<void> {
  const n = operations.length;
  const done = new Uint8Array(n);
  const sameKeyBefore = new Int32Array(n).fill(-1);
  const last = new Map<string, number>();
  const routes: number[] = [];
  const others: number[] = [];
  operations.forEach(({ entry }, i) => {
    const key = entryKey(entry);
    sameKeyBefore[i] = last.get(key) ?? -1;
    last.set(key, i);
    (entry.kind === 'route' ? routes : others).push(i);
  });
  // Index of the first operation of each group not yet completed (n when none).
  let routeAt = 0;
  let otherAt = 0;
  const firstPending = (list: number[], at: number): number => (at < list.length ? (list[at] as number) : n);
  const ready = (i: number): boolean => {
    const before = sameKeyBefore[i] as number;
    if (before >= 0 && done[before] === 0) return false;
    const { op, entry } = operations[i] as Operation;
    if (entry.kind === 'route') return op === 'delete' || firstPending(others, otherAt) > i;
    return op === 'replace' || firstPending(routes, routeAt) > i;
  };
  // Operations from `next` on were never looked at; `blocked` holds earlier ones that were not ready.
  let next = 0;
  let blocked: number[] = [];
  let inFlight = 0;
  return new Promise((resolve) => {
    const start = (i: number): void => {
      inFlight++;
      void exec(i).then(() => {
        done[i] = 1;
        inFlight--;
        pump();
      });
    };
    const pump = (): void => {
      while (routeAt < routes.length && done[routes[routeAt] as number]) routeAt++;
      while (otherAt < others.length && done[others[otherAt] as number]) otherAt++;
      const still: number[] = [];
      for (const i of blocked) {
        if (inFlight < window && ready(i)) start(i);
        else still.push(i);
      }
      blocked = still;
      while (next < n && inFlight < window) {
        const i = next++;
        if (ready(i)) start(i);
        else blocked.push(i);
      }
      if (next === n && blocked.length === 0 && inFlight === 0) resolve();
    };
    pump();
  });
}
