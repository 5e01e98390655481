/**
 * A Daemon on the in-memory fakes, as the unit tests of the daemon run it: a
 * temporary directory for subnet.env and a stand-in /proc/sys (the
 * br_netfilter sysctl set, unless told otherwise), a MemoryLeaseStore holding
 * the config, a MemoryKernel (eth0Kernel() unless given), memory firewalls, a
 * 0.2 s kernel resync, debug logs kept in memory, real timers.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DaemonOptions, parseCommandLine } from '../../src/cli';
import { Daemon, DaemonDeps } from '../../src/daemon';
import { FirewallBackends } from '../../src/firewall/firewall-keeper';
import { MemoryFirewall } from '../../src/firewall/memory-firewall';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { describeEntry } from '../../src/overlay/plan';
import { systemClock } from '../../src/util/clock';
import { createLogger } from '../../src/util/log';
import { eth0Kernel } from './eth0-kernel';

export interface MemoryDaemonOptions {
  /** The network config put in the store; `null`: none (the daemon waits for it). */
  readonly config: string | null;
  readonly store?: MemoryLeaseStore;
  readonly kernel?: MemoryKernel;
  /** Flags after `--subnet-file <dir>/subnet.env --kernel-resync 0.2`. */
  readonly args?: readonly string[];
  /** subnet.env's path, given the temporary directory. */
  readonly subnetFile?: (dir: string) => string;
  /** False: no br_netfilter sysctl (the daemon refuses to start). */
  readonly brNetfilter?: boolean;
  /** Devices whose net/ipv6/conf/<device> directory the stand-in /proc/sys has. */
  readonly ipv6ConfDevices?: readonly string[];
  /** Default: MemoryFirewalls sharing one rule map (`rules`) for both backends. */
  readonly firewalls?: FirewallBackends;
  /** More of the daemon's dependencies (blackholes, observer, …). */
  readonly deps?: Partial<DaemonDeps>;
  /** The temporary directory's name prefix. */
  readonly prefix?: string;
}

export interface MemoryDaemon {
  readonly store: MemoryLeaseStore;
  readonly kernel: MemoryKernel;
  readonly daemon: Daemon;
  /** The daemon's pino lines, as written. */
  readonly logs: string[];
  readonly subnetFile: string;
  readonly sysctlRoot: string;
  /** The default firewalls' rules (unused when `firewalls` was given). */
  readonly rules: Map<string, readonly string[]>;
  /** run()'s outcome: undefined, or the error it ended with. */
  readonly done: Promise<unknown>;
  /** Aborts the daemon; resolves with `done`. */
  stop(): Promise<unknown>;
  /** Stops the daemon and deletes the temporary directory. */
  close(): Promise<void>;
  /** The entries on `device`, described and sorted (none when it does not exist). */
  entries(device?: string): Promise<string[]>;
}

/** Starts the daemon; the caller closes it (afterEach). */
export function startMemoryDaemon(opts: MemoryDaemonOptions): MemoryDaemon {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'flts-daemon-'));
  const sysctlRoot = join(dir, 'sys');
  mkdirSync(sysctlRoot, { recursive: true });
  for (const device of opts.ipv6ConfDevices ?? []) mkdirSync(join(sysctlRoot, 'net/ipv6/conf', device), { recursive: true });
  if (opts.brNetfilter !== false) {
    mkdirSync(join(sysctlRoot, 'net/bridge'), { recursive: true });
    writeFileSync(join(sysctlRoot, 'net/bridge/bridge-nf-call-iptables'), '1\n');
  }
  const subnetFile = opts.subnetFile?.(dir) ?? join(dir, 'subnet.env');
  const store = opts.store ?? new MemoryLeaseStore();
  if (opts.config !== null) store.setConfig(opts.config);
  const kernel = opts.kernel ?? eth0Kernel();
  const cmd = parseCommandLine(['--subnet-file', subnetFile, '--kernel-resync', '0.2', ...(opts.args ?? [])], {});
  if (cmd.command !== 'run') throw new Error(`not a run command line: ${(opts.args ?? []).join(' ')}`);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const rules = new Map<string, readonly string[]>();
  const firewalls: FirewallBackends = opts.firewalls ?? { iptables: async (o) => new MemoryFirewall(o, rules), nftables: async (o) => new MemoryFirewall(o, rules) };
  const daemon = new Daemon(cmd.options as DaemonOptions, {
    store,
    kernel,
    clock: systemClock,
    rand: Math.random,
    randomBytes: (n) => new Uint8Array(n).fill(0x5a),
    log: createLogger('debug', sink),
    firewalls,
    sysctlRoot,
    ...opts.deps,
  });
  const ctl = new AbortController();
  const done = daemon.run(ctl.signal).catch((err: unknown) => err);
  const stop = async (): Promise<unknown> => {
    ctl.abort();
    return done;
  };
  return {
    store,
    kernel,
    daemon,
    logs,
    subnetFile,
    sysctlRoot,
    rules,
    done,
    stop,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async entries(device = 'flannel.1') {
      const dev = await kernel.getDevice(device);
      return dev ? (await kernel.listEntries(dev.index)).map(describeEntry).sort() : [];
    },
  };
}
