/** The bench's readers of what the daemon reports about itself: CPU profiles, /metrics, /proc. */
import { describe, expect, it } from 'vitest';
import { gaugeValue } from '../../src/bench/churn';
import { CpuProfile, placeOf, renderProfileSummary, summarizeProfile } from '../../src/bench/cpu-profile';
import { parseHistogram } from '../../src/bench/pass-cost';
import { parseVmRSS } from '../../src/bench/proc';

const frame = (id: number, functionName: string, url = '', lineNumber = -1): CpuProfile['nodes'][number] => ({ id, callFrame: { functionName, url, lineNumber } });

// Samples every 1000 µs from t = 1000: (idle), spawn ×3, GC, our reconcile, pino, (idle).
const PROFILE: CpuProfile = {
  nodes: [
    frame(1, '(root)'),
    frame(2, '(idle)'),
    frame(3, 'ChildProcess.spawn', 'node:internal/child_process', 353),
    frame(4, '(garbage collector)'),
    frame(5, 'reconcileOnce', 'file:///opt/flanneld-ts/dist/overlay/reconciler.js', 120),
    frame(6, 'write', 'file:///opt/flanneld-ts/node_modules/pino/lib/proto.js', 9),
  ],
  startTime: 0,
  endTime: 9000,
  samples: [2, 3, 3, 3, 4, 5, 6, 2],
  timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
};

describe('cpu profile summary', () => {
  it('says where the busy time went, idle excluded', () => {
    const s = summarizeProfile(PROFILE);
    expect(s.busyMs).toBe(6);
    expect(s.windowMs).toBe(9);
    expect(s.byPlace).toEqual([
      { place: 'node:internal/child_process', ms: 3 },
      { place: '(garbage collector)', ms: 1 },
      { place: 'dist/overlay/reconciler.js', ms: 1 },
      { place: 'package pino', ms: 1 },
    ]);
    expect(s.topFunctions[0]).toEqual({ fn: 'ChildProcess.spawn', place: 'node:internal/child_process:354', ms: 3 });
    expect(renderProfileSummary(s)).toContain('6 ms of CPU sampled in 0 s');
  });

  it('counts only the samples inside the window', () => {
    // Samples at 2000..4000 µs: the three spawns.
    expect(summarizeProfile(PROFILE, 2000, 4000)).toMatchObject({ busyMs: 3, windowMs: 2, byPlace: [{ place: 'node:internal/child_process', ms: 3 }] });
  });

  it('names packages, our files, Node and V8 buckets', () => {
    expect(placeOf('file:///x/node_modules/@grpc/grpc-js/build/src/call.js', 'f')).toBe('package @grpc/grpc-js');
    expect(placeOf('/opt/flanneld-ts/dist/daemon.js', 'f')).toBe('dist/daemon.js');
    expect(placeOf('node:net', 'f')).toBe('node:net');
    expect(placeOf('', '(program)')).toBe('(program)');
    expect(placeOf('', 'cpuUsage')).toBe('(native)');
  });
});

describe('daemon /metrics and /proc readers', () => {
  const text = [
    '# HELP flanneld_reconcile_duration_seconds Duration of one reconcile pass',
    'flanneld_reconcile_duration_seconds_bucket{le="0.001"} 3',
    'flanneld_reconcile_duration_seconds_sum 0.75',
    'flanneld_reconcile_duration_seconds_count 12',
    'nodejs_heap_size_used_bytes 31457280',
  ].join('\n');

  it('reads a histogram count and sum, and a gauge', () => {
    expect(parseHistogram(text, 'flanneld_reconcile_duration_seconds')).toEqual({ count: 12, sum: 0.75 });
    expect(gaugeValue(text, 'nodejs_heap_size_used_bytes')).toBe(31457280);
    expect(() => parseHistogram(text, 'nope')).toThrow("no nope_count in the daemon's /metrics");
  });

  it('reads VmRSS', () => {
    expect(parseVmRSS('Name:\tnode\nVmHWM:\t  120000 kB\nVmRSS:\t   80000 kB\n')).toBe(80000);
    expect(() => parseVmRSS('Name:\tnode\n')).toThrow('no VmRSS line');
  });
});
