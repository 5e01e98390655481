/**
 * pcap files (what `tcpdump -w` writes) and the packets a trace looks for in
 * them: Ethernet, IPv4 or IPv6, ICMP or ICMPv6, UDP and VXLAN with its inner
 * Ethernet frame. Byte layouts: the pcap file format (LINKTYPE_ETHERNET 1,
 * LINKTYPE_LINUX_SLL 113), RFC 791 (IPv4), RFC 8200 (IPv6: a 40-byte header;
 * extension headers are not followed), RFC 792 (ICMP), RFC 4443 (ICMPv6: echo
 * request 128, reply 129), RFC 768 (UDP), RFC 7348 (VXLAN: flags byte 0x08 =
 * VNI valid, 24-bit VNI). Pure.
 */
import { formatIPv6, ipv6FromBytes } from '../net/ipv6';

export interface PcapRecord {
  /** Capture time, Unix microseconds. */
  readonly timeUs: number;
  /** Length on the wire (the data may be cut at the snap length). */
  readonly length: number;
  readonly data: Buffer;
}

export interface Pcap {
  readonly linkType: number;
  readonly records: readonly PcapRecord[];
}

export interface Icmp {
  readonly type: number;
  readonly code: number;
  readonly id: number;
  readonly seq: number;
  readonly length: number;
}

/** An IP header of either version; for IPv6, `protocol` is the next header, `ttl` the hop limit and `id` the flow label. */
export interface Ipv4 {
  readonly version?: 4 | 6;
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  readonly ttl: number;
  readonly id: number;
  readonly length: number;
}

export interface Udp {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly length: number;
}

