import { describe, expect, it } from 'vitest';
import { markdownTable, renderReport, resultsTable, targetLines } from '../../src/bench/report';
import { BenchReport, IdleResult, JoinRun, SizeResult } from '../../src/bench/results';
import { checkTargets } from '../../src/bench/targets';

const idle = (over: Partial<IdleResult> = {}): IdleResult => ({
  seconds: 60,
  selfCpuMs: 30,
  selfCpuTicksMs: 30,
  childCpuMs: 10,
  cpuPctOfCore: 0.067,
  etcdRequests: 0,
  etcdRequestsPerMin: 0,
  etcdNonKeepAlive: 0,
  etcdByMethod: {},
  fromMonoMs: 1000,
  toMonoMs: 61_000,
  ...over,
});

const joinRun = (p99Ms: number): JoinRun => ({ count: 50, medianMs: 20, p99Ms, maxMs: p99Ms, samplesMs: [20], etcdPutMedianMs: 2 });

function size(over: Partial<SizeResult> = {}): SizeResult {
  return {
    peers: 5000,
    daemon: { periodicPassS: 300, iptablesCheckS: 5 },
    limit: { runsMs: [600, 610, 640], ms: 610 },
    coldStart: { ms: 2500, firstLogMs: 250, leaseMs: 400, readyLogMs: 2520 },
    storm: { ms: 1700, etcdWriteMs: 300, etcdTxns: 40 },
    rss: { afterStormMB: 100, firstDaemonPeakMB: 115, coldStartPeakMB: 110.4, peakMB: 115 },
    cpuByPhaseMs: { start: 400, storm: 900, joins: 300, idle: 40 },
    join: joinRun(45.5),
    joinRuns: [joinRun(41), joinRun(45.5), joinRun(43)],
    leave: { count: 50, medianMs: 19, p99Ms: 40, maxMs: 40 },
    idle: idle(),
    fullPass: { triggers: 5, passes: 10, cpuMsPerPass: 35, wallMsPerPass: 40 },
    churn: { seconds: 60, writes: 3000, rate: 50, rssBeforeMB: 100, rssPeakMB: 118, rssAfterMB: 104, rssGrowthPct: 4, cpuMs: 9000, heapUsedBeforeMB: 30, heapUsedAfterMB: 31 },
    warmRestartMs: 900,
    machineBusyPct: 55,
    checks: [],
    ...over,
  };
}

