/**
 * The lease key/value codec (contract §1, §11). The on-wire names `10.7.5.0-24`,
 * `10.7.5.0-24&fc00:0:0:5::-64`, `PublicIP`, `PublicIPv6`, `BackendData`,
 * `BackendV6Data` live only here. Decoding never trusts the store: anything off
 * becomes an `invalid` record with a reason.
 */
import { posix } from 'node:path';
import { Cidr, formatCidr, formatIPv4, makeCidr, parseIPv4, prefixMask } from '../net/ipv4';
import { Cidr6, formatCidr6, formatIPv6, makeCidr6, tryParseIPv6 } from '../net/ipv6';
import { parseMac } from '../net/mac';
import { JsonObject, isJsonObject, jsonField } from '../util/json';
import { Lease, LeaseAt, LeaseRecord, LeaseV6 } from './lease';

/** Values larger than this are not parsed (a hostile 1 MiB value is rejected cheaply). */
export const MAX_LEASE_VALUE_BYTES = 64 * 1024;

/**
 * Keys are joined under `--etcd-prefix` as flanneld does (Go path.Join, contract
 * §15): `//` collapses and a trailing `/` goes, but no leading `/` is added, so
 * `coreos.com/network` and `/coreos.com/network` are different key spaces.
 */
export function prefixedKey(prefix: string, ...parts: string[]): string {
  return posix.join(prefix, ...parts);
}

export function configKey(prefix: string): string {
  return prefixedKey(prefix, 'config');
}

export function subnetsPrefix(prefix: string): string {
  return `${prefixedKey(prefix, 'subnets')}/`;
}

/**
 * `10.7.5.0/24` → `10.7.5.0-24`; with an IPv6 subnet `10.7.5.0-24&fc00:0:0:5::-64`
 * (flannel: pkg/subnet/subnet.go MakeSubnetKey). An IPv6-only lease passes
 * 0.0.0.0/0 as `subnet`: `0.0.0.0-0&fc00:0:0:5::-64`.
 */
export function subnetKeyName(subnet: Cidr, subnet6?: Cidr6): string {
  const v4 = `${formatIPv4(subnet.ip)}-${subnet.prefixLen}`;
  return subnet6 === undefined ? v4 : `${v4}&${formatIPv6(subnet6.ip)}-${subnet6.prefixLen}`;
}

export function subnetKey(prefix: string, subnet: Cidr, subnet6?: Cidr6): string {
  return subnetsPrefix(prefix) + subnetKeyName(subnet, subnet6);
}

/** Where a store call writes: the bare IPv4 subnet for an IPv4-only key (what callers of the IPv4-only API passed), else both subnets. */
export function leaseAt(subnet: Cidr, subnet6: Cidr6 | undefined): LeaseAt {
  return subnet6 === undefined ? subnet : { subnet, subnet6 };
}

/** The key a store call addresses. */
export function leaseKeyAt(prefix: string, at: LeaseAt): string {
  return 'subnet' in at ? subnetKey(prefix, at.subnet, at.subnet6) : subnetKey(prefix, at);
}

/** Keys a create must find absent: one key, or every key in [key, rangeEnd). */
export interface CreateGuard {
  readonly key: string;
  readonly rangeEnd?: string | undefined;
}

/**
 * What a create of `at` must find absent besides its own key, so that one IPv4
 * subnet is never held twice (contract §18): for a key with an IPv4 part, the
 * bare key `10.7.5.0-24` and every `&` key of that subnet (`10.7.5.0-24&…`, the
 * range up to the next character after `&`). flanneld's transaction guards only
 * the key itself. An IPv6-only key (`0.0.0.0-0&…`) shares its IPv4 part with all
 * others, so only the key itself is guarded.
 */
export function createGuards(prefix: string, at: LeaseAt): CreateGuard[] {
  const subnet = 'subnet' in at ? at.subnet : at;
  if (subnet.prefixLen === 0) return [];
  const bare = subnetKey(prefix, subnet);
  return [{ key: bare }, { key: `${bare}&`, rangeEnd: `${bare}'` }];
}

