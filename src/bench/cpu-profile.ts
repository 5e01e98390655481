/**
 * What an idle daemon spends its CPU on, from a V8 CPU profile (`node
 * --cpu-prof`, written when the process exits). Only the samples inside a
 * window count (the profile also holds the start-up); V8's timestamps are
 * CLOCK_MONOTONIC microseconds, as are the bench's. Each sample's time goes to
 * the function on top of the stack (self time), grouped by where it lives:
 * our code (dist/<file>), a package (node_modules/<name>), Node itself, or V8's
 * own buckets ((garbage collector), (program), (idle) — idle is not CPU).
 */

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** µs */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  /** µs since the previous sample (the first: since startTime). */
  readonly timeDeltas: readonly number[];
}

export interface ProfileSummary {
  /** Length of the window summarised, ms. */
  readonly windowMs: number;
  /** Sampled time that was not "(idle)": what the daemon's thread ran, ms. */
  readonly busyMs: number;
  /** busy time by where it was spent, largest first. */
  readonly byPlace: ReadonlyArray<{ readonly place: string; readonly ms: number }>;
  /** The functions with the most self time, largest first. */
  readonly topFunctions: ReadonlyArray<{ readonly fn: string; readonly place: string; readonly ms: number }>;
}

const TOP = 12;

/** Where a frame's code lives, in words a reader can act on. */
export function placeOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  const ours = /\/dist\/(.+\.js)$/.exec(url);
  if (ours) return `dist/${ours[1]}`;
  if (url.startsWith('node:')) return url;
  return url;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Self time per place and per function for samples in [fromUs, toUs] (µs, the profile's clock). */
export function summarizeProfile(profile: CpuProfile, fromUs = profile.startTime, toUs = profile.endTime): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const place = new Map<string, number>();
  const fns = new Map<string, { fn: string; place: string; us: number }>();
  let t = profile.startTime;
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t < fromUs || t > toUs) return;
    // A sample stands for the interval up to the next one; the delta before it is the best estimate.
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') return;
    busy += dt;
    const where = placeOf(url, functionName);
    place.set(where, (place.get(where) ?? 0) + dt);
    const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    const f = fns.get(key) ?? { fn: functionName || '(anonymous)', place: `${where}:${lineNumber + 1}`, us: 0 };
    f.us += dt;
    fns.set(key, f);
  });
  return {
    windowMs: round1((toUs - fromUs) / 1000),
    busyMs: round1(busy / 1000),
    byPlace: [...place].sort((a, b) => b[1] - a[1]).map(([p, us]) => ({ place: p, ms: round1(us / 1000) })),
    topFunctions: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, TOP).map((f) => ({ fn: f.fn, place: f.place, ms: round1(f.us / 1000) })),
  };
}

/** The summary as lines for a terminal or the README. */
export function renderProfileSummary(s: ProfileSummary): string {
  const lines = [`${s.busyMs} ms of CPU sampled in ${(s.windowMs / 1000).toFixed(0)} s (${((s.busyMs / s.windowMs) * 100).toFixed(3)} % of a core, profiler included)`];
  lines.push('by place:', ...s.byPlace.map((p) => `  ${String(p.ms).padStart(8)} ms  ${p.place}`));
  lines.push('top functions (self time):', ...s.topFunctions.map((f) => `  ${String(f.ms).padStart(8)} ms  ${f.fn}  ${f.place}`));
  return lines.join('\n');
}
