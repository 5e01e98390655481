/**
 * DirectRouting: which peers are reached by a plain route via their PublicIP
 * instead of through flannel.<VNI> (contract §12).
 *
 * The rule is flanneld's (pkg/ip/iface.go): look the PublicIP up as
 * `ip route get` does (any table, any device); the peer is direct iff the
 * kernel answers with a route that has no gateway. Any via-less route counts
 * (a connected subnet, a /32, a device route on another NIC); a lookup error is
 * "not direct". We also ask for a unicast answer: a `local` answer (a PublicIP
 * that is one of this host's own addresses) would make a route the kernel
 * refuses.
 *
 * Cost: one lookup per peer per pass would be 5,000 requests per pass at 5,000
 * peers. Decisions are kept per PublicIP and dropped all at once when the
 * host's addressing changes: each listing pass hands over the host network it
 * read, and a fingerprint of it (interfaces, their addresses and every route
 * that is not ours) is compared with the last one. flanneld decides only on the
 * peer's PUT; we also re-decide when the host's addresses or routes change.
 *
 * Family: one DirectDecisions per family overlay; the rule and the cache take
 * any IpAddr, and the fingerprint covers only that family's addresses and
 * routes (an IPv4 peer's flannel.1 route is no news for IPv6 decisions).
 */
import type { HostNetwork, HostRoute } from '../kernel/kernel';
import { RTPROT_FLANNELD_TS } from '../kernel/kernel';
import type { RouteLookup } from '../kernel/interfaces';
import type { AnyCidr, IpAddr } from '../net/family';

/** flanneld's rule: exactly one route and it has no gateway; a failed lookup is not direct. */
export function isDirectRoute(lookup: Pick<RouteLookup<IpAddr>, 'gateway' | 'type'> | undefined): boolean {
  if (!lookup) return false;
  if (lookup.type !== undefined && lookup.type !== 'unicast') return false;
  return lookup.gateway === undefined || lookup.gateway === 0 || lookup.gateway === 0n;
}

/**
 * What the decisions depend on: the host's interfaces with addresses of the
 * family and every route of the family except those on the overlay device and
 * our direct routes (which change with the peers, not with the host's
 * addressing). Left out because no PublicIP lookup can depend on them, so that
 * a new pod's veth is no news: interfaces without such addresses (their device
 * routes, if any, are in the route list), IPv6 link-local addresses and routes
 * to link-local (fe80::/10) or multicast (ff00::/8) destinations.
 */
export function hostFingerprint(host: HostNetwork, overlayIndex: number | undefined, family: 4 | 6 = 4): string {
  const parts: string[] = [];
  for (const i of host.interfaces) {
    if (i.index === overlayIndex) continue;
    const addresses: ReadonlyArray<{ readonly ip: IpAddr; readonly prefixLen: number }> = family === 6 ? (i.addresses6 ?? []).filter((a) => !linkLocalOrMulticast6(a.ip)) : i.addresses;
    if (addresses.length === 0) continue;
    parts.push(`i${i.index} ${i.up ? 1 : 0} ${addresses.map((a) => `${a.ip}/${a.prefixLen}`).join(',')}`);
  }
  const routes: ReadonlyArray<HostRoute<AnyCidr>> = family === 6 ? (host.routes6 ?? []) : host.routes;
  for (const r of routes) {
    if (r.protocol === RTPROT_FLANNELD_TS || (r.devices.length === 1 && r.devices[0] === overlayIndex)) continue;
    if (typeof r.dst.ip === 'bigint' && linkLocalOrMulticast6(r.dst.ip, r.dst.prefixLen)) continue;
    parts.push(`r${r.dst.ip}/${r.dst.prefixLen} ${r.table} ${r.type} ${r.devices.join(',')} ${r.gateway ?? ''}`);
  }
  return parts.join(';');
}

// Inside fe80::/10 or ff00::/8 (an address, or a network of `prefixLen` wholly inside).
function linkLocalOrMulticast6(ip: IpAddr, prefixLen = 128): boolean {
  if (typeof ip !== 'bigint') return false;
  const top = Number(ip >> 112n);
  return (prefixLen >= 10 && (top & 0xffc0) === 0xfe80) || (prefixLen >= 8 && (top & 0xff00) === 0xff00);
}

export type RouteGet = (dst: IpAddr) => Promise<RouteLookup<IpAddr> | undefined>;

/** The per-PublicIP decisions and their invalidation. */
export class DirectDecisions {
  private readonly decided = new Map<IpAddr, boolean>();
  private fingerprint: string | undefined;
  /** Route lookups made so far (for tests and the pass-cost measurement). */
  lookups = 0;

  constructor(
    private readonly routeGet: RouteGet,
    private readonly family: 4 | 6 = 4,
  ) {}

  /** A new reading of the host: when its addressing changed, every decision is made again. Returns true then. */
  observe(host: HostNetwork, overlayIndex: number | undefined): boolean {
    const fp = hostFingerprint(host, overlayIndex, this.family);
    if (fp === this.fingerprint) return false;
    const had = this.fingerprint !== undefined;
    this.fingerprint = fp;
    this.decided.clear();
    return had;
  }

  /** Looks up the PublicIPs not decided yet; forgets those no longer asked for. Returns how many lookups it made. */
  async decide(publicIPs: Iterable<IpAddr>): Promise<number> {
    const wanted = new Set(publicIPs);
    for (const ip of this.decided.keys()) if (!wanted.has(ip)) this.decided.delete(ip);
    let made = 0;
    for (const ip of wanted) {
      if (this.decided.has(ip)) continue;
      const lookup = await this.routeGet(ip).catch(() => undefined);
      this.decided.set(ip, isDirectRoute(lookup));
      made++;
    }
    this.lookups += made;
    return made;
  }

  /** The decision for a PublicIP; undefined before `decide` saw it (treated as vxlan, the safe side). */
  isDirect(publicIP: IpAddr): boolean | undefined {
    return this.decided.get(publicIP);
  }
}
