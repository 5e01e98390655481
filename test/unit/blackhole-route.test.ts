/** --ip-blackhole-route's loop and parsing (contract §16), with a clock the test steps by hand. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlackholeResult, hasBlackhole, keepBlackholeRoute } from '../../src/kernel/blackhole-route';
import { Cidr, formatCidr, parseCidr } from '../../src/net/ipv4';
import { Clock } from '../../src/util/clock';
import { createLogger } from '../../src/util/log';

/** A clock whose sleeps end only when the test calls tick(). */
function steppedClock(): Clock & { tick(): Promise<void>; sleeps: number[] } {
  let wake: (() => void) | undefined;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => 0,
    sleep: (ms, signal) =>
      new Promise<void>((resolve, reject) => {
        sleeps.push(ms);
        wake = resolve;
        signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      }),
    async tick() {
      const w = wake;
      wake = undefined;
      w?.();
      for (let i = 0; i < 10; i++) await Promise.resolve();
    },
  };
}

describe('blackhole route', () => {
  it('recognises a blackhole in `ip -j route show exact` output, and only a blackhole', () => {
    expect(hasBlackhole('[{"type":"blackhole","dst":"10.7.5.0/24","flags":[]}]\n')).toBe(true);
    expect(hasBlackhole('[{"dst":"10.7.5.0/24","dev":"cni0","protocol":"kernel","scope":"link","prefsrc":"10.7.5.1","flags":[]}]')).toBe(false);
    expect(hasBlackhole('[]')).toBe(false);
    expect(hasBlackhole('')).toBe(false);
  });

  it('checks first one period in, then every period; logs an add each time and a refusal once', async () => {
    const clock = steppedClock();
    const results: BlackholeResult[] = ['added', 'present', 'taken', 'taken', 'added'];
    const asked: string[] = [];
    const routes = { ensure: async (s: Cidr) => { asked.push(formatCidr(s)); return results.shift() ?? 'present'; } };
    const lines: string[] = [];
    const log = createLogger('info', new Writable({ write(c, _e, cb) { lines.push(String(c)); cb(); } }));
    const ctl = new AbortController();
    const done = keepBlackholeRoute(routes, () => parseCidr('10.7.5.0/24'), 5000, clock, log, ctl.signal);
    for (let i = 0; i < 10; i++) await Promise.resolve(); // let the loop reach its first sleep
    expect(asked).toEqual([]); // not at start: one period in
    expect(clock.sleeps).toEqual([5000]);
    for (let i = 0; i < 5; i++) await clock.tick();
    expect(asked).toEqual(Array(5).fill('10.7.5.0/24'));
    const msgs = lines.map((l) => JSON.parse(l).msg as string);
    expect(msgs).toEqual([
      'added route blackhole 10.7.5.0/24',
      'not adding route blackhole 10.7.5.0/24: another route holds 10.7.5.0/24 in the main table (left alone)',
      'added route blackhole 10.7.5.0/24',
    ]);
    ctl.abort();
    await done;
  });
});
