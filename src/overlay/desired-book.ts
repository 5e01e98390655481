/**
 * The desired state of one family's peers, kept in place (issue 10). Rebuilding
 * it from every lease on every lease event cost 3–5 ms and a 5,000-entry map at
 * 5,000 peers, whose promotion to the old generation made the garbage collector
 * the largest part of a join's tail latency and of the churn's peak memory. The
 * book instead takes the leases that changed, re-decides those and the leases
 * they contend with, and logs which peers changed since the reconciler's last
 * checkpoint, so a pass plans only those (plan.ts `planChangedPeers`).
 *
 * The rules are those of `desiredState` (which is this book, built once):
 * - a lease half is a peer unless `peerSkipReason` or `extraSkip` says why not;
 * - two leases that claim one VtepMAC, or (IPv6 halves of two keys) one subnet,
 *   would fight over one kernel entry: the lease etcd created first keeps it,
 *   the newcomer is skipped with a reason (an established peer keeps its traffic
 *   when a new key copies its MAC). The claims are settled oldest first within
 *   each group of leases that share a MAC or subnet, so the result does not
 *   depend on the order the leases arrived in;
 * - `modeOf` says which peers are direct (DirectRouting).
 * `test/unit/desired-book.test.ts` holds the book to a fresh build after random
 * sequences of changes.
 */
