/**
 * The overlay scene shared by the e2e tests and the demo: a namespace cluster
 * (netns-cluster.ts), a real etcd on the underlay, flanneld-ts daemons started
 * from bin/flanneld-ts on the hosts, and readers for what each host's kernel holds.
 */
import { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startEtcd, EtcdProcess } from './etcd-process';
import { Cluster, ClusterMember, createCluster, dumpState, uniquePrefix } from './netns-cluster';

export const BIN = resolve(__dirname, '..', '..', 'bin', 'flanneld-ts');
export const ETCD_PORT = 2379;
export const PREFIX = '/coreos.com/network';

export interface DaemonHandle {
  readonly host: ClusterMember;
  readonly subnetFile: string;
  readonly logFile: string;
  readonly process: ChildProcess;
  /** Resolves with the exit code (or -1 when killed by a signal). */
  readonly exited: Promise<number>;
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface Scene {
  readonly cluster: Cluster;
  readonly etcd: EtcdProcess;
  readonly endpoint: string;
  readonly workDir: string;
  etcdctl(args: readonly string[]): Promise<string>;
  putConfig(json: string): Promise<void>;
  /**
   * Starts bin/flanneld-ts on a host (later flags win, so extraArgs can override the
   * endpoint). `env` goes through spawn (a secret stays off the command line);
   * `umask` runs it under that umask; `subnetFile` replaces the default path.
   */
  startDaemon(host: string, extraArgs?: readonly string[], opts?: DaemonStartOptions): DaemonHandle;
  /** Stops every daemon this scene started. */
  stopDaemons(signal?: NodeJS.Signals): Promise<void>;
  kernel(host: string): Promise<HostKernel>;
  dump(): Promise<string>;
  /** Kernel state of every host, every key in etcd and every daemon's log: what to print when a test fails. */
  report(): Promise<string>;
  destroy(): Promise<void>;
}

export interface DaemonStartOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly umask?: string;
  readonly subnetFile?: string;
  /**
   * More Node flags (e.g. --cpu-prof, which NODE_OPTIONS refuses): the daemon then
   * runs as `node <the shebang's flags> <these> BIN …`, with the shebang's
   * environment assignments (MALLOC_ARENA_MAX) set as the shebang sets them.
   */
  readonly nodeFlags?: readonly string[];
}

// The words of BIN's shebang line and where `node` is among them.
function shebang(): { words: string[]; node: number } {
  const first = readFileSync(BIN, 'utf8').split('\n')[0] ?? '';
  const words = first.replace(/^#!\s*/, '').split(/\s+/).filter((w) => w !== '');
  return { words, node: words.findIndex((w) => w === 'node' || w.endsWith('/node')) };
}

/** The Node flags on BIN's shebang line (`#!/usr/bin/env -S VAR=x node --flag …`): what ships. */
export function shippedNodeFlags(): string[] {
  const { words, node } = shebang();
  return node < 0 ? [] : words.slice(node + 1);
}

/** The environment assignments before `node` on BIN's shebang line (`MALLOC_ARENA_MAX=2`). */
export function shippedNodeEnv(): Record<string, string> {
  const { words, node } = shebang();
  const out: Record<string, string> = {};
  for (const w of words.slice(0, Math.max(0, node))) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(w);
    if (m) out[m[1] as string] = m[2] as string;
  }
  return out;
}

export interface HostKernel {
  readonly link: string;
  readonly routes: string[];
  readonly neighbors: string[];
  readonly fdb: string[];
  readonly addresses: string[];
}

/**
 * `extraNamespaces`: more namespaces on the underlay that are not hosts (no
 * daemon), e.g. an address outside the overlay for pods to reach; see
 * `ClusterOptions.extraNamespaces` (addresses .3, .4, …; `cluster.member(name)`).
 */
