/**
 * Choice of the external (underlay) interface and the public IP, exactly as
 * flanneld makes it (contract §9, §14). That one address is the lease
 * PublicIP, the peers' FDB dst and the VXLAN local; choosing another address
 * than flanneld did on a multi-address NIC would make a migrated node miss its
 * old lease (leases are found by PublicIP).
 */
import { IpAddr, formatIp } from '../net/family';
import { formatIPv4, tryParseIPv4 } from '../net/ipv4';
import { formatIPv6, tryParseIPv6 } from '../net/ipv6';
import { HostError } from '../util/errors';
import type { InterfaceInfo, Kernel } from './kernel';

/** ifa_flags bits (linux/if_addr.h). For IPv4, 0x01 is called IFA_F_SECONDARY; flanneld tests it as "temporary". */
export const IFA_F_TEMPORARY = 0x01;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_PERMANENT = 0x80;

/** Where the kernel would send a packet (`ip [-6] route get <ip>`): output interface and preferred source; addresses of the asked family. */
export interface RouteLookup<A extends IpAddr = number> {
  readonly index: number;
  readonly src: A | undefined;
  /** The next hop (`via`), undefined for a route without one (on-link). */
  readonly gateway?: A | undefined;
  /** "unicast", "local", … (route-query.ts's names); undefined = unicast. */
  readonly type?: string | undefined;
}

/** The main table's first IPv4 default route: its interface, or `multipath` (no single interface). */
export type DefaultRoute = number | 'multipath' | undefined;

export interface ExternalInterfaceOptions {
  /** `--iface` values, names or IPv4 addresses, in order of preference. */
  readonly iface: readonly string[];
  /** `--iface-regex` values, tried on addresses, then names, after `--iface`. */
  readonly ifaceRegex?: readonly string[];
  /** `--iface-can-reach` (either family) and the kernel's route to it (`ip [-6] route get`), tried last. */
  readonly canReach?: { readonly ip: IpAddr; readonly route: RouteLookup<IpAddr> | undefined } | undefined;
  /** `--public-ip`, if given. */
  readonly publicIP?: number | undefined;
  /** `--public-ipv6`, if given (used when the stack has IPv6). */
  readonly publicIPv6?: bigint | undefined;
}

/** Which families the network config enables, and the IPv6 default route when IPv6 is one (contract §11 "Public IPv6"). */
export interface StackOptions {
  readonly ipv4: boolean;
  readonly ipv6: boolean;
  readonly defaultRoute6?: DefaultRoute;
}

/** The external interface with the public address of each enabled family. `publicIP` is 0 for an IPv6-only stack (the lease's "0.0.0.0"). */
export interface ExternalInterface {
  readonly iface: InterfaceInfo;
  readonly publicIP: number;
  readonly publicIPv6?: bigint | undefined;
}

/** Key of `Kernel.addressFlags`. */
export function addressKey(index: number, ip: number): string {
  return `${index} ${ip}`;
}

/**
 * Reads what the choice needs: interfaces with their address flags, the
 * default route, and the route to `--iface-can-reach` when it is given.
 */
export async function readInterfaceFacts(
  kernel: Pick<Kernel, 'listInterfaces' | 'addressFlags' | 'defaultRoute' | 'routeGet' | 'listAddresses6' | 'defaultRoute6'>,
  canReach: IpAddr | undefined,
  ipv6 = false,
): Promise<{ ifaces: InterfaceInfo[]; defaultRoute: DefaultRoute; defaultRoute6: DefaultRoute; canReach: ExternalInterfaceOptions['canReach'] }> {
  const [ifaces, flags, defaultRoute, route, addrs6, defaultRoute6] = await Promise.all([
    kernel.listInterfaces(),
    kernel.addressFlags(),
    kernel.defaultRoute(),
    canReach === undefined ? undefined : kernel.routeGet(canReach),
    ipv6 ? kernel.listAddresses6() : undefined,
    ipv6 ? kernel.defaultRoute6() : undefined,
  ]);
  const withFlags = ifaces.map((i) => ({
    ...i,
    addresses: i.addresses.map((a) => ({ ...a, flags: flags.get(addressKey(i.index, a.ip)) ?? a.flags })),
    ...(addrs6 ? { addresses6: addrs6.get(i.index) ?? [] } : {}),
  }));
  return { ifaces: withFlags, defaultRoute, defaultRoute6, canReach: canReach === undefined ? undefined : { ip: canReach, route } };
}

/** 169.254/16 or fe80::/10. */
function isLinkLocal(ip: IpAddr): boolean {
  return typeof ip === 'bigint' ? ip >> 118n === 0x3fan : ip >>> 16 === 0xa9fe;
}

/**
 * Go's IP.IsGlobalUnicast: IPv4 not 0.0.0.0, broadcast, loopback, multicast or
 * link-local; IPv6 not ::, ::1, ff00::/8 or fe80::/10 (ULAs fc00::/7 count).
 */
