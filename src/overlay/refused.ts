/**
 * Leases whose entries the kernel refused for a reason a retry cannot fix
 * (EINVAL, ENOTSUP…). Such a lease is skipped whole, so no route is left
 * pointing at a neighbour or FDB entry that does not exist, and it is not
 * retried on every pass. A refusal holds for one lease value: when the lease's
 * PublicIP, VtepMAC or VNI changes, or it goes away, it is tried again.
 */
import { Lease } from '../lease/lease';
import { formatCidr, formatIPv4 } from '../net/ipv4';

function valueOf(lease: Lease): string {
  return `${formatIPv4(lease.publicIP)} ${lease.vtepMAC ?? ''} ${lease.vni}`;
}

export class RefusedLeases {
  private readonly refused = new Map<string, { value: string; reason: string }>();

  /** Records a refusal; false when this lease value was already refused. */
  add(lease: Lease, reason: string): boolean {
    const key = formatCidr(lease.subnet);
    if (this.refused.get(key)?.value === valueOf(lease)) return false;
    this.refused.set(key, { value: valueOf(lease), reason });
    return true;
  }

  /** Why this lease is skipped, or undefined when the kernel has not refused this value. */
  reason(lease: Lease): string | undefined {
    // Asked for every lease on every desired-state computation: nothing to format when nothing was refused.
    if (this.refused.size === 0) return undefined;
    const r = this.refused.get(formatCidr(lease.subnet));
    return r && r.value === valueOf(lease) ? r.reason : undefined;
  }

  /** Drops refusals of leases that are gone or whose value changed. */
  forget(current: readonly Lease[]): void {
    if (this.refused.size === 0) return;
    const now = new Map(current.map((l) => [formatCidr(l.subnet), valueOf(l)]));
    for (const [key, r] of this.refused) if (now.get(key) !== r.value) this.refused.delete(key);
  }

  get size(): number {
    return this.refused.size;
  }
}
