/**
 * IFLA_LINKINFO for VXLAN links, encoded and decoded by hand: the `netlink`
 * package exposes `linkinfo` only as a raw Buffer (see shared/netlink-notes.md).
 *
 * A netlink attribute is a 4-byte header (u16 length including the header, u16
 * type) followed by the payload, padded to 4 bytes. Integers are in host order
 * (little-endian on every platform we run on) except IFLA_VXLAN_PORT, which the
 * kernel keeps in network order. Layout from include/uapi/linux/if_link.h.
 */
import { ipv4FromBytes } from '../net/ipv4';
import { ipv6FromBytes } from '../net/ipv6';
import { IpAddr, ipToBytes } from '../net/family';

const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_GBP = 23;
// NLA_F_NESTED | NLA_F_NET_BYTEORDER: flag bits some senders set in the type.
const NLA_TYPE_MASK = 0x3fff;

/** The VXLAN parameters flanneld-ts sets and compares. */
export interface VxlanLinkInfo {
  readonly vni: number;
  readonly underlayIndex: number;
  /** IFLA_VXLAN_LOCAL for an IPv4 address, IFLA_VXLAN_LOCAL6 for an IPv6 one (bigint). */
  readonly localIP: IpAddr;
  readonly port: number;
  readonly learning: boolean;
  readonly gbp: boolean;
}

/** What a link's IFLA_LINKINFO says; `vxlan` fields are those the kernel reported. */
export interface DecodedLinkInfo {
  readonly kind: string;
  readonly vxlan?: Partial<VxlanLinkInfo>;
}

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}

/** `ip link add … type vxlan id <vni> local <ip> dev <underlay> dstport <port> [no]learning [gbp]` as IFLA_LINKINFO (`local` of either family). */
export function encodeVxlanLinkInfo(info: VxlanLinkInfo): Buffer {
  const port = Buffer.alloc(2);
  port.writeUInt16BE(info.port, 0);
  const data = [
    attr(IFLA_VXLAN_ID, u32(info.vni)),
    attr(IFLA_VXLAN_LINK, u32(info.underlayIndex)),
    attr(typeof info.localIP === 'bigint' ? IFLA_VXLAN_LOCAL6 : IFLA_VXLAN_LOCAL, ipToBytes(info.localIP)),
    attr(IFLA_VXLAN_LEARNING, Buffer.from([info.learning ? 1 : 0])),
    attr(IFLA_VXLAN_PORT, port),
  ];
  // GBP is a flag attribute: present (zero-length) means on.
  if (info.gbp) data.push(attr(IFLA_VXLAN_GBP, Buffer.alloc(0)));
  return Buffer.concat([attr(IFLA_INFO_KIND, Buffer.from('vxlan\0', 'latin1')), attr(IFLA_INFO_DATA, Buffer.concat(data))]);
}

/** Splits a buffer of attributes into (type, payload) pairs; throws RangeError on a malformed one. */
export function parseAttributes(buf: Uint8Array): Array<{ type: number; payload: Buffer }> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Array<{ type: number; payload: Buffer }> = [];
  let off = 0;
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > b.length) throw new RangeError(`malformed netlink attribute at offset ${off} (length ${len})`);
    out.push({ type: b.readUInt16LE(off + 2) & NLA_TYPE_MASK, payload: b.subarray(off + 4, off + len) });
    off += (len + 3) & ~3;
  }
  return out;
}

function decodeVxlanData(buf: Buffer): Partial<VxlanLinkInfo> {
  const info: { -readonly [K in keyof VxlanLinkInfo]?: VxlanLinkInfo[K] } = { gbp: false };
  for (const { type, payload } of parseAttributes(buf)) {
    switch (type) {
      case IFLA_VXLAN_ID:
        if (payload.length >= 4) info.vni = payload.readUInt32LE(0);
        break;
      case IFLA_VXLAN_LINK:
        if (payload.length >= 4) info.underlayIndex = payload.readUInt32LE(0);
        break;
      case IFLA_VXLAN_LOCAL:
        // An unset local is reported as 0.0.0.0; treat it as absent.
        if (payload.length === 4 && payload.readUInt32BE(0) !== 0) info.localIP = ipv4FromBytes(payload);
        break;
      case IFLA_VXLAN_LOCAL6:
        // Likewise `::`.
        if (payload.length === 16 && payload.some((b) => b !== 0)) info.localIP = ipv6FromBytes(payload);
        break;
      case IFLA_VXLAN_LEARNING:
        if (payload.length >= 1) info.learning = payload[0] !== 0;
        break;
      case IFLA_VXLAN_PORT:
        if (payload.length >= 2) info.port = payload.readUInt16BE(0);
        break;
      case IFLA_VXLAN_GBP:
        info.gbp = true;
        break;
    }
  }
  return info;
}

/** Decodes IFLA_LINKINFO: the kind ("" when absent) and, for "vxlan", the VXLAN parameters. */
export function decodeLinkInfo(buf: Uint8Array | undefined): DecodedLinkInfo {
  if (!buf) return { kind: '' };
  let kind = '';
  let data: Buffer | undefined;
  for (const { type, payload } of parseAttributes(buf)) {
    if (type === IFLA_INFO_KIND) kind = payload.toString('latin1').replace(/\0+$/, '');
    else if (type === IFLA_INFO_DATA) data = payload;
  }
  return kind === 'vxlan' ? { kind, vxlan: data ? decodeVxlanData(data) : {} } : { kind };
}