/** "10.7.5.0/24" or "10.7.5.0/24 + fc00:0:0:5::/64" or "fc00:0:0:5::/64": how logs name a lease. */
export function leaseName(at: LeaseAt): string {
  if (!('subnet' in at)) return formatCidr(at);
  const v6 = at.subnet6 === undefined ? undefined : formatCidr6(at.subnet6);
  if (at.subnet.prefixLen === 0 && v6 !== undefined) return v6;
  return v6 === undefined ? formatCidr(at.subnet) : `${formatCidr(at.subnet)} + ${v6}`;
}

/**
 * A parsed key. `subnet` is the IPv4 part (0.0.0.0/0 when `hasIPv4` is false);
 * `subnet6` is set for `&` keys.
 */
export type KeyParse = { kind: 'ok'; subnet: Cidr; hasIPv4: boolean; subnet6: Cidr6 | undefined } | { kind: 'bad'; reason: string; subnet?: Cidr | undefined };

/**
 * Parses the last path element of a lease key: `10.7.5.0-24`,
 * `10.7.5.0-24&fc00:0:0:5::-64` or, IPv6-only, `0.0.0.0-0&fc00:0:0:5::-64`.
 * The IPv6 part must be in Go's text form (lowercase, `::`-compressed), as
 * flanneld writes it, so that a key names exactly one lease. A bad IPv6 part
 * still reports the IPv4 subnet, which stays taken (contract §18).
 */
export function parseSubnetKeyName(name: string): KeyParse {
  const amp = name.indexOf('&');
  const v4 = amp >= 0 ? name.slice(0, amp) : name;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$/.exec(v4);
  if (!m) return { kind: 'bad', reason: `key ${JSON.stringify(name)} is not of the form <ip>-<len>` };
  let ip: number;
  try {
    ip = parseIPv4(m[1] as string);
  } catch {
    return { kind: 'bad', reason: `key ${JSON.stringify(name)} has an invalid IPv4 address` };
  }
  const len = Number(m[2]);
  if (len > 32) return { kind: 'bad', reason: `key ${JSON.stringify(name)} has prefix length ${len}` };
  if (((ip & prefixMask(len)) >>> 0) !== ip) {
    return { kind: 'bad', reason: `key ${JSON.stringify(name)} has host bits set` };
  }
  const subnet = makeCidr(ip, len);
  if (amp < 0) {
    if (len === 0) return { kind: 'bad', reason: `key ${JSON.stringify(name)} has prefix length 0 and no IPv6 part` };
    return { kind: 'ok', subnet, hasIPv4: true, subnet6: undefined };
  }
  const hasIPv4 = len !== 0;
  const taken = hasIPv4 ? subnet : undefined;
  const m6 = /^([0-9a-f:]+)-(\d{1,3})$/.exec(name.slice(amp + 1));
  const ip6 = m6 ? tryParseIPv6(m6[1] as string) : undefined;
  if (!m6 || ip6 === undefined) return { kind: 'bad', reason: `key ${JSON.stringify(name)} has no valid <ipv6>-<len> after "&"`, subnet: taken };
  const len6 = Number(m6[2]);
  if (len6 > 128) return { kind: 'bad', reason: `key ${JSON.stringify(name)} has IPv6 prefix length ${len6}`, subnet: taken };
  const subnet6 = makeCidr6(ip6, len6);
  if (subnet6.ip !== ip6) return { kind: 'bad', reason: `key ${JSON.stringify(name)} has IPv6 host bits set`, subnet: taken };
  if (formatIPv6(ip6) !== m6[1]) return { kind: 'bad', reason: `key ${JSON.stringify(name)}: IPv6 part is not in canonical form (${formatIPv6(ip6)})`, subnet: taken };
  return { kind: 'ok', subnet, hasIPv4, subnet6 };
}

