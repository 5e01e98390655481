/**
 * Choice of the external (underlay) interface and the public IP, exactly as
 * flanneld makes it (contract §9, §14). That one address is the lease
 * PublicIP, the peers' FDB dst and the VXLAN local; choosing another address
 * than flanneld did on a multi-address NIC would make a migrated node miss its
 * old lease (leases are found by PublicIP).
 */
import { formatIPv4, tryParseIPv4 } from '../net/ipv4';
import { HostError } from '../util/errors';
import type { InterfaceAddress, InterfaceInfo, Kernel } from './kernel';

/** ifa_flags bits (linux/if_addr.h). For IPv4, 0x01 is called IFA_F_SECONDARY; flanneld tests it as "temporary". */
export const IFA_F_TEMPORARY = 0x01;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_PERMANENT = 0x80;

/** Where the kernel would send a packet (`ip route get <ip>`): output interface and preferred source. */
export interface RouteLookup {
  readonly index: number;
  readonly src: number | undefined;
  /** The next hop (`via`), undefined for a route without one (on-link). */
  readonly gateway?: number | undefined;
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
  /** `--iface-can-reach` and the kernel's route to it, tried last. */
  readonly canReach?: { readonly ip: number; readonly route: RouteLookup | undefined } | undefined;
  /** `--public-ip`, if given. */
  readonly publicIP?: number | undefined;
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
  kernel: Pick<Kernel, 'listInterfaces' | 'addressFlags' | 'defaultRoute' | 'routeGet'>,
  canReach: number | undefined,
): Promise<{ ifaces: InterfaceInfo[]; defaultRoute: DefaultRoute; canReach: ExternalInterfaceOptions['canReach'] }> {
  const [ifaces, flags, defaultRoute, route] = await Promise.all([
    kernel.listInterfaces(),
    kernel.addressFlags(),
    kernel.defaultRoute(),
    canReach === undefined ? undefined : kernel.routeGet(canReach),
  ]);
  const withFlags = ifaces.map((i) => ({ ...i, addresses: i.addresses.map((a) => ({ ...a, flags: flags.get(addressKey(i.index, a.ip)) ?? a.flags })) }));
  return { ifaces: withFlags, defaultRoute, canReach: canReach === undefined ? undefined : { ip: canReach, route } };
}

const isLinkLocal = (ip: number): boolean => ip >>> 16 === 0xa9fe;

/** Go's IP.IsGlobalUnicast for IPv4: not 0.0.0.0, broadcast, loopback, multicast or link-local. */
function isGlobalUnicast(ip: number): boolean {
  const first = ip >>> 24;
  return ip !== 0 && ip >>> 0 !== 0xffffffff && first !== 127 && !(first >= 224 && first <= 239) && !isLinkLocal(ip);
}

/** Flags unknown (a fake kernel) count as a permanent, non-temporary address. */
const flagsOf = (a: InterfaceAddress): number => a.flags ?? IFA_F_PERMANENT;

/**
 * The addresses flanneld would consider, best first: global or link-local
 * unicast and not deprecated; global before link-local, permanent (static)
 * before dynamic (DHCP), non-temporary before temporary, otherwise kernel order.
 */
export function orderAddresses(addresses: readonly InterfaceAddress[]): InterfaceAddress[] {
  const rank = (a: InterfaceAddress): number => {
    const f = flagsOf(a);
    return (isLinkLocal(a.ip) ? 4 : 0) + (f & IFA_F_PERMANENT ? 0 : 2) + (f & IFA_F_TEMPORARY ? 1 : 0);
  };
  const usable = addresses.filter((a) => (isGlobalUnicast(a.ip) || isLinkLocal(a.ip)) && !(flagsOf(a) & IFA_F_DEPRECATED));
  // Array.prototype.sort is stable: equal ranks keep kernel order.
  return usable.sort((a, b) => rank(a) - rank(b));
}

const firstAddress = (iface: InterfaceInfo): number | undefined => orderAddresses(iface.addresses)[0]?.ip;

