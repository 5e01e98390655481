/**
 * Summary statistics for the benchmark's samples. Percentiles use the
 * nearest-rank method, so a reported p99 is always a latency that was really
 * measured (with 50 samples, p99 is the largest one).
 */

/** The value at percentile `p` (0 < p <= 100) by nearest rank; NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** The middle value (mean of the two middle ones for an even count); NaN for no samples. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export interface Summary {
  readonly count: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Median, p99 and maximum of latency samples in ms, rounded to 0.1 ms. */
export function summarize(samplesMs: readonly number[]): Summary {
  return {
    count: samplesMs.length,
    medianMs: round1(median(samplesMs)),
    p99Ms: round1(percentile(samplesMs, 99)),
    maxMs: round1(samplesMs.length === 0 ? Number.NaN : Math.max(...samplesMs)),
  };
}

export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