/** The IPv6 half of a value: PublicIPv6 and BackendV6Data. */
export interface LeaseAttrsV6 {
  /** PublicIPv6; undefined writes `null` (only a decoded foreign value can lack it). */
  readonly publicIP: bigint | undefined;
  readonly vni: number;
  readonly vtepMAC: string;
}

export interface LeaseAttrs {
  /** PublicIP; 0 (written "0.0.0.0", as flanneld does) for an IPv6-only lease. */
  readonly publicIP: number;
  readonly vni: number;
  /** flannel.<VNI>'s MAC. Undefined for an IPv6-only lease: no BackendData is written. */
  readonly vtepMAC: string | undefined;
  /** PublicIPv6 and BackendV6Data; undefined writes `"PublicIPv6":null` and no BackendV6Data. */
  readonly v6?: LeaseAttrsV6 | undefined;
}

/**
 * The exact bytes flanneld writes: compact JSON, field order PublicIP, PublicIPv6,
 * BackendType, BackendData, BackendV6Data, a family's backend data omitted when
 * absent, no newline (flannel: pkg/lease/lease.go LeaseAttrs).
 */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  const backend = (vni: number, mac: string) => `{"VNI":${vni},"VtepMAC":"${parseMac(mac)}"}`;
  const v6 = attrs.v6;
  return (
    `{"PublicIP":"${formatIPv4(attrs.publicIP)}","PublicIPv6":${v6?.publicIP === undefined ? 'null' : `"${formatIPv6(v6.publicIP)}"`},"BackendType":"vxlan"` +
    (attrs.vtepMAC === undefined ? '' : `,"BackendData":${backend(attrs.vni, attrs.vtepMAC)}`) +
    (v6 ? `,"BackendV6Data":${backend(v6.vni, v6.vtepMAC)}` : '') +
    '}'
  );
}

/** The attributes a decoded lease was written with, to re-encode its value (e.g. to delete it only if unchanged). */
export function leaseAttrsOf(lease: Lease): LeaseAttrs {
  const v6 = lease.v6;
  return {
    publicIP: lease.publicIP,
    vni: lease.vni,
    vtepMAC: lease.hasIPv4 === false ? undefined : (lease.vtepMAC ?? '00:00:00:00:00:00'),
    v6: v6 ? { publicIP: v6.publicIP, vni: v6.vni, vtepMAC: v6.vtepMAC ?? '00:00:00:00:00:00' } : undefined,
  };
}

/**
 * The IPv4 subnet a record's key holds, whatever its value: used to know what is
 * taken (the IPv4 part of an `&` key counts too). Undefined for an IPv6-only key.
 */
export function recordSubnet(record: LeaseRecord): Cidr | undefined {
  switch (record.kind) {
    case 'lease':
      return record.lease.hasIPv4 === false ? undefined : record.lease.subnet;
    case 'invalid':
      return record.invalid.subnet;
    case 'ignored':
      return record.subnet;
  }
}

/** The IPv6 subnet a record's key holds, whatever its value, or undefined. */
export function recordSubnet6(record: LeaseRecord): Cidr6 | undefined {
  switch (record.kind) {
    case 'lease':
      return record.lease.v6?.subnet;
    case 'invalid':
      return record.invalid.subnet6;
    case 'ignored':
      return undefined;
  }
}

export interface KeyMeta {
  readonly etcdLease?: string | undefined;
  readonly expiresAt?: number | undefined;
  readonly modRevision?: string | undefined;
  readonly createRevision?: string | undefined;
}

/**
 * Decodes one entry under `<prefix>/subnets/`. `keyName` is the last path element.
 * Returns `lease` or `invalid` (logged and skipped). For an `&` key the IPv6 half
 * must decode too, else the whole record is invalid, IPv4 part included (contract §11).
 */
