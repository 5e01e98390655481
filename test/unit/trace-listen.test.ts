/**
 * `trace --listen` without packets: the pcap files of test/fixtures/ (the
 * probes 10.7.96.2 → 10.7.12.2 at eth0, flannel.1, cni0 and the pod's veth)
 * replayed through the Capture fake in the order the requests come in on the
 * destination node, whole or cut to simulate loss; the wait for N probes on a
 * capture that grows; the report, its schema and its text; the flags.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CaptureSession, ReplayCapture } from '../../src/capture/capture';
import { parseCommandLine } from '../../src/cli';
import { UsageError } from '../../src/util/errors';
import { parseIPv4 } from '../../src/net/ipv4';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { judgeCapture } from '../../src/trace/capture-verdict';
import { capturePoints } from '../../src/trace/collect';
import { ListenFacts, waitForProbes } from '../../src/trace/listen';
import { listenReport } from '../../src/trace/listen-report';
import { renderTrace } from '../../src/trace/render';
import { LINKS, OPTS, healthyFacts } from '../helpers/trace-facts';

const fixture = (hop: string): Buffer => readFileSync(join(__dirname, `../fixtures/trace-healthy-${hop}.pcap`));
const SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;
const DST = parseIPv4('10.7.12.2');
const SRC = parseIPv4('10.7.96.2');
const HOPS = ['underlay', 'vxlan', 'bridge', 'veth'] as const;
// As --listen sets them up on the destination: the way the requests come in.
const POINTS = capturePoints({ veth: 'vethdf375ce9', bridge: 'cni0', device: 'flannel.1', underlay: 'eth0', remote: parseIPv4('10.65.154.11'), dst: DST, port: 8472 }).reverse();
const EXPECT = { src: '10.7.96.2', dst: '10.7.12.2', port: 8472, vni: 1, remote: '10.65.154.11', listen: true };

/** The pcap with only the records `accept` keeps (by index; the fixtures alternate request, reply). */
function keep(file: Buffer, accept: (i: number) => boolean): Buffer {
  const parts = [file.subarray(0, 24)];
  for (let at = 24, i = 0; at + 16 <= file.length; i++) {
    const size = 16 + file.readUInt32LE(at + 8);
    if (accept(i)) parts.push(file.subarray(at, at + size));
    at += size;
  }
  return Buffer.concat(parts);
}
const requestsOnly = (hop: string): Buffer => keep(fixture(hop), (i) => i % 2 === 0);
const nothing = (hop: string): Buffer => keep(fixture(hop), () => false);

async function replay(files: Map<string, Buffer>): Promise<Map<string, Buffer>> {
  return (await new ReplayCapture(files).start(POINTS)).stop();
}

function facts(files: Map<string, Buffer>, over: Partial<ListenFacts> = {}): ListenFacts {
  const links = [...LINKS, { index: 9, name: 'vethdf375ce9', kind: 'veth', mac: '96:1e:3a:0c:11:02', mtu: 1450, up: true, master: 4, peerIndex: 2, linkNetnsid: 1 }];
  return { status: healthyFacts().status, dst: DST, src: SRC, count: 2, timeoutMs: 30_000, links, setup: { points: POINTS, expect: EXPECT }, capture: { files, waitedMs: 1_200, timedOut: false }, ...over };
}

