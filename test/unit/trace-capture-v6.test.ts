/**
 * `trace --capture` of an IPv6 pod address without packets: pcap files built
 * byte by byte as tcpdump writes them (Ethernet, IPv6, ICMPv6 echo; on the
 * underlay IPv6, UDP 8472, VXLAN and the inner frame), decoded and judged per
 * hop like the IPv4 fixtures: ICMPv6 types 128/129 are the echoes.
 */
import { describe, expect, it } from 'vitest';
import { decodePcap, formatPacket, parsePcap } from '../../src/capture/pcap';
import { ipv6ToBytes, parseIPv6 } from '../../src/net/ipv6';
import { judgeCapture } from '../../src/trace/capture-verdict';
import { capturePoints } from '../../src/trace/collect';
import { listenReport } from '../../src/trace/listen-report';
import { renderTrace } from '../../src/trace/render';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { LINKS6, OPTS, healthyFacts6 } from '../helpers/trace-facts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const SRC = 'fc00:0:0:18::2';
const DST = 'fc00:0:0:22::2';
const VTEP1 = '2001:db8:154::11';
const VTEP2 = '2001:db8:154::12';
const macBytes = (m: string): Buffer => Buffer.from(m.split(':').map((x) => parseInt(x, 16)));

function ipv6Packet(src: string, dst: string, nextHeader: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE((6 << 28) | 0x12345, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = nextHeader;
  h[7] = 64;
  Buffer.from(ipv6ToBytes(parseIPv6(src))).copy(h, 8);
  Buffer.from(ipv6ToBytes(parseIPv6(dst))).copy(h, 24);
  return Buffer.concat([h, payload]);
}

function icmp6Echo(type: 128 | 129, seq: number): Buffer {
  const b = Buffer.alloc(64);
  b[0] = type;
  b.writeUInt16BE(0x4242, 4);
  b.writeUInt16BE(seq, 6);
  return b;
}

const ethernet = (src: string, dst: string, payload: Buffer): Buffer => Buffer.concat([macBytes(dst), macBytes(src), Buffer.from([0x86, 0xdd]), payload]);

/** The ICMPv6 echo frame, or it inside VXLAN over the IPv6 underlay. */
function frame(request: boolean, seq: number, vxlan: boolean): Buffer {
  const [s, d] = request ? [SRC, DST] : [DST, SRC];
  const inner = ethernet('a6:2a:18:d5:37:66', '5a:f9:bc:6b:1c:66', ipv6Packet(s, d, 58, icmp6Echo(request ? 128 : 129, seq)));
  if (!vxlan) return inner;
  const vx = Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]), inner]);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(8472, 2);
  udp.writeUInt16BE(8 + vx.length, 4);
  const [os, od] = request ? [VTEP1, VTEP2] : [VTEP2, VTEP1];
  return ethernet('52:03:21:3c:be:91', '52:03:21:3c:be:92', ipv6Packet(os, od, 17, Buffer.concat([udp, vx])));
}

function pcap(frames: readonly Buffer[]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(1, 20);
  const records = frames.map((f, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1767268800 + i, 0);
    r.writeUInt32LE(i * 1000, 4);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, f]);
  });
  return Buffer.concat([head, ...records]);
}

const POINTS = capturePoints({ veth: 'veth1', bridge: 'cni0', device: 'flannel-v6.1', underlay: 'eth0', remote: parseIPv6(VTEP2), dst: parseIPv6(DST), port: 8472 });
const EXPECT = { src: SRC, dst: DST, port: 8472, vni: 1, remote: VTEP2 };
const both = (vxlan: boolean): Buffer => pcap([frame(true, 1, vxlan), frame(false, 1, vxlan)]);

