/**
 * The targets of issues 6 and 10, checked against one size's results. Each
 * check carries the figure it was judged on, so MET or MISSED never stands
 * alone. A phase that was not run (`--phases`) has no check.
 */
import { SizeResult, TargetCheck } from './results';

export const TARGETS = {
  coldStartLimitFactor: 3,
  coldStartStartupAllowanceMs: 1000,
  peakRssMB: 120,
  stormLimitFactor: 3,
  joinP99Ms: 50,
  idleCpuPct: 0.1,
  /** Settled RSS after churn may exceed the settled RSS before it by this much. */
  churnRssGrowthPct: 10,
  /** Issue 6 states cold start, peak RSS and storm for 5,000 peers; join and idle for any size. */
  sizedTargetsAt: 5000,
  /** Issue 10 states the churn bound at 20,000 leases; it is judged from 5,000 on (smaller heaps are mostly noise). */
  churnJudgedFrom: 5000,
} as const;

const ms = (x: number): string => `${Math.round(x)} ms`;

type Check = Omit<TargetCheck, 'judged' | 'peers'> & { judged?: boolean };

function peakRss(r: SizeResult): Check {
  const parts = [`D1 (storm, joins, idle, passes, churn) ${r.rss.firstDaemonPeakMB.toFixed(1)} MB`];
  if (r.rss.coldStartPeakMB !== undefined) parts.push(`cold start ${r.rss.coldStartPeakMB.toFixed(1)} MB`);
  return { name: 'peak RSS', met: r.rss.peakMB < TARGETS.peakRssMB, figure: `${r.rss.peakMB.toFixed(1)} MB vs < ${TARGETS.peakRssMB} MB (max of ${parts.join(', ')})` };
}

function idleChecks(r: SizeResult): Check[] {
  const idle = r.idle;
  if (!idle) return [];
  const other = Object.entries(idle.etcdByMethod).filter(([m]) => !m.endsWith('/LeaseKeepAlive'));
  return [
    {
      name: 'idle CPU',
      met: idle.cpuPctOfCore < TARGETS.idleCpuPct,
      figure: `${idle.cpuPctOfCore.toFixed(3)} % of a core vs < ${TARGETS.idleCpuPct} % (daemon ${idle.selfCpuMs.toFixed(1)} ms, ${Math.round(idle.selfCpuTicksMs)} ms in clock ticks, + iptables ${Math.round(idle.childCpuMs)} ms in ${idle.seconds} s)`,
    },
    {
      name: 'idle etcd traffic',
      met: idle.etcdNonKeepAlive === 0,
      figure:
        other.length > 0
          ? `${idle.etcdNonKeepAlive} requests besides keep-alives in ${idle.seconds} s: ${other.map(([m, n]) => `${m} ${n}`).join(', ')}`
          : idle.etcdRequests === 0
            ? `no requests in ${idle.seconds} s`
            : `${idle.etcdRequestsPerMin.toFixed(1)} requests/min, all of them lease keep-alives`,
    },
  ];
}

export function checkTargets(r: SizeResult): TargetCheck[] {
  const t = TARGETS;
  const sized = r.peers === t.sizedTargetsAt;
  const checks: Check[] = [];
  if (r.coldStart && r.limit) {
    const bound = t.coldStartLimitFactor * r.limit.ms + t.coldStartStartupAllowanceMs;
    checks.push({ judged: sized, name: 'cold start', met: r.coldStart.ms <= bound, figure: `${ms(r.coldStart.ms)} vs ${t.coldStartLimitFactor} × ${ms(r.limit.ms)} + ${t.coldStartStartupAllowanceMs / 1000} s = ${ms(bound)}` });
  }
  checks.push({ ...peakRss(r), judged: sized });
  if (r.limit) {
    const bound = t.stormLimitFactor * r.limit.ms;
    checks.push({ judged: sized, name: 'join storm', met: r.storm.ms <= bound, figure: `${ms(r.storm.ms)} vs ${t.stormLimitFactor} × ${ms(r.limit.ms)} = ${ms(bound)}` });
  }
  if (r.joinRuns && r.joinRuns.length > 0) {
    const p99s = r.joinRuns.map((j) => j.p99Ms);
    const worst = Math.max(...p99s);
    checks.push({
      name: 'single join p99',
      met: worst < t.joinP99Ms,
      figure: `worst ${worst.toFixed(1)} ms vs < ${t.joinP99Ms} ms (p99 of ${r.joinRuns.length} runs back to back: ${p99s.map((x) => x.toFixed(1)).join(' / ')} ms; median ${r.join?.medianMs.toFixed(1)} ms over ${r.join?.count} joins)`,
    });
  }
  checks.push(...idleChecks(r));
  if (r.churn) {
    const c = r.churn;
    checks.push({
      judged: r.peers >= t.churnJudgedFrom,
      name: 'RSS after churn',
      met: c.rssGrowthPct <= t.churnRssGrowthPct,
      figure: `${c.rssAfterMB.toFixed(1)} MB settled after vs ${c.rssBeforeMB.toFixed(1)} MB before (${c.rssGrowthPct >= 0 ? '+' : ''}${c.rssGrowthPct.toFixed(1)} % vs ≤ +${t.churnRssGrowthPct} %; peak ${c.rssPeakMB.toFixed(1)} MB; ${c.writes} writes in ${c.seconds} s)`,
    });
  }
  return checks.map(({ judged, ...c }) => ({ peers: r.peers, ...c, judged: judged ?? true }));
}
