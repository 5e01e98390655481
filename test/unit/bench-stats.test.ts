import { describe, expect, it } from 'vitest';
import { median, percentile, round1, summarize } from '../../src/bench/stats';

describe('bench statistics', () => {
  it('takes percentiles by nearest rank, so p99 of 50 samples is the largest', () => {
    const samples = Array.from({ length: 50 }, (_, i) => 50 - i);
    expect(percentile(samples, 99)).toBe(50);
    expect(percentile(samples, 50)).toBe(25);
    expect(percentile(samples, 100)).toBe(50);
    expect(percentile([7], 1)).toBe(7);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 1)).toBe(1);
  });

  it('rejects percentiles outside (0, 100] and gives NaN without samples', () => {
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(percentile([], 50)).toBeNaN();
    expect(median([])).toBeNaN();
  });

  it('takes the median of odd and even counts without reordering the input', () => {
    const input = [5, 1, 3];
    expect(median(input)).toBe(3);
    expect(input).toEqual([5, 1, 3]);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it('summarizes latencies rounded to 0.1 ms', () => {
    expect(summarize([10.04, 12.26, 30.91, 11])).toEqual({ count: 4, medianMs: 11.6, p99Ms: 30.9, maxMs: 30.9 });
    expect(round1(0.05)).toBe(0.1);
    const empty = summarize([]);
    expect(empty.count).toBe(0);
    expect(empty.p99Ms).toBeNaN();
  });
});