export function decodeLease(key: string, keyName: string, value: string | Buffer, meta: KeyMeta = {}): LeaseRecord {
  const parsedKey = parseSubnetKeyName(keyName);
  if (parsedKey.kind === 'bad') return { kind: 'invalid', key, invalid: { key, reason: parsedKey.reason, subnet: parsedKey.subnet } };
  const { subnet, hasIPv4, subnet6 } = parsedKey;
  const invalid = (reason: string): LeaseRecord => ({ kind: 'invalid', key, invalid: { key, reason, subnet: hasIPv4 ? subnet : undefined, subnet6 } });
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
  if (size > MAX_LEASE_VALUE_BYTES) return invalid(`value is ${size} bytes (limit ${MAX_LEASE_VALUE_BYTES})`);
  let raw: unknown;
  try {
    raw = JSON.parse(value.toString());
  } catch {
    return invalid('value is not JSON');
  }
  if (!isJsonObject(raw)) return invalid('value is not a JSON object');
  const pip = jsonField(raw, 'PublicIP');
  if (typeof pip !== 'string') return invalid('PublicIP is missing or not a string');
  let publicIP: number;
  try {
    publicIP = parseIPv4(pip);
  } catch {
    return invalid(`PublicIP ${JSON.stringify(pip)} is not an IPv4 address`);
  }
  const bt = jsonField(raw, 'BackendType');
  const backendType = typeof bt === 'string' ? bt : '';
  let vni = 0;
  let vtepMAC: string | undefined;
  if (backendType === 'vxlan' && hasIPv4) {
    const data = decodeBackendData(raw, 'BackendData');
    if (typeof data === 'string') return invalid(data);
    ({ vni, vtepMAC } = data);
  }
  let v6: LeaseV6 | undefined;
  if (subnet6 !== undefined) {
    const half = decodeV6Half(raw, subnet6, backendType === 'vxlan');
    if (typeof half === 'string') return invalid(half);
    v6 = half;
    if (!hasIPv4) vni = half.vni;
  }
  const lease: Lease = { subnet, publicIP, backendType, vni, vtepMAC, ...meta, ...(subnet6 === undefined ? {} : { hasIPv4, v6 }) };
  return { kind: 'lease', key, lease };
}

/** `BackendData` or `BackendV6Data` of a vxlan lease: `{VNI, VtepMAC}`, or the reason it is bad. */
function decodeBackendData(raw: JsonObject, field: 'BackendData' | 'BackendV6Data'): { vni: number; vtepMAC: string } | string {
  const bd = jsonField(raw, field);
  if (!isJsonObject(bd)) return `${field} is missing or not an object`;
  let vni = 0;
  const v = jsonField(bd, 'VNI');
  if (v !== undefined && v !== null) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffff) return `${field}.VNI is not a VNI`;
    vni = v;
  }
  const mac = jsonField(bd, 'VtepMAC');
  if (typeof mac !== 'string') return `${field}.VtepMAC is missing or not a string`;
  try {
    return { vni, vtepMAC: parseMac(mac) };
  } catch {
    return `${field}.VtepMAC ${JSON.stringify(mac)} is not a MAC address`;
  }
}

/** PublicIPv6 (an IPv6 string or null) and, for vxlan, BackendV6Data. */
function decodeV6Half(raw: JsonObject, subnet: Cidr6, vxlan: boolean): LeaseV6 | string {
  const pip6 = jsonField(raw, 'PublicIPv6');
  let publicIP: bigint | undefined;
  if (pip6 !== undefined && pip6 !== null) {
    publicIP = typeof pip6 === 'string' ? tryParseIPv6(pip6) : undefined;
    if (publicIP === undefined) return `PublicIPv6 ${JSON.stringify(pip6)} is not an IPv6 address`;
  }
  if (!vxlan) return { subnet, publicIP, vni: 0, vtepMAC: undefined };
  const data = decodeBackendData(raw, 'BackendV6Data');
  if (typeof data === 'string') return data;
  return { subnet, publicIP, vni: data.vni, vtepMAC: data.vtepMAC };
}