function isGlobalUnicast(ip: IpAddr): boolean {
  if (typeof ip === 'bigint') return ip !== 0n && ip !== 1n && ip >> 120n !== 0xffn && !isLinkLocal(ip);
  const first = ip >>> 24;
  return ip !== 0 && ip >>> 0 !== 0xffffffff && first !== 127 && !(first >= 224 && first <= 239) && !isLinkLocal(ip);
}

interface AnyAddress {
  readonly ip: IpAddr;
  readonly flags?: number | undefined;
}

/** Flags unknown (a fake kernel) count as a permanent, non-temporary address. */
const flagsOf = (a: AnyAddress): number => a.flags ?? IFA_F_PERMANENT;

/**
 * The addresses flanneld would consider, best first (either family): global or
 * link-local unicast and not deprecated; global before link-local, permanent
 * (static) before dynamic (DHCP/SLAAC), non-temporary before temporary,
 * otherwise kernel order.
 */
export function orderAddresses<T extends AnyAddress>(addresses: readonly T[]): T[] {
  const rank = (a: T): number => {
    const f = flagsOf(a);
    return (isLinkLocal(a.ip) ? 4 : 0) + (f & IFA_F_PERMANENT ? 0 : 2) + (f & IFA_F_TEMPORARY ? 1 : 0);
  };
  const usable = addresses.filter((a) => (isGlobalUnicast(a.ip) || isLinkLocal(a.ip)) && !(flagsOf(a) & IFA_F_DEPRECATED));
  // Array.prototype.sort is stable: equal ranks keep kernel order.
  return usable.sort((a, b) => rank(a) - rank(b));
}

const firstAddress = (iface: InterfaceInfo): number | undefined => orderAddresses(iface.addresses)[0]?.ip;
const firstAddress6 = (iface: InterfaceInfo): bigint | undefined => orderAddresses(iface.addresses6 ?? [])[0]?.ip;

function ownerOf(ifaces: readonly InterfaceInfo[], ip: IpAddr): InterfaceInfo | undefined {
  return ifaces.find((i) => (typeof ip === 'bigint' ? (i.addresses6 ?? []).some((a) => a.ip === ip) : i.addresses.some((a) => a.ip === ip)));
}

/** The interface and, where a flag pinned it, the address of each family. */
type Match = { iface: InterfaceInfo; ip: number | undefined; ip6?: bigint | undefined };

const IPV4_ONLY: StackOptions = { ipv4: true, ipv6: false };

/**
 * `--iface-regex`: pass 1 over every usable address (interfaces in ifindex
 * order); a dual-stack stack needs an IPv4 and an IPv6 match on one interface.
 * Pass 2 over names, for an interface with a usable address of each family.
 */
function matchRegex(ifaces: readonly InterfaceInfo[], re: string, stack: StackOptions): Match | undefined {
  const pattern = new RegExp(re);
  const byIndex = [...ifaces].sort((a, b) => a.index - b.index);
  for (const iface of byIndex) {
    const hit = stack.ipv4 ? orderAddresses(iface.addresses).find((a) => pattern.test(formatIPv4(a.ip))) : undefined;
    const hit6 = stack.ipv6 ? orderAddresses(iface.addresses6 ?? []).find((a) => pattern.test(formatIPv6(a.ip))) : undefined;
    if ((hit || !stack.ipv4) && (hit6 || !stack.ipv6)) return { iface, ip: hit?.ip, ip6: hit6?.ip };
  }
  const named = byIndex.find((i) => pattern.test(i.name) && (!stack.ipv4 || firstAddress(i) !== undefined) && (!stack.ipv6 || firstAddress6(i) !== undefined));
  return named && { iface: named, ip: undefined };
}

function matchFlags(ifaces: readonly InterfaceInfo[], opts: ExternalInterfaceOptions, stack: StackOptions): Match | undefined {
  for (const wanted of opts.iface) {
    // An address pins the interface only in an enabled family (flannel: ipmatch LookupExtIface).
    const ip = stack.ipv4 ? tryParseIPv4(wanted) : undefined;
    const ip6 = stack.ipv6 && ip === undefined ? tryParseIPv6(wanted) : undefined;
    const addr = ip ?? ip6;
    const iface = addr === undefined ? ifaces.find((i) => i.name === wanted) : ownerOf(ifaces, addr);
    if (iface) return { iface, ip, ip6 };
  }
  for (const re of opts.ifaceRegex ?? []) {
    const m = matchRegex(ifaces, re, stack);
    if (m) return m;
  }
  // The route's preferred source pins the address of the target's family; the other family takes the interface's best.
  const route = opts.canReach?.route;
  const iface = route && ifaces.find((i) => i.index === route.index);
  if (!iface) return undefined;
  return typeof route.src === 'bigint' ? { iface, ip: undefined, ip6: stack.ipv6 ? route.src : undefined } : { iface, ip: route.src };
}

