import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli';
import { systemClock } from '../../src/util/clock';
import { StoreUnavailableError, UsageError } from '../../src/util/errors';
import { createLogger } from '../../src/util/log';
import { DEFAULT_BACKOFF, backoffDelay, retryTransient } from '../../src/util/retry';

function capture() {
  const lines: string[] = [];
  const log = createLogger('debug', new Writable({ write(c, _e, cb) { lines.push(String(c)); cb(); } }));
  return { log, lines };
}

describe('backoffDelay', () => {
  it('doubles from the initial delay up to the cap, with jitter in [cap/2, cap]', () => {
    expect(backoffDelay(DEFAULT_BACKOFF, 0, () => 0)).toBe(100);
    expect(backoffDelay(DEFAULT_BACKOFF, 0, () => 1)).toBe(200);
    expect(backoffDelay(DEFAULT_BACKOFF, 3, () => 1)).toBe(1600);
    expect(backoffDelay(DEFAULT_BACKOFF, 50, () => 1)).toBe(10_000);
    expect(backoffDelay(DEFAULT_BACKOFF, 50, () => 0)).toBe(5_000);
  });
});

describe('retryTransient', () => {
  it('retries transient errors, logging the outage once and the recovery once', async () => {
    const { log, lines } = capture();
    let calls = 0;
    const result = await retryTransient(async () => {
      if (++calls < 4) throw new StoreUnavailableError('failed to list leases at http://x:2379: down');
      return 'ok';
    }, { what: 'list leases', log, clock: systemClock, rand: () => 0, signal: new AbortController().signal, policy: { initialMs: 2, maxMs: 4 } });
    expect(result).toBe('ok');
    expect(calls).toBe(4);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('"msg":"failed to list leases at http://x:2379: down; retrying with backoff"');
    expect(lines[1]).toContain('recovered: list leases');
  });
  it('rethrows fatal errors at once', async () => {
    const { log } = capture();
    await expect(retryTransient(async () => { throw new UsageError('bad'); }, { what: 'x', log, clock: systemClock, rand: Math.random, signal: new AbortController().signal })).rejects.toThrow('bad');
  });
  it('turns a failure after the stop signal into an AbortError, not a fatal error', async () => {
    const { log } = capture();
    const ctl = new AbortController();
    const p = retryTransient(async () => { ctl.abort(); throw new UsageError('would be fatal'); }, { what: 'x', log, clock: systemClock, rand: Math.random, signal: ctl.signal });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('secrets on the command line', () => {
  it('--help does not echo a password that came from FLANNELD_ETCD_PASSWORD', () => {
    const help = parseCommandLine(['--help'], { FLANNELD_ETCD_PASSWORD: 's3cr3t-pw' });
    expect(help.command === 'help' && help.text).toContain('(from FLANNELD_ETCD_PASSWORD)');
    expect(help.command === 'help' && help.text).not.toContain('s3cr3t-pw');
    const run = parseCommandLine([], { FLANNELD_ETCD_PASSWORD: 's3cr3t-pw' });
    expect(run.command === 'run' && run.options.etcd.password).toBe('s3cr3t-pw');
  });
});
