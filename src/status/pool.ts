/**
 * The pool view: one row per key under `<prefix>/subnets/`, the counts per
 * family, and the problems that show across leases (contract §1–§3, §11). Pure.
 * Each check runs once per enabled family over that family's half of each
 * lease (STYLE: the family is a value).
 */
import { NetworkConfig, subnet6Capacity, subnet6FitsConfig, subnetCapacity, subnetFitsConfig } from '../config';
import { recordSubnet, recordSubnet6 } from '../lease/codec';
import { Lease, LeaseRecord } from '../lease/lease';
import { AddressFamily, AnyCidr, IPV4, IPV6, IpAddr, anyCidrContainsCidr, formatAnyCidr, formatIp, isCidr6 } from '../net/family';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { formatCidr6, formatIPv6 } from '../net/ipv6';
import { familyPool, olderFirst, peerSkipReason } from '../overlay/desired';
import { LeaseRow, Pool6Report, PoolReport, Problem } from './report';

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

/** One family's half of a lease, as the checks below see it. */
interface Half {
  readonly lease: Lease;
  readonly subnet: AnyCidr;
  readonly publicIP: IpAddr | undefined;
  readonly vtepMAC: string | undefined;
}

function halvesOf(leases: readonly Lease[], family: AddressFamily): Half[] {
  return leases.flatMap((lease): Half[] => {
    if (family === IPV6) return lease.v6 ? [{ lease, subnet: lease.v6.subnet, publicIP: lease.v6.publicIP, vtepMAC: lease.v6.vtepMAC }] : [];
    return lease.hasIPv4 === false ? [] : [{ lease, subnet: lease.subnet, publicIP: lease.publicIP, vtepMAC: lease.vtepMAC }];
  });
}

/** Families the config enables, IPv4 first. */
function families(config: NetworkConfig): AddressFamily[] {
  return [...(config.enableIPv4 ? [IPV4] : []), ...(config.enableIPv6 ? [IPV6] : [])];
}

function compare(a: IpAddr, b: IpAddr): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Last address of a block of either family, as a bigint. */
function lastOf(c: AnyCidr): bigint {
  const bits = typeof c.ip === 'bigint' ? 128 : 32;
  return BigInt(c.ip) + (1n << BigInt(bits - c.prefixLen)) - 1n;
}