describe('bench targets', () => {
  it('meets every target of issue 6 at the bounds it states', () => {
    const checks = checkTargets(size());
    expect(checks.map((c) => [c.name, c.met])).toEqual([
      ['cold start', true],
      ['peak RSS', true],
      ['join storm', true],
      ['single join p99', true],
      ['idle CPU', true],
      ['idle etcd traffic', true],
      ['RSS after churn', true],
    ]);
    // 3 × 610 ms + 1 s
    expect(checks[0]?.figure).toBe('2500 ms vs 3 × 610 ms + 1 s = 2830 ms');
    expect(checks[2]?.figure).toBe('1700 ms vs 3 × 610 ms = 1830 ms');
  });

  it('judges cold start, peak RSS and storm only at 5,000 peers, where issue 6 states them', () => {
    const small = checkTargets(size({ peers: 100, storm: { ms: 5000, etcdWriteMs: 1, etcdTxns: 1 } }));
    expect(small.map((c) => [c.name, c.judged])).toEqual([
      ['cold start', false],
      ['peak RSS', false],
      ['join storm', false],
      ['single join p99', true],
      ['idle CPU', true],
      ['idle etcd traffic', true],
      ['RSS after churn', false],
    ]);
    expect(targetLines(small).split('\n')[2]).toMatch(/^INFO {4}  100 peers  join storm/);
    expect(checkTargets(size()).every((c) => c.judged)).toBe(true);
  });

  it('misses each target just past its bound, saying by how much', () => {
    const checks = checkTargets(
      size({
        coldStart: { ms: 2831 },
        rss: { afterStormMB: 100, firstDaemonPeakMB: 120, coldStartPeakMB: 110, peakMB: 120 },
        storm: { ms: 1831, etcdWriteMs: 300, etcdTxns: 40 },
        joinRuns: [joinRun(30), joinRun(50), joinRun(31)],
        idle: idle({ cpuPctOfCore: 0.1, etcdNonKeepAlive: 6, etcdByMethod: { 'etcdserverpb.KV/Range': 6, 'etcdserverpb.Lease/LeaseKeepAlive': 1 } }),
        churn: { seconds: 60, writes: 3000, rate: 50, rssBeforeMB: 100, rssPeakMB: 130, rssAfterMB: 110.1, rssGrowthPct: 10.1, cpuMs: 9000, heapUsedBeforeMB: 30, heapUsedAfterMB: 31 },
      }),
    );
    expect(checks.every((c) => !c.met)).toBe(true);
    expect(checks.find((c) => c.name === 'idle etcd traffic')?.figure).toBe('6 requests besides keep-alives in 60 s: etcdserverpb.KV/Range 6');
    // The peak is the largest over every daemon and phase, and the worst join run is judged.
    expect(checks.find((c) => c.name === 'peak RSS')?.figure).toBe('120.0 MB vs < 120 MB (max of D1 (storm, joins, idle, passes, churn) 120.0 MB, cold start 110.0 MB)');
    expect(checks.find((c) => c.name === 'single join p99')?.figure).toMatch(/^worst 50\.0 ms vs < 50 ms \(p99 of 3 runs back to back: 30\.0 \/ 50\.0 \/ 31\.0 ms/);
    expect(checks.find((c) => c.name === 'RSS after churn')?.figure).toMatch(/^110\.1 MB settled after vs 100\.0 MB before \(\+10\.1 % vs ≤ \+10 %; peak 130\.0 MB/);
  });

  it('checks only the phases that ran', () => {
    const stormOnly = checkTargets(size({ limit: undefined, coldStart: undefined, join: undefined, joinRuns: undefined, idle: undefined, churn: undefined }));
    expect(stormOnly.map((c) => c.name)).toEqual(['peak RSS']);
  });

  it('counts lease keep-alives as allowed idle traffic', () => {
    const c = checkTargets(size({ idle: idle({ etcdRequests: 1, etcdRequestsPerMin: 1, etcdByMethod: { 'etcdserverpb.Lease/LeaseKeepAlive': 1 } }) }));
    expect(c.find((x) => x.name === 'idle etcd traffic')).toMatchObject({ met: true, figure: '1.0 requests/min, all of them lease keep-alives' });
  });
});

describe('bench report', () => {
  it('pads Markdown tables to the widest cell', () => {
    expect(markdownTable(['a', 'long header'], [['wide cell', 'x']])).toBe(
      ['| a         | long header |', '|-----------|-------------|', '| wide cell | x           |'].join('\n'),
    );
  });

  it('shows each size with its ratios to the kernel limit', () => {
    const table = resultsTable([size()]);
    expect(table).toContain('| 5000  | 610 ms');
    expect(table).toContain('2500 ms (4.1×)');
    expect(table).toContain('1700 ms (2.8×)');
    expect(table).toContain('20.0 ms / 45.5 ms');
    expect(table).toContain('0.067 %');
    expect(table).toContain('115.0 MB');
  });

  it('says MET or MISSED in front of every target', () => {
    const lines = targetLines(checkTargets(size({ storm: { ms: 5000, etcdWriteMs: 1, etcdTxns: 40 } }))).split('\n');
    expect(lines).toHaveLength(7);
    expect(lines[2]).toMatch(/^MISSED   5000 peers  join storm +5000 ms vs 3 × 610 ms = 1830 ms$/);
    expect(lines[0]).toMatch(/^MET {6}5000 peers  cold start/);
  });

  it('renders the machine, the tables, the targets and any failure', () => {
    const report: BenchReport = {
      startedAt: '2026-01-01T00:00:00.000Z',
      durationS: 300,
      machine: { cpus: 2, cpuModel: 'AMD EPYC', kernel: '6.18.0', node: 'v20.0.0', etcd: '3.4.23', iproute2: 'iproute2-6.1.0', loadAvgAtStart: '0.1 0.2 0.3' },
      options: { daemonArgs: ['--kernel-resync', '300'] },
      sizes: [size()],
      targets: checkTargets(size()),
      failures: ['100 peers: join storm of 100: kernel state is wrong: 99 routes on flannel.1, want 100'],
    };
    const text = renderReport(report);
    expect(text).toContain('machine: 2 × AMD EPYC, Linux 6.18.0');
    expect(text).toContain('daemon flags added to the defaults: --kernel-resync 300');
    expect(text).toContain('| peers | kernel limit (ip -batch)');
    expect(text).toContain('cold: first log / lease / ready');
    expect(text).toContain('| 41.0 ms / 45.5 ms / 43.0 ms');
    expect(text).toContain('35.0 ms CPU, 40.0 ms wall');
    expect(text).toContain('100.0 MB / 118.0 MB / 104.0 MB (heap 30.0 MB → 31.0 MB)');
    expect(text).toContain('| CPU start | CPU storm | CPU joins | CPU idle |');
    expect(text).toContain('FAILED:\n  100 peers: join storm of 100');
  });
});
