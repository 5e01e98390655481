/**
 * Which lease is this host's: the one its subnet file names, else the one
 * holding its public IP (chosen as the daemon chooses it, contract §9); and
 * whether the subnet file agrees with that lease (contract §7). Pure.
 */
import { NetworkConfig } from '../config';
import { chooseExternalInterface } from '../kernel/interfaces';
import { InterfaceInfo } from '../kernel/kernel';
import { recordSubnet, recordSubnet6 } from '../lease/codec';
import { Lease, LeaseRecord } from '../lease/lease';
import { AnyCidr, IpAddr, anyCidrEquals, formatAnyCidr, formatIp } from '../net/family';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { formatCidr6, formatIPv6 } from '../net/ipv6';
import { previousSubnet, previousSubnet6 } from '../subnet-file';
import { errorMessage } from '../util/errors';
import { KernelFacts, SubnetFileFacts } from './collect';
import { Problem, SelfReport, SubnetFileState } from './report';

export interface SelfFacts {
  readonly records: readonly LeaseRecord[];
  readonly config: NetworkConfig | undefined;
  readonly kernel: KernelFacts | undefined;
  readonly subnetFile: SubnetFileFacts;
  /** `--iface` and `--iface-regex`, as the daemon takes them. */
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
}

export interface SelfAnalysis {
  readonly report: SelfReport;
  readonly own: (Lease & { readonly key: string }) | undefined;
  /** This host's PublicIP; undefined for an IPv6-only config. */
  readonly publicIP: number | undefined;
  readonly publicIPv6: bigint | undefined;
  readonly iface: InterfaceInfo | undefined;
  readonly problems: Problem[];
}

/** The value of `NAME=` in subnet.env text, split at the first `=` as the CNI plugin does. */
function envValue(text: string, name: string): string | undefined {
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq).trim() === name) return line.slice(eq + 1).trim();
  }
  return undefined;
}

/** Leases held by this host's public address: PublicIP, or PublicIPv6 for an IPv6-only config. */
function leasesWithIP(records: readonly LeaseRecord[], ip: IpAddr): Array<Lease & { key: string }> {
  const ours = (l: Lease): boolean => (typeof ip === 'bigint' ? l.v6?.publicIP === ip : l.hasIPv4 !== false && l.publicIP === ip);
  const start = (l: Lease): IpAddr => (typeof ip === 'bigint' ? l.v6?.subnet.ip ?? 0n : l.subnet.ip);
  return records.flatMap((r) => (r.kind === 'lease' && ours(r.lease) ? [{ ...r.lease, key: r.key }] : [])).sort((a, b) => (start(a) < start(b) ? -1 : start(a) > start(b) ? 1 : 0));
}

/** How messages name a subnet of either family. */
const names = (subnets: ReadonlyArray<AnyCidr | undefined>): string[] => [...new Set(subnets.filter((s): s is AnyCidr => s !== undefined).map(formatAnyCidr))];

/**
 * Identifies this host and checks its subnet file. The key subnet is the IPv4
 * one (FLANNEL_SUBNET), or for an IPv6-only config the IPv6 one (FLANNEL_IPV6_SUBNET).
 */
