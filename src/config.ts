/**
 * The network config stored at `<prefix>/config`, parsed with flannel's defaults
 * and validation (contract §2). Go field names match case-insensitively.
 */
import { ConfigError } from './util/errors';
import { JsonObject, isJsonObject, jsonField } from './util/json';
import { Cidr, blockSize, cidrContains, cidrLast, formatCidr, formatIPv4, makeCidr, parseCidr, parseIPv4, prefixMask } from './net/ipv4';
import { Cidr6, blockSize6, cidr6Contains, cidr6Last, formatCidr6, formatIPv6, parseCidr6, parseIPv6, prefixMask6 } from './net/ipv6';

export interface BackendConfig {
  readonly type: 'vxlan';
  readonly vni: number;
  /** UDP port; 0 in the config means the kernel default, which we resolve to 8472. */
  readonly port: number;
  /** Overrides the underlay MTU in the device MTU formula (0 = use the interface's). */
  readonly mtu: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly directRouting: boolean;
}

/** The IPv6 pool (contract §11): `IPv6Network`, `IPv6SubnetLen`, `IPv6SubnetMin`, `IPv6SubnetMax`. */
export interface NetworkConfigV6 {
  readonly network: Cidr6;
  readonly subnetLen: number;
  readonly subnetMin: bigint;
  readonly subnetMax: bigint;
}

export interface NetworkConfig {
  /** `EnableIPv4` (default true). False = IPv6-only: see `network`. */
  readonly enableIPv4: boolean;
  /** `EnableIPv6` (default false); `ipv6` is set exactly when this is true. */
  readonly enableIPv6: boolean;
  /**
   * The IPv4 pool. For an IPv6-only config (enableIPv4 false) these are flannel's
   * zero values: network 0.0.0.0/0, subnetLen 0, subnetMin = subnetMax = 0, which is
   * what makes its lease key `0.0.0.0-0&…` (contract §11). They describe no pool:
   * every IPv4 consumer (device, routes, firewall, subnet.env) must check `enableIPv4`.
   */
  readonly network: Cidr;
  readonly subnetLen: number;
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly ipv6: NetworkConfigV6 | undefined;
  readonly backend: BackendConfig;
  /** `EnableNFTables`: masquerade and forward rules in nftables instead of iptables (contract §16). */
  readonly enableNFTables: boolean;
  /**
   * Keys in `Backend` that flanneld's Linux VXLAN backend does not read (`MacPrefix`,
   * `Name` are Windows-only; anything else is unknown). flanneld ignores them silently;
   * the daemon logs one warning naming them (issue 12 item 3).
   */
  readonly ignoredBackendKeys: readonly string[];
}

export const DEFAULT_VXLAN_PORT = 8472;
/** Bytes VXLAN over IPv4 adds (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14): device MTU = underlay MTU - 50. */
export const VXLAN_OVERHEAD = 50;
// Linux: IFNAMSIZ is 16 with the terminating NUL, so "flannel." leaves 7 digits.
const IFNAMSIZ = 16;
const MAX_VNI = 10 ** (IFNAMSIZ - 1 - 'flannel.'.length) - 1;
// The kernel accepts a link MTU from 68 (the IPv4 minimum) to 65535 ("MTU must be between 68 and 65535").
const MIN_DEVICE_MTU = 68;
const MAX_MTU = 65535;
const MIN_BACKEND_MTU = MIN_DEVICE_MTU + VXLAN_OVERHEAD;
/** Networks wider than this need `--allow-wide-network` (0.0.0.0/0 would make the FORWARD rules accept everything). */
export const WIDEST_NETWORK_PREFIX = 8;

export interface ParseConfigOptions {
  /** `--allow-wide-network`: accept a Network prefix shorter than /8. */
  readonly allowWideNetwork?: boolean;
}


