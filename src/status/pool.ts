/**
 * The pool view: one row per key under `<prefix>/subnets/`, the counts, and the
 * problems that show across leases (contract §1–§3). Pure.
 */
import { NetworkConfig, subnetCapacity, subnetFitsConfig } from '../config';
import { recordSubnet } from '../lease/codec';
import { Lease, LeaseRecord } from '../lease/lease';
import { Cidr, cidrContainsCidr, cidrLast, formatCidr, formatIPv4 } from '../net/ipv4';
import { olderFirst, peerSkipReason } from '../overlay/desired';
import { LeaseRow, PoolReport, Problem } from './report';

export interface LeaseFacts {
  readonly records: readonly LeaseRecord[];
  readonly config: NetworkConfig | undefined;
  readonly expiries: ReadonlyMap<string, number> | undefined;
  readonly now: number;
  readonly renewMarginMs: number;
  /** This node's lease key, to mark its row. */
  readonly ownKey: string | undefined;
}

export interface PoolAnalysis {
  readonly rows: LeaseRow[];
  readonly pool: PoolReport | null;
  readonly problems: Problem[];
}

// A self no lease can match: peerSkipReason then judges a lease as every peer would.
const NOBODY = { subnet: { ip: -1, prefixLen: -1 }, publicIP: -1 };