describe('pcap decoding of IPv6', () => {
  it('decodes IPv6, ICMPv6 echo, and VXLAN over an IPv6 underlay with its inner IPv6 frame', () => {
    const [outer] = decodePcap(parsePcap(pcap([frame(true, 7, true)])), 8472);
    expect(outer?.frame).toMatchObject({ etherType: 0x86dd, ip: { version: 6, src: VTEP1, dst: VTEP2, protocol: 17, ttl: 64 }, udp: { dstPort: 8472 } });
    expect(outer?.frame.vxlan).toMatchObject({ vni: 1, inner: { ip: { version: 6, src: SRC, dst: DST, protocol: 58 }, icmp: { type: 128, id: 0x4242, seq: 7, length: 64 } } });
    const line = formatPacket(outer?.timeUs as number, outer?.frame as NonNullable<typeof outer>['frame']);
    expect(line).toContain(`ethertype IPv6 (0x86dd), length ${14 + 40 + 8 + 8 + 14 + 40 + 64}: (flowlabel 0x12345, hlim 64, next-header UDP (17), payload length ${8 + 8 + 14 + 40 + 64}) ${VTEP1}.40000 > ${VTEP2}.8472: VXLAN`);
    expect(line).toContain(`${SRC} > ${DST}: ICMP6 echo request, id 16962, seq 7, length 64`);
  });
});

describe('capture verdicts for ICMPv6 probes', () => {
  it('sees requests and replies at every hop, VXLAN on eth0', () => {
    const files = new Map([['veth', both(false)], ['bridge', both(false)], ['vxlan', both(false)], ['underlay', both(true)]]);
    const r = judgeCapture(POINTS, files, EXPECT);
    expect(r.lost).toBeNull();
    expect(r.points.map((p) => [p.kind, p.requests, p.replies, p.verdict])).toEqual([['veth', 1, 1, 'seen'], ['bridge', 1, 1, 'seen'], ['vxlan', 1, 1, 'seen'], ['underlay', 1, 1, 'seen']]);
    expect(r.points[3]?.notes).toContain('VXLAN UDP dport 8472, VNI 1, inner a6:2a:18:d5:37:66 > 5a:f9:bc:6b:1c:66');
  });

  it('places the loss between flannel-v6.1 and eth0 when the datagrams never leave', () => {
    const files = new Map([['veth', both(false)], ['bridge', both(false)], ['vxlan', pcap([frame(true, 1, false)])], ['underlay', pcap([])]]);
    expect(judgeCapture(POINTS, files, EXPECT).lost).toEqual({ kind: 'vxlan', message: 'the echo requests are seen on flannel-v6.1 but not on eth0' });
  });

  it('counts no IPv4-typed echo (type 8) as an ICMPv6 request', () => {
    const wrong = frame(true, 1, false);
    wrong[14 + 40] = 8;
    expect(judgeCapture(POINTS.slice(0, 1), new Map([['veth', pcap([wrong])]]), EXPECT).points[0]?.requests).toBe(0);
  });
});

describe('--listen for an IPv6 pod address (on its node)', () => {
  it('reports eth0 → flannel-v6.1 → cni0 → veth with the ICMPv6 probes, IPv6 addresses on each hop', () => {
    const points = capturePoints({ veth: 'vetha26954b2', bridge: 'cni0', device: 'flannel-v6.1', underlay: 'eth0', remote: parseIPv6(VTEP1), dst: parseIPv6(DST), port: 8472 }).reverse();
    const files = new Map([['underlay', both(true)], ['vxlan', both(false)], ['bridge', both(false)], ['veth', both(false)]]);
    const expect6 = { src: SRC, dst: DST, port: 8472, vni: 1, remote: VTEP1, listen: true };
    const r = listenReport({ status: healthyFacts6().status, dst: parseIPv6(DST), src: parseIPv6(SRC), count: 1, timeoutMs: 30_000, links: LINKS6, setup: { points, expect: expect6 }, capture: { files, waitedMs: 800, timedOut: false } }, OPTS);
    const schema = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;
    expect(schemaErrors(schema, JSON.parse(JSON.stringify(r)))).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.hops.map((h) => [h.kind, h.interface?.name])).toEqual([['underlay', 'eth0'], ['vxlan', 'flannel-v6.1'], ['bridge', 'cni0'], ['veth', 'vetha26954b2']]);
    expect(r.hops[0]?.interface?.addresses).toEqual(['2001:db8:154::11/64']);
    expect(r.hops[1]?.commands).toEqual(["tcpdump -e -v -n -i flannel-v6.1 'icmp6 and host fc00:0:0:22::2'"]);
    expect(renderTrace(r, false)).toContain(`trace --listen: echo requests from ${SRC} → ${DST} (lease fc00:0:0:22::/64 of node 2001:db8:154::12)`);
  });
});
