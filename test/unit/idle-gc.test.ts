/** src/idle-gc.ts: one full collection after a burst of kernel changes, once quiet; none while idle. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AFTER_BURST_GC, IdleCollector, collectingObserver, fullGc } from '../../src/idle-gc';
import { PassResult } from '../../src/overlay/reconciler';

const pass = (planned: number): PassResult => ({ planned, failed: 0, peers: 3, durationMs: 1, applied: {}, repairs: 0, generation: 1 });

afterEach(() => {
  vi.useRealTimers();
});

describe('IdleCollector', () => {
  it('collects once, quietMs after the last of a burst of changes', () => {
    vi.useFakeTimers();
    const collect = vi.fn();
    const c = new IdleCollector(collect, 5000);
    const observer = collectingObserver(c, undefined);
    for (let i = 0; i < 10; i++) {
      observer.reconciled(pass(3));
      vi.advanceTimersByTime(1000);
    }
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(4000);
    expect(collect).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60_000);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('does not collect after passes that changed nothing (idle, periodic passes), and passes every event on', () => {
    vi.useFakeTimers();
    const collect = vi.fn();
    const inner = { leasesSeen: vi.fn(), reconciled: vi.fn(), etcdReconnected: vi.fn(), watchResynced: vi.fn(), leaseRenewed: vi.fn(), leaseRewritten: vi.fn(), leaseEventApplied: vi.fn(), kernelWatchOverflowed: vi.fn() };
    const observer = collectingObserver(new IdleCollector(collect, 5000), inner);
    observer.reconciled(pass(0));
    observer.leasesSeen({ valid: 1, invalid: 0, ignored: 0 });
    observer.etcdReconnected();
    observer.watchResynced();
    observer.leaseRenewed(true);
    observer.leaseEventApplied(0.01);
    vi.advanceTimersByTime(60_000);
    expect(collect).not.toHaveBeenCalled();
    expect(inner.reconciled).toHaveBeenCalledWith(pass(0));
    for (const fn of [inner.leasesSeen, inner.etcdReconnected, inner.watchResynced, inner.leaseRenewed, inner.leaseEventApplied]) expect(fn).toHaveBeenCalledTimes(1);
  });

  it('stop() cancels a pending collection', () => {
    vi.useFakeTimers();
    const collect = vi.fn();
    const c = new IdleCollector(collect, 5000);
    c.busy();
    c.stop();
    vi.advanceTimersByTime(10_000);
    expect(collect).not.toHaveBeenCalled();
  });
});

describe('fullGc', () => {
  it('returns V8 full collection without --expose-gc on the command line', () => {
    const gc = fullGc();
    expect(typeof gc).toBe('function');
    // Garbage made here is gone after it: the heap in use drops.
    let junk: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `x${i}` }));
    const withJunk = process.memoryUsage().heapUsed;
    junk = undefined;
    gc?.();
    expect(junk).toBeUndefined();
    expect(process.memoryUsage().heapUsed).toBeLessThan(withJunk - 5 * 2 ** 20);
  });

  it('the after-burst flavour also gives the emptied pages back (heap committed, not only in use)', () => {
    const gc = fullGc();
    let junk: unknown[] | undefined = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `x${i}` }));
    junk = undefined;
    gc?.();
    const committedAfterPlain = process.memoryUsage().heapTotal;
    junk = Array.from({ length: 300_000 }, (_, i) => ({ i, s: `y${i}` }));
    junk = undefined;
    gc?.(AFTER_BURST_GC);
    expect(junk).toBeUndefined();
    expect(process.memoryUsage().heapTotal).toBeLessThan(committedAfterPlain - 5 * 2 ** 20);
  });
});
