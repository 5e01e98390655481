/**
 * What the benchmark reads from /proc, cheaply enough to poll every few
 * milliseconds without disturbing the daemon it measures: a process's CPU times
 * and peak RSS, and the route count of a network namespace (through
 * /proc/<pid>/net of a process inside it, so the bench itself never enters it).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** CPU times of a process in clock ticks (`man 5 proc`, fields 14–17). */
export interface CpuTicks {
  readonly utime: number;
  readonly stime: number;
  /** Children the process has waited for (the daemon's iptables runs). */
  readonly cutime: number;
  readonly cstime: number;
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields count from the last ')'. */
export function parseProcStat(text: string): CpuTicks {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`unexpected /proc/<pid>/stat format: ${JSON.stringify(text.slice(0, 80))}`);
  // After "pid (comm) ": field 3 (state) is index 0, so field k is index k - 3.
  const f = text.slice(close + 2).trim().split(/\s+/).map(Number);
  const at = (field: number): number => {
    const v = f[field - 3];
    if (v === undefined || !Number.isFinite(v)) throw new Error(`/proc/<pid>/stat has no field ${field}`);
    return v;
  };
  return { utime: at(14), stime: at(15), cutime: at(16), cstime: at(17) };
}

/** RssAnon (V8's heap, malloc, buffers) and RssFile (the binary and libraries) in kB from /proc/<pid>/status. */
export function parseRssKinds(status: string): { anonKb: number; fileKb: number } {
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} line in /proc/<pid>/status`);
    return Number(m[1]);
  };
  return { anonKb: field('RssAnon'), fileKb: field('RssFile') };
}

/** VmHWM (peak resident set) in kB from /proc/<pid>/status. */
export function parseVmHWM(status: string): number {
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error('no VmHWM line in /proc/<pid>/status');
  return Number(m[1]);
}

/**
 * The prefix count of the main FIB trie from /proc/net/fib_triestat. Without
 * policy rules the kernel keeps the local table inside the main trie, so the
 * count covers both; callers compare against a baseline taken the same way.
 */
export function parseFibPrefixes(triestat: string): number {
  const m = /^Main:\n(?:\t.*\n)*?\tPrefixes:\s+(\d+)$/m.exec(triestat);
  if (!m) throw new Error('no "Main: … Prefixes:" in /proc/net/fib_triestat');
  return Number(m[1]);
}

/** VmRSS (resident set now) in kB from /proc/<pid>/status. */
export function parseVmRSS(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error('no VmRSS line in /proc/<pid>/status');
  return Number(m[1]);
}

export function readRssKb(pid: number): number {
  return parseVmRSS(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** utime + stime + cutime + cstime of a process in ms: itself and the children it reaped (its iptables runs). */
export function readCpuMs(pid: number): number {
  const t = readCpuTicks(pid);
  return ((t.utime + t.stime + t.cutime + t.cstime) * 1000) / clockTicksPerSecond();
}

export function readCpuTicks(pid: number): CpuTicks {
  return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** The first field of /proc/<pid>/task/<tid>/schedstat: nanoseconds the task ran on a CPU (the scheduler's own account, not sampled at ticks). */
export function parseSchedstatNs(text: string): number {
  const first = text.trim().split(/\s+/)[0];
  if (first === undefined || !/^\d+$/.test(first)) throw new Error(`unexpected schedstat: ${JSON.stringify(text.slice(0, 80))}`);
  return Number(first);
}

/** CPU time of every thread of `pid`, in ns (threads that exit meanwhile drop out: only for windows where none do). */
export function readThreadsCpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += parseSchedstatNs(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8'));
    } catch {
      // The thread exited between the listing and the read.
    }
  }
  return ns;
}

export function readPeakRssKb(pid: number): number {
  return parseVmHWM(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** Routes (prefixes) in the namespace `pid` lives in. */
export function readRoutePrefixes(pid: number): number {
  return parseFibPrefixes(readFileSync(`/proc/${pid}/net/fib_triestat`, 'utf8'));
}

let ticksPerSecond: number | undefined;

/** USER_HZ, the unit of /proc/<pid>/stat times (100 on every mainstream kernel config). */
export function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

/** Busy and total jiffies of all CPUs from /proc/stat's "cpu" line (idle and iowait count as not busy). */
export function parseCpuLine(stat: string): { busy: number; total: number } {
  const m = /^cpu\s+(.*)$/m.exec(stat);
  if (!m) throw new Error('no "cpu" line in /proc/stat');
  const v = (m[1] as string).trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal [guest guest_nice, already inside user and nice]
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

export function readCpuLine(): { busy: number; total: number } {
  return parseCpuLine(readFileSync('/proc/stat', 'utf8'));
}

/** Milliseconds on CLOCK_MONOTONIC, which is shared by every process on the machine (the etcd agent's timestamps compare). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