export async function createScene(opts: { hosts: number | readonly string[]; prefix?: string; extraNamespaces?: readonly string[]; underlayCidr6?: string }): Promise<Scene> {
  const cluster = await createCluster({ prefix: opts.prefix ?? uniquePrefix(), hosts: opts.hosts, extraNamespaces: opts.extraNamespaces, underlayCidr6: opts.underlayCidr6 });
  const workDir = mkdtempSync(join(tmpdir(), 'flts-scene-'));
  const daemons: DaemonHandle[] = [];
  let etcd: EtcdProcess;
  try {
    etcd = await startEtcd({ host: cluster.infraIP, port: ETCD_PORT, netns: cluster.infraNetns });
  } catch (err) {
    await cluster.destroy();
    rmSync(workDir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://${cluster.infraIP}:${ETCD_PORT}`;
  const etcdctl = async (args: readonly string[]): Promise<string> => {
    const r = await cluster.exec(cluster.infraNetns, 'etcdctl', ['--endpoints', endpoint, ...args], { env: { ETCDCTL_API: '3' } });
    if (r.code !== 0) throw new Error(`etcdctl ${args.join(' ')} failed: ${r.stderr.trim()}`);
    return r.stdout;
  };
  const scene: Scene = {
    cluster,
    etcd,
    endpoint,
    workDir,
    etcdctl,
    async putConfig(json) {
      await etcdctl(['put', `${PREFIX}/config`, json]);
    },
    startDaemon(hostName, extraArgs = [], opts = {}) {
      const host = cluster.member(hostName);
      const subnetFile = opts.subnetFile ?? join(workDir, hostName, 'subnet.env');
      const logFile = join(workDir, `${hostName}-${daemons.length}.log`);
      const out = createWriteStream(logFile);
      // BIN itself, not `node BIN`: its shebang carries the Node flags that ship.
      const argv = ['--etcd-endpoints', endpoint, '--iface', 'eth0', '--subnet-file', subnetFile, ...extraArgs];
      const program: string[] = opts.nodeFlags ? [process.execPath, ...shippedNodeFlags(), ...opts.nodeFlags, BIN] : [BIN];
      const [cmd, cmdArgs] = opts.umask ? ['sh', ['-c', `umask ${opts.umask} && exec "$0" "$@"`, ...program, ...argv]] : [program[0] as string, [...program.slice(1), ...argv]];
      const env = opts.nodeFlags ? { ...process.env, ...shippedNodeEnv(), ...opts.env } : opts.env && { ...process.env, ...opts.env };
      const child = cluster.spawn(host.netns, cmd as string, cmdArgs as string[], { stdio: ['ignore', 'pipe', 'pipe'], ...(env && { env }) });
      child.stdout?.pipe(out, { end: false });
      child.stderr?.pipe(out, { end: false });
      const exited = new Promise<number>((res) => child.once('exit', (code) => res(code ?? -1)));
      const handle: DaemonHandle = {
        host,
        subnetFile,
        logFile,
        process: child,
        exited,
        log: () => readFileSync(logFile, 'utf8'),
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      };
      daemons.push(handle);
      return handle;
    },
    async stopDaemons(signal = 'SIGKILL') {
      await Promise.all(daemons.map((d) => d.stop(signal)));
    },
    async kernel(hostName) {
      const ns = cluster.member(hostName).netns;
      const lines = async (cmd: string, args: string[]): Promise<string[]> =>
        (await cluster.exec(ns, cmd, args)).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const [link, routes, neighbors, fdb, addresses] = await Promise.all([
        cluster.exec(ns, 'ip', ['-d', 'link', 'show', 'flannel.1']).then((r) => r.stdout),
        lines('ip', ['route', 'show', 'dev', 'flannel.1']),
        lines('ip', ['neigh', 'show', 'dev', 'flannel.1']),
        lines('bridge', ['fdb', 'show', 'dev', 'flannel.1']),
        lines('ip', ['-4', '-o', 'addr', 'show', 'dev', 'flannel.1']),
      ]);
      return { link, routes, neighbors, fdb, addresses };
    },
    dump: () => dumpState(cluster),
    async report() {
      const keys = await etcdctl(['get', '--prefix', '/']).catch((err: unknown) => `etcd: ${String(err)}`);
      const logs = daemons.map((x) => {
        let text: string;
        try {
          text = x.log();
        } catch (err) {
          text = String(err);
        }
        return `--- ${x.host.name}: ${x.logFile}\n${text}`;
      });
      return [await dumpState(cluster), `--- etcd\n${keys.slice(0, 20_000)}`, ...logs].join('\n');
    },
    async destroy() {
      await scene.stopDaemons('SIGKILL');
      await etcd.cleanup().catch(() => undefined);
      await cluster.destroy();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
  return scene;
}

/** Thrown by a `waitFor` check to end the wait at once (the condition can no longer come true). */
export class WaitAbandoned extends Error {}

/**
 * Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs` with `what`.
 * Other errors from `check` count as "not yet"; a `WaitAbandoned` ends the wait with that error.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
      last = undefined;
    } catch (err) {
      if (err instanceof WaitAbandoned) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Log lines shown when a daemon dies before it is ready. */
const EXIT_LOG_LINES = 30;

/** Waits for the daemon's "ready" log line; fails as soon as it exits, with its exit code and last log lines. */
export async function waitReady(d: DaemonHandle, timeoutMs = 20_000): Promise<void> {
  let exitCode: number | undefined;
  void d.exited.then((c) => (exitCode = c));
  await waitFor(`flanneld-ts on ${d.host.name} to be ready`, () => {
    let log = '';
    try {
      log = d.log();
    } catch {
      // The log file appears a moment after the spawn.
    }
    if (/"msg":"ready: /.test(log)) return true;
    if (exitCode !== undefined) {
      const lines = log.trimEnd().split('\n').slice(-EXIT_LOG_LINES).join('\n');
      throw new WaitAbandoned(`flanneld-ts on ${d.host.name} exited with ${exitCode} before it was ready; last log lines:\n${lines}`);
    }
    return false;
  }, timeoutMs);
}

/** FLANNEL_SUBNET=10.7.5.1/24 → "10.7.5.0/24" */
export function subnetOf(subnetEnv: string): string {
  const m = /^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.\d+\/(\d+)$/m.exec(subnetEnv);
  if (!m) throw new Error(`no FLANNEL_SUBNET in ${JSON.stringify(subnetEnv)}`);
  return `${m[1]}.0/${m[2]}`;
}