import { NetworkConfig } from '../config';
import { AddressFamily, IPV4, IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { Lease } from '../lease/lease';
import { LeaseChange } from '../lease/lease-view';
import { DesiredState, LeaseHalf, LeaseMemo, LeaseVerdict, PeerEntries, PeerMode, SelfInfo, compareCidr, leaseHalf, olderFirst, peerEntries, peerSkipReason } from './desired';

/** What every lease's verdict depends on besides the lease: a change of any of these rebuilds the book. */
export interface BookInputs {
  readonly self: SelfInfo;
  readonly config: NetworkConfig;
  readonly family?: AddressFamily | undefined;
  /** Reasons that need more than the leases (the host's routes, entries the kernel refused); asked once per lease value per build. */
  readonly extraSkip?: ((lease: Lease) => string | undefined) | undefined;
  /** DirectRouting: which peer halves are direct, undefined while not decided yet (vxlan meanwhile); without it every peer is vxlan. */
  readonly modeOf?: ((half: LeaseHalf) => PeerMode | undefined) | undefined;
  /** Per-lease checks kept across builds; only for one self, config and family. */
  readonly memo?: LeaseMemo | undefined;
}

/** A desired state kept in place that logs which peers it changed since a checkpoint (the reconciler plans only those). */
export interface LoggedDesiredState extends DesiredState {
  /** Starts a new log and returns its mark. */
  checkpoint(): number;
  /** Subnet → its entries at `mark` (undefined: it had none), for each peer changed since; undefined when `mark` is not the current log's. */
  changedSince(mark: number): ReadonlyMap<string, PeerEntries | undefined> | undefined;
}

export function isLogged(state: DesiredState): state is LoggedDesiredState {
  return typeof (state as Partial<LoggedDesiredState>).changedSince === 'function';
}

interface Slot {
  readonly lease: Lease;
  readonly half: LeaseHalf;
  readonly verdict: LeaseVerdict;
  /** Why this half is not a peer, before any contention. */
  readonly reason: string | undefined;
  /** No reason: it claims its MAC and subnet, which only one peer can hold. */
  readonly eligible: boolean;
  /** Why it lost a contention, when it did. */
  lost?: string | undefined;
  /** Its entries' mode came from a DirectRouting decision (not the undecided placeholder). */
  decided?: boolean;
}

export class DesiredBook implements LoggedDesiredState {
  readonly peers = new Map<string, PeerEntries>();
  private inputs: BookInputs;
  private readonly slots = new Map<Lease, Slot>();
  /** VtepMAC → the eligible slots claiming it (one slot, or several when contested: no Set per lease at 5,000 leases). */
  private readonly byMac = new Map<string, OneOrMore<Slot>>();
  /** Subnet → the slots whose half has it, eligible or not (almost always one). */
  private readonly bySubnet = new Map<string, OneOrMore<Slot>>();
  private skippedCache: Array<{ subnet: string; reason: string }> | undefined;
  private mark = 0;
  private readonly log = new Map<string, PeerEntries | undefined>();
  /** DirectRouting: each peer's last decided mode, and the moves between decided modes not taken yet. */
  private readonly decidedModes = new Map<string, PeerMode>();
  private readonly moves: Array<{ subnet: string; mode: PeerMode; was: PeerMode }> = [];

  constructor(inputs: BookInputs) {
    this.inputs = inputs;
  }

  get family(): AddressFamily {
    return this.inputs.family ?? IPV4;
  }

  /** Leases that are valid but not programmed, with why, by subnet (own lease left out). */
  get skipped(): ReadonlyArray<{ readonly subnet: string; readonly reason: string }> {
    if (!this.skippedCache) {
      const out: Array<{ slot: Slot; reason: string }> = [];
      for (const slot of this.slots.values()) {
        const reason = slot.reason ?? slot.lost;
        if (reason !== undefined && reason !== 'own lease') out.push({ slot, reason });
      }
      out.sort((a, b) => compareCidr(a.slot.half.subnet, b.slot.half.subnet) || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
      this.skippedCache = out.map(({ slot, reason }) => ({ subnet: slot.verdict.subnet, reason }));
    }
    return this.skippedCache;
  }

  checkpoint(): number {
    this.log.clear();
    return ++this.mark;
  }

  changedSince(mark: number): ReadonlyMap<string, PeerEntries | undefined> | undefined {
    return mark === this.mark ? this.log : undefined;
  }

  /** Every lease again (new inputs, a re-listed view): peers that come out the same are not logged as changed. */
  rebuild(leases: Iterable<Lease>, inputs: BookInputs = this.inputs): void {
    this.inputs = inputs;
    const before = new Map(this.peers);
    this.slots.clear();
    this.byMac.clear();
    this.bySubnet.clear();
    this.skippedCache = undefined;
    const added: Slot[] = [];
    for (const lease of leases) {
      const slot = this.admit(lease);
      if (slot) added.push(slot);
    }
    // Peers enter the map in subnet order (a fresh book lists them sorted).
    added.sort((a, b) => compareCidr(a.half.subnet, b.half.subnet));
    const owners = this.settle(added);
    for (const slot of added) {
      const entries = owners.get(slot);
      if (entries) {
        before.delete(slot.verdict.subnet);
        this.setPeer(slot.verdict.subnet, entries, slot);
      }
    }
    for (const subnet of before.keys()) this.setPeer(subnet, undefined);
  }

  /** Leases changed (a watch event): re-decides them and those that share a MAC or subnet with them. */
  update(changes: Iterable<LeaseChange>): void {
    const touched: Slot[] = [];
    const subnets = new Set<string>();
    for (const { before, after } of changes) {
      if (before) {
        const slot = this.slots.get(before);
        if (slot) {
          this.drop(slot);
          subnets.add(slot.verdict.subnet);
          if (slot.eligible) this.eachRival(slot, (other) => touched.push(other));
        }
      }
      if (after && !this.slots.has(after)) {
        const slot = this.admit(after);
        if (slot) {
          touched.push(slot);
          subnets.add(slot.verdict.subnet);
        }
      }
    }
    if (touched.length === 0 && subnets.size === 0) return;
    const settled = this.settle(touched);
    for (const slot of settled.keys()) subnets.add(slot.verdict.subnet);
    for (const subnet of subnets) {
      let owner: { slot: Slot; entries: PeerEntries } | undefined;
      each(this.bySubnet.get(subnet), (slot) => {
        const entries = settled.has(slot) ? settled.get(slot) : this.ownsNow(slot) ? this.entriesOf(slot) : undefined;
        if (entries) owner ??= { slot, entries };
      });
      this.setPeer(subnet, owner?.entries, owner?.slot);
    }
  }

  /** DirectRouting decided again: peers whose mode changed get the other kind of entries. */
  recheckModes(): void {
    if (!this.inputs.modeOf) return;
    for (const [subnet, entries] of this.peers) {
      each(this.bySubnet.get(subnet), (slot) => {
        if (slot.verdict.entries === entries) this.setPeer(subnet, this.entriesOf(slot), slot);
      });
    }
  }

  /** DirectRouting: the peers whose decided mode changed since the last call (a first decision is no move). */
  takeMoves(): Array<{ readonly subnet: string; readonly mode: PeerMode; readonly was: PeerMode }> {
    return this.moves.splice(0);
  }

  // A lease's slot for this family, with its own verdict; undefined when the lease has no half of it.
  private admit(lease: Lease): Slot | undefined {
    const { self, config, memo, extraSkip } = this.inputs;
    const family = this.family;
    const half = leaseHalf(lease, family);
    if (!half) return undefined;
    let verdict = memo?.get(lease);
    if (!verdict) {
      verdict = { reason: peerSkipReason(self, lease, config, family), subnet: formatAnyCidr(half.subnet) };
      memo?.set(lease, verdict);
    }
    const reason = verdict.reason ?? extraSkip?.(lease);
    const slot: Slot = { lease, half, verdict, reason, eligible: reason === undefined };
    if (reason !== undefined) this.skippedCache = undefined;
    this.slots.set(lease, slot);
    if (slot.eligible) addOne(this.byMac, half.vtepMAC as string, slot);
    addOne(this.bySubnet, verdict.subnet, slot);
    return slot;
  }

  private drop(slot: Slot): void {
    if ((slot.reason ?? slot.lost) !== undefined) this.skippedCache = undefined;
    this.slots.delete(slot.lease);
    if (slot.eligible) removeOne(this.byMac, slot.half.vtepMAC as string, slot);
    removeOne(this.bySubnet, slot.verdict.subnet, slot);
  }

  /**
   * Settles the claims of these slots' groups (slots linked by a shared MAC or
   * subnet): oldest first, a slot is a peer when none of its claims is held by
   * an older peer. Returns every eligible slot of those groups: the peers with
   * their entries, the losers with undefined.
   */
  private settle(slots: readonly Slot[]): Map<Slot, PeerEntries | undefined> {
    const owners = new Map<Slot, PeerEntries | undefined>();
    let seen: Set<Slot> | undefined;
    for (const start of slots) {
      if (!start.eligible || owners.has(start) || this.slots.get(start.lease) !== start) continue;
      // Nearly every slot: no rival, no group to walk.
      if (!this.hasRival(start)) {
        this.setLost(start, undefined);
        owners.set(start, this.entriesOf(start));
        continue;
      }
      seen ??= new Set();
      if (seen.has(start)) continue;
      const group = this.groupOf(start, seen);
      group.sort((a, b) => olderFirst(a.lease, b.lease));
      const macs = new Map<string, Slot>();
      const subnets = new Map<string, Slot>();
      for (const slot of group) {
        const taken = macs.get(slot.half.vtepMAC as string) ?? subnets.get(slot.verdict.subnet);
        if (taken) {
          this.setLost(slot, this.lostReason(slot, taken));
          owners.set(slot, undefined);
          continue;
        }
        this.setLost(slot, undefined);
        macs.set(slot.half.vtepMAC as string, slot);
        subnets.set(slot.verdict.subnet, slot);
        owners.set(slot, this.entriesOf(slot));
      }
    }
    return owners;
  }

  // The other eligible slots claiming this slot's MAC or subnet.
  private eachRival(slot: Slot, fn: (other: Slot) => void): void {
    each(this.byMac.get(slot.half.vtepMAC as string), (other) => other !== slot && fn(other));
    each(this.bySubnet.get(slot.verdict.subnet), (other) => other !== slot && other.eligible && fn(other));
  }

  private hasRival(slot: Slot): boolean {
    if (this.byMac.get(slot.half.vtepMAC as string) !== slot) return true;
    const same = this.bySubnet.get(slot.verdict.subnet);
    return Array.isArray(same) && same.some((other) => other !== slot && other.eligible);
  }

  // The eligible slots linked to `start` through shared claims (`start` included).
  private groupOf(start: Slot, seen: Set<Slot>): Slot[] {
    seen.add(start);
    const group = [start];
    for (let i = 0; i < group.length; i++) {
      this.eachRival(group[i] as Slot, (other) => {
        if (seen.has(other)) return;
        seen.add(other);
        group.push(other);
      });
    }
    return group;
  }

  private setLost(slot: Slot, lost: string | undefined): void {
    if (slot.lost === lost) return;
    slot.lost = lost;
    this.skippedCache = undefined;
  }

  private lostReason(slot: Slot, holder: Slot): string {
    const mac = slot.half.vtepMAC as string;
    if (holder.half.vtepMAC === mac) return `VtepMAC ${mac} is already used by ${holder.verdict.subnet}, which etcd created earlier`;
    const who = holder.half.publicIP === undefined ? 'another lease' : `the lease of ${formatIp(holder.half.publicIP as IpAddr)}`;
    return `subnet ${slot.verdict.subnet} is already used by ${who}, which etcd created earlier`;
  }

  // True when the slot is eligible and not beaten by an older claimant (settled earlier).
  private ownsNow(slot: Slot): boolean {
    return slot.reason === undefined && slot.lost === undefined;
  }

  // The slot's entries in its current mode, the same object as long as nothing about it changed.
  private entriesOf(slot: Slot): PeerEntries {
    const decided = this.inputs.modeOf?.(slot.half);
    slot.decided = decided !== undefined;
    const mode = decided ?? 'vxlan';
    const v = slot.verdict;
    if (v.entries?.mode !== mode) v.entries = peerEntries({ ...slot.half, vtepMAC: slot.half.vtepMAC as string, publicIP: slot.half.publicIP as IpAddr }, mode);
    return v.entries;
  }

  // `slot`: the peer whose entries these are (its mode decided or not).
  private setPeer(subnet: string, entries: PeerEntries | undefined, slot?: Slot): void {
    if (!entries) this.decidedModes.delete(subnet);
    else if (slot?.decided) {
      const decided = this.decidedModes.get(subnet);
      if (decided !== undefined && decided !== entries.mode) this.moves.push({ subnet, mode: entries.mode, was: decided });
      this.decidedModes.set(subnet, entries.mode);
    }
    const was = this.peers.get(subnet);
    if (was === entries) return;
    if (!this.log.has(subnet)) this.log.set(subnet, was);
    if (entries) this.peers.set(subnet, entries);
    else this.peers.delete(subnet);
  }
}

/** One value, or an array of several (objects only: an array value is always the several). */
type OneOrMore<V extends object> = V | V[];

// Calls `fn` for each value, without an array for the single one (the usual case, in loops over 5,000 peers).
function each<V extends object>(v: OneOrMore<V> | undefined, fn: (value: V) => unknown): void {
  if (v === undefined) return;
  if (Array.isArray(v)) for (const x of v) fn(x);
  else fn(v);
}

function addOne<K, V extends object>(map: Map<K, OneOrMore<V>>, key: K, value: V): void {
  const v = map.get(key);
  if (v === undefined) map.set(key, value);
  else if (Array.isArray(v)) v.push(value);
  else map.set(key, [v, value]);
}

function removeOne<K, V extends object>(map: Map<K, OneOrMore<V>>, key: K, value: V): void {
  const v = map.get(key);
  if (v === value) map.delete(key);
  else if (Array.isArray(v)) {
    const rest = v.filter((x) => x !== value);
    map.set(key, rest.length === 1 ? (rest[0] as V) : rest);
  }
}

/**
 * One neighbour, FDB entry and route per remote vxlan lease of `family`; never
 * our own (see the rules above). Leases without that family's half are not
 * peers of it and are not reported. `memo` must only be shared between calls
 * with the same `self`, `config` and `family`.
 */
export function desiredState(
  self: SelfInfo,
  leases: Iterable<Lease>,
  config: NetworkConfig,
  extraSkip?: (lease: Lease) => string | undefined,
  family: AddressFamily = IPV4,
  modeOf?: (half: LeaseHalf) => PeerMode | undefined,
  memo?: LeaseMemo,
): DesiredState {
  const book = new DesiredBook({ self, config, family, extraSkip, modeOf, memo });
  book.rebuild(leases);
  return { peers: book.peers, skipped: book.skipped };
}