describe('listen verdicts: eth0 → flannel.1 → cni0 → veth', () => {
  it('points in the order the requests come in, eth0 filtered to UDP 8472 from the source node', () => {
    expect(POINTS.map((p) => [p.name, p.iface, p.filter])).toEqual([
      ['underlay', 'eth0', 'udp and port 8472 and host 10.65.154.11'],
      ['vxlan', 'flannel.1', 'icmp and host 10.7.12.2'],
      ['bridge', 'cni0', 'icmp and host 10.7.12.2'],
      ['veth', 'vethdf375ce9', 'icmp and host 10.7.12.2'],
    ]);
    expect(capturePoints({ device: 'flannel.1', underlay: 'eth0', dst: DST, port: 4789 })[1]?.filter).toBe('udp and port 4789');
  });

  it('healthy: requests and replies at every hop, VNI 1 at eth0', async () => {
    const r = judgeCapture(POINTS, await replay(new Map(HOPS.map((h) => [h, fixture(h)]))), EXPECT);
    expect(r.lost).toBeNull();
    expect(r.points.map((p) => [p.kind, p.requests, p.replies])).toEqual([['underlay', 2, 2], ['vxlan', 2, 2], ['bridge', 2, 2], ['veth', 2, 2]]);
    expect(r.points[0]?.notes).toContain('VXLAN UDP dport 8472, VNI 1, inner 1a:ad:10:7a:95:80 > 0a:05:06:02:14:c2');
  });

  it('requests on eth0 and not on flannel.1 (UDP 8472 dropped by INPUT): lost at the vxlan hop', async () => {
    const r = judgeCapture(POINTS, await replay(new Map([['underlay', requestsOnly('underlay')], ['vxlan', nothing('vxlan')], ['bridge', nothing('bridge')], ['veth', nothing('veth')]])), EXPECT);
    expect(r.lost).toEqual({ kind: 'vxlan', message: 'the echo requests are seen on eth0 but not on flannel.1' });
    expect(r.points.map((p) => p.verdict)).toEqual(['altered', 'not seen', 'not seen', 'not seen']);
  });

  it('nothing on eth0: lost before this host', async () => {
    const r = judgeCapture(POINTS, await replay(new Map(HOPS.map((h) => [h, nothing(h)]))), EXPECT);
    expect(r.lost).toEqual({ kind: 'remote', message: 'no echo request to 10.7.12.2 from 10.7.96.2 arrived on eth0: the probes stop before this host (at the source node 10.65.154.11 or on the way)' });
  });

  it('requests reach the veth and the pod never answers: lost at the pod', async () => {
    const r = judgeCapture(POINTS, await replay(new Map(HOPS.map((h) => [h, requestsOnly(h)]))), EXPECT);
    expect(r.lost).toEqual({ kind: 'pod', message: "the echo requests reach vethdf375ce9, the pod's veth, and no reply comes back" });
  });

  it('replies on cni0 and not on flannel.1: lost at the routing hop on the way back', async () => {
    const files = new Map(HOPS.map((h) => [h, h === 'bridge' || h === 'veth' ? fixture(h) : requestsOnly(h)]));
    expect(judgeCapture(POINTS, await replay(files), EXPECT).lost).toEqual({ kind: 'route', message: 'the echo replies are seen on cni0 but not on flannel.1' });
  });
});

describe('waiting for the probes', () => {
  const fakeClock = () => {
    const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
    return c;
  };

  it('returns once N requests and replies crossed every hop', async () => {
    const full = new Map(HOPS.map((h) => [h, fixture(h)] as const));
    let snaps = 0;
    // Each snapshot holds one more record at every point: request, reply, request, reply.
    const session: CaptureSession = {
      snapshot: async () => {
        snaps++;
        return new Map([...full].map(([k, v]) => [k, keep(v, (i) => i < snaps)] as const));
      },
      stop: async () => full,
    };
    expect(await waitForProbes(fakeClock(), session, POINTS, EXPECT, 2, 30_000)).toEqual({ waitedMs: 750, timedOut: false });
    expect(snaps).toBe(4);
  });

  it('gives up at the timeout when the probes stop at a hop', async () => {
    const files = new Map([['underlay', requestsOnly('underlay')]]);
    const session: CaptureSession = { snapshot: async () => files, stop: async () => files };
    expect(await waitForProbes(fakeClock(), session, POINTS, EXPECT, 2, 2_000)).toEqual({ waitedMs: 2_000, timedOut: true });
  });
});

