/**
 * Leases whose entries the kernel refused for a reason a retry cannot fix
 * (EINVAL, ENOTSUP…). Such a lease is skipped whole, so no route is left
 * pointing at a neighbour or FDB entry that does not exist, and it is not
 * retried on every pass. A refusal holds for one lease value: when the lease's
 * PublicIP, VtepMAC or VNI changes, or it goes away, it is tried again.
 */
import { Lease } from '../lease/lease';
import { AddressFamily, IPV4, formatIp } from '../net/family';
import { halfSubnetText, leaseHalf } from './desired';

/** One family's refusals: keyed by that family's subnet, for that half's value (IPv4 and IPv6 entries are refused apart). */
export class RefusedLeases {
  private readonly refused = new Map<string, { value: string; reason: string }>();

  constructor(private readonly family: AddressFamily = IPV4) {}

  /** Records a refusal; false when this lease value was already refused. */
  add(lease: Lease, reason: string): boolean {
    const key = halfSubnetText(lease, this.family);
    if (this.refused.get(key)?.value === this.valueOf(lease)) return false;
    this.refused.set(key, { value: this.valueOf(lease), reason });
    return true;
  }

  /** Why this lease is skipped, or undefined when the kernel has not refused this value. */
  reason(lease: Lease): string | undefined {
    // Asked for every lease on every desired-state computation: nothing to format when nothing was refused.
    if (this.refused.size === 0) return undefined;
    const r = this.refused.get(halfSubnetText(lease, this.family));
    return r && r.value === this.valueOf(lease) ? r.reason : undefined;
  }

  /** Drops refusals of leases that are gone or whose value changed. */
  forget(current: readonly Lease[]): void {
    if (this.refused.size === 0) return;
    const now = new Map(current.map((l) => [halfSubnetText(l, this.family), this.valueOf(l)]));
    for (const [key, r] of this.refused) if (now.get(key) !== r.value) this.refused.delete(key);
  }

  get size(): number {
    return this.refused.size;
  }

  private valueOf(lease: Lease): string {
    const half = leaseHalf(lease, this.family);
    return half ? `${half.publicIP === undefined ? '' : formatIp(half.publicIP)} ${half.vtepMAC ?? ''} ${half.vni}` : '';
  }
}
