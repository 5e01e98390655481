/**
 * The container end to end (scripts/container-e2e.sh) inside the suite, so CI
 * runs it and it counts in "N passed, N failed": the image built from the
 * Dockerfile, etcd and three daemon containers on one Docker network, pods on
 * each, ping across nodes through flannel.1. The script's own header says what it
 * checks; this file only runs it where it can run.
 *
 * The suite runs in a private network namespace (scripts/test.sh); dockerd cannot
 * live there (its builds need the machine's uplink, and the namespace is deleted
 * after the run), so the script runs in the namespaces of scripts/test.sh's own
 * shell (FLTS_HOST_PID). It changes nothing there itself: everything it makes is
 * a container, a Docker network or a volume, and it removes them all.
 *
 * Cold (first run on a machine: docker.io and debootstrap installed, base image
 * and both images built) this takes a few minutes; warm, about 15 s.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inHostNamespaces } from '../helpers/host-namespaces';

const SCRIPT = resolve(__dirname, '..', '..', 'scripts', 'container-e2e.sh');
const TIMEOUT_MS = 25 * 60_000;

function hostNamespaces(): string[] {
  if (process.getuid?.() !== 0) throw new Error('the container e2e needs root (it may start dockerd): run the suite with scripts/test.sh');
  return inHostNamespaces(['net', 'mount']);
}

function runScript(logFile: string): Promise<number> {
  const argv = [...hostNamespaces(), 'bash', SCRIPT];
  return new Promise((res, rej) => {
    const out = createWriteStream(logFile);
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS - 30_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      out.end(() => res(code ?? -1));
    });
  });
}

describe('the flanneld-ts image on a Docker network (scripts/container-e2e.sh)', () => {
  it('builds the image and carries pod traffic across three daemon containers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flts-container-e2e-'));
    try {
      const log = join(dir, 'container-e2e.log');
      const code = await runScript(log);
      const text = readFileSync(log, 'utf8');
      // The progress lines, without the daemons' JSON logs, are worth keeping in the test output.
      process.stderr.write(`${text.split('\n').filter((l) => !l.startsWith('{')).join('\n')}\n`);
      if (code !== 0) expect.fail(`scripts/container-e2e.sh exited with ${code}:\n${text.split('\n').slice(-200).join('\n')}`);
      for (const step of [
        'every node: flannel.1, one route, neighbour and FDB entry per peer',
        'pod-to-pod ping across nodes through flannel.1: ok',
        "arrives from the node's address",
        'SIGTERM exits 0 leaving the data path up',
        "nothing of flannel in the machine's own namespace",
        'PASS',
      ]) {
        expect(text).toContain(step);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, TIMEOUT_MS);
});