export function analyzeSelf(facts: SelfFacts): SelfAnalysis {
  const file = facts.subnetFile;
  const config = facts.config;
  const v4 = config?.enableIPv4 !== false;
  const v6 = config?.enableIPv6 === true;
  const fileSubnet = 'text' in file ? previousSubnet(file.text) : undefined;
  const fileSubnet6 = 'text' in file ? previousSubnet6(file.text) : undefined;
  const keySubnet: AnyCidr | undefined = v4 ? fileSubnet : fileSubnet6;
  const subnetOf = (r: LeaseRecord): AnyCidr | undefined => (v4 ? recordSubnet(r) : recordSubnet6(r));
  const atFile = keySubnet && facts.records.find((r) => r.kind !== 'ignored' && anyCidrEquals(subnetOf(r) ?? NONE, keySubnet));
  const byFile = atFile?.kind === 'lease' ? { ...atFile.lease, key: atFile.key } : undefined;

  let iface: InterfaceInfo | undefined;
  let hostIP: number | undefined = v4 ? byFile?.publicIP : undefined;
  let hostIP6: bigint | undefined = byFile?.v6?.publicIP;
  let note: string | null = null;
  if (facts.kernel?.kind === 'read') {
    try {
      const ext = chooseExternalInterface(
        facts.kernel.interfaces,
        facts.kernel.defaultIndex,
        { iface: facts.iface, ifaceRegex: facts.ifaceRegex, publicIP: hostIP, publicIPv6: hostIP6 },
        { ipv4: v4, ipv6: v6, defaultRoute6: facts.kernel.defaultIndex6 },
      );
      iface = ext.iface;
      hostIP = v4 ? ext.publicIP : undefined;
      hostIP6 = ext.publicIPv6;
    } catch (err) {
      note = errorMessage(err);
    }
  } else {
    note = facts.kernel === undefined ? 'kernel check turned off (--no-kernel-check)' : facts.kernel.reason;
  }
  const hostKeyIP = v4 ? hostIP : hostIP6;
  const byIP = hostKeyIP === undefined ? [] : leasesWithIP(facts.records, hostKeyIP);
  const own = byFile ?? byIP[0];
  const ownKeySubnet = (l: Lease | undefined): AnyCidr | undefined => (l === undefined ? undefined : v4 ? l.subnet : l.v6?.subnet);
  const problems: Problem[] = [];
  const fileProblem = (severity: Problem['severity'], message: string, subnets: Array<AnyCidr | undefined>): void => {
    problems.push({ severity, kind: 'subnet-file', subnets: names(subnets), publicIPs: [], message: `subnet file ${file.path} ${message}` });
  };
  const keyName = v4 ? 'FLANNEL_SUBNET' : 'FLANNEL_IPV6_SUBNET';
  const ipName = v4 ? 'PublicIP' : 'PublicIPv6';

  let state: SubnetFileState;
  let detail: string | null = null;
  if ('error' in file) {
    state = file.error === 'ENOENT' ? 'absent' : 'unreadable';
    detail = file.error;
    if (state === 'unreadable') fileProblem('warning', `cannot be read: ${file.error}`, [ownKeySubnet(own)]);
    else if (own) fileProblem('warning', `does not exist, though this host holds lease ${names([ownKeySubnet(own)])[0]} (does the daemon use another --subnet-file?)`, [ownKeySubnet(own)]);
  } else if (!keySubnet) {
    state = 'unparsable';
    detail = `no valid ${keyName}`;
    fileProblem('error', `has no valid ${keyName}`, [ownKeySubnet(own)]);
  } else if (!byFile) {
    state = 'no-lease';
    const why = atFile ? 'but that lease is invalid' : 'but etcd holds no lease for it';
    const mine = byIP[0] ? `; this host's lease (${ipName} ${formatIp(hostKeyIP as IpAddr)}) is ${names([ownKeySubnet(byIP[0])])[0]}` : '';
    if (byIP[0]) state = 'disagrees';
    detail = `${why}${mine}`;
    fileProblem('error', `names ${formatAnyCidr(keySubnet)}, ${why}${mine}`, [keySubnet, ownKeySubnet(byIP[0])]);
  } else {
    state = 'agrees';
    const device = facts.kernel?.kind === 'read' ? facts.kernel.device : undefined;
    const mismatches = fileMismatches(file.text, config, byFile, device);
    if (mismatches.length > 0) {
      state = 'disagrees';
      detail = mismatches.join('; ');
      fileProblem('error', `disagrees: ${detail}`, [keySubnet]);
    }
  }

  const report: SelfReport = {
    publicIP: hostIP === undefined ? null : formatIPv4(hostIP),
    publicIPv6: hostIP6 === undefined ? null : formatIPv6(hostIP6),
    interface: iface?.name ?? null,
    subnet: own && own.hasIPv4 !== false ? formatCidr(own.subnet) : null,
    subnet6: own?.v6 ? formatCidr6(own.v6.subnet) : null,
    matchedBy: byFile ? 'subnet-file' : own ? 'public-ip' : null,
    subnetFile: { path: file.path, state, subnet: fileSubnet ? formatCidr(fileSubnet) : null, subnet6: fileSubnet6 ? formatCidr6(fileSubnet6) : null, detail },
    note,
  };
  return { report, own, publicIP: hostIP, publicIPv6: hostIP6, iface, problems };
}

const NONE: AnyCidr = { ip: -1, prefixLen: -1 };

/** What the subnet file says that the config, our lease or the device contradict. */
function fileMismatches(text: string, config: NetworkConfig | undefined, own: Lease, device: { name: string; mtu: number } | undefined): string[] {
  const out: string[] = [];
  const check = (name: string, want: string | undefined, what: string): void => {
    const have = envValue(text, name);
    if (want !== undefined && have !== want) out.push(`${name} is ${have ?? '(missing)'}, ${what} ${want}`);
  };
  if (config?.enableIPv4 !== false && config) check('FLANNEL_NETWORK', formatCidr(config.network), "the config's Network");
  if (config?.ipv6) {
    check('FLANNEL_IPV6_NETWORK', formatCidr6(config.ipv6.network), "the config's IPv6Network");
    if (own.v6) check('FLANNEL_IPV6_SUBNET', `${formatIPv6(own.v6.subnet.ip + 1n)}/${own.v6.subnet.prefixLen}`, "this host's IPv6 lease gives");
  }
  const fileMTU = Number(envValue(text, 'FLANNEL_MTU'));
  if (device && fileMTU !== device.mtu) out.push(`FLANNEL_MTU is ${envValue(text, 'FLANNEL_MTU') ?? '(missing)'}, ${device.name}'s MTU ${device.mtu}`);
  return out;
}
