/**
 * Process entry: parses the command line, builds the real store and kernel,
 * runs the command, and maps every error to an exit code in one place:
 * 0 stopped by signal, 1 fatal runtime error, 2 usage error.
 */
import { randomBytes } from 'node:crypto';
import { Command, DaemonOptions, parseCommandLine } from './cli';
import { Daemon } from './daemon';
import { NetlinkKernel } from './kernel/netlink-kernel';
import { EtcdLeaseStore } from './lease/etcd-store';
import { systemClock } from './util/clock';
import { UsageError, errorMessage } from './util/errors';
import { Logger, createLogger } from './util/log';
import { notifySystemd } from './util/sd-notify';

export const EXIT_OK = 0;
export const EXIT_FATAL = 1;
export const EXIT_USAGE = 2;

async function runDaemon(options: DaemonOptions, log: Logger): Promise<number> {
  const store = new EtcdLeaseStore({
    endpoints: options.etcd.endpoints,
    prefix: options.etcd.prefix,
    tls: { keyFile: options.etcd.keyFile, certFile: options.etcd.certFile, caFile: options.etcd.caFile },
    auth: options.etcd.username !== undefined ? { username: options.etcd.username, password: options.etcd.password ?? '' } : undefined,
    log: log.child({ component: 'etcd' }),
  });
  const kernel = new NetlinkKernel();
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
  const daemon = new Daemon(options, {
    store,
    kernel,
    clock: systemClock,
    rand: Math.random,
    randomBytes,
    log,
    onReady: (st) => void notifySystemd({ ready: true, status: `subnet ${st.subnet}, ${st.peers} peers programmed` }, log),
  });
  try {
    await daemon.run(controller.signal);
    return EXIT_OK;
  } finally {
    kernel.close();
    await store.close().catch(() => undefined);
  }
}

/** Runs the CLI and exits the process with the command's exit code. */
export function main(args: readonly string[]): void {
  run(args).then(
    (code) => process.exit(code),
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
      process.stderr.write(`flanneld-ts: ${err.message}\nRun 'flanneld-ts --help' for the flags.\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (command.command !== 'run') {
    process.stdout.write(`${command.text}\n`);
    return EXIT_OK;
  }
  const log = createLogger(command.options.logLevel);
  try {
    return await runDaemon(command.options, log);
  } catch (err) {
    log.fatal({ err: errorMessage(err) }, errorMessage(err));
    // A flag whose value turned out unusable (e.g. an unreadable --etcd-cafile) is a usage error.
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FATAL;
  }
}
