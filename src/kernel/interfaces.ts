/**
 * Choice of the external (underlay) interface and the public IP (contract §9).
 * That one address is the lease PublicIP, the peers' FDB dst and the VXLAN local.
 */
import { tryParseIPv4 } from '../net/ipv4';
import { HostError } from '../util/errors';
import { InterfaceInfo } from './kernel';

export interface ExternalInterfaceOptions {
  /** `--iface` values, names or IPv4 addresses, in order of preference. */
  readonly iface: readonly string[];
  /** `--iface-regex` values, tried on interface names after `--iface`. */
  readonly ifaceRegex?: readonly string[];
  /** `--public-ip`, if given. */
  readonly publicIP?: number | undefined;
}

function ownerOf(ifaces: readonly InterfaceInfo[], ip: number): InterfaceInfo | undefined {
  return ifaces.find((i) => i.addresses.some((a) => a.ip === ip));
}

function firstGlobalAddress(iface: InterfaceInfo): number | undefined {
  return iface.addresses.find((a) => a.scope === 0)?.ip;
}

/**
 * With `--iface` values, the first that names an interface or one of its
 * addresses (an address given this way is also the public IP). Without, the
 * interface owning `--public-ip`, else the one of the default route. The public
 * IP is `--public-ip`, else the chosen address, else the interface's first global
 * IPv4 address. Throws HostError naming what was asked for.
 */
export function chooseExternalInterface(
  ifaces: readonly InterfaceInfo[],
  defaultIndex: number | undefined,
  opts: ExternalInterfaceOptions,
): { iface: InterfaceInfo; publicIP: number } {
  let iface: InterfaceInfo | undefined;
  let matchedIP: number | undefined;
  const regexes = opts.ifaceRegex ?? [];
  if (opts.iface.length > 0 || regexes.length > 0) {
    for (const wanted of opts.iface) {
      const ip = tryParseIPv4(wanted);
      iface = ip === undefined ? ifaces.find((i) => i.name === wanted) : ownerOf(ifaces, ip);
      if (iface) {
        matchedIP = ip;
        break;
      }
    }
    for (const re of iface ? [] : regexes) {
      const pattern = new RegExp(re);
      // Like flanneld, only interfaces with a global address qualify for a regex match.
      iface = ifaces.find((i) => pattern.test(i.name) && firstGlobalAddress(i) !== undefined);
      if (iface) break;
    }
    if (!iface) {
      const asked = [...opts.iface.map((x) => `${JSON.stringify(x)} (--iface)`), ...regexes.map((x) => `/${x}/ (--iface-regex)`)].join(', ');
      throw new HostError(`failed to find interface ${asked}: no such interface or address`);
    }
  } else {
    iface = opts.publicIP === undefined ? undefined : ownerOf(ifaces, opts.publicIP);
    if (!iface) {
      if (defaultIndex === undefined) {
        throw new HostError('failed to find the external interface: no IPv4 default route (use --iface)');
      }
      iface = ifaces.find((i) => i.index === defaultIndex);
      if (!iface) {
        throw new HostError(`failed to find the external interface: default-route interface index ${defaultIndex} not found`);
      }
    }
  }
  const address = matchedIP ?? firstGlobalAddress(iface);
  if (address === undefined) {
    throw new HostError(`failed to find a global IPv4 address on interface ${JSON.stringify(iface.name)}`);
  }
  return { iface, publicIP: opts.publicIP ?? address };
}
