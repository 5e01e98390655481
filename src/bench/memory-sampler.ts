/**
 * Where a phase's memory goes: polls the daemon's resident set split by kind
 * (/proc/<pid>/status: RssAnon is the V8 heap, malloc and buffers; RssFile the
 * node binary and libraries, a fixed ~35 MB) and its V8 heap gauges
 * (/metrics), and keeps the sample with the highest resident set. This is how
 * the README explains the peak-RSS figure instead of guessing at it.
 */
import { readFileSync } from 'node:fs';
import { gaugeValue } from './churn';
import { parseRssKinds } from './proc';
import { round1 } from './stats';

export interface MemoryPeak {
  readonly rssMB: number;
  readonly anonMB: number;
  readonly fileMB: number;
  /** V8's heap at the sample nearest the peak (heap metrics are polled less often). */
  readonly heapTotalMB: number | undefined;
  readonly heapUsedMB: number | undefined;
  /** Memory V8 tracks outside its heap (Buffers, the netlink addon's). */
  readonly externalMB: number | undefined;
}

/** Samples until `stop` is called; /proc every `procMs`, /metrics (when given) every `metricsMs`. */
export function sampleMemory(pid: number, metrics: (() => Promise<string>) | undefined, procMs = 20, metricsMs = 200): { stop: () => Promise<MemoryPeak> } {
  let best = { anonKb: 0, fileKb: 0 };
  let heap: { total: number; used: number; external: number } | undefined;
  let heapAtBest = heap;
  let metricsBusy = false;
  const readProc = (): void => {
    try {
      const now = parseRssKinds(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (now.anonKb + now.fileKb > best.anonKb + best.fileKb) {
        best = now;
        heapAtBest = heap;
      }
    } catch {
      // The daemon exited; the phase will say so.
    }
  };
  const readMetrics = (): void => {
    if (metricsBusy || !metrics) return;
    metricsBusy = true;
    metrics()
      .then((text) => {
        heap = {
          total: gaugeValue(text, 'nodejs_heap_size_total_bytes'),
          used: gaugeValue(text, 'nodejs_heap_size_used_bytes'),
          external: gaugeValue(text, 'nodejs_external_memory_bytes'),
        };
        heapAtBest ??= heap;
      })
      .catch(() => undefined)
      .finally(() => {
        metricsBusy = false;
      });
  };
  const procTimer = setInterval(readProc, procMs);
  const metricsTimer = setInterval(readMetrics, metricsMs);
  readProc();
  readMetrics();
  return {
    stop: async () => {
      clearInterval(procTimer);
      clearInterval(metricsTimer);
      readProc();
      const mb = (b: number | undefined): number | undefined => (b === undefined ? undefined : round1(b / 2 ** 20));
      return {
        rssMB: round1((best.anonKb + best.fileKb) / 1024),
        anonMB: round1(best.anonKb / 1024),
        fileMB: round1(best.fileKb / 1024),
        heapTotalMB: mb(heapAtBest?.total),
        heapUsedMB: mb(heapAtBest?.used),
        externalMB: mb(heapAtBest?.external),
      };
    },
  };
}
