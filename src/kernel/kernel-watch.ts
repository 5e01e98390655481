/**
 * The kernel watch: rtnetlink notifications, read by an `ip -o monitor` child
 * process and handed over line by line.
 *
 * Why a child process (root cause of issue 10's abort): when a netlink socket's
 * receive queue overflows, the kernel drops the notification and sets the
 * socket's error to ENOBUFS (netlink(7): the application must then resync).
 * epoll reports that as EPOLLERR; libuv hands a poll handle with EPOLLERR to its
 * callback as status UV_EBADF without reading the socket. The `netlink` package
 * (0.3.0, src/binding.cc `Socket::PollHandler`) then builds its error with a
 * null syscall name: `Napi::String::New(env, NULL)` throws a C++ `Napi::Error`
 * ("Error in native callback", the last Node-API status being ok) inside a
 * libuv callback, where nothing can catch it, so the process calls
 * std::terminate and aborts. Had it not thrown, it would have closed the socket
 * and the watch would have gone deaf. No JavaScript handler and no buffer size
 * can prevent it (the kernel caps SO_RCVBUF at net.core.rmem_max), and
 * NETLINK_NO_ENOBUFS cannot be set through the package (it exposes no generic
 * setsockopt). Reproduced with gdb (`catch throw`: `Napi::String::New` ←
 * `ErrnoException` ← `Socket::PollHandler` ← `uv__io_poll`) by 30,000 route
 * changes against a subscribed socket whose event loop was busy.
 *
 * So the listening socket lives in iproute2's `ip monitor`, which reads an
 * overflow as what it is: it prints `netlink receive error No buffer space
 * available (105)` and keeps reading. We count that (`onOverflow`: the caller
 * re-lists everything, the kernel's contract for ENOBUFS). If the child dies
 * anyway, it is restarted with backoff and, once it listens again, the caller
 * is told to re-list (`onReady`). The request socket stays in-process: it joins
 * no groups, and our own window bounds what the kernel answers on it.
 *
 * "Listening" is known, not guessed: the child's netlink socket shows up in
 * /proc/net/netlink (this namespace's sockets) with its pid as port and a
 * non-zero group mask once `ip monitor` has bound it.
 *
 * The child dies with us: it runs under util-linux `setpriv --pdeathsig KILL`
 * (prctl PR_SET_PDEATHSIG, kept across the exec of `ip`, so the pid is still
 * the one /proc/net/netlink shows), and the kernel kills it when the daemon
 * dies, SIGKILL included. Without it, an orphaned `ip monitor` lives on until
 * its next write to the closed pipe fails, which on a quiet node may be never.
 * Node cannot set the signal on a child itself. setpriv is in util-linux,
 * essential in Debian 12 and 13 (node:24-trixie-slim has /usr/bin/setpriv);
 * where it is missing, `ip` runs directly and that is logged once. (A daemon
 * killed in the instant between fork and setpriv's prctl still leaves one.)
 */
import { ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Logger } from '../util/log';
import { MonitorChange, isOverflowLine, parseMonitorLine } from './monitor-lines';

const MONITOR_ARGS = ['-o', 'monitor', 'label', 'link', 'address', 'route', 'neigh'];
const READY_POLL_MS = 10;
const READY_TIMEOUT_MS = 3_000;
const RESTART_MIN_MS = 250;
const RESTART_MAX_MS = 30_000;
/** setpriv's exit codes when it cannot exec the program (util-linux EX_EXEC_FAILED, EX_EXEC_ENOENT). */
const SETPRIV_EXEC_FAILED = new Set([126, 127]);

export interface KernelWatchEvents {
  /** A line that may concern us. */
  readonly onChange: (change: MonitorChange) => void;
  /** Notifications were dropped (ENOBUFS): everything must be re-read. */
  readonly onOverflow: () => void;
  /** The child listens; notifications from before this moment may be missing. */
  readonly onReady: () => void;
  /** The child died; nothing is heard until the next `onReady`. */
  readonly onDown: () => void;
}

/** True once /proc/net/netlink lists a socket of `pid` joined to some group (columns: sk Eth Pid Groups …). */
export function listensIn(procNetNetlink: string, pid: number): boolean {
  return procNetNetlink.split('\n').some((line) => {
    const cols = line.trim().split(/\s+/);
    return cols[1] === '0' && cols[2] === String(pid) && /^[0-9a-f]+$/i.test(cols[3] ?? '') && Number.parseInt(cols[3] as string, 16) !== 0;
  });
}

/** The first executable `name` in the directories of `path` (a PATH value), or undefined. */
export function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(':')) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not here: the next directory.
    }
  }
  return undefined;
}

export class KernelWatch {
  private child: ChildProcess | undefined;
  private closed = false;
  private restartMs = RESTART_MIN_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyTimer: NodeJS.Timeout | undefined;
  private deathLogged = false;
  /** util-linux setpriv, to make the child die with us; undefined: run `ip` directly. */
  private readonly setpriv = findOnPath('setpriv', process.env.PATH ?? '');

  constructor(
    private readonly events: KernelWatchEvents,
    private readonly log: Logger | undefined,
    private readonly command = 'ip',
  ) {
    if (!this.setpriv) this.log?.warn(`setpriv (util-linux) not found on PATH; ${command} monitor runs without a parent-death signal and may outlive a killed daemon`);
    this.start();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.readyTimer);
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGTERM');
  }

  private start(): void {
    if (this.closed) return;
    const [file, args] = this.setpriv ? [this.setpriv, ['--pdeathsig', 'KILL', this.command, ...MONITOR_ARGS]] : [this.command, MONITOR_ARGS];
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const change = parseMonitorLine(line);
      if (change) this.events.onChange(change);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (isOverflowLine(line)) this.events.onOverflow();
    });
    child.on('error', (err) => this.died(child, `failed to run ${this.command} monitor: ${err.message}`));
    child.on('exit', (code, signal) => {
      const unrun = this.setpriv !== undefined && code !== null && SETPRIV_EXEC_FAILED.has(code);
      this.died(child, unrun ? `failed to run ${this.command} monitor: setpriv could not execute ${this.command} (exit ${code})` : `${this.command} monitor exited (${signal ?? `code ${code}`})`);
    });
    this.waitListening(child, Date.now());
  }

  private waitListening(child: ChildProcess, since: number): void {
    if (this.child !== child || child.pid === undefined) return;
    let listening = false;
    try {
      listening = listensIn(readFileSync('/proc/net/netlink', 'utf8'), child.pid);
    } catch {
      // Without /proc the best we can do is wait the full timeout below.
    }
    if (listening || Date.now() - since > READY_TIMEOUT_MS) {
      if (this.deathLogged) this.log?.info('kernel watch listening again; re-listing the overlay device');
      this.deathLogged = false;
      this.restartMs = RESTART_MIN_MS;
      this.events.onReady();
      return;
    }
    this.readyTimer = setTimeout(() => this.waitListening(child, since), READY_POLL_MS);
    this.readyTimer.unref();
  }

  private died(child: ChildProcess, why: string): void {
    if (this.child !== child || this.closed) return;
    this.child = undefined;
    clearTimeout(this.readyTimer);
    this.events.onDown();
    if (!this.deathLogged) this.log?.warn(`${why}; kernel changes are found by the periodic pass until it runs again (restarting it)`);
    this.deathLogged = true;
    this.restartTimer = setTimeout(() => this.start(), this.restartMs);
    this.restartTimer.unref();
    this.restartMs = Math.min(this.restartMs * 2, RESTART_MAX_MS);
  }
}
