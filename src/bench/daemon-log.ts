/**
 * Milestones of a daemon start-up, read from its pino JSON log (wall-clock
 * ISO times, millisecond resolution): when the process logged at all (Node and
 * module loading done), when it held its lease, and when it said "ready"
 * (every peer programmed). They split a cold start into its parts.
 */

export interface Milestones {
  /** Epoch ms of the first log line. */
  readonly firstMs?: number;
  /** Epoch ms of "acquired lease" / "reusing lease" / "using reservation". */
  readonly leaseMs?: number;
  /** Epoch ms of the "ready: …" line. */
  readonly readyMs?: number;
}

const LEASE_MSG = /^(acquired lease|reusing lease|using reservation) /;

export function parseMilestones(log: string): Milestones {
  let firstMs: number | undefined;
  let leaseMs: number | undefined;
  let readyMs: number | undefined;
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { time?: unknown; msg?: unknown };
    try {
      rec = JSON.parse(line) as { time?: unknown; msg?: unknown };
    } catch {
      continue;
    }
    const t = typeof rec.time === 'string' ? Date.parse(rec.time) : typeof rec.time === 'number' ? rec.time : Number.NaN;
    if (!Number.isFinite(t)) continue;
    const msg = typeof rec.msg === 'string' ? rec.msg : '';
    firstMs ??= t;
    if (leaseMs === undefined && LEASE_MSG.test(msg)) leaseMs = t;
    if (readyMs === undefined && msg.startsWith('ready: ')) readyMs = t;
  }
  return { ...(firstMs !== undefined && { firstMs }), ...(leaseMs !== undefined && { leaseMs }), ...(readyMs !== undefined && { readyMs }) };
}
