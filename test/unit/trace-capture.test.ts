/**
 * `trace --capture` without packets: pcap files tcpdump wrote on node h1 of the
 * namespace testbed while pod 10.7.96.2 pinged pod 10.7.12.2 (test/fixtures/,
 * one per local hop), decoded byte by byte, then replayed through the Capture
 * fake, whole or cut, so each hop verdict and each "where it stops" is tested.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReplayCapture } from '../../src/capture/capture';
import { decodePcap, formatPacket, parsePcap } from '../../src/capture/pcap';
import { analyzeTrace } from '../../src/trace/analyze';
import { capturePoints } from '../../src/trace/collect';
import { judgeCapture } from '../../src/trace/capture-verdict';
import { parseIPv4 } from '../../src/net/ipv4';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { OPTS, healthyFacts } from '../helpers/trace-facts';

const fixture = (hop: string): Buffer => readFileSync(join(__dirname, `../fixtures/trace-healthy-${hop}.pcap`));
const HOPS = ['veth', 'bridge', 'vxlan', 'underlay'] as const;
const DST = parseIPv4('10.7.12.2');
const POINTS = capturePoints({ veth: 'vethdf375ce9', bridge: 'cni0', device: 'flannel.1', underlay: 'eth0', remote: parseIPv4('10.65.154.12'), dst: DST, port: 8472 });
const EXPECT = { src: '10.7.96.2', dst: '10.7.12.2', port: 8472, vni: 1, remote: '10.65.154.12' };
const F1 = '1a:ad:10:7a:95:80';
const F2 = '0a:05:06:02:14:c2';

/** The pcap with only the records `keep` accepts (by index): what a capture sees when packets stop. */
function keep(file: Buffer, accept: (i: number) => boolean): Buffer {
  const parts = [file.subarray(0, 24)];
  for (let at = 24, i = 0; at + 16 <= file.length; i++) {
    const size = 16 + file.readUInt32LE(at + 8);
    if (accept(i)) parts.push(file.subarray(at, at + size));
    at += size;
  }
  return Buffer.concat(parts);
}

async function replay(files: Map<string, Buffer>): Promise<Map<string, Buffer>> {
  const capture = new ReplayCapture(files);
  return (await capture.start(POINTS)).stop();
}

describe('pcap decoding', () => {
  it('reads the file header and records tcpdump wrote', () => {
    const p = parsePcap(fixture('underlay'));
    expect(p.linkType).toBe(1);
    expect(p.records.map((r) => r.length)).toEqual([148, 148, 148, 148]);
  });

  it('decodes outer Ethernet, IPv4, UDP, VXLAN flags and VNI, inner Ethernet, IPv4 and ICMP', () => {
    const [first] = decodePcap(parsePcap(fixture('underlay')), 8472);
    const f = first?.frame;
    expect(f).toMatchObject({ srcMAC: '66:8d:76:de:8c:8c', dstMAC: '32:32:72:e8:c6:fc', etherType: 0x0800, ip: { src: '10.65.154.11', dst: '10.65.154.12', protocol: 17, ttl: 64, length: 134 }, udp: { srcPort: 54810, dstPort: 8472, length: 114 } });
    expect(f?.vxlan).toMatchObject({ flags: 0x08, vni: 1, inner: { srcMAC: F1, dstMAC: F2, ip: { src: '10.7.96.0', dst: '10.7.12.2' }, icmp: { type: 8, code: 0, id: 13789, seq: 1, length: 64 } } });
    expect(formatPacket(first?.timeUs as number, f as NonNullable<typeof f>)).toBe(
      '08:58:26.394714 66:8d:76:de:8c:8c > 32:32:72:e8:c6:fc, ethertype IPv4 (0x0800), length 148: (ttl 64, id 35050, proto UDP (17), length 134) 10.65.154.11.54810 > 10.65.154.12.8472: VXLAN, flags [I] (0x08), vni 1: 1a:ad:10:7a:95:80 > 0a:05:06:02:14:c2, ethertype IPv4 (0x0800), length 98: (ttl 63, id 61773, proto ICMP (1), length 84) 10.7.96.0 > 10.7.12.2: ICMP echo request, id 13789, seq 1, length 64',
    );
  });

  it('reads big-endian files, stops at a cut record, refuses what is not pcap', () => {
    const le = fixture('veth');
    const be = Buffer.from(le);
    for (const at of [0, 20]) be.writeUInt32BE(le.readUInt32LE(at), at);
    be.writeUInt16BE(2, 4);
    for (let at = 24; at + 16 <= be.length; ) {
      const incl = le.readUInt32LE(at + 8);
      for (let k = 0; k < 16; k += 4) be.writeUInt32BE(le.readUInt32LE(at + k), at + k);
      at += 16 + incl;
    }
    expect(decodePcap(parsePcap(be), 8472)).toEqual(decodePcap(parsePcap(le), 8472));
    expect(parsePcap(le.subarray(0, le.length - 10)).records).toHaveLength(3);
    expect(() => parsePcap(Buffer.alloc(24))).toThrow('not a pcap file');
    expect(() => parsePcap(Buffer.alloc(3))).toThrow('shorter than its 24-byte header');
  });
});

