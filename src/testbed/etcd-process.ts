/**
 * A throwaway single-member etcd for tests and the demo: random client and peer
 * ports (so parallel etcds never collide on 2379/2380), a temp data dir, and a
 * process-exit hook so no etcd outlives the process that started it.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdTlsOptions {
  readonly certFile: string;
  readonly keyFile: string;
  /** Enables `--client-cert-auth` with this CA. */
  readonly caFile?: string;
}

export interface EtcdProcessOptions {
  /** Address the client and peer URLs listen on; default 127.0.0.1. */
  readonly host?: string;
  /** Client port; default a free one. */
  readonly port?: number;
  /** Data dir to use (kept on cleanup); default a new temp dir (removed on cleanup). */
  readonly dataDir?: string;
  /** Run inside `ip netns exec <netns>`. */
  readonly netns?: string;
  readonly tls?: EtcdTlsOptions;
  readonly extraArgs?: readonly string[];
}

export interface EtcdProcess {
  /** `http://host:port` (https with TLS). */
  readonly endpoint: string;
  readonly dataDir: string;
  /** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
  stop(): Promise<void>;
  /** Stops (if running) and starts again on the same port and data dir; resolves when ready. */
  restart(): Promise<void>;
  /** SIGKILL; resolves once the process has exited. */
  kill(): Promise<void>;
  /** Stops the process and removes the temp data dir (if this module created it). */
  cleanup(): Promise<void>;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
const STDERR_TAIL_LINES = 20;
// Logged by both etcd's capnslog (3.4 default) and zap loggers once clients are served.
const READY_LINE = 'ready to serve client requests';

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** A port that was free a moment ago on `host` (falls back to the wildcard when `host` is not local, e.g. in another netns). */
async function freePort(host: string): Promise<number> {
  const tryListen = (h: string | undefined): Promise<number> =>
    new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, h, () => {
        const addr = srv.address();
        const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(port));
      });
    });
  try {
    return await tryListen(host);
  } catch {
    return tryListen(undefined);
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts etcd and resolves once it serves clients (or rejects after 15 s with its last stderr lines). */
export async function startEtcd(opts: EtcdProcessOptions = {}): Promise<EtcdProcess> {
  installExitHook();
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  let peerPort = await freePort(host);
  while (peerPort === port) peerPort = await freePort(host);
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'flts-etcd-'));
  if (ownDir) tempDirs.add(dataDir);
  const scheme = opts.tls ? 'https' : 'http';
  const endpoint = `${scheme}://${host}:${port}`;
  const peerUrl = `http://${host}:${peerPort}`;
  const name = `flts-${port}`;
  const args = [
    '--name', name,
    '--data-dir', dataDir,
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`,
    '--initial-cluster-token', name,
  ];
  if (opts.tls) {
    args.push('--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile);
    if (opts.tls.caFile) args.push('--trusted-ca-file', opts.tls.caFile, '--client-cert-auth');
  }
  args.push(...(opts.extraArgs ?? []));
  // Inherited ETCD_* variables would silently reconfigure etcd.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));

  let child: ChildProcess | undefined;
  let stderrTail: string[] = [];

  const launch = async (): Promise<void> => {
    stderrTail = [];
    const [cmd, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, 'etcd', ...args]] : ['etcd', args];
    const proc = spawn(cmd as string, argv as string[], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    proc.stdout?.resume();
    let ready = false;
    let partial = '';
    const onReady: Array<() => void> = [];
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        stderrTail.push(line);
        if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
        if (!ready && line.includes(READY_LINE)) {
          ready = true;
          for (const f of onReady) f();
        }
      }
    });
    const failure = (why: string): Error =>
      new Error(`failed to start etcd at ${endpoint}: ${why}; last stderr lines:\n${stderrTail.join('\n')}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(failure(`not ready after ${READY_TIMEOUT_MS / 1000} s`));
      }, READY_TIMEOUT_MS);
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(failure(err.message));
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(failure(`exited (${signal ?? `code ${code}`}) before it was ready`));
      });
      onReady.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // The log line is namespace-independent; when we share the namespace, also check the port answers.
    if (!opts.netns) {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (!(await canConnect(host, port))) {
        if (Date.now() > deadline) throw failure('client port does not accept connections');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  const signalAndWait = async (sig: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
    await waitExit(proc);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
    await signalAndWait('SIGTERM');
    clearTimeout(timer);
  };

  try {
    await launch();
  } catch (err) {
    await signalAndWait('SIGKILL');
    if (ownDir) {
      rmSync(dataDir, { recursive: true, force: true });
      tempDirs.delete(dataDir);
    }
    throw err;
  }

  return {
    endpoint,
    dataDir,
    stop,
    kill: () => signalAndWait('SIGKILL'),
    restart: async () => {
      await stop();
      await launch();
    },
    cleanup: async () => {
      await stop();
      if (ownDir) {
        rmSync(dataDir, { recursive: true, force: true });
        tempDirs.delete(dataDir);
      }
    },
  };
}
