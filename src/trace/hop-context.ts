/**
 * What every hop of a trace is judged with: the facts, status's report of this
 * host (the plan's verdict per peer, the device checks), the lease of the
 * destination, and small helpers to name links and write checks. Pure.
 */
import { NetworkConfig } from '../config';
import { DeviceState, Entry, InterfaceInfo } from '../kernel/kernel';
import { LinkDetail, RouteLookup, describeRouteQuery } from '../kernel/route-query';
import { IpAddr, formatIp } from '../net/family';
import { StatusReport } from '../status/report';
import { LookupResult, TraceFacts, TraceLease } from './collect';
import { Check, HopInterface } from './report';
import { TraceFamily } from './trace-family';

export interface TraceContext {
  readonly facts: TraceFacts;
  readonly status: StatusReport;
  readonly config: NetworkConfig;
  /** The family of the traced packet, and what differs with it. */
  readonly tf: TraceFamily;
  /** flannel.<VNI>, or flannel-v6.<VNI> for an IPv6 trace. */
  readonly deviceName: string;
  readonly device: DeviceState | undefined;
  /** The device's entries (of the traced family). */
  readonly entries: readonly Entry[];
  readonly interfaces: readonly InterfaceInfo[];
  /** The destination's lease, its half of the traced family. */
  readonly dstLease: TraceLease | undefined;
  /** This host's lease subnet of the traced family (status's self.subnet or self.subnet6), or null. */
  readonly ownSubnet: string | null;
  /** The destination is in this host's own lease. */
  readonly local: boolean;
  /** `ip netns exec`-style prefix for the source pod, "" for this host. */
  readonly enter: string;
}

export const ok = (message: string): Check => ({ state: 'ok', message, fix: null });
export const problem = (message: string, fix: string | null): Check => ({ state: 'problem', message, fix });
export const warning = (message: string, fix: string | null): Check => ({ state: 'warning', message, fix });

/** A lease's public IP, or "(no public IP)" for an IPv6 half whose PublicIPv6 is null. */
export function publicText(ip: IpAddr | undefined): string {
  return ip === undefined ? '(no public IP)' : formatIp(ip);
}

export function linkByIndex(ctx: TraceContext, index: number | undefined): LinkDetail | undefined {
  return index === undefined ? undefined : ctx.facts.links.find((l) => l.index === index);
}

export function linkName(ctx: TraceContext, index: number | undefined): string {
  return linkByIndex(ctx, index)?.name ?? `ifindex ${index ?? '?'}`;
}

/** The addresses of the traced family of a host interface (status reads `addresses6` when the config enables IPv6). */
export function familyAddresses(ctx: Pick<TraceContext, 'tf'>, info: InterfaceInfo | undefined): ReadonlyArray<{ readonly ip: IpAddr; readonly prefixLen: number }> {
  return (ctx.tf.fam.family === 6 ? info?.addresses6 : info?.addresses) ?? [];
}

/** A host link as a hop interface, with its addresses (of the traced family) from status's interface listing. */
export function hostInterface(ctx: Pick<TraceContext, 'interfaces' | 'tf'>, link: LinkDetail): HopInterface {
  const info = ctx.interfaces.find((i) => i.index === link.index);
  const addresses = familyAddresses(ctx, info).map((a) => `${formatIp(a.ip)}/${a.prefixLen}`);
  return { name: link.name, index: link.index, mac: link.mac, mtu: link.mtu, addresses, up: link.up, netns: 'host' };
}

/** "ip route get 10.7.34.2 from 10.7.24.2 iif cni0", "ip -6 route get fc00:0:0:22::2 …" */
export function lookupCommand(ctx: TraceContext, r: LookupResult): string {
  return `ip ${ctx.tf.ipFlag}route get ${describeRouteQuery(r.query, (i) => linkName(ctx, i))}`;
}

/** The answer in `ip route get` words: "via 10.7.34.0 dev flannel.1 src 10.65.154.11". */
export function describeAnswer(ctx: TraceContext, a: RouteLookup<IpAddr>): string {
  const type = a.type === 'unicast' ? '' : `${a.type} `;
  const via = a.gateway === undefined ? '' : `via ${formatIp(a.gateway)} `;
  const src = a.prefsrc === undefined ? '' : ` src ${formatIp(a.prefsrc)}`;
  return `${type}${via}dev ${linkName(ctx, a.oif)}${src}`;
}

/** "ip route get …: via … dev …", or the errno. */
export function describeLookup(ctx: TraceContext, r: LookupResult): string {
  return `${lookupCommand(ctx, r)} → ${'answer' in r ? describeAnswer(ctx, r.answer) : `error ${r.error}`}`;
}

const ERRNO_MEANING: Record<string, string> = {
  EXDEV: 'the reverse-path filter (rp_filter) rejects the source on that interface',
  ENETUNREACH: 'no route matches',
  EHOSTUNREACH: 'the host does not route it (forwarding off, or an unreachable route)',
  EINVAL: 'the kernel refuses the lookup (a martian source or destination)',
  EACCES: 'a prohibit route forbids it',
};

/** "EXDEV: the reverse-path filter …" */
export function errnoText(errno: string): string {
  return ERRNO_MEANING[errno] ? `${errno}: ${ERRNO_MEANING[errno]}` : errno;
}

/** `sysctl` name of a per-interface setting: dots in interface names become slashes. */
export function confSysctl(iface: string, name: string): string {
  return `net.ipv4.conf.${iface.replace(/\./g, '/')}.${name}`;
}

/** rp_filter as the kernel applies it on `iface`: the larger of `all` and the interface's value (IPv6 has none). */
export function rpFilter(ctx: TraceContext, iface: string): { effective: number | undefined; text: string } {
  if (!ctx.tf.rpFilter) return { effective: undefined, text: 'IPv6 has no rp_filter' };
  const all = ctx.facts.sysctls.get('net.ipv4.conf.all.rp_filter');
  const own = ctx.facts.sysctls.get(`net.ipv4.conf.${iface}.rp_filter`);
  const effective = all === undefined || own === undefined ? undefined : Math.max(Number(all), Number(own));
  const word = effective === 1 ? 'strict' : effective === 2 ? 'loose' : effective === 0 ? 'off' : 'unknown';
  return { effective, text: `rp_filter on ${iface} ${word} (all=${all ?? '?'}, ${iface}=${own ?? '?'})` };
}
