/**
 * The printed report: Markdown tables (readable in a terminal, pasteable into
 * the README) of the results per size, the cold-start breakdown, and one line
 * per target saying MET or MISSED with its figure.
 */
import { renderProfileSummary } from './cpu-profile';
import { BenchReport, SizeResult, TargetCheck } from './results';

/** A Markdown table with columns padded to their widest cell. */
export function markdownTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${widths.map((w, i) => (cells[i] ?? '').padEnd(w)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const ms = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`);
const ratio = (a: number, b: number | undefined): string => (b !== undefined && b > 0 ? `${(a / b).toFixed(1)}×` : '–');
const pct = (x: number | undefined): string => (x === undefined ? '–' : `${x.toFixed(3)} %`);
const MB = (x: number | undefined): string => (x === undefined ? '–' : `${x.toFixed(1)} MB`);

export function resultsTable(sizes: readonly SizeResult[]): string {
  return markdownTable(
    ['peers', 'kernel limit (ip -batch)', 'cold start', 'join storm', 'single join p50 / p99 (worst run)', 'idle CPU (1 core)', 'idle etcd req/min', 'peak RSS'],
    sizes.map((r) => [
      String(r.peers),
      ms(r.limit?.ms),
      r.coldStart ? `${ms(r.coldStart.ms)} (${ratio(r.coldStart.ms, r.limit?.ms)})` : '–',
      `${ms(r.storm.ms)} (${ratio(r.storm.ms, r.limit?.ms)})`,
      r.join && r.joinRuns ? `${ms(r.join.medianMs)} / ${ms(Math.max(...r.joinRuns.map((j) => j.p99Ms)))}` : '–',
      pct(r.idle?.cpuPctOfCore),
      r.idle ? r.idle.etcdRequestsPerMin.toFixed(1) : '–',
      MB(r.rss.peakMB),
    ]),
  );
}

export function detailTable(sizes: readonly SizeResult[]): string {
  return markdownTable(
    ['peers', 'cold: first log / lease / ready', 'warm restart', 'join p99 per run', 'leave p50 / p99', 'idle: daemon + iptables', 'one full pass', 'RSS: storm / cold / D1 peak', 'churn RSS before / peak / after', 'machine busy'],
    sizes.map((r) => [
      String(r.peers),
      r.coldStart ? `${ms(r.coldStart.firstLogMs)} / ${ms(r.coldStart.leaseMs)} / ${ms(r.coldStart.readyLogMs)}` : '–',
      ms(r.warmRestartMs),
      r.joinRuns ? r.joinRuns.map((j) => ms(j.p99Ms)).join(' / ') : '–',
      r.leave ? `${ms(r.leave.medianMs)} / ${ms(r.leave.p99Ms)}` : '–',
      r.idle ? `${r.idle.selfCpuMs.toFixed(1)} + ${Math.round(r.idle.childCpuMs)} ms in ${r.idle.seconds} s` : '–',
      r.fullPass ? `${ms(r.fullPass.cpuMsPerPass)} CPU, ${ms(r.fullPass.wallMsPerPass)} wall` : '–',
      `${MB(r.rss.afterStormMB)} / ${MB(r.rss.coldStartPeakMB)} / ${MB(r.rss.firstDaemonPeakMB)}`,
      r.churn ? `${MB(r.churn.rssBeforeMB)} / ${MB(r.churn.rssPeakMB)} / ${MB(r.churn.rssAfterMB)} (heap ${MB(r.churn.heapUsedBeforeMB)} → ${MB(r.churn.heapUsedAfterMB)})` : '–',
      `${r.machineBusyPct.toFixed(0)} %`,
    ]),
  );
}

/** CPU per phase, so the idle figure can be read against what the daemon did before it. */
export function phaseCpuTable(sizes: readonly SizeResult[]): string {
  const phases = [...new Set(sizes.flatMap((r) => Object.keys(r.cpuByPhaseMs)))];
  return markdownTable(['peers', ...phases.map((p) => `CPU ${p}`)], sizes.map((r) => [String(r.peers), ...phases.map((p) => ms(r.cpuByPhaseMs[p]))]));
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
    parts.push(resultsTable(report.sizes), '', detailTable(report.sizes), '', phaseCpuTable(report.sizes), '', targetLines(report.targets));
    for (const r of report.sizes) {
      if (r.idleProfile) parts.push('', `idle CPU profile at ${r.peers} peers${r.idleProfile.file ? ` (${r.idleProfile.file})` : ''}:`, renderProfileSummary(r.idleProfile));
    }
  }
  if (report.failures.length > 0) parts.push('', 'FAILED:', ...report.failures.map((f) => `  ${f}`));
  return `${parts.join('\n')}\n`;
}