function bySubnet(a: { subnet: Cidr | undefined; key: string }, b: { subnet: Cidr | undefined; key: string }): number {
  if (a.subnet && b.subnet) return a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen;
  if (a.subnet || b.subnet) return a.subnet ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function problem(severity: Problem['severity'], kind: Problem['kind'], leases: readonly Lease[], message: string): Problem {
  return { severity, kind, subnets: leases.map((l) => formatCidr(l.subnet)), publicIPs: [...new Set(leases.map((l) => formatIPv4(l.publicIP)))], message };
}

function row(record: LeaseRecord, facts: LeaseFacts): LeaseRow {
  const own = record.key === facts.ownKey;
  const subnet = recordSubnet(record);
  const base = (state: LeaseRow['state'], reason: string | null): LeaseRow => ({
    key: record.key,
    subnet: subnet ? formatCidr(subnet) : null,
    state,
    own,
    publicIP: null,
    vtepMAC: null,
    backendType: null,
    vni: null,
    etcdLease: null,
    reservation: false,
    expiresAt: null,
    expiresInSeconds: null,
    reason,
  });
  if (record.kind === 'invalid') return base('invalid', record.invalid.reason);
  if (record.kind === 'ignored') return base('ignored', record.reason);
  const { lease } = record;
  const expiresAt = lease.etcdLease === undefined ? undefined : facts.expiries?.get(lease.etcdLease);
  return {
    ...base('valid', null),
    publicIP: formatIPv4(lease.publicIP),
    vtepMAC: lease.vtepMAC ?? null,
    backendType: lease.backendType,
    vni: lease.vni,
    etcdLease: lease.etcdLease ?? null,
    reservation: lease.etcdLease === undefined,
    expiresAt: expiresAt === undefined ? null : new Date(expiresAt).toISOString(),
    expiresInSeconds: expiresAt === undefined ? null : Math.max(0, Math.floor((expiresAt - facts.now) / 1000)),
  };
}

/** Leases that fit badly into the config: outside Network, wrong length, outside SubnetMin..Max, or unprogrammable. */
function fitProblems(leases: readonly Lease[], config: NetworkConfig): Problem[] {
  const out: Problem[] = [];
  const net = formatCidr(config.network);
  for (const l of leases) {
    const s = formatCidr(l.subnet);
    if (!cidrContainsCidr(config.network, l.subnet)) out.push(problem('error', 'outside-network', [l], `lease ${s} is outside Network ${net}`));
    else if (l.subnet.prefixLen !== config.subnetLen) out.push(problem('error', 'wrong-length', [l], `lease ${s} has length /${l.subnet.prefixLen}; the config says /${config.subnetLen}`));
    else if (!subnetFitsConfig(config, l.subnet)) {
      out.push(problem('warning', 'outside-range', [l], `lease ${s} is outside SubnetMin..SubnetMax (${formatIPv4(config.subnetMin)}..${formatIPv4(config.subnetMax)})`));
    } else {
      const why = peerSkipReason(NOBODY, l, config);
      if (why !== undefined) out.push(problem('error', 'not-programmable', [l], `peers do not program lease ${s}: ${why}`));
    }
  }
  return out;
}

/** Two leases with one PublicIP or one VtepMAC, and leases whose subnets overlap. */
function clashProblems(leases: readonly Lease[]): Problem[] {
  const out: Problem[] = [];
  const group = (key: (l: Lease) => string | undefined): Lease[][] => {
    const groups = new Map<string, Lease[]>();
    for (const l of leases) {
      const k = key(l);
      if (k !== undefined) groups.set(k, [...(groups.get(k) ?? []), l]);
    }
    return [...groups.values()].filter((g) => g.length > 1);
  };
  const names = (g: readonly Lease[]): string => g.map((l) => formatCidr(l.subnet)).join(', ');
  for (const g of group((l) => formatIPv4(l.publicIP))) {
    out.push(problem('error', 'duplicate-public-ip', g, `PublicIP ${formatIPv4((g[0] as Lease).publicIP)} holds ${g.length} leases: ${names(g)}`));
  }
  for (const g of group((l) => (l.backendType === 'vxlan' ? l.vtepMAC : undefined))) {
    const keeper = formatCidr(([...g].sort(olderFirst)[0] as Lease).subnet);
    out.push(problem('error', 'duplicate-vtep-mac', g, `VtepMAC ${(g[0] as Lease).vtepMAC} is in ${g.length} leases: ${names(g)} (peers program only ${keeper}, which etcd created first)`));
  }
  // Sorted by start address, a lease overlaps an earlier one exactly when it starts before the furthest end so far.
  let widest: Lease | undefined;
  for (const l of leases) {
    if (widest && l.subnet.ip <= cidrLast(widest.subnet)) {
      out.push(problem('error', 'overlap', [widest, l], `leases ${formatCidr(widest.subnet)} and ${formatCidr(l.subnet)} overlap`));
    }
    if (!widest || cidrLast(l.subnet) > cidrLast(widest.subnet)) widest = l;
  }
  return out;
}

function expiryProblems(rows: readonly LeaseRow[], leases: ReadonlyMap<string, Lease>, marginMs: number): Problem[] {
  const out: Problem[] = [];
  for (const r of rows) {
    const lease = leases.get(r.key);
    if (!lease || r.expiresInSeconds === null || r.expiresInSeconds * 1000 >= marginMs) continue;
    const margin = `${Math.round(marginMs / 60_000)} min`;
    out.push(problem('warning', 'expiring', [lease], `lease ${r.subnet} expires in ${r.expiresInSeconds} s, within the ${margin} renew margin: its node has not renewed it`));
  }
  return out;
}

function poolCounts(records: readonly LeaseRecord[], config: NetworkConfig): PoolReport {
  const capacity = subnetCapacity(config);
  const used = new Set<string>();
  for (const r of records) {
    const s = recordSubnet(r);
    if (s && subnetFitsConfig(config, s)) used.add(formatCidr(s));
  }
  const count = (pred: (r: LeaseRecord) => boolean): number => records.filter(pred).length;
  return {
    capacity,
    leased: count((r) => r.kind === 'lease' && r.lease.etcdLease !== undefined),
    reserved: count((r) => r.kind === 'lease' && r.lease.etcdLease === undefined),
    invalid: count((r) => r.kind === 'invalid'),
    ignored: count((r) => r.kind === 'ignored'),
    used: used.size,
    free: capacity - used.size,
    usedPercent: Math.round((used.size / capacity) * 1000) / 10,
  };
}

/** Rows sorted by subnet (keys without one last), the counts, and every cross-lease problem. */
export function analyzePool(facts: LeaseFacts): PoolAnalysis {
  const records = facts.records.map((r) => ({ r, subnet: recordSubnet(r), key: r.key })).sort(bySubnet).map((x) => x.r);
  const rows = records.map((r) => row(r, facts));
  const leaseByKey = new Map(records.flatMap((r) => (r.kind === 'lease' ? [[r.key, r.lease] as const] : [])));
  const leases = [...leaseByKey.values()];
  const problems: Problem[] = [];
  for (const r of records) {
    if (r.kind !== 'invalid') continue;
    const name = r.invalid.subnet ? formatCidr(r.invalid.subnet) : r.key;
    problems.push({ severity: 'error', kind: 'invalid-lease', subnets: r.invalid.subnet ? [name] : [], publicIPs: [], message: `lease ${name} is invalid: ${r.invalid.reason}` });
  }
  if (facts.config) problems.push(...fitProblems(leases, facts.config));
  problems.push(...clashProblems(leases), ...expiryProblems(rows, leaseByKey, facts.renewMarginMs));
  return { rows, pool: facts.config ? poolCounts(records, facts.config) : null, problems };
}