function ownerOf(ifaces: readonly InterfaceInfo[], ip: number): InterfaceInfo | undefined {
  return ifaces.find((i) => i.addresses.some((a) => a.ip === ip));
}

type Match = { iface: InterfaceInfo; ip: number | undefined };

/** `--iface-regex`: pass 1 over every usable address (interfaces in ifindex order), pass 2 over names. */
function matchRegex(ifaces: readonly InterfaceInfo[], re: string): Match | undefined {
  const pattern = new RegExp(re);
  const byIndex = [...ifaces].sort((a, b) => a.index - b.index);
  for (const iface of byIndex) {
    const hit = orderAddresses(iface.addresses).find((a) => pattern.test(formatIPv4(a.ip)));
    if (hit) return { iface, ip: hit.ip };
  }
  const named = byIndex.find((i) => pattern.test(i.name) && firstAddress(i) !== undefined);
  return named && { iface: named, ip: undefined };
}

function matchFlags(ifaces: readonly InterfaceInfo[], opts: ExternalInterfaceOptions): Match | undefined {
  for (const wanted of opts.iface) {
    const ip = tryParseIPv4(wanted);
    const iface = ip === undefined ? ifaces.find((i) => i.name === wanted) : ownerOf(ifaces, ip);
    if (iface) return { iface, ip };
  }
  for (const re of opts.ifaceRegex ?? []) {
    const m = matchRegex(ifaces, re);
    if (m) return m;
  }
  const route = opts.canReach?.route;
  const iface = route && ifaces.find((i) => i.index === route.index);
  return iface && { iface, ip: route.src };
}

/**
 * With `--iface`, `--iface-regex` or `--iface-can-reach`, the first that
 * matches (no fallback when none does). Without, the interface owning
 * `--public-ip` (which must be local), else the default route's. The public IP
 * is `--public-ip`, else the matched address, else the interface's best address
 * in flanneld's order. Throws HostError (exit 1) naming what was asked for.
 */
export function chooseExternalInterface(
  ifaces: readonly InterfaceInfo[],
  defaultRoute: DefaultRoute,
  opts: ExternalInterfaceOptions,
): { iface: InterfaceInfo; publicIP: number } {
  const regexes = opts.ifaceRegex ?? [];
  let match: Match | undefined;
  if (opts.iface.length > 0 || regexes.length > 0 || opts.canReach !== undefined) {
    match = matchFlags(ifaces, opts);
    if (!match) {
      const asked = [
        ...opts.iface.map((x) => `${JSON.stringify(x)} (--iface)`),
        ...regexes.map((x) => `/${x}/ (--iface-regex)`),
        ...(opts.canReach ? [`${formatIPv4(opts.canReach.ip)} (--iface-can-reach${opts.canReach.route ? '' : ': no route'})`] : []),
      ].join(', ');
      throw new HostError(`failed to find interface ${asked}: no such interface or address`);
    }
  } else if (opts.publicIP !== undefined) {
    const owner = ownerOf(ifaces, opts.publicIP);
    if (!owner) throw new HostError(`failed to find the interface of --public-ip ${formatIPv4(opts.publicIP)}: no interface has this address (use --iface as well)`);
    match = { iface: owner, ip: opts.publicIP };
  } else {
    if (defaultRoute === undefined) throw new HostError('failed to find the external interface: no IPv4 default route (use --iface)');
    if (defaultRoute === 'multipath') throw new HostError('failed to find the external interface: the IPv4 default route is multipath, so it has no single interface (use --iface)');
    const iface = ifaces.find((i) => i.index === defaultRoute);
    if (!iface) throw new HostError(`failed to find the external interface: default-route interface index ${defaultRoute} not found`);
    match = { iface, ip: undefined };
  }
  const address = match.ip ?? firstAddress(match.iface);
  if (address === undefined) throw new HostError(`failed to find a usable IPv4 address on interface ${JSON.stringify(match.iface.name)}`);
  return { iface: match.iface, publicIP: opts.publicIP ?? address };
}
