/**
 * The kernel watch's `ip monitor` child dies with the process that owns it. A
 * node process running a KernelWatch from the compiled dist/ (as the daemon
 * runs it) is SIGKILLed; its child must be gone within 2 s, its netlink socket
 * with it. Without setpriv on PATH the watch still listens, says so in one
 * line, and the child outlives its owner (what setpriv is there to prevent).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { findOnPath, listensIn } from '../../src/kernel/kernel-watch';
import { assertPrivateNetns } from '../helpers/private-netns';

const DIST = resolve(__dirname, '..', '..', 'dist');
const OWNER_SCRIPT = `
const pino = require('pino');
const { KernelWatch } = require(${JSON.stringify(join(DIST, 'kernel', 'kernel-watch.js'))});
const { createLogger } = require(${JSON.stringify(join(DIST, 'util', 'log.js'))});
const log = createLogger('info', pino.destination({ dest: 1, sync: true }));
const ready = () => console.log(JSON.stringify({ ready: true }));
new KernelWatch({ onChange() {}, onOverflow() {}, onReady: ready, onDown() {} }, log);
setInterval(() => undefined, 1 << 30);
`;

assertPrivateNetns();

/** The pids whose parent is `ppid`, with their command names (/proc/<pid>/stat: "pid (comm) state ppid …"). */
function childrenOf(ppid: number): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  for (const dir of readdirSync('/proc')) {
    if (!/^\d+$/.test(dir)) continue;
    try {
      const stat = readFileSync(`/proc/${dir}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const [, ppidField] = stat.slice(close + 2).split(' ');
      if (Number(ppidField) === ppid) out.push({ pid: Number(dir), comm: stat.slice(stat.indexOf('(') + 1, close) });
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

/** True while `pid` runs (a zombie has exited: it holds no socket and reads nothing). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

interface Owner {
  readonly process: ChildProcess;
  readonly lines: string[];
  /** The `ip monitor` child, once the watch listens. */
  readonly monitorPid: number;
}

/** Starts a process owning a KernelWatch with `path` as PATH; resolves once the watch listens. */
async function startOwner(path: string): Promise<Owner> {
  const owner = spawn(process.execPath, ['-e', OWNER_SCRIPT], { cwd: resolve(DIST, '..'), stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PATH: path } });
  owners.push(owner);
  const lines: string[] = [];
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the watch did not listen within 15 s; owner printed: ${lines.join(' | ')}`)), 15_000);
    owner.on('exit', (code) => rej(new Error(`the owner exited (${code}): ${lines.join(' | ')}`)));
    createInterface({ input: owner.stdout! }).on('line', (line) => {
      lines.push(line);
      if (line.includes('"ready":true')) {
        clearTimeout(timer);
        res();
      }
    });
  });
  const monitors = childrenOf(owner.pid as number).filter((c) => c.comm === 'ip');
  expect(monitors).toHaveLength(1);
  const monitorPid = (monitors[0] as { pid: number }).pid;
  orphans.push(monitorPid);
  expect(listensIn(readFileSync('/proc/net/netlink', 'utf8'), monitorPid)).toBe(true);
  return { process: owner, lines, monitorPid };
}

/** SIGKILLs the owner and waits until it has exited. */
async function killOwner(owner: ChildProcess): Promise<void> {
  const exited = new Promise((r) => owner.once('exit', r));
  owner.kill('SIGKILL');
  await exited;
}

const owners: ChildProcess[] = [];
const orphans: number[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const owner of owners.splice(0)) if (owner.exitCode === null && owner.signalCode === null) owner.kill('SIGKILL');
  for (const pid of orphans.splice(0)) if (running(pid)) process.kill(pid, 'SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('KernelWatch child lifetime', () => {
  it('setpriv is on this machine (util-linux), so the watch runs ip monitor under it', () => {
    expect(findOnPath('setpriv', process.env.PATH ?? '')).toBeDefined();
  });

  it('the ip monitor child is gone within 2 s of its owner being SIGKILLed', async () => {
    const owner = await startOwner(process.env.PATH ?? '');
    expect(owner.lines.filter((l) => l.includes('setpriv'))).toEqual([]);
    await killOwner(owner.process);
    const killedAt = Date.now();
    while (running(owner.monitorPid) && Date.now() - killedAt < 2_000) await new Promise((r) => setTimeout(r, 20));
    expect(running(owner.monitorPid), `ip monitor (pid ${owner.monitorPid}) still runs 2 s after its owner was killed`).toBe(false);
    expect(listensIn(readFileSync('/proc/net/netlink', 'utf8'), owner.monitorPid)).toBe(false);
  });

  it('without setpriv: one warning line, the watch still listens, and the child outlives its killed owner', async () => {
    // A PATH with ip and nothing else.
    const dir = mkdtempSync(join(tmpdir(), 'flts-nosetpriv-'));
    dirs.push(dir);
    symlinkSync(findOnPath('ip', process.env.PATH ?? '') as string, join(dir, 'ip'));
    const owner = await startOwner(dir);
    const warnings = owner.lines.filter((l) => l.includes('setpriv'));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0] as string)).toMatchObject({ level: 40, msg: expect.stringContaining('setpriv (util-linux) not found on PATH') });
    await killOwner(owner.process);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(running(owner.monitorPid)).toBe(true);
  });
});