function optInt(obj: JsonObject, name: string, path: string, min: number, max: number): number | undefined {
  const v = jsonField(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(path, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optBool(obj: JsonObject, name: string, path: string): boolean | undefined {
  const v = jsonField(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(path, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function optIPv4(obj: JsonObject, name: string): number | undefined {
  const v = jsonField(obj, name);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(name, `must be an IPv4 address string, got ${JSON.stringify(v)}`);
  try {
    return parseIPv4(v);
  } catch {
    throw new ConfigError(name, `must be an IPv4 address, got ${JSON.stringify(v)}`);
  }
}

/** The `Backend` keys flanneld's Linux VXLAN backend reads (flannel: pkg/backend/vxlan/vxlan.go, contract §17). */
const BACKEND_KEYS = ['Type', 'VNI', 'Port', 'MTU', 'GBP', 'Learning', 'DirectRouting'];

/** Backend keys no Linux flanneld reads, in the config's own spelling. */
function ignoredBackendKeys(raw: unknown): string[] {
  if (!isJsonObject(raw)) return [];
  const known = new Set(BACKEND_KEYS.map((k) => k.toLowerCase()));
  return Object.keys(raw).filter((k) => !known.has(k.toLowerCase()));
}

function parseBackend(raw: unknown): BackendConfig {
  if (raw === undefined || raw === null) {
    throw new ConfigError('Backend', 'missing; flannel would default to the udp backend, flanneld-ts supports only "vxlan"');
  }
  if (!isJsonObject(raw)) throw new ConfigError('Backend', 'must be an object');
  const b = raw as JsonObject;
  const type = jsonField(b, 'Type');
  if (typeof type !== 'string' || type === '') {
    throw new ConfigError('Backend.Type', 'missing; flanneld-ts supports only "vxlan"');
  }
  if (type.toLowerCase() !== 'vxlan') {
    throw new ConfigError('Backend.Type', `unsupported backend ${JSON.stringify(type)}; flanneld-ts supports only "vxlan"`);
  }
  const vni = optInt(b, 'VNI', 'Backend.VNI', 0, 0xffffff) ?? 1;
  if (vni > MAX_VNI) {
    throw new ConfigError('Backend.VNI', `${vni} is too large: the device name flannel.${vni} would exceed the kernel's ${IFNAMSIZ - 1} characters (at most ${MAX_VNI})`);
  }
  const mtu = optInt(b, 'MTU', 'Backend.MTU', 0, MAX_MTU) ?? 0;
  if (mtu !== 0 && mtu < MIN_BACKEND_MTU) {
    throw new ConfigError('Backend.MTU', `${mtu} is too small: the device MTU would be ${mtu} - ${VXLAN_OVERHEAD}, below the kernel's minimum of ${MIN_DEVICE_MTU} (give ${MIN_BACKEND_MTU} to ${MAX_MTU}, or 0 for the interface's)`);
  }
  return {
    type: 'vxlan',
    vni,
    port: optInt(b, 'Port', 'Backend.Port', 0, 65535) || DEFAULT_VXLAN_PORT,
    mtu,
    gbp: optBool(b, 'GBP', 'Backend.GBP') ?? false,
    learning: optBool(b, 'Learning', 'Backend.Learning') ?? false,
    directRouting: optBool(b, 'DirectRouting', 'Backend.DirectRouting') ?? false,
  };
}

/** Parses and validates the config JSON text. Throws ConfigError naming the field. */
export function parseNetworkConfig(text: string, opts: ParseConfigOptions = {}): NetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(document)', `not valid JSON: ${(err as Error).message}`);
  }
  if (!isJsonObject(raw)) throw new ConfigError('(document)', 'must be a JSON object');
  const obj = raw as JsonObject;
  const enableIPv4 = optBool(obj, 'EnableIPv4', 'EnableIPv4') ?? true;
  const enableIPv6 = optBool(obj, 'EnableIPv6', 'EnableIPv6') ?? false;
  // flannel: pkg/ipmatch/match.go exits with "none defined stack".
  if (!enableIPv4 && !enableIPv6) throw new ConfigError('EnableIPv4', 'and EnableIPv6 are both false: no address family is enabled');
  const v4 = enableIPv4 ? parsePool4(obj, opts) : NO_POOL4;
  const ipv6 = enableIPv6 ? parsePool6(obj, opts) : undefined;
  const enableNFTables = optBool(obj, 'EnableNFTables', 'EnableNFTables') ?? false;
  const backendRaw = jsonField(obj, 'Backend');
  const backend = parseBackend(backendRaw);
  return { enableIPv4, enableIPv6, ...v4, ipv6, backend, enableNFTables, ignoredBackendKeys: ignoredBackendKeys(backendRaw) };
}

type Pool4 = Pick<NetworkConfig, 'network' | 'subnetLen' | 'subnetMin' | 'subnetMax'>;

/** flannel's zero IPv4 pool of an IPv6-only config (its lease keys start `0.0.0.0-0&`). */
const NO_POOL4: Pool4 = { network: makeCidr(0, 0), subnetLen: 0, subnetMin: 0, subnetMax: 0 };

function parsePool4(obj: JsonObject, opts: ParseConfigOptions): Pool4 {
  const netText = jsonField(obj, 'Network');
  if (typeof netText !== 'string' || netText === '') throw new ConfigError('Network', 'missing (e.g. "10.7.0.0/16")');
  let network: Cidr;
  try {
    network = parseCidr(netText);
  } catch {
    throw new ConfigError('Network', `must be an IPv4 CIDR, got ${JSON.stringify(netText)}`);
  }
  if (network.prefixLen > 28) {
    throw new ConfigError('Network', `prefix /${network.prefixLen} is too small (at most /28)`);
  }
  if (network.prefixLen < WIDEST_NETWORK_PREFIX && opts.allowWideNetwork !== true) {
    throw new ConfigError('Network', `${formatCidr(network)} is wider than /${WIDEST_NETWORK_PREFIX}; start flanneld-ts with --allow-wide-network if that is really meant`);
  }
  let subnetLen = optInt(obj, 'SubnetLen', 'SubnetLen', 0, 32);
  if (subnetLen === undefined || subnetLen === 0) {
    subnetLen = network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
  } else if (subnetLen > 30) {
    throw new ConfigError('SubnetLen', `${subnetLen} is too long (at most 30)`);
  } else if (subnetLen < network.prefixLen + 2) {
    throw new ConfigError('SubnetLen', `${subnetLen} is too short for Network ${formatCidr(network)} (at least ${network.prefixLen + 2})`);
  }
  const size = blockSize(subnetLen);
  const len = subnetLen;
  const checkBound = (name: string, ip: number | undefined, dflt: number): number => {
    if (ip === undefined) return dflt;
    if (!cidrContains(network, ip)) {
      throw new ConfigError(name, `${formatIPv4(ip)} is not inside Network ${formatCidr(network)}`);
    }
    if (((ip & prefixMask(len)) >>> 0) !== ip) {
      throw new ConfigError(name, `${formatIPv4(ip)} is not on a /${len} subnet boundary`);
    }
    return ip;
  };
  const subnetMin = checkBound('SubnetMin', optIPv4(obj, 'SubnetMin'), network.ip + size);
  const subnetMax = checkBound('SubnetMax', optIPv4(obj, 'SubnetMax'), (cidrLast(network) - size + 1) >>> 0);
  if (subnetMin > subnetMax) {
    throw new ConfigError('SubnetMin', `${formatIPv4(subnetMin)} is above SubnetMax ${formatIPv4(subnetMax)}`);
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function optIPv6(obj: JsonObject, name: string): bigint | undefined {
  const v = jsonField(obj, name);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(name, `must be an IPv6 address string, got ${JSON.stringify(v)}`);
  try {
    return parseIPv6(v);
  } catch {
    throw new ConfigError(name, `must be an IPv6 address, got ${JSON.stringify(v)}`);
  }
}

/** The IPv6 pool with flannel's defaults and checks (contract §11; flannel: pkg/subnet/config.go). */
function parsePool6(obj: JsonObject, opts: ParseConfigOptions): NetworkConfigV6 {
  const netText = jsonField(obj, 'IPv6Network');
  if (typeof netText !== 'string' || netText === '') throw new ConfigError('IPv6Network', 'missing; EnableIPv6 needs it (e.g. "fc00::/48")');
  let network: Cidr6;
  try {
    network = parseCidr6(netText);
  } catch {
    throw new ConfigError('IPv6Network', `must be an IPv6 CIDR, got ${JSON.stringify(netText)}`);
  }
  if (network.prefixLen > 124) throw new ConfigError('IPv6Network', `prefix /${network.prefixLen} is too small (at most /124)`);
  // As for Network: ::/0 would make the ip6tables FORWARD rules accept everything.
  if (network.prefixLen < WIDEST_NETWORK_PREFIX && opts.allowWideNetwork !== true) {
    throw new ConfigError('IPv6Network', `${formatCidr6(network)} is wider than /${WIDEST_NETWORK_PREFIX}; start flanneld-ts with --allow-wide-network if that is really meant`);
  }
  let subnetLen = optInt(obj, 'IPv6SubnetLen', 'IPv6SubnetLen', 0, 128);
  if (subnetLen === undefined || subnetLen === 0) {
    subnetLen = network.prefixLen <= 62 ? 64 : network.prefixLen + 2;
  } else if (subnetLen > 126) {
    throw new ConfigError('IPv6SubnetLen', `${subnetLen} is too long (at most 126)`);
  } else if (subnetLen < network.prefixLen + 2) {
    throw new ConfigError('IPv6SubnetLen', `${subnetLen} is too short for IPv6Network ${formatCidr6(network)} (at least ${network.prefixLen + 2})`);
  }
  const size = blockSize6(subnetLen);
  const len = subnetLen;
  const checkBound = (name: string, ip: bigint | undefined, dflt: bigint): bigint => {
    if (ip === undefined) return dflt;
    if (!cidr6Contains(network, ip)) throw new ConfigError(name, `${formatIPv6(ip)} is not inside IPv6Network ${formatCidr6(network)}`);
    if ((ip & prefixMask6(len)) !== ip) throw new ConfigError(name, `${formatIPv6(ip)} is not on a /${len} subnet boundary`);
    return ip;
  };
  const subnetMin = checkBound('IPv6SubnetMin', optIPv6(obj, 'IPv6SubnetMin'), network.ip + size);
  const subnetMax = checkBound('IPv6SubnetMax', optIPv6(obj, 'IPv6SubnetMax'), cidr6Last(network) - size + 1n);
  if (subnetMin > subnetMax) {
    throw new ConfigError('IPv6SubnetMin', `${formatIPv6(subnetMin)} is above IPv6SubnetMax ${formatIPv6(subnetMax)}`);
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

/** True when `subnet` is a lease this config can hand out (length and range). False for an IPv6-only config. */
export function subnetFitsConfig(config: NetworkConfig, subnet: Cidr): boolean {
  return (
    config.enableIPv4 &&
    subnet.prefixLen === config.subnetLen &&
    subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax &&
    cidrContains(config.network, subnet.ip)
  );
}

/** True when `subnet` is an IPv6 lease this config can hand out. False when IPv6 is not enabled. */
export function subnet6FitsConfig(config: NetworkConfig, subnet: Cidr6): boolean {
  const p = config.ipv6;
  return p !== undefined && subnet.prefixLen === p.subnetLen && subnet.ip >= p.subnetMin && subnet.ip <= p.subnetMax && cidr6Contains(p.network, subnet.ip);
}

/** Number of IPv6 subnets in IPv6SubnetMin..IPv6SubnetMax (a bigint: a /48 of /64s is 65,535). */
export function subnet6Capacity(p: NetworkConfigV6): bigint {
  return (p.subnetMax - p.subnetMin) / blockSize6(p.subnetLen) + 1n;
}

/** Number of subnets in SubnetMin..SubnetMax (0 for an IPv6-only config). */
export function subnetCapacity(config: NetworkConfig): number {
  if (!config.enableIPv4) return 0;
  return (config.subnetMax - config.subnetMin) / blockSize(config.subnetLen) + 1;
}