/** Rows sorted by IPv4 subnet, then IPv6-only ones by IPv6 subnet, then keys with neither. */
function bySubnet(a: LeaseRecord, b: LeaseRecord): number {
  const rank = (r: LeaseRecord): number => (recordSubnet(r) ? 0 : recordSubnet6(r) ? 1 : 2);
  const d = rank(a) - rank(b);
  if (d !== 0) return d;
  const sa = recordSubnet(a) ?? recordSubnet6(a);
  const sb = recordSubnet(b) ?? recordSubnet6(b);
  if (sa && sb) return compare(sa.ip, sb.ip) || sa.prefixLen - sb.prefixLen;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Every subnet of a lease ("10.7.5.0/24", "fc00:0:0:5::/64"). */
function subnetsOf(l: Lease): string[] {
  return [...(l.hasIPv4 === false ? [] : [formatCidr(l.subnet)]), ...(l.v6 ? [formatCidr6(l.v6.subnet)] : [])];
}

function publicIPsOf(l: Lease): string[] {
  return [...(l.hasIPv4 === false ? [] : [formatIPv4(l.publicIP)]), ...(l.v6?.publicIP === undefined ? [] : [formatIPv6(l.v6.publicIP)])];
}

function problem(severity: Problem['severity'], kind: Problem['kind'], leases: readonly Lease[], message: string): Problem {
  return { severity, kind, subnets: [...new Set(leases.flatMap(subnetsOf))], publicIPs: [...new Set(leases.flatMap(publicIPsOf))], message };
}

/** How a message names a lease: its IPv4 subnet, else its IPv6 one. */
function leaseLabel(l: Lease): string {
  return subnetsOf(l)[0] ?? '(no subnet)';
}

function row(record: LeaseRecord, facts: LeaseFacts): LeaseRow {
  const own = record.key === facts.ownKey;
  const subnet = recordSubnet(record);
  const subnet6 = recordSubnet6(record);
  const base = (state: LeaseRow['state'], reason: string | null): LeaseRow => ({
    key: record.key,
    subnet: subnet ? formatCidr(subnet) : null,
    subnet6: subnet6 ? formatCidr6(subnet6) : null,
    state,
    own,
    publicIP: null,
    vtepMAC: null,
    publicIPv6: null,
    vtepMAC6: null,
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
  const v4 = lease.hasIPv4 !== false;
  return {
    ...base('valid', null),
    publicIP: v4 ? formatIPv4(lease.publicIP) : null,
    vtepMAC: v4 ? lease.vtepMAC ?? null : null,
    publicIPv6: lease.v6?.publicIP === undefined ? null : formatIPv6(lease.v6.publicIP),
    vtepMAC6: lease.v6?.vtepMAC ?? null,
    backendType: lease.backendType,
    vni: lease.vni,
    etcdLease: lease.etcdLease ?? null,
    reservation: lease.etcdLease === undefined,
    expiresAt: expiresAt === undefined ? null : new Date(expiresAt).toISOString(),
    expiresInSeconds: expiresAt === undefined ? null : Math.max(0, Math.floor((expiresAt - facts.now) / 1000)),
  };
}

/** One family's halves that fit badly into the config: outside the network, wrong length, outside the range, or unprogrammable. */
function fitProblems(leases: readonly Lease[], config: NetworkConfig, family: AddressFamily): Problem[] {
  const pool = familyPool(config, family);
  if (!pool) return [];
  const v6 = family === IPV6;
  const [netName, minName] = v6 ? ['IPv6Network', 'IPv6SubnetMin..IPv6SubnetMax'] : ['Network', 'SubnetMin..SubnetMax'];
  const range = v6 && config.ipv6 ? `${formatIPv6(config.ipv6.subnetMin)}..${formatIPv6(config.ipv6.subnetMax)}` : `${formatIPv4(config.subnetMin)}..${formatIPv4(config.subnetMax)}`;
  const net = formatAnyCidr(pool.network);
  const out: Problem[] = [];
  for (const h of halvesOf(leases, family)) {
    const s = formatAnyCidr(h.subnet);
    const inside = anyCidrContainsCidr(pool.network, h.subnet);
    const fits = isCidr6(h.subnet) ? subnet6FitsConfig(config, h.subnet) : subnetFitsConfig(config, h.subnet);
    if (!inside) out.push(problem('error', 'outside-network', [h.lease], `lease ${s} is outside ${netName} ${net}`));
    else if (h.subnet.prefixLen !== pool.subnetLen) out.push(problem('error', 'wrong-length', [h.lease], `lease ${s} has length /${h.subnet.prefixLen}; the config says /${pool.subnetLen}`));
    else if (!fits) out.push(problem('warning', 'outside-range', [h.lease], `lease ${s} is outside ${minName} (${range})`));
    else {
      const why = peerSkipReason(NOBODY, h.lease, config, family);
      if (why !== undefined) out.push(problem('error', 'not-programmable', [h.lease], `peers do not program lease ${s}: ${why}`));
    }
  }
  return out;
}

/** Within one family: two halves with one public IP or one VtepMAC, and overlapping subnets. */
function clashProblems(leases: readonly Lease[], family: AddressFamily): Problem[] {
  const out: Problem[] = [];
  const halves = halvesOf(leases, family);
  const group = (key: (h: Half) => string | undefined): Half[][] => {
    const groups = new Map<string, Half[]>();
    for (const h of halves) {
      const k = key(h);
      if (k !== undefined) groups.set(k, [...(groups.get(k) ?? []), h]);
    }
    return [...groups.values()].filter((g) => g.length > 1);
  };
  const names = (g: readonly Half[]): string => g.map((h) => formatAnyCidr(h.subnet)).join(', ');
  const ipName = family === IPV6 ? 'PublicIPv6' : 'PublicIP';
  for (const g of group((h) => (h.publicIP === undefined ? undefined : formatIp(h.publicIP)))) {
    out.push(problem('error', 'duplicate-public-ip', g.map((h) => h.lease), `${ipName} ${formatIp((g[0] as Half).publicIP as IpAddr)} holds ${g.length} leases: ${names(g)}`));
  }
  for (const g of group((h) => (h.lease.backendType === 'vxlan' ? h.vtepMAC : undefined))) {
    const keeper = [...g].sort((a, b) => olderFirst(a.lease, b.lease))[0] as Half;
    out.push(problem('error', 'duplicate-vtep-mac', g.map((h) => h.lease), `VtepMAC ${(g[0] as Half).vtepMAC} is in ${g.length} leases: ${names(g)} (peers program only ${formatAnyCidr(keeper.subnet)}, which etcd created first)`));
  }
  // Sorted by start address, a block overlaps an earlier one exactly when it starts before the furthest end so far.
  let widest: Half | undefined;
  for (const h of [...halves].sort((a, b) => compare(a.subnet.ip, b.subnet.ip))) {
    if (widest && BigInt(h.subnet.ip) <= lastOf(widest.subnet)) {
      out.push(problem('error', 'overlap', [widest.lease, h.lease], `leases ${formatAnyCidr(widest.subnet)} and ${formatAnyCidr(h.subnet)} overlap`));
    }
    if (!widest || lastOf(h.subnet) > lastOf(widest.subnet)) widest = h;
  }
  return out;
}

/**
 * Mixed families (contract §11): an IPv4-only flanneld node panics on every
 * dual-stack key, so a dual-stack config next to IPv4-only leases (perhaps such
 * nodes) is a hazard; `&` keys under an IPv4-only config are one too; and a
 * half the config does not enable is never programmed.
 */
function mixedFamilyProblems(leases: readonly Lease[], config: NetworkConfig): Problem[] {
  const out: Problem[] = [];
  const valid = leases.filter((l) => l.backendType === 'vxlan');
  const list = (ls: readonly Lease[]): string => ls.map(leaseLabel).join(', ');
  if (config.enableIPv6) {
    const v4only = valid.filter((l) => l.v6 === undefined);
    if (v4only.length > 0) {
      const tail = config.enableIPv4
        ? 'if flanneld runs there without EnableIPv6, it crashes on the dual-stack keys of this network (contract §11): give every node the dual-stack config'
        : 'this IPv6-only network cannot reach them';
      out.push(problem('warning', 'mixed-family', v4only, `${v4only.length} lease(s) have no IPv6 half though the config enables IPv6 (${list(v4only)}): ${tail}`));
    }
  } else {
    const dual = valid.filter((l) => l.v6 !== undefined);
    if (dual.length > 0) {
      out.push(problem('warning', 'mixed-family', dual, `${dual.length} lease(s) have an IPv6 half though the config does not enable IPv6 (${list(dual)}): IPv4-only flanneld nodes crash on such keys (contract §11); only their IPv4 half is programmed`));
    }
  }
  if (!config.enableIPv4) {
    const withV4 = valid.filter((l) => l.hasIPv4 !== false);
    if (withV4.length > 0) out.push(problem('warning', 'mixed-family', withV4, `${withV4.length} lease(s) have an IPv4 half though the config is IPv6-only (${list(withV4)}): only their IPv6 half is programmed`));
  }
  return out;
}

function expiryProblems(rows: readonly LeaseRow[], leases: ReadonlyMap<string, Lease>, marginMs: number): Problem[] {
  const out: Problem[] = [];
  for (const r of rows) {
    const lease = leases.get(r.key);
    if (!lease || r.expiresInSeconds === null || r.expiresInSeconds * 1000 >= marginMs) continue;
    const margin = `${Math.round(marginMs / 60_000)} min`;
    out.push(problem('warning', 'expiring', [lease], `lease ${leaseLabel(lease)} expires in ${r.expiresInSeconds} s, within the ${margin} renew margin: its node has not renewed it`));
  }
  return out;
}

const percent = (used: number, capacity: number): number => (capacity === 0 ? 0 : Math.round((used / capacity) * 1000) / 10);

function pool6Counts(records: readonly LeaseRecord[], config: NetworkConfig): Pool6Report | null {
  if (!config.ipv6) return null;
  const capacity = Number(subnet6Capacity(config.ipv6));
  const used = new Set<string>();
  for (const r of records) {
    const s = recordSubnet6(r);
    if (s && subnet6FitsConfig(config, s)) used.add(formatCidr6(s));
  }
  return { capacity, used: used.size, free: capacity - used.size, usedPercent: percent(used.size, capacity) };
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
    usedPercent: percent(used.size, capacity),
    ipv6: pool6Counts(records, config),
  };
}

/** Rows sorted by subnet (keys without one last), the counts, and every cross-lease problem. */
export function analyzePool(facts: LeaseFacts): PoolAnalysis {
  const records = [...facts.records].sort(bySubnet);
  const rows = records.map((r) => row(r, facts));
  const leaseByKey = new Map(records.flatMap((r) => (r.kind === 'lease' ? [[r.key, r.lease] as const] : [])));
  const leases = [...leaseByKey.values()];
  const problems: Problem[] = [];
  for (const r of records) {
    if (r.kind !== 'invalid') continue;
    const subnets = [...(r.invalid.subnet ? [formatCidr(r.invalid.subnet)] : []), ...(r.invalid.subnet6 ? [formatCidr6(r.invalid.subnet6)] : [])];
    problems.push({ severity: 'error', kind: 'invalid-lease', subnets, publicIPs: [], message: `lease ${subnets[0] ?? r.key} is invalid: ${r.invalid.reason}` });
  }
  const config = facts.config;
  // Without a config, IPv4 checks as before (IPv4 is flannel's default); IPv6 halves are checked only against an IPv6 config.
  const fams = config ? families(config) : [IPV4];
  if (config) for (const f of fams) problems.push(...fitProblems(leases, config, f));
  for (const f of fams) problems.push(...clashProblems(leases, f));
  if (config) problems.push(...mixedFamilyProblems(leases, config));
  problems.push(...expiryProblems(rows, leaseByKey, facts.renewMarginMs));
  return { rows, pool: config ? poolCounts(records, config) : null, problems };
}
