/**
 * The daemon's view of `<prefix>/subnets/`: filled by a list, kept by watch
 * events. Invalid records are logged once per key and reason, then skipped.
 *
 * It also logs which leases changed (`changesSince`), so each family's desired
 * state re-decides those alone (overlay/desired-book.ts, issue 10). The log is
 * bounded: a reader more than CHANGE_LOG_LIMIT changes behind, or behind a
 * reset, reads every lease again.
 */
import { formatCidr } from '../net/ipv4';
import { Logger } from '../util/log';
import { Lease, LeaseRecord, LeaseV6 } from './lease';
import { LeaseEvent } from './store';

/** Changes kept for readers that are behind; each holds two lease objects at most. */
export const CHANGE_LOG_LIMIT = 2048;

/** A lease left (`before`), arrived (`after`), or was replaced: a new object, whether or not its value changed. */
export interface LeaseChange {
  readonly before: Lease | undefined;
  readonly after: Lease | undefined;
}

export type RecordCounts = Record<LeaseRecord['kind'], number>;

export class LeaseView {
  private readonly records = new Map<string, LeaseRecord>();
  private readonly reported = new Map<string, string>();
  private readonly counts: RecordCounts = { lease: 0, invalid: 0, ignored: 0 };
  private changeLog: LeaseChange[] = [];
  /** The version before changeLog[0]. */
  private logStart = 0;
  private current = 0;
  private resetting = false;

  constructor(private readonly log: Logger) {}

  /** Replaces everything with a fresh list (after a resync). Returns how many keys changed. */
  reset(records: readonly LeaseRecord[]): number {
    const before = new Map(this.records);
    this.records.clear();
    this.counts.lease = this.counts.invalid = this.counts.ignored = 0;
    this.resetting = true;
    for (const r of records) this.put(r);
    this.resetting = false;
    // Readers start over from leases().
    this.current++;
    this.changeLog = [];
    this.logStart = this.current;
    let changed = 0;
    for (const [key, r] of this.records) if (!sameRecord(before.get(key), r)) changed++;
    for (const key of before.keys()) if (!this.records.has(key)) changed++;
    for (const key of this.reported.keys()) if (!this.records.has(key)) this.reported.delete(key);
    return changed;
  }

  /**
   * Applies watch events. Returns how many keys changed what they mean: a PUT of
   * an identical value (a peer's re-put, contract §13) changes nothing, so the
   * caller leaves the kernel alone.
   */
  apply(events: readonly LeaseEvent[]): number {
    let changed = 0;
    for (const ev of events) {
      if (ev.type === 'put') {
        if (!sameRecord(this.records.get(ev.record.key), ev.record)) changed++;
        this.put(ev.record);
      } else {
        const was = this.records.get(ev.key);
        if (was) {
          changed++;
          this.records.delete(ev.key);
          this.counts[was.kind]--;
          this.logChange(was, undefined);
        }
        this.reported.delete(ev.key);
      }
    }
    return changed;
  }

  /** Grows with every change to the leases. */
  get version(): number {
    return this.current;
  }

  /** The changes after `version`, oldest first; undefined when they are no longer all kept (read leases() instead). */
  changesSince(version: number): readonly LeaseChange[] | undefined {
    if (version < this.logStart || version > this.current) return undefined;
    return version === this.current ? [] : this.changeLog.slice(version - this.logStart);
  }

  /** How many records of each kind (kept as records come and go: no pass over 5,000 keys per event). */
  recordCounts(): Readonly<RecordCounts> {
    return this.counts;
  }

  get(key: string): LeaseRecord | undefined {
    return this.records.get(key);
  }

  leases(): Lease[] {
    const out: Lease[] = [];
    for (const r of this.records.values()) if (r.kind === 'lease') out.push(r.lease);
    return out;
  }

  private put(record: LeaseRecord): void {
    const was = this.records.get(record.key);
    this.records.set(record.key, record);
    if (was) this.counts[was.kind]--;
    this.counts[record.kind]++;
    this.logChange(was, record);
    const reason = record.kind === 'invalid' ? record.invalid.reason : record.kind === 'ignored' ? record.reason : undefined;
    if (reason === undefined) {
      this.reported.delete(record.key);
      return;
    }
    if (this.reported.get(record.key) === reason) return;
    this.reported.set(record.key, reason);
    if (record.kind === 'invalid') this.log.warn({ key: record.key, reason }, `skipping invalid lease ${record.key}: ${reason}`);
    else this.log.info({ key: record.key, reason }, `ignoring lease ${record.key}: ${reason}`);
  }

  private logChange(was: LeaseRecord | undefined, now: LeaseRecord | undefined): void {
    const before = was?.kind === 'lease' ? was.lease : undefined;
    const after = now?.kind === 'lease' ? now.lease : undefined;
    if (before === after || this.resetting) return;
    this.current++;
    this.changeLog.push({ before, after });
    if (this.changeLog.length > 2 * CHANGE_LOG_LIMIT) {
      this.changeLog = this.changeLog.slice(CHANGE_LOG_LIMIT);
      this.logStart += CHANGE_LOG_LIMIT;
    }
  }
}

function sameRecord(a: LeaseRecord | undefined, b: LeaseRecord): boolean {
  if (!a || a.kind !== b.kind) return false;
  if (a.kind === 'lease' && b.kind === 'lease') {
    return formatCidr(a.lease.subnet) === formatCidr(b.lease.subnet) && a.lease.publicIP === b.lease.publicIP && a.lease.vtepMAC === b.lease.vtepMAC && a.lease.backendType === b.lease.backendType && a.lease.vni === b.lease.vni && sameV6(a.lease.v6, b.lease.v6);
  }
  return true;
}

/** The key (same map slot) fixes the IPv6 subnet; the value's IPv6 half must match too. */
function sameV6(a: LeaseV6 | undefined, b: LeaseV6 | undefined): boolean {
  if (!a || !b) return a === b;
  return a.publicIP === b.publicIP && a.vtepMAC === b.vtepMAC && a.vni === b.vni;
}
