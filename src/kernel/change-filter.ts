/**
 * Which kernel notifications are news: the watch keeps listening while we make
 * changes ourselves, so each notification is matched against what we are
 * changing. A notification that says what one of our operations does (that
 * route added with that gateway, that neighbour or FDB remote with that MAC,
 * that entry deleted), during the operation or within GRACE_MS after it, is our
 * own; anything else on a managed device, and every link or IPv4 address change
 * not made by us, is someone else's and is reported at once. Route and
 * neighbour changes on other devices (a route storm on eth0, ARP churn, a CNI
 * bridge learning pod MACs) are ignored once any device is managed, except
 * those of our direct routes (proto RTPROT_FLANNELD_TS, on whatever device the
 * kernel picked), which are matched like a managed device's under the name `direct`.
 *
 * An outside change that says exactly what ours says in that same moment counts
 * as ours; it is also no change, and the listing that follows our changes (the
 * reconciler's verification) sees the result either way. Pure apart from the
 * clock passed in.
 */
import { formatAnyCidr, formatIp } from '../net/family';
import { Operation, RTPROT_FLANNELD_TS } from './kernel';

/** The pseudo-device name our direct routes' notifications are matched under. */
const DIRECT = 'direct';
const DIRECT_PROTO = String(RTPROT_FLANNELD_TS);
import { MonitorChange, neighborLineKey, routeLineKey } from './monitor-lines';

/** How long after our change its notifications may still arrive (they queue behind a busy event loop). */
export const GRACE_MS = 2_000;

export type ChangeVerdict = 'own' | 'external' | 'ignore';

/** The lines `ip monitor` prints for an operation of ours (see monitor-lines). */
export function operationLineKeys({ op, entry }: Operation): string[] {
  if (entry.kind === 'route') {
    const dst = formatAnyCidr(entry.dst);
    const gateway = entry.gateway === 0 || entry.gateway === 0n ? undefined : formatIp(entry.gateway);
    return [op === 'delete' ? routeLineKey(true, dst) : routeLineKey(false, dst, gateway)];
  }
  const ip = formatIp(entry.kind === 'neighbor' ? entry.ip : entry.dst);
  if (op === 'replace') return [neighborLineKey(false, ip, entry.mac)];
  return entry.kind === 'neighbor' ? [neighborLineKey(true, ip), neighborLineKey(false, ip)] : [neighborLineKey(true, ip)];
}

export class ChangeFilter {
  /** Managed devices: index → name. */
  private readonly devices = new Map<number, string>();
  private names = new Set<string>();
  /** `<dev> <key>` (or `<dev> link`) → until when its notifications are ours (Infinity while in flight). */
  private readonly expected = new Map<string, number>();

  manage(index: number, name: string): void {
    this.devices.set(index, name);
    this.names = new Set(this.devices.values());
  }

  forget(index: number): void {
    this.devices.delete(index);
    this.names = new Set(this.devices.values());
  }

  nameOf(index: number): string | undefined {
    return this.devices.get(index);
  }

  /** We are about to make these operations on `dev` (`undefined`: change its link or addresses). Returns the keys for `done`. */
  expect(dev: string, operations: readonly Operation[] | undefined, now: number): string[] {
    for (const [key, until] of this.expected) if (until < now) this.expected.delete(key);
    const keys = operations === undefined ? [`${dev} link`] : operations.flatMap((o) => operationLineKeys(o).map((k) => `${o.entry.kind === 'route' && o.entry.direct ? DIRECT : dev} ${k}`));
    for (const key of keys) this.expected.set(key, Infinity);
    return keys;
  }

  /** Our change is complete: its notifications count as ours for GRACE_MS more. */
  done(keys: readonly string[], now: number): void {
    for (const key of keys) if (this.expected.get(key) === Infinity) this.expected.set(key, now + GRACE_MS);
  }

  classify(change: MonitorChange, now: number): ChangeVerdict {
    if (change.kind === 'device') return this.ours(`${change.dev} link`, now) ? 'own' : 'external';
    if (change.proto === DIRECT_PROTO) return this.ours(`${DIRECT} ${change.key}`, now) ? 'own' : 'external';
    if (this.names.size > 0 && !this.names.has(change.dev)) return 'ignore';
    return this.ours(`${change.dev} ${change.key}`, now) ? 'own' : 'external';
  }

  private ours(key: string, now: number): boolean {
    const until = this.expected.get(key);
    return until !== undefined && until >= now;
  }
}
