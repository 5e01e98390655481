/**
 * The printed report: Markdown tables (readable in a terminal, pasteable into
 * the README) of the results per size, the cold-start breakdown, and one line
 * per target saying MET or MISSED with its figure.
 */
import { BenchReport, SizeResult, TargetCheck } from './results';

/** A Markdown table with columns padded to their widest cell. */
export function markdownTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${widths.map((w, i) => (cells[i] ?? '').padEnd(w)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const ms = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`);
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(1)}×` : '–');
const pct = (x: number): string => `${x.toFixed(3)} %`;

export function resultsTable(sizes: readonly SizeResult[]): string {
  return markdownTable(
    ['peers', 'kernel limit (ip -batch)', 'cold start', 'join storm', 'single join p50 / p99', 'idle CPU (1 core)', 'idle etcd req/min', 'peak RSS'],
    sizes.map((r) => [
      String(r.peers),
      ms(r.limit.ms),
      `${ms(r.coldStart.ms)} (${ratio(r.coldStart.ms, r.limit.ms)})`,
      `${ms(r.storm.ms)} (${ratio(r.storm.ms, r.limit.ms)})`,
      `${ms(r.join.medianMs)} / ${ms(r.join.p99Ms)}`,
      pct(r.idle.cpuPctOfCore),
      r.idle.etcdRequestsPerMin.toFixed(1),
      `${r.coldStart.peakRssMB.toFixed(1)} MB`,
    ]),
  );
}

export function detailTable(sizes: readonly SizeResult[]): string {
  return markdownTable(
    ['peers', 'cold: first log / lease / ready', 'warm restart', 'leave p50 / p99', 'idle: daemon + iptables', 'idle, no periodic pass', 'one periodic pass', 'RSS after storm', 'machine busy'],
    sizes.map((r) => [
      String(r.peers),
      `${ms(r.coldStart.firstLogMs)} / ${ms(r.coldStart.leaseMs)} / ${ms(r.coldStart.readyLogMs)}`,
      ms(r.warmRestartMs),
      `${ms(r.leave.medianMs)} / ${ms(r.leave.p99Ms)}`,
      `${Math.round(r.idle.selfCpuMs)} + ${Math.round(r.idle.childCpuMs)} ms in ${r.idle.seconds} s`,
      pct(r.idleNoResync.cpuPctOfCore),
      `${ms(r.resyncPassCpuMs)} CPU`,
      `${r.rssAfterStormMB.toFixed(1)} MB`,
      `${r.machineBusyPct.toFixed(0)} %`,
    ]),
  );
}

export function targetLines(checks: readonly TargetCheck[]): string {
  return checks.map((c) => `${!c.judged ? 'INFO  ' : c.met ? 'MET   ' : 'MISSED'}  ${String(c.peers).padStart(5)} peers  ${c.name.padEnd(17)}  ${c.figure}`).join('\n');
}

export function renderReport(report: BenchReport): string {
  const m = report.machine;
  const parts = [
    `flanneld-ts benchmark, ${report.startedAt}, ${report.durationS} s`,
    `machine: ${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}, etcd ${m.etcd}, ${m.iproute2}; load average at start ${m.loadAvgAtStart}`,
  ];
  const extra = report.options.daemonArgs;
  if (Array.isArray(extra) && extra.length > 0) parts.push(`daemon flags added to the defaults: ${extra.join(' ')}`);
  parts.push('');
  if (report.sizes.length > 0) {
    parts.push(resultsTable(report.sizes), '', detailTable(report.sizes), '', targetLines(report.targets));
  }
  if (report.failures.length > 0) parts.push('', 'FAILED:', ...report.failures.map((f) => `  ${f}`));
  return `${parts.join('\n')}\n`;
}