/** A decoded frame: whatever of its layers could be read. */
export interface Frame {
  readonly srcMAC: string;
  readonly dstMAC: string;
  readonly etherType: number;
  readonly length: number;
  readonly ip?: Ipv4;
  readonly icmp?: Icmp;
  readonly udp?: Udp;
  readonly vxlan?: { readonly flags: number; readonly vni: number; readonly inner: Frame };
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;

/** Reads a pcap file (either byte order, micro- or nanosecond timestamps). Throws on a file that is not pcap. */
export function parsePcap(file: Buffer): Pcap {
  if (file.length < 24) throw new Error(`pcap file of ${file.length} bytes is shorter than its 24-byte header`);
  const magicLE = file.readUInt32LE(0);
  const le = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
  const magic = le ? magicLE : file.readUInt32BE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error(`not a pcap file: magic 0x${magicLE.toString(16)}`);
  const nano = magic === 0xa1b23c4d;
  const u32 = (at: number): number => (le ? file.readUInt32LE(at) : file.readUInt32BE(at));
  const linkType = u32(20) & 0x0fffffff;
  const records: PcapRecord[] = [];
  // A record cut short (tcpdump killed mid-write) ends the file.
  for (let at = 24; at + 16 <= file.length; ) {
    const sec = u32(at);
    const frac = u32(at + 4);
    const incl = u32(at + 8);
    const orig = u32(at + 12);
    if (at + 16 + incl > file.length) break;
    records.push({ timeUs: sec * 1_000_000 + (nano ? Math.floor(frac / 1000) : frac), length: orig, data: file.subarray(at + 16, at + 16 + incl) });
    at += 16 + incl;
  }
  return { linkType, records };
}

function mac(b: Buffer, at: number): string {
  return [...b.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function ip(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** An Ethernet frame from its first byte; `vxlanPort` is the UDP port whose payload is VXLAN. */
export function decodeEthernet(b: Buffer, length: number, vxlanPort: number): Frame | undefined {
  if (b.length < 14) return undefined;
  let etherType = b.readUInt16BE(12);
  let at = 14;
  if (etherType === ETH_P_8021Q && b.length >= 18) {
    etherType = b.readUInt16BE(16);
    at = 18;
  }
  const layers = etherType === ETH_P_IP ? decodeIpv4(b.subarray(at), vxlanPort) : etherType === ETH_P_IPV6 ? decodeIpv6(b.subarray(at), vxlanPort) : {};
  return { srcMAC: mac(b, 6), dstMAC: mac(b, 0), etherType, length, ...layers };
}

function decodeIpv4(b: Buffer, vxlanPort: number): Pick<Frame, 'ip' | 'icmp' | 'udp' | 'vxlan'> {
  if (b.length < 20 || (b[0] as number) >> 4 !== 4) return {};
  const ihl = ((b[0] as number) & 0x0f) * 4;
  const v4: Ipv4 = { src: ip(b, 12), dst: ip(b, 16), protocol: b[9] as number, ttl: b[8] as number, id: b.readUInt16BE(4), length: b.readUInt16BE(2) };
  return decodePayload(v4, b.subarray(ihl), 1, v4.length - ihl, vxlanPort);
}

function decodeIpv6(b: Buffer, vxlanPort: number): Pick<Frame, 'ip' | 'icmp' | 'udp' | 'vxlan'> {
  if (b.length < 40 || (b[0] as number) >> 4 !== 6) return {};
  const payload = b.readUInt16BE(4);
  const v6: Ipv4 = { version: 6, src: formatIPv6(ipv6FromBytes(b.subarray(8, 24))), dst: formatIPv6(ipv6FromBytes(b.subarray(24, 40))), protocol: b[6] as number, ttl: b[7] as number, id: b.readUInt32BE(0) & 0xfffff, length: 40 + payload };
  return decodePayload(v6, b.subarray(40), 58, payload, vxlanPort);
}

/** ICMP (protocol `icmpProto`: 1, or 58 for ICMPv6) or UDP (with VXLAN on `vxlanPort`) after an IP header. */
function decodePayload(ip: Ipv4, p: Buffer, icmpProto: number, payloadLength: number, vxlanPort: number): Pick<Frame, 'ip' | 'icmp' | 'udp' | 'vxlan'> {
  if (ip.protocol === icmpProto && p.length >= 8) {
    return { ip, icmp: { type: p[0] as number, code: p[1] as number, id: p.readUInt16BE(4), seq: p.readUInt16BE(6), length: payloadLength } };
  }
  if (ip.protocol === 17 && p.length >= 8) {
    const udp: Udp = { srcPort: p.readUInt16BE(0), dstPort: p.readUInt16BE(2), length: p.readUInt16BE(4) };
    if (udp.dstPort === vxlanPort && p.length >= 16) {
      const vx = p.subarray(8);
      const inner = decodeEthernet(vx.subarray(8), udp.length - 16, vxlanPort);
      if (inner) return { ip, udp, vxlan: { flags: vx[0] as number, vni: vx.readUIntBE(4, 3), inner } };
    }
    return { ip, udp };
  }
  return { ip };
}

/** Every record of the capture as a frame (Ethernet, or Linux cooked capture of `-i any`). */
export function decodePcap(p: Pcap, vxlanPort: number): Array<{ timeUs: number; frame: Frame }> {
  return p.records.flatMap((r) => {
    let frame: Frame | undefined;
    if (p.linkType === LINKTYPE_ETHERNET) frame = decodeEthernet(r.data, r.length, vxlanPort);
    else if (p.linkType === LINKTYPE_LINUX_SLL && r.data.length >= 16) {
      // Cooked header: no destination MAC; the protocol at 14. Rebuild an Ethernet header around it.
      const eth = Buffer.concat([Buffer.alloc(6), r.data.subarray(6, 12), r.data.subarray(14)]);
      frame = decodeEthernet(eth, r.length - 2, vxlanPort);
    }
    return frame ? [{ timeUs: r.timeUs, frame }] : [];
  });
}

const PROTO: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

/** Echo request and reply types of ICMP (RFC 792) and ICMPv6 (RFC 4443), by IP version. */
export const ECHO_TYPES = { 4: { request: 8, reply: 0 }, 6: { request: 128, reply: 129 } } as const;

function icmpText(i: Icmp, version: 4 | 6): string {
  const echo = ECHO_TYPES[version];
  const kind = i.type === echo.request ? 'echo request' : i.type === echo.reply ? 'echo reply' : `type ${i.type} code ${i.code}`;
  return `${version === 6 ? 'ICMP6' : 'ICMP'} ${kind}, id ${i.id}, seq ${i.seq}, length ${i.length}`;
}

function frameText(f: Frame): string {
  const type = f.etherType === ETH_P_IP ? 'IPv4' : f.etherType === ETH_P_IPV6 ? 'IPv6' : 'unknown';
  const head = `${f.srcMAC} > ${f.dstMAC}, ethertype ${type} (0x${f.etherType.toString(16).padStart(4, '0')}), length ${f.length}`;
  if (!f.ip) return head;
  const v6 = f.ip.version === 6;
  const ipHead = v6
    ? `(flowlabel 0x${f.ip.id.toString(16).padStart(5, '0')}, hlim ${f.ip.ttl}, next-header ${PROTO[f.ip.protocol] ?? 'unknown'} (${f.ip.protocol}), payload length ${f.ip.length - 40})`
    : `(ttl ${f.ip.ttl}, id ${f.ip.id}, proto ${PROTO[f.ip.protocol] ?? 'unknown'} (${f.ip.protocol}), length ${f.ip.length})`;
  if (f.icmp) return `${head}: ${ipHead} ${f.ip.src} > ${f.ip.dst}: ${icmpText(f.icmp, v6 ? 6 : 4)}`;
  if (f.udp) {
    const ends = `${f.ip.src}.${f.udp.srcPort} > ${f.ip.dst}.${f.udp.dstPort}`;
    if (f.vxlan) return `${head}: ${ipHead} ${ends}: VXLAN, flags [${f.vxlan.flags & 0x08 ? 'I' : '.'}] (0x${f.vxlan.flags.toString(16).padStart(2, '0')}), vni ${f.vxlan.vni}: ${frameText(f.vxlan.inner)}`;
    return `${head}: ${ipHead} ${ends}: UDP, length ${f.udp.length - 8}`;
  }
  return `${head}: ${ipHead} ${f.ip.src} > ${f.ip.dst}`;
}

/** One line like `tcpdump -e -v -n` prints: time, MACs, ethertype, IP header, then the payload (VXLAN with its inner frame). */
export function formatPacket(timeUs: number, f: Frame): string {
  const d = new Date(Math.floor(timeUs / 1000));
  const hms = d.toISOString().slice(11, 19);
  return `${hms}.${String(timeUs % 1_000_000).padStart(6, '0')} ${frameText(f)}`;
}
