/**
 * Process entry: parses the command line, builds the real store and kernel,
 * runs the command, and maps every error to an exit code in one place:
 * 0 stopped by signal (status: healthy), 1 fatal runtime error (status:
 * problems found), 2 usage error, 3 etcd unreachable (status).
 */
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { Command, DaemonOptions, EtcdOptions, StatusOptions, TraceOptions, parseCommandLine } from './cli';
import { Daemon } from './daemon';
import type { NetlinkKernel } from './kernel/netlink-kernel';
import { EtcdLeaseStore } from './lease/etcd-store';
import { ETCD_CALL_TIMEOUT_MS, runStatus, unreachableMessage } from './status/command';
import { TcpdumpCapture } from './capture/capture';
import { runTrace } from './trace/command';
import { run as runProgram } from './testbed/exec';
import { systemClock } from './util/clock';
import { StoreUnavailableError, UsageError, errorMessage } from './util/errors';
import { Logger, createLogger, silentLogger } from './util/log';
import { notifySystemd } from './util/sd-notify';
import { etcdPassword, plaintextCredentialsWarning } from './etcd-credentials';
import { tryParseIPv4 } from './net/ipv4';
import { tryParseIPv6 } from './net/ipv6';
import { IpAddr } from './net/family';
import { endpointHost } from './net/endpoint';
import { startHealthServer } from './health';
import { AFTER_BURST_GC, IdleCollector, collectingObserver, fullGc } from './idle-gc';
import { Metrics } from './metrics';

export const EXIT_OK = 0;
export const EXIT_FATAL = 1;
export const EXIT_USAGE = 2;
const STOP_GRACE_MS = 1500;
export const EXIT_UNREACHABLE = 3;

function etcdStore(etcd: EtcdOptions, log: Logger, dialTimeoutMs?: number): EtcdLeaseStore {
  return new EtcdLeaseStore({
    endpoints: etcd.endpoints,
    prefix: etcd.prefix,
    tls: { keyFile: etcd.keyFile, certFile: etcd.certFile, caFile: etcd.caFile },
    auth: etcd.username !== undefined ? { username: etcd.username, password: etcdPassword(etcd) ?? '' } : undefined,
    ...(dialTimeoutMs === undefined ? {} : { dialTimeoutMs }),
    log,
  });
}

// Loaded on first use: the native netlink module exists only on Linux, and status must run from an operator's laptop too.
async function openNetlink(log?: Logger): Promise<NetlinkKernel> {
  if (process.platform !== 'linux') throw new Error(`netlink is Linux-only (this is ${process.platform})`);
  const { NetlinkKernel } = await import('./kernel/netlink-kernel.js');
  return new NetlinkKernel(log ? { log } : {});
}

/**
 * The addresses of the etcd endpoints (either family: `https://[fd00::2]:2379`
 * gives fd00::2), looked up once at start: no peer subnet or Network may
 * contain one. A name is resolved to its IPv4 and IPv6 addresses; one that does
 * not resolve now is left out (etcd itself reports it as unreachable).
 */
export async function etcdAddresses(endpoints: readonly string[]): Promise<IpAddr[]> {
  const out: IpAddr[] = [];
  const add = (ip: IpAddr | undefined): void => {
    if (ip !== undefined && !out.includes(ip)) out.push(ip);
  };
  for (const ep of endpoints) {
    const host = endpointHost(ep);
    if (host === undefined) continue;
    if (typeof host !== 'object') add(host);
    else for (const a of await lookup(host.name, { all: true }).catch(() => [])) add(a.family === 6 ? tryParseIPv6(a.address) : tryParseIPv4(a.address));
  }
  return out;
}

async function runDaemon(options: DaemonOptions, log: Logger): Promise<number> {
  const store = etcdStore(options.etcd, log.child({ component: 'etcd' }));
  const plaintext = plaintextCredentialsWarning(options.etcd);
  if (plaintext !== undefined) log.warn(plaintext);
  const kernel = await openNetlink(log.child({ component: 'kernel' }));
  const controller = new AbortController();
  const stop = (sig: string): void => {
    if (controller.signal.aborted) return;
    log.info({ signal: sig }, `received ${sig}; stopping (kernel state and lease stay in place)`);
    controller.abort();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const { password: _password, ...etcdShown } = options.etcd;
  log.info({ options: { ...options, etcd: { ...etcdShown, password: options.etcd.password ? '[redacted]' : undefined } } }, 'starting flanneld-ts');
  const metrics = options.healthzPort > 0 ? new Metrics() : undefined;
  const gc = fullGc();
  const collector = gc
    ? new IdleCollector(() => {
        const before = process.memoryUsage();
        gc(AFTER_BURST_GC);
        const after = process.memoryUsage();
        const mb = (n: number): number => Math.round(n / 2 ** 20);
        log.debug({ heapUsedMB: [mb(before.heapUsed), mb(after.heapUsed)], rssMB: [mb(before.rss), mb(after.rss)] }, 'collected garbage after a burst of kernel changes');
      })
    : undefined;
  const daemon = new Daemon(options, {
    store,
    kernel,
    clock: systemClock,
    rand: Math.random,
    randomBytes,
    log,
    observer: collector ? collectingObserver(collector, metrics) : metrics,
    etcdAddresses: await etcdAddresses(options.etcd.endpoints),
    onReady: (st) => void notifySystemd({ ready: true, status: `subnet ${st.subnet}, ${st.peers} peers programmed` }, log),
  });
  const health = metrics
    ? await startHealthServer(options.healthzIP, options.healthzPort, { status: () => daemon.status(), metrics: () => metrics.text(), metricsContentType: metrics.registry.contentType })
    : undefined;
  if (health) log.info({ address: `${options.healthzIP}:${options.healthzPort}` }, `serving /healthz, /readyz and /metrics on ${options.healthzIP}:${options.healthzPort}`);
  // A call to an etcd that accepts connections but never answers only ends at its deadline;
  // once told to stop, wait for it at most this long (the kernel state and lease stay either way).
  const grace = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => setTimeout(resolve, STOP_GRACE_MS).unref(), { once: true }));
  try {
    await Promise.race([daemon.run(controller.signal), grace]);
    return EXIT_OK;
  } finally {
    collector?.stop();
    health?.close();
    kernel.close();
    await store.close().catch(() => undefined);
  }
}

