/**
 * Keeping peers off the underlay: a peer's route must never take traffic from
 * the host's own network. Pure: the host's addresses and routes are read once
 * per reconcile pass (`Kernel.readHostNetwork`) and passed in.
 *
 * Ownership: a route on the overlay device (flannel.<VNI>) is ours; a route
 * anywhere else is not, and a peer subnet that would take traffic from one is
 * refused. A less specific route that covers the whole Network (the default
 * route, an aggregate such as 10.0.0.0/8 via eth0, a blackhole for the
 * Network) is how the overlay is meant to sit inside the underlay, so it does
 * not count; every other overlap does.
 *
 * The same rules hold for IPv6 peer subnets on flannel-v6.<VNI>: with an IPv6
 * `network` the check reads the interfaces' IPv6 addresses and the IPv6 routes
 * (`ip -6 route show table all`). One code path: the family is a value.
 *
 * DirectRouting: our direct routes (main table, proto RTPROT_FLANNELD_TS) are
 * ours wherever the kernel put them. A main-table proto boot route that is
 * exactly the direct route flanneld makes for this lease (its subnet via its
 * PublicIP or PublicIPv6) is flanneld's, left from before flanneld-ts took over
 * the node: it does not refuse the peer, and our own route replace takes its
 * place (README, migration). Any other route, proto boot or not, stays someone else's.
 */
import { HostNetwork, HostRoute, RTPROT_FLANNELD_TS } from '../kernel/kernel';
import { cidrContains } from '../net/ipv4';
import { cidr6Contains } from '../net/ipv6';
import { AddressFamily, AnyCidr, IPV4, IPV6, IpAddr, formatAnyCidr, formatIp, isCidr6 } from '../net/family';

const RT_TABLE_LOCAL = 255;
const RT_TABLE_MAIN = 254;
const RTPROT_KERNEL = 2;
const RTPROT_BOOT = 3;

/** The route flanneld's DirectRouting makes for a lease: `<subnet> via <PublicIP|PublicIPv6>`, main table, proto boot. */
function isFlanneldDirectRoute(r: HostRoute<AnyCidr>, subnet: AnyCidr, publicIP: IpAddr | undefined, fam: AddressFamily): boolean {
  return publicIP !== undefined && r.table === RT_TABLE_MAIN && r.protocol === RTPROT_BOOT && r.type === 1 && r.gateway === publicIP && fam.equals(r.dst, subnet);
}

export interface UnderlayContext {
  readonly host: HostNetwork;
  /** ifindex of flannel.<VNI>: routes on it are ours. */
  readonly overlayIndex: number | undefined;
  /** The family's network (Network or IPv6Network): it picks the family of the check. */
  readonly network: AnyCidr;
  /** Addresses of the etcd endpoints, either family: each check uses those of its own. */
  readonly etcdAddresses: readonly IpAddr[];
}

function deviceNames(ctx: UnderlayContext, r: HostRoute<AnyCidr>): string {
  if (r.devices.length === 0) return 'no device';
  return r.devices.map((i) => ctx.host.interfaces.find((x) => x.index === i)?.name ?? `ifindex ${i}`).join(',');
}

function describeRoute(ctx: UnderlayContext, r: HostRoute<AnyCidr>): string {
  const kind = r.protocol === RTPROT_KERNEL ? 'connected route' : 'route';
  const table = r.table === 254 ? '' : ` table ${r.table}`;
  return `${kind} ${formatAnyCidr(r.dst)} dev ${deviceNames(ctx, r)}${table}`;
}

/**
 * A check for many subnets against one reading of the host: the host's routes
 * are filtered once (routes on the overlay device and the local table dropped),
 * so thousands of peers against thousands of our own routes stay cheap.
 * The check says why a peer with that subnet (and PublicIP, when known) would
 * hijack part of the underlay, or undefined when it would not.
 */
