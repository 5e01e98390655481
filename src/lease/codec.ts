/**
 * The lease key/value codec (contract §1). The on-wire names `10.7.5.0-24`,
 * `PublicIP`, `BackendData.VtepMAC` live only here. Decoding never trusts the
 * store: anything off becomes an `invalid` record with a reason.
 */
import { posix } from 'node:path';
import { Cidr, formatIPv4, makeCidr, parseIPv4, prefixMask } from '../net/ipv4';
import { parseMac } from '../net/mac';
import { isJsonObject, jsonField } from '../util/json';
import { Lease, LeaseRecord } from './lease';

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

/** `10.7.5.0/24` → `10.7.5.0-24` */
export function subnetKeyName(subnet: Cidr): string {
  return `${formatIPv4(subnet.ip)}-${subnet.prefixLen}`;
}

export function subnetKey(prefix: string, subnet: Cidr): string {
  return subnetsPrefix(prefix) + subnetKeyName(subnet);
}

export type KeyParse = { kind: 'ipv4'; subnet: Cidr } | { kind: 'dual'; subnet: Cidr } | { kind: 'bad'; reason: string };

/**
 * Parses the last path element of a lease key. Dual-stack keys
 * (`10.7.5.0-24&fc00::-64`) are recognised so they can be skipped without error.
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
  return { kind: amp >= 0 ? 'dual' : 'ipv4', subnet: makeCidr(ip, len) };
}

export interface LeaseAttrs {
  readonly publicIP: number;
  readonly vni: number;
  readonly vtepMAC: string;
}

/** The exact bytes flanneld writes: compact JSON, this field order, no newline. */
export function encodeLeaseValue(attrs: LeaseAttrs): string {
  return (
    `{"PublicIP":"${formatIPv4(attrs.publicIP)}","PublicIPv6":null,"BackendType":"vxlan",` +
    `"BackendData":{"VNI":${attrs.vni},"VtepMAC":"${parseMac(attrs.vtepMAC)}"}}`
  );
}


/** The IPv4 subnet a record's key holds, whatever its value: used to know what is taken. */
export function recordSubnet(record: LeaseRecord): Cidr | undefined {
  switch (record.kind) {
    case 'lease':
      return record.lease.subnet;
    case 'invalid':
      return record.invalid.subnet;
    case 'ignored':
      return record.subnet;
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
 * Returns `lease`, `invalid` (logged and skipped) or `ignored` (dual-stack keys).
 */
export function decodeLease(key: string, keyName: string, value: string | Buffer, meta: KeyMeta = {}): LeaseRecord {
  const invalid = (reason: string, subnet?: Cidr): LeaseRecord => ({ kind: 'invalid', key, invalid: { key, reason, subnet } });
  const parsedKey = parseSubnetKeyName(keyName);
  if (parsedKey.kind === 'bad') return invalid(parsedKey.reason);
  if (parsedKey.kind === 'dual') return { kind: 'ignored', key, reason: 'dual-stack lease keys are not supported yet', subnet: parsedKey.subnet };
  const subnet = parsedKey.subnet;
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
  if (size > MAX_LEASE_VALUE_BYTES) return invalid(`value is ${size} bytes (limit ${MAX_LEASE_VALUE_BYTES})`, subnet);
  let raw: unknown;
  try {
    raw = JSON.parse(value.toString());
  } catch {
    return invalid('value is not JSON', subnet);
  }
  if (!isJsonObject(raw)) return invalid('value is not a JSON object', subnet);
  const pip = jsonField(raw, 'PublicIP');
  if (typeof pip !== 'string') return invalid('PublicIP is missing or not a string', subnet);
  let publicIP: number;
  try {
    publicIP = parseIPv4(pip);
  } catch {
    return invalid(`PublicIP ${JSON.stringify(pip)} is not an IPv4 address`, subnet);
  }
  const bt = jsonField(raw, 'BackendType');
  const backendType = typeof bt === 'string' ? bt : '';
  const bd = jsonField(raw, 'BackendData');
  let vni = 0;
  let vtepMAC: string | undefined;
  if (backendType === 'vxlan') {
    if (!isJsonObject(bd)) return invalid('BackendData is missing or not an object', subnet);
    const v = jsonField(bd, 'VNI');
    if (v !== undefined && v !== null) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffff) return invalid('BackendData.VNI is not a VNI', subnet);
      vni = v;
    }
    const mac = jsonField(bd, 'VtepMAC');
    if (typeof mac !== 'string') return invalid('BackendData.VtepMAC is missing or not a string', subnet);
    try {
      vtepMAC = parseMac(mac);
    } catch {
      return invalid(`BackendData.VtepMAC ${JSON.stringify(mac)} is not a MAC address`, subnet);
    }
  }
  const lease: Lease = { subnet, publicIP, backendType, vni, vtepMAC, ...meta };
  return { kind: 'lease', key, lease };
}