/** `flanneld-ts status` on the real etcd and, lazily, this host's netlink; never writes to either. */
async function runStatusCommand(options: StatusOptions): Promise<number> {
  // Short per-call deadlines: status must answer (exit 3) within seconds, never hang on a dead endpoint.
  const store = etcdStore(options.etcd, silentLogger(), ETCD_CALL_TIMEOUT_MS);
  const plaintext = plaintextCredentialsWarning(options.etcd);
  if (plaintext !== undefined) process.stderr.write(`flanneld-ts status: warning: ${plaintext}\n`);
  let opening: Promise<NetlinkKernel> | undefined;
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  // Only --watch runs until interrupted; a one-shot status keeps the default Ctrl-C behaviour.
  if (options.watch) {
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  }
  try {
    return await runStatus(options, {
      store,
      kernel: () => (opening ??= openNetlink()),
      readFile: (path) => readFile(path, 'utf8'),
      clock: systemClock,
      rand: Math.random,
      stdout: (text) => void process.stdout.write(text),
      stderr: (text) => void process.stderr.write(text),
      isTTY: process.stdout.isTTY === true,
      env: process.env,
    }, controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await opening?.then((k) => k.close(), () => undefined);
    await store.close().catch(() => undefined);
  }
}

/** `flanneld-ts trace` on the real etcd and this host's netlink; never writes to either. */
async function runTraceCommand(options: TraceOptions): Promise<number> {
  const store = etcdStore(options.etcd, silentLogger(), ETCD_CALL_TIMEOUT_MS);
  let opening: Promise<NetlinkKernel> | undefined;
  try {
    return await runTrace(options, {
      store,
      kernel: () => (opening ??= openNetlink()),
      readFile: (path) => readFile(path, 'utf8'),
      exec: (cmd, args) => runProgram(cmd, args, { timeoutMs: 60_000 }),
      capture: new TcpdumpCapture(),
      clock: systemClock,
      stdout: (text) => void process.stdout.write(text),
      stderr: (text) => void process.stderr.write(text),
      isTTY: process.stdout.isTTY === true,
      env: process.env,
    });
  } finally {
    await opening?.then((k) => k.close(), () => undefined);
    await store.close().catch(() => undefined);
  }
}

/** Runs the CLI and exits the process with the command's exit code (once stdout is flushed). */
export function main(args: readonly string[]): void {
  run(args).then(
    (code) => process.stdout.write('', () => process.exit(code)),
    (err) => {
      process.stderr.write(`flanneld-ts: ${errorMessage(err)}\n`);
      process.exit(EXIT_FATAL);
    },
  );
}

export async function run(args: readonly string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(args);
  } catch (err) {
    if (err instanceof UsageError) {
      const help = args[0] === 'status' || args[0] === 'trace' ? `flanneld-ts ${args[0]} --help` : 'flanneld-ts --help';
      process.stderr.write(`flanneld-ts: ${err.message}\nRun '${help}' for the flags.\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (command.command === 'status' || command.command === 'trace') {
    const name = command.command;
    for (const w of command.warnings) process.stderr.write(`flanneld-ts ${name}: warning: ${w}\n`);
    try {
      return await (command.command === 'status' ? runStatusCommand(command.options) : runTraceCommand(command.options));
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        process.stderr.write(`flanneld-ts ${name}: etcd unreachable: ${unreachableMessage(err)}\n`);
        return EXIT_UNREACHABLE;
      }
      if (!(err instanceof UsageError)) throw err;
      // A flag whose value turned out unusable (an unreadable --etcd-cafile).
      process.stderr.write(`flanneld-ts ${name}: ${err.message}\n`);
      return EXIT_USAGE;
    }
  }
  if (command.command !== 'run') {
    process.stdout.write(`${command.text}\n`);
    return EXIT_OK;
  }
  const log = createLogger(command.options.logLevel);
  for (const w of command.warnings) log.warn(w);
  try {
    return await runDaemon(command.options, log);
  } catch (err) {
    log.fatal({ err: errorMessage(err) }, errorMessage(err));
    // A flag whose value turned out unusable (e.g. an unreadable --etcd-cafile) is a usage error.
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FATAL;
  }
}
