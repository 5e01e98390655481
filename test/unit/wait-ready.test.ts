/** waitReady (src/testbed/scene.ts) reports a daemon that dies at once, not at its timeout. */
import { describe, expect, it } from 'vitest';
import { DaemonHandle, WaitAbandoned, waitFor, waitReady } from '../../src/testbed/scene';

function fakeDaemon(log: string[], exitAfterMs: number | undefined, code = 1): DaemonHandle {
  const exited = new Promise<number>((resolve) => {
    if (exitAfterMs !== undefined) setTimeout(() => resolve(code), exitAfterMs);
  });
  return {
    host: { name: 'h1' } as DaemonHandle['host'],
    subnetFile: '/nonexistent',
    logFile: '/nonexistent',
    process: {} as DaemonHandle['process'],
    exited,
    log: () => log.join('\n'),
    stop: () => exited,
  };
}

describe('waitReady', () => {
  it('fails as soon as the daemon exits, with its exit code and its last log lines', async () => {
    const lines = Array.from({ length: 50 }, (_, i) => `{"level":30,"msg":"line ${i}"}`);
    lines.push('{"level":60,"msg":"failed to read network config: boom"}');
    const started = Date.now();
    const err = await waitReady(fakeDaemon(lines, 100, 3), 60_000).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(WaitAbandoned);
    expect(String(err)).toContain('flanneld-ts on h1 exited with 3 before it was ready');
    expect(String(err)).toContain('failed to read network config: boom');
    expect(String(err)).not.toContain('"msg":"line 0"');
    // Far from the 60 s timeout: the exit ended the wait.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('resolves on the ready line, even when the daemon exits later', async () => {
    await expect(waitReady(fakeDaemon(['{"level":30,"msg":"ready: lease held, subnet file written, peers programmed"}'], 10), 5000)).resolves.toBeUndefined();
  });

  it('times out while the daemon runs without becoming ready', async () => {
    await expect(waitReady(fakeDaemon(['{"level":30,"msg":"starting"}'], undefined), 300)).rejects.toThrow(/timed out after 300 ms waiting for flanneld-ts on h1 to be ready/);
  });
});

describe('waitFor', () => {
  it('treats other errors from the check as "not yet" and WaitAbandoned as final', async () => {
    let calls = 0;
    await expect(waitFor('x', () => {
      calls++;
      if (calls < 3) throw new Error('not yet');
      return calls;
    }, 5000, 1)).resolves.toBe(3);
    await expect(waitFor('y', () => {
      throw new WaitAbandoned('gone');
    }, 60_000, 1)).rejects.toThrow('gone');
  });
});
