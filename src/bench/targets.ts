/**
 * The targets of issue 6, checked against one size's results. Each check
 * carries the figure it was judged on, so MET or MISSED never stands alone.
 */
import { SizeResult, TargetCheck } from './results';

export const TARGETS = {
  coldStartLimitFactor: 3,
  coldStartStartupAllowanceMs: 1000,
  peakRssMB: 120,
  stormLimitFactor: 3,
  joinP99Ms: 50,
  idleCpuPct: 0.1,
  /** Issue 6 states cold start, peak RSS and storm for 5,000 peers; join and idle for any size. */
  sizedTargetsAt: 5000,
} as const;

const ms = (x: number): string => `${Math.round(x)} ms`;

export function checkTargets(r: SizeResult): TargetCheck[] {
  const t = TARGETS;
  const coldBound = t.coldStartLimitFactor * r.limit.ms + t.coldStartStartupAllowanceMs;
  const stormBound = t.stormLimitFactor * r.limit.ms;
  const other = Object.entries(r.idle.etcdByMethod).filter(([m]) => !m.endsWith('/LeaseKeepAlive'));
  const sized = r.peers === t.sizedTargetsAt;
  const checks: Array<Omit<TargetCheck, 'judged'> & { sized?: boolean }> = [
    {
      peers: r.peers,
      sized: true,
      name: 'cold start',
      met: r.coldStart.ms <= coldBound,
      figure: `${ms(r.coldStart.ms)} vs ${t.coldStartLimitFactor} × ${ms(r.limit.ms)} + ${t.coldStartStartupAllowanceMs / 1000} s = ${ms(coldBound)}`,
    },
    {
      peers: r.peers,
      sized: true,
      name: 'peak RSS',
      met: r.coldStart.peakRssMB < t.peakRssMB,
      figure: `${r.coldStart.peakRssMB.toFixed(1)} MB vs < ${t.peakRssMB} MB`,
    },
    {
      peers: r.peers,
      sized: true,
      name: 'join storm',
      met: r.storm.ms <= stormBound,
      figure: `${ms(r.storm.ms)} vs ${t.stormLimitFactor} × ${ms(r.limit.ms)} = ${ms(stormBound)}`,
    },
    {
      peers: r.peers,
      name: 'single join p99',
      met: r.join.p99Ms < t.joinP99Ms,
      figure: `${r.join.p99Ms.toFixed(1)} ms vs < ${t.joinP99Ms} ms (median ${r.join.medianMs.toFixed(1)} ms, ${r.join.count} joins)`,
    },
    {
      peers: r.peers,
      name: 'idle CPU',
      met: r.idle.cpuPctOfCore < t.idleCpuPct,
      figure: `${r.idle.cpuPctOfCore.toFixed(3)} % of a core vs < ${t.idleCpuPct} % (daemon ${Math.round(r.idle.selfCpuMs)} ms + iptables ${Math.round(r.idle.childCpuMs)} ms in ${r.idle.seconds} s)`,
    },
    {
      peers: r.peers,
      name: 'idle etcd traffic',
      met: r.idle.etcdNonKeepAlive === 0,
      figure:
        other.length > 0
          ? `${r.idle.etcdNonKeepAlive} requests besides keep-alives in ${r.idle.seconds} s: ${other.map(([m, n]) => `${m} ${n}`).join(', ')}`
          : r.idle.etcdRequests === 0
            ? `no requests in ${r.idle.seconds} s`
            : `${r.idle.etcdRequestsPerMin.toFixed(1)} requests/min, all of them lease keep-alives`,
    },
  ];
  return checks.map(({ sized: isSized, ...c }) => ({ ...c, judged: !isSized || sized }));
}
