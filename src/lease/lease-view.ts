/**
 * The daemon's view of `<prefix>/subnets/`: filled by a list, kept by watch
 * events. Invalid records are logged once per key and reason, then skipped.
 */
import { formatCidr } from '../net/ipv4';
import { Logger } from '../util/log';
import { Lease, LeaseRecord, LeaseV6 } from './lease';
import { LeaseEvent } from './store';

export class LeaseView {
  private readonly records = new Map<string, LeaseRecord>();
  private readonly reported = new Map<string, string>();

  constructor(private readonly log: Logger) {}

  /** Replaces everything with a fresh list (after a resync). Returns how many keys changed. */
  reset(records: readonly LeaseRecord[]): number {
    const before = new Map(this.records);
    this.records.clear();
    for (const r of records) this.put(r);
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
        if (this.records.delete(ev.key)) changed++;
        this.reported.delete(ev.key);
      }
    }
    return changed;
  }

  get(key: string): LeaseRecord | undefined {
    return this.records.get(key);
  }

  all(): LeaseRecord[] {
    return [...this.records.values()];
  }

  leases(): Lease[] {
    const out: Lease[] = [];
    for (const r of this.records.values()) if (r.kind === 'lease') out.push(r.lease);
    return out;
  }

  private put(record: LeaseRecord): void {
    this.records.set(record.key, record);
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
