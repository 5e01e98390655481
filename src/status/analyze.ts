/**
 * From facts to the status report: config, pool, this host, the kernel check,
 * the filters and the verdict. Pure: the same facts always give the same report.
 */
import { NetworkConfig, parseNetworkConfig } from '../config';
import { configKey } from '../lease/codec';
import { Lease } from '../lease/lease';
import { Cidr, cidrOverlaps, formatCidr, formatIPv4, parseCidr } from '../net/ipv4';
import { formatCidr6, formatIPv6 } from '../net/ipv6';
import { IPV4, IPV6 } from '../net/family';
import { endpointLiterals } from '../net/endpoint';
import { ConfigError } from '../util/errors';
import { StatusFacts } from './collect';
import { checkKernel } from './kernel-check';
import { analyzePool } from './pool';
import { ConfigReport, KernelReport, Problem, STATUS_SCHEMA_VERSION, StatusReport } from './report';
import { analyzeSelf } from './self';

export interface StatusFilter {
  /** Keep what overlaps this block (a single address is a /32: "which lease holds this pod IP?"). */
  readonly subnet?: Cidr | undefined;
  /** Keep what concerns the node with this public IP. */
  readonly publicIP?: number | undefined;
}

export interface AnalyzeOptions {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly renewMarginMs: number;
  readonly filter: StatusFilter;
  /** `--allow-wide-network`, as the daemon was started. */
  readonly allowWideNetwork?: boolean;
}

function parseConfig(text: string | undefined, prefix: string, allowWideNetwork: boolean): { config?: NetworkConfig; problem?: Problem } {
  const key = configKey(prefix);
  const problem = (message: string): { problem: Problem } => ({ problem: { severity: 'error', kind: 'config', subnets: [], publicIPs: [], message } });
  if (text === undefined) return problem(`network config ${key} not found in etcd`);
  try {
    return { config: parseNetworkConfig(text, { allowWideNetwork }) };
  } catch (err) {
    if (err instanceof ConfigError) return problem(`${err.message} (at ${key})`);
    throw err;
  }
}

function configReport(c: NetworkConfig): ConfigReport {
  const b = c.backend;
  const v4 = c.enableIPv4;
  const p6 = c.ipv6;
  return {
    enableIPv4: c.enableIPv4,
    enableIPv6: c.enableIPv6,
    network: v4 ? formatCidr(c.network) : null,
    subnetLen: v4 ? c.subnetLen : null,
    subnetMin: v4 ? formatIPv4(c.subnetMin) : null,
    subnetMax: v4 ? formatIPv4(c.subnetMax) : null,
    ipv6: p6 ? { network: formatCidr6(p6.network), subnetLen: p6.subnetLen, subnetMin: formatIPv6(p6.subnetMin), subnetMax: formatIPv6(p6.subnetMax) } : null,
    backend: { type: b.type, vni: b.vni, port: b.port, mtu: b.mtu },
  };
}

function skipped(reason: string): { report: KernelReport; problems: Problem[] } {
  return { report: { state: 'skipped', skipReason: reason, device: null, peers: [], stale: [] }, problems: [] };
}

/** `--subnet` is an IPv4 CIDR: an IPv6 subnet never matches it. */
function overlapsFilter(subnet: string, filter: Cidr): boolean {
  return !subnet.includes(':') && cidrOverlaps(parseCidr(subnet), filter);
}

// Does a problem about `subnets` and `publicIPs` pass the filter? Problems about neither are host-wide and always pass.
function passesFilter(filter: StatusFilter, subnets: readonly string[], publicIPs: readonly string[]): boolean {
  if (subnets.length === 0 && publicIPs.length === 0) return true;
  const { subnet, publicIP } = filter;
  if (subnet && !subnets.some((s) => overlapsFilter(s, subnet))) return false;
  if (publicIP !== undefined && !publicIPs.includes(formatIPv4(publicIP))) return false;
  return true;
}

function applyFilter(report: Omit<StatusReport, 'healthy' | 'exitCode'>, filter: StatusFilter): Omit<StatusReport, 'healthy' | 'exitCode'> {
  if (filter.subnet === undefined && filter.publicIP === undefined) return report;
  // A row is about its subnet and public IP; a row without a subnet (a bad key) matches no subnet filter.
  const rowPasses = (subnet: string | null, publicIP: string | null): boolean =>
    (filter.subnet === undefined || (subnet !== null && overlapsFilter(subnet, filter.subnet))) &&
    (filter.publicIP === undefined || publicIP === formatIPv4(filter.publicIP));
  const stale = report.kernel.stale.filter((s) => rowPasses(s.subnet, s.publicIP));
  return {
    ...report,
    leases: report.leases.filter((r) => rowPasses(r.subnet, r.publicIP)),
    kernel: { ...report.kernel, peers: report.kernel.peers.filter((p) => rowPasses(p.subnet, p.publicIP)), stale },
    problems: report.problems.filter((p) => passesFilter(filter, p.subnets, p.publicIPs)),
  };
}