describe('the --listen report', () => {
  it('healthy: one hop per capture point, exit 0, valid against the schema, and as text', async () => {
    const r = listenReport(facts(await replay(new Map(HOPS.map((h) => [h, fixture(h)])))), OPTS);
    expect(schemaErrors(SCHEMA, JSON.parse(JSON.stringify(r)))).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.hops.map((h) => [h.step, h.kind, h.title])).toEqual([
      [1, 'underlay', 'eth0 receives the VXLAN datagrams (UDP 8472 from 10.65.154.11)'],
      [2, 'vxlan', 'flannel.1 decapsulates VNI 1'],
      [3, 'bridge', "cni0 forwards to the pod's veth"],
      [4, 'veth', 'vethdf375ce9 delivers to pod 10.7.12.2'],
    ]);
    expect(r.hops[1]?.interface).toMatchObject({ name: 'flannel.1', index: 3, mtu: 1450 });
    expect(r.listen).toEqual({ count: 2, timeoutSeconds: 30, waitedSeconds: 1.2, timedOut: false });
    expect(r.verdict).toBe('OK: 2 echo requests from 10.7.96.2 to 10.7.12.2 and the replies crossed every hop here (eth0 → flannel.1 → cni0 → vethdf375ce9) in 1.2 s');
    const text = renderTrace(r, false);
    expect(text).toMatch(/^trace --listen: echo requests from 10\.7\.96\.2 → 10\.7\.12\.2 \(in no lease\), 2 awaited, 1\.2 s$/m);
    expect(text).toContain(' 1 eth0 receives the VXLAN datagrams (UDP 8472 from 10.65.154.11)\n   iface    eth0  index 2');
    expect(text).toContain('   warning seen but altered: 2 echo requests, 2 replies (source rewritten: 10.7.96.2 → 10.7.96.0)');
    expect(text).toMatch(/^   wire     \d\d:\d\d:\d\d\.\d{6} 66:8d:76:de:8c:8c > 32:32:72:e8:c6:fc, /m);
    expect(text).toMatch(/ 10\.65\.154\.11\.\d+ > 10\.65\.154\.12\.8472: VXLAN, flags \[I\] \(0x08\), vni 1: /);
    expect(text).toContain('   lost     nowhere: requests and replies seen at every hop');
  });

  it('requests vanish between eth0 and flannel.1: exit 1, the problem at hop 2 (vxlan), the fix names INPUT', async () => {
    const files = new Map([['underlay', requestsOnly('underlay')]]);
    const r = listenReport(facts(files, { capture: { files, waitedMs: 10_000, timedOut: true } }), OPTS);
    expect(schemaErrors(SCHEMA, JSON.parse(JSON.stringify(r)))).toEqual([]);
    expect(r.exitCode).toBe(1);
    expect(r.problems).toEqual([{ step: 2, kind: 'vxlan', message: 'on the wire: the echo requests are seen on eth0 but not on flannel.1', fix: 'iptables-save | grep 8472 (INPUT must accept UDP 8472); ip -d link show flannel.1 (VNI 1, dstport 8472); flanneld-ts status' }]);
    expect(r.verdict).toBe('PROBLEM at hop 2 (vxlan): on the wire: the echo requests are seen on eth0 but not on flannel.1 (waited 10.0 s for 2 echo requests from 10.7.96.2 to 10.7.12.2)');
    expect(r.hops[2]?.checks).toEqual([{ state: 'warning', message: 'not seen: 0 echo requests, 0 replies', fix: null }]);
  });

  it('the pod does not answer: the problem at the veth hop; nothing on eth0: at hop 1', async () => {
    const pod = listenReport(facts(new Map(HOPS.map((h) => [h, requestsOnly(h)]))), OPTS);
    expect(pod.problems.map((p) => [p.step, p.kind])).toEqual([[4, 'veth']]);
    const none = listenReport(facts(new Map()), OPTS);
    expect(none.problems.map((p) => [p.step, p.kind])).toEqual([[1, 'underlay']]);
    expect(none.problems[0]?.message).toContain('the probes stop before this host');
    expect(none.problems[0]?.fix).toBe('on the source node 10.65.154.11: flanneld-ts trace 10.7.12.2 --from 10.7.96.2 --capture shows where the requests stop there');
  });

  it('exit 1 with the reason when the pod is not here or capture cannot run', () => {
    const notHere = listenReport(facts(new Map(), { setup: { message: 'no namespace behind this host\'s veths has 10.7.12.2', fix: null }, capture: undefined }), OPTS);
    expect(notHere).toMatchObject({ exitCode: 1, hops: [], capture: null, verdict: "PROBLEM at hop 1 (local): no namespace behind this host's veths has 10.7.12.2" });
    expect(schemaErrors(SCHEMA, JSON.parse(JSON.stringify(notHere)))).toEqual([]);
    const off = listenReport(facts(new Map(), { capture: { unavailable: 'tcpdump is not installed (apt-get install tcpdump)' } }), OPTS);
    expect(off.exitCode).toBe(1);
    expect(off.capture).toEqual({ available: false, reason: 'tcpdump is not installed (apt-get install tcpdump)', points: [], lost: null });
  });
});

describe('command line: trace --listen', () => {
  const trace = (args: string[]) => {
    const c = parseCommandLine(['trace', ...args], {});
    if (c.command !== 'trace') throw new Error(`expected trace, got ${c.command}`);
    return c.options;
  };

  it('takes --listen, --from, --count and --timeout (default 30 s)', () => {
    expect(trace(['10.7.12.2', '--listen', '--from', '10.7.96.2', '--count', '4', '--timeout', '15'])).toMatchObject({ listen: true, src: SRC, count: 4, timeoutSeconds: 15 });
    expect(trace(['10.7.12.2', '--listen'])).toMatchObject({ listen: true, src: undefined, count: 3, timeoutSeconds: 30 });
    expect(trace(['10.7.12.2'])).toMatchObject({ listen: false });
  });

  it.each([
    [['10.7.12.2', '--listen', '--capture'], '--listen and --capture: --capture runs on the source node, --listen on the destination node'],
    [['10.7.12.2', '--listen', '--no-probe'], '--listen and --no-probe'],
    [['10.7.12.2', '--timeout', '5'], '--timeout: only with --listen'],
    [['10.7.12.2', '--listen', '--timeout', '0'], '--timeout: 0 is not a number of seconds from 1 to 3600'],
  ])('refuses %j', (args, message) => {
    expect(() => trace(args)).toThrow(UsageError);
    expect(() => trace(args)).toThrow(message);
  });
});