/** Throws unless `route` names one interface. */
function defaultRouteIface(ifaces: readonly InterfaceInfo[], route: DefaultRoute, family: 'IPv4' | 'IPv6'): InterfaceInfo {
  if (route === undefined) throw new HostError(`failed to find the external interface: no ${family} default route (use --iface)`);
  if (route === 'multipath') throw new HostError(`failed to find the external interface: the ${family} default route is multipath, so it has no single interface (use --iface)`);
  const iface = ifaces.find((i) => i.index === route);
  if (!iface) throw new HostError(`failed to find the external interface: ${family} default-route interface index ${route} not found`);
  return iface;
}

/**
 * With `--iface`, `--iface-regex` or `--iface-can-reach`, the first that
 * matches (no fallback when none does). Without, the interface owning
 * `--public-ip` (which must be local), else the default route's; a dual-stack
 * stack needs the IPv4 and IPv6 default routes on one interface, an IPv6-only
 * one uses `--public-ipv6`'s owner or the IPv6 default route. Each public
 * address is its flag, else the matched address, else the interface's best
 * address in flanneld's order. Throws HostError (exit 1) naming what was asked for.
 */
export function chooseExternalInterface(
  ifaces: readonly InterfaceInfo[],
  defaultRoute: DefaultRoute,
  opts: ExternalInterfaceOptions,
  stack: StackOptions = IPV4_ONLY,
): ExternalInterface {
  const regexes = opts.ifaceRegex ?? [];
  let match: Match | undefined;
  if (opts.iface.length > 0 || regexes.length > 0 || opts.canReach !== undefined) {
    match = matchFlags(ifaces, opts, stack);
    if (!match) {
      const asked = [
        ...opts.iface.map((x) => `${JSON.stringify(x)} (--iface)`),
        ...regexes.map((x) => `/${x}/ (--iface-regex)`),
        ...(opts.canReach ? [`${formatIp(opts.canReach.ip)} (--iface-can-reach${opts.canReach.route ? '' : ': no route'})`] : []),
      ].join(', ');
      throw new HostError(`failed to find interface ${asked}: no such interface or address${stack.ipv4 && stack.ipv6 ? ' with both an IPv4 and an IPv6 address' : ''}`);
    }
  } else if (stack.ipv4 && opts.publicIP !== undefined) {
    const owner = ownerOf(ifaces, opts.publicIP);
    if (!owner) throw new HostError(`failed to find the interface of --public-ip ${formatIPv4(opts.publicIP)}: no interface has this address (use --iface as well)`);
    match = { iface: owner, ip: opts.publicIP };
  } else if (!stack.ipv4 && opts.publicIPv6 !== undefined) {
    const owner = ownerOf(ifaces, opts.publicIPv6);
    if (!owner) throw new HostError(`failed to find the interface of --public-ipv6 ${formatIPv6(opts.publicIPv6)}: no interface has this address (use --iface as well)`);
    match = { iface: owner, ip: undefined, ip6: opts.publicIPv6 };
  } else {
    const iface = defaultRouteIface(ifaces, stack.ipv4 ? defaultRoute : stack.defaultRoute6, stack.ipv4 ? 'IPv4' : 'IPv6');
    if (stack.ipv4 && stack.ipv6) {
      const iface6 = defaultRouteIface(ifaces, stack.defaultRoute6, 'IPv6');
      if (iface6.index !== iface.index) {
        throw new HostError(`failed to find the external interface: the IPv4 default route uses ${JSON.stringify(iface.name)} but the IPv6 one ${JSON.stringify(iface6.name)}; dual-stack needs one interface (use --iface)`);
      }
    }
    match = { iface, ip: undefined };
  }
  const { iface } = match;
  let publicIP = 0;
  if (stack.ipv4) {
    const address = match.ip ?? firstAddress(iface);
    if (address === undefined) throw new HostError(`failed to find a usable IPv4 address on interface ${JSON.stringify(iface.name)}`);
    publicIP = opts.publicIP ?? address;
  }
  if (!stack.ipv6) return { iface, publicIP };
  return { iface, publicIP, publicIPv6: choosePublicIPv6(iface, match, opts) };
}

/** `--public-ipv6` (which, beside an `--iface` IPv4 address, must be on that interface), else the matched or best IPv6 address. */
function choosePublicIPv6(iface: InterfaceInfo, match: Match, opts: ExternalInterfaceOptions): bigint {
  const pinned = opts.publicIPv6;
  if (pinned !== undefined) {
    if (match.ip !== undefined && opts.iface.length > 0 && !(iface.addresses6 ?? []).some((a) => a.ip === pinned)) {
      throw new HostError(`--public-ipv6 ${formatIPv6(pinned)} is not an address of interface ${JSON.stringify(iface.name)}, which --iface ${formatIp(match.ip)} chose`);
    }
    return pinned;
  }
  const address = match.ip6 ?? firstAddress6(iface);
  if (address === undefined) throw new HostError(`failed to find a usable IPv6 address on interface ${JSON.stringify(iface.name)} (give --public-ipv6)`);
  return address;
}