describe('hop verdicts from replayed captures', () => {
  it('a healthy pair: request and reply at every hop, UDP 8472 VNI 1 and the two flannel.1 MACs at eth0', async () => {
    const r = judgeCapture(POINTS, await replay(new Map(HOPS.map((h) => [h, fixture(h)]))), EXPECT);
    expect(r.lost).toBeNull();
    expect(r.points.map((p) => [p.kind, p.iface, p.requests, p.replies, p.verdict])).toEqual([
      ['veth', 'vethdf375ce9', 2, 2, 'seen'],
      ['bridge', 'cni0', 2, 2, 'seen'],
      ['vxlan', 'flannel.1', 2, 2, 'altered'],
      ['underlay', 'eth0', 2, 2, 'altered'],
    ]);
    expect(r.points[3]?.notes).toEqual(['source rewritten: 10.7.96.2 → 10.7.96.0', `VXLAN UDP dport 8472, VNI 1, inner ${F1} > ${F2}`, `VXLAN UDP dport 8472, VNI 1, inner ${F1} < ${F2}`]);
    expect(r.points[0]?.packets).toHaveLength(4);
  });

  it('requests seen on cni0 and not on flannel.1: lost at the routing hop', async () => {
    const files = new Map<string, Buffer>([['veth', keep(fixture('veth'), (i) => i % 2 === 0)], ['bridge', keep(fixture('bridge'), (i) => i % 2 === 0)], ['vxlan', keep(fixture('vxlan'), () => false)]]);
    const points = POINTS.slice(0, 3);
    const r = judgeCapture(points, await new ReplayCapture(files).start(points).then((s) => s.stop()), EXPECT);
    expect(r.lost).toEqual({ kind: 'route', message: 'the echo requests are seen on cni0 but not on flannel.1' });
    expect(r.points.map((p) => p.verdict)).toEqual(['seen', 'seen', 'not seen']);
  });

  it('requests leave eth0 and no reply comes back: lost at the remote node', async () => {
    const requestsOnly = new Map(HOPS.map((h) => [h, keep(fixture(h), (i) => i % 2 === 0)]));
    const r = judgeCapture(POINTS, await replay(requestsOnly), EXPECT);
    expect(r.lost).toEqual({ kind: 'remote', message: 'the echo requests leave by eth0 to 10.65.154.12 UDP 8472 and no reply comes back: lost at or beyond 10.65.154.12' });
  });

  it('requests seen on cni0, the last point, and no reply: lost at the routing hop after it', async () => {
    const points = POINTS.slice(0, 2);
    const files = new Map<string, Buffer>([['veth', keep(fixture('veth'), (i) => i % 2 === 0)], ['bridge', keep(fixture('bridge'), (i) => i % 2 === 0)]]);
    expect(judgeCapture(points, files, { ...EXPECT, remote: undefined }).lost).toEqual({ kind: 'route', message: 'the echo requests reach cni0, the last capture point, and no reply comes back' });
  });

  it('replies seen at flannel.1 but not on cni0: lost at the routing hop on the way back', async () => {
    const files = new Map(HOPS.map((h) => [h, h === 'bridge' || h === 'veth' ? keep(fixture(h), (i) => i % 2 === 0) : fixture(h)]));
    expect(judgeCapture(POINTS, await replay(files), EXPECT).lost).toEqual({ kind: 'route', message: 'the echo replies are seen on flannel.1 but not on cni0' });
  });

  it('marks the hop in the trace report as a problem, and says when capture could not run', async () => {
    const points = POINTS.slice(0, 3);
    const files = new Map<string, Buffer>([['veth', fixture('veth')], ['bridge', fixture('bridge')], ['vxlan', keep(fixture('vxlan'), () => false)]]);
    const facts = healthyFacts({ dst: DST, src: parseIPv4('10.7.96.2'), capture: { points, files } });
    const r = analyzeTrace(facts, OPTS);
    expect(r.capture?.lost?.kind).toBe('route');
    const schema = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;
    expect(schemaErrors(schema, JSON.parse(JSON.stringify(r)))).toEqual([]);
    expect(r.hops.find((h) => h.kind === 'route')?.checks).toContainEqual({ state: 'problem', message: 'on the wire: the echo requests are seen on cni0 but not on flannel.1', fix: "the other checks of this hop say why; tcpdump lines below" });
    const off = analyzeTrace(healthyFacts({ capture: { unavailable: 'tcpdump is not installed (apt-get install tcpdump)' } }), OPTS);
    expect(off.capture).toEqual({ available: false, reason: 'tcpdump is not installed (apt-get install tcpdump)', points: [], lost: null });
    expect(off.exitCode).toBe(0);
  });
});