/**
 * Both families' kernel checks as one report: the peers and stale entries of
 * flannel.<VNI> and flannel-v6.<VNI> together (a dual-stack peer has a row per
 * family), the first device's checks (flannel.<VNI> when IPv4 is enabled), and
 * every problem of both devices.
 */
function mergeKernelChecks(checks: ReadonlyArray<{ report: KernelReport; problems: Problem[] }>): { report: KernelReport; problems: Problem[] } {
  const [first] = checks;
  if (!first || checks.length === 1) return first ?? skipped('no address family is enabled');
  return {
    report: { ...first.report, peers: checks.flatMap((c) => c.report.peers), stale: checks.flatMap((c) => c.report.stale) },
    problems: checks.flatMap((c) => c.problems),
  };
}

/** The report for `facts`. Exit code 1 when any error-level problem survives the filters. */
export function analyzeStatus(facts: StatusFacts, opts: AnalyzeOptions): StatusReport {
  const { records } = facts.store;
  const { config, problem: configProblem } = parseConfig(facts.store.configText, opts.prefix, opts.allowWideNetwork === true);
  const self = analyzeSelf({ records, config, kernel: facts.kernel, subnetFile: facts.subnetFile, iface: opts.iface, ifaceRegex: opts.ifaceRegex });
  const pool = analyzePool({ records, config, expiries: facts.store.expiries, now: facts.now, renewMarginMs: opts.renewMarginMs, ownKey: self.own?.key });
  const leases: Lease[] = records.flatMap((r) => (r.kind === 'lease' ? [r.lease] : []));
  const k = facts.kernel;
  let kernel: { report: KernelReport; problems: Problem[] };
  if (k === undefined) kernel = skipped('turned off with --no-kernel-check');
  else if (k.kind === 'unavailable') kernel = skipped(k.reason);
  else if (!config) kernel = skipped('no usable network config');
  else if (!self.own && !k.device && !k.device6) {
    const ip = self.publicIP === undefined ? '' : ` ${formatIPv4(self.publicIP)}`;
    kernel = skipped(`not a flannel node: no flannel.${config.backend.vni} device and no lease for this host's public IP${ip}`);
  } else {
    // Literal endpoints of either family (`https://[fd00::2]:2379`); status resolves no names.
    const etcdAddresses = endpointLiterals(opts.endpoints);
    const base = { config, interfaces: k.interfaces, own: self.own, iface: self.iface, leases, routes: k.routes, routes6: k.routes6, etcdAddresses, direct: k.direct };
    const checks = [
      ...(config.enableIPv4 ? [checkKernel({ ...base, device: k.device, entries: k.entries, publicIP: self.publicIP, family: IPV4 })] : []),
      ...(config.enableIPv6 ? [checkKernel({ ...base, device: k.device6, entries: k.entries6 ?? [], publicIP: self.publicIPv6, family: IPV6 })] : []),
    ];
    kernel = mergeKernelChecks(checks);
  }
  const ignoredKeys = config?.ignoredBackendKeys ?? [];
  const keysProblem: Problem[] = ignoredKeys.length === 0 ? [] : [{ severity: 'warning', kind: 'config', subnets: [], publicIPs: [], message: `Backend key(s) ${ignoredKeys.join(', ')} are ignored: flanneld's Linux VXLAN backend does not read them` }];
  const all = [...(configProblem ? [configProblem] : []), ...keysProblem, ...self.problems, ...pool.problems, ...kernel.problems];
  const problems = [...all.filter((p) => p.severity === 'error'), ...all.filter((p) => p.severity === 'warning')];
  const report = applyFilter(
    {
      schemaVersion: STATUS_SCHEMA_VERSION,
      generatedAt: new Date(facts.now).toISOString(),
      etcd: { endpoints: [...opts.endpoints], prefix: opts.prefix, revision: String(facts.store.revision) },
      filter: { subnet: opts.filter.subnet ? formatCidr(opts.filter.subnet) : null, publicIP: opts.filter.publicIP === undefined ? null : formatIPv4(opts.filter.publicIP) },
      config: config ? configReport(config) : null,
      pool: pool.pool,
      self: self.report,
      leases: pool.rows,
      kernel: kernel.report,
      problems,
    },
    opts.filter,
  );
  const healthy = !report.problems.some((p) => p.severity === 'error');
  // The verdict first, so that a person reading the JSON sees it at the top.
  const { schemaVersion, generatedAt, ...rest } = report;
  return { schemaVersion, generatedAt, healthy, exitCode: healthy ? 0 : 1, ...rest };
}
