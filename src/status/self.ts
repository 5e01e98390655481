/**
 * Which lease is this host's: the one its subnet file names, else the one
 * holding its public IP (chosen as the daemon chooses it, contract §9); and
 * whether the subnet file agrees with that lease (contract §7). Pure.
 */
import { NetworkConfig } from '../config';
import { chooseExternalInterface } from '../kernel/interfaces';
import { InterfaceInfo } from '../kernel/kernel';
import { recordSubnet } from '../lease/codec';
import { Lease, LeaseRecord } from '../lease/lease';
import { Cidr, cidrEquals, formatCidr, formatIPv4 } from '../net/ipv4';
import { previousSubnet } from '../subnet-file';
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
  readonly publicIP: number | undefined;
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

function leasesWithIP(records: readonly LeaseRecord[], ip: number): Array<Lease & { key: string }> {
  return records.flatMap((r) => (r.kind === 'lease' && r.lease.publicIP === ip ? [{ ...r.lease, key: r.key }] : [])).sort((a, b) => a.subnet.ip - b.subnet.ip);
}

/** Identifies this host and checks its subnet file. */
export function analyzeSelf(facts: SelfFacts): SelfAnalysis {
  const file = facts.subnetFile;
  const fileSubnet = 'text' in file ? previousSubnet(file.text) : undefined;
  const atFile = fileSubnet && facts.records.find((r) => r.kind !== 'ignored' && cidrEquals(recordSubnet(r) ?? { ip: -1, prefixLen: -1 }, fileSubnet));
  const byFile = atFile?.kind === 'lease' ? { ...atFile.lease, key: atFile.key } : undefined;

  let iface: InterfaceInfo | undefined;
  let hostIP = byFile?.publicIP;
  let note: string | null = null;
  if (facts.kernel?.kind === 'read') {
    try {
      const ext = chooseExternalInterface(facts.kernel.interfaces, facts.kernel.defaultIndex, { iface: facts.iface, ifaceRegex: facts.ifaceRegex, publicIP: byFile?.publicIP });
      iface = ext.iface;
      hostIP = ext.publicIP;
    } catch (err) {
      note = errorMessage(err);
    }
  } else {
    note = facts.kernel === undefined ? 'kernel check turned off (--no-kernel-check)' : facts.kernel.reason;
  }
  const byIP = hostIP === undefined ? [] : leasesWithIP(facts.records, hostIP);
  const own = byFile ?? byIP[0];
  const problems: Problem[] = [];
  const fileProblem = (severity: Problem['severity'], message: string, subnets: Array<Cidr | undefined>): void => {
    const names = [...new Set(subnets.filter((s): s is Cidr => s !== undefined).map(formatCidr))];
    problems.push({ severity, kind: 'subnet-file', subnets: names, publicIPs: [], message: `subnet file ${file.path} ${message}` });
  };

  let state: SubnetFileState;
  let detail: string | null = null;
  if ('error' in file) {
    state = file.error === 'ENOENT' ? 'absent' : 'unreadable';
    detail = file.error;
    if (state === 'unreadable') fileProblem('warning', `cannot be read: ${file.error}`, [own?.subnet]);
    else if (own) fileProblem('warning', `does not exist, though this host holds lease ${formatCidr(own.subnet)} (does the daemon use another --subnet-file?)`, [own.subnet]);
  } else if (!fileSubnet) {
    state = 'unparsable';
    detail = 'no valid FLANNEL_SUBNET';
    fileProblem('error', 'has no valid FLANNEL_SUBNET', [own?.subnet]);
  } else if (!byFile) {
    state = 'no-lease';
    const why = atFile ? 'but that lease is invalid' : 'but etcd holds no lease for it';
    const mine = byIP[0] ? `; this host's lease (PublicIP ${formatIPv4(byIP[0].publicIP)}) is ${formatCidr(byIP[0].subnet)}` : '';
    if (byIP[0]) state = 'disagrees';
    detail = `${why}${mine}`;
    fileProblem('error', `names ${formatCidr(fileSubnet)}, ${why}${mine}`, [fileSubnet, byIP[0]?.subnet]);
  } else {
    state = 'agrees';
    const fileNetwork = envValue(file.text, 'FLANNEL_NETWORK');
    const fileMTU = Number(envValue(file.text, 'FLANNEL_MTU'));
    const device = facts.kernel?.kind === 'read' ? facts.kernel.device : undefined;
    const mismatches: string[] = [];
    if (facts.config && fileNetwork !== formatCidr(facts.config.network)) mismatches.push(`FLANNEL_NETWORK is ${fileNetwork ?? '(missing)'}, the config's Network ${formatCidr(facts.config.network)}`);
    if (device && fileMTU !== device.mtu) mismatches.push(`FLANNEL_MTU is ${envValue(file.text, 'FLANNEL_MTU') ?? '(missing)'}, ${device.name}'s MTU ${device.mtu}`);
    if (mismatches.length > 0) {
      state = 'disagrees';
      detail = mismatches.join('; ');
      fileProblem('error', `disagrees: ${detail}`, [fileSubnet]);
    }
  }

  const report: SelfReport = {
    publicIP: hostIP === undefined ? null : formatIPv4(hostIP),
    interface: iface?.name ?? null,
    subnet: own ? formatCidr(own.subnet) : null,
    matchedBy: byFile ? 'subnet-file' : own ? 'public-ip' : null,
    subnetFile: { path: file.path, state, subnet: fileSubnet ? formatCidr(fileSubnet) : null, detail },
    note,
  };
  return { report, own, publicIP: hostIP, iface, problems };
}