export function underlayChecker(ctx: UnderlayContext): (subnet: AnyCidr, publicIP?: IpAddr) => string | undefined {
  const v6 = isCidr6(ctx.network);
  const fam: AddressFamily = v6 ? IPV6 : IPV4;
  const others = ctx.host.interfaces.filter((i) => i.index !== ctx.overlayIndex);
  const addresses: Array<{ ip: IpAddr; name: string }> = v6
    ? others.flatMap((i) => (i.addresses6 ?? []).map((a) => ({ ip: a.ip, name: i.name })))
    : others.flatMap((i) => i.addresses.map((a) => ({ ip: a.ip, name: i.name })));
  const routes: ReadonlyArray<HostRoute<AnyCidr>> = v6 ? (ctx.host.routes6 ?? []) : ctx.host.routes;
  const ours = (r: HostRoute<AnyCidr>): boolean => (r.devices.length > 0 && r.devices.every((i) => i === ctx.overlayIndex)) || (r.table === RT_TABLE_MAIN && r.protocol === RTPROT_FLANNELD_TS);
  const foreign = routes.filter((r) => r.table !== RT_TABLE_LOCAL && !ours(r));
  // An endpoint of the other family cannot be inside a subnet of this one.
  const etcdAddresses = ctx.etcdAddresses.filter((ip) => (typeof ip === 'bigint') === v6);
  return (subnet, publicIP) => {
    // A subnet of the other family cannot overlap anything of this one.
    if (isCidr6(subnet) !== v6) return undefined;
    // Only text for a refusal: most subnets pass and need none.
    const s = (): string => formatAnyCidr(subnet);
    const a = addresses.find((x) => fam.contains(subnet, x.ip));
    if (a) return `subnet ${s()} contains address ${formatIp(a.ip)} of ${a.name} on this host`;
    const etcd = etcdAddresses.find((ip) => fam.contains(subnet, ip));
    if (etcd !== undefined) return `subnet ${s()} contains etcd endpoint ${formatIp(etcd)}`;
    for (const r of foreign) {
      if (isFlanneldDirectRoute(r, subnet, publicIP, fam)) continue;
      if (r.gateway !== undefined && r.gateway !== fam.zero && fam.contains(subnet, r.gateway)) {
        return `subnet ${s()} contains gateway ${formatIp(r.gateway)} of ${describeRoute(ctx, r)}, which flanneld-ts did not make`;
      }
      if (r.dst.prefixLen === 0 || !fam.overlaps(subnet, r.dst)) continue;
      if (r.protocol !== RTPROT_KERNEL && fam.containsCidr(r.dst, ctx.network)) continue;
      return `subnet ${s()} overlaps ${describeRoute(ctx, r)}, which flanneld-ts did not make`;
    }
    return undefined;
  };
}

/** Why a peer with this subnet would hijack part of the underlay, or undefined when it would not (one subnet; see underlayChecker). */
export function underlayProblem(subnet: AnyCidr, ctx: UnderlayContext): string | undefined {
  return underlayChecker(ctx)(subnet);
}

export interface NetworkHostFacts {
  /** The public IP of the network's family (PublicIP, or PublicIPv6 for IPv6Network). */
  readonly publicIP: IpAddr;
  /** The external interface, with its addresses (`addresses6` for IPv6Network). */
  readonly iface: { readonly name: string; readonly addresses: ReadonlyArray<{ readonly ip: number }>; readonly addresses6?: ReadonlyArray<{ readonly ip: bigint }> | undefined };
  readonly etcdAddresses: ReadonlyArray<IpAddr>;
}

/** Why the config's Network would swallow the underlay (checked at start, before any lease or route), or undefined. */
export function networkProblem(network: AnyCidr, facts: NetworkHostFacts): string | undefined {
  const v6 = isCidr6(network);
  const net = `${v6 ? 'IPv6Network' : 'Network'} ${formatAnyCidr(network)}`;
  // Only addresses of the network's family can fall inside it.
  const inside = (ip: IpAddr): boolean => (typeof ip === 'bigint' ? isCidr6(network) && cidr6Contains(network, ip) : !isCidr6(network) && cidrContains(network, ip));
  if (inside(facts.publicIP)) return `${net} contains this node's public IP ${formatIp(facts.publicIP)}`;
  const own = (v6 ? facts.iface.addresses6 ?? [] : facts.iface.addresses).find((a) => inside(a.ip));
  if (own) return `${net} contains ${formatIp(own.ip)}, an address of the external interface ${facts.iface.name}`;
  const etcd = facts.etcdAddresses.find(inside);
  if (etcd !== undefined) return `${net} contains etcd endpoint ${formatIp(etcd)}`;
  return undefined;
}
