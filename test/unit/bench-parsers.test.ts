import { describe, expect, it } from 'vitest';
import { parseMilestones } from '../../src/bench/daemon-log';
import { matchPeer, parseMonitorLine } from '../../src/bench/join-monitor';
import { limitBatches } from '../../src/bench/kernel-limit';
import { expectedLines, parseDeviceDump, verifyDump } from '../../src/bench/kernel-view';
import { diffCounts, isKeepAlive, parseGrpcCounter, total } from '../../src/bench/metrics';
import { idleSecondsFor, parseBenchArgs, daemonOptionsFor } from '../../src/bench/options';
import { BENCH_CONFIG, benchPeer, JOIN_BASE_INDEX, leaseItem, MAX_INDEX, peerIndexOf, peerRange } from '../../src/bench/peers';
import { parseCpuLine, parseFibPrefixes, parseProcStat, parseRssKinds, parseSchedstatNs, parseVmHWM, readThreadsCpuNs } from '../../src/bench/proc';
import { parseNetworkConfig } from '../../src/config';
import { decodeLease } from '../../src/lease/codec';
import { formatCidr, parseCidr } from '../../src/net/ipv4';
import { UsageError } from '../../src/util/errors';

describe('bench peers', () => {
  it('derives subnet, MAC and public IP from the index, all distinct', () => {
    const p = benchPeer(258);
    expect(formatCidr(p.subnet)).toBe('100.65.2.0/24');
    expect(p.mac).toBe('0e:66:00:00:01:02');
    expect(p.publicIP).toBe(benchPeer(1).publicIP + 257);
    const many = peerRange(5000, undefined);
    expect(new Set(many.map((x) => x.mac)).size).toBe(5000);
    expect(new Set(many.map((x) => x.publicIP)).size).toBe(5000);
    expect(() => benchPeer(0)).toThrow(RangeError);
    expect(() => benchPeer(MAX_INDEX + 1)).toThrow(RangeError);
    // Above 100.127.255.0 the index wraps to the bottom of the /9: 25,000 peers stay distinct and inside it.
    expect(formatCidr(benchPeer(16_383).subnet)).toBe('100.127.255.0/24');
    expect(formatCidr(benchPeer(16_384).subnet)).toBe('100.0.0.0/24');
    expect(formatCidr(benchPeer(MAX_INDEX).subnet)).toBe('100.63.255.0/24');
    const wide = peerRange(25_000, undefined);
    expect(new Set(wide.map((x) => formatCidr(x.subnet))).size).toBe(25_000);
    expect(wide.every((x) => peerIndexOf(x.subnet) === x.index)).toBe(true);
  });

  it('skips the daemon own subnet and maps subnets back to indices', () => {
    const own = parseCidr('100.64.3.0/24');
    expect(peerIndexOf(own)).toBe(3);
    expect(peerIndexOf(parseCidr('10.7.0.0/24'))).toBeUndefined();
    expect(peerRange(4, own).map((p) => p.index)).toEqual([1, 2, 4, 5]);
    expect(peerRange(2, undefined, JOIN_BASE_INDEX).map((p) => p.index)).toEqual([JOIN_BASE_INDEX, JOIN_BASE_INDEX + 1]);
  });

  it('writes leases the daemon decodes as valid vxlan peers inside the bench network', () => {
    const config = parseNetworkConfig(BENCH_CONFIG);
    const p = benchPeer(77);
    const [key, value] = leaseItem('/coreos.com/network', p);
    expect(key).toBe('/coreos.com/network/subnets/100.64.77.0-24');
    const rec = decodeLease(key, key.split('/').pop() as string, value);
    expect(rec).toMatchObject({ kind: 'lease', lease: { publicIP: p.publicIP, vtepMAC: p.mac, vni: 1, backendType: 'vxlan' } });
    expect(config.network.prefixLen).toBe(9);
  });
});

describe('bench /proc and metrics parsers', () => {
  it('reads CPU ticks after a command name with spaces and parentheses', () => {
    const stat = '4242 (node (flan) d) S 1 2 3 4 5 6 7 8 9 10 111 22 33 44 20 0 11 0 5 6 7';
    expect(parseProcStat(stat)).toEqual({ utime: 111, stime: 22, cutime: 33, cstime: 44 });
    expect(() => parseProcStat('garbage')).toThrow();
  });

  it('reads a thread\'s CPU nanoseconds from schedstat, and sums this process\'s threads', () => {
    expect(parseSchedstatNs('2953125 0 1\n')).toBe(2953125);
    expect(() => parseSchedstatNs('')).toThrow();
    const before = readThreadsCpuNs(process.pid);
    const until = Date.now() + 30;
    while (Date.now() < until) Math.sqrt(Math.random());
    expect(readThreadsCpuNs(process.pid) - before).toBeGreaterThanOrEqual(20e6);
  });

  it('reads VmHWM and the main trie prefix count', () => {
    expect(parseVmHWM('Name:\tnode\nVmPeak:\t 1 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1 kB\n')).toBe(123456);
    expect(parseRssKinds('VmRSS:\t  100 kB\nRssAnon:\t   60 kB\nRssFile:\t   40 kB\nRssShmem:\t 0 kB\n')).toEqual({ anonKb: 60, fileKb: 40 });
    expect(() => parseRssKinds('VmRSS:\t 1 kB\n')).toThrow(/RssAnon/);
    const trie = 'Basic info: size of leaf: 48 bytes, size of tnode: 40 bytes.\nMain:\n\tAver depth:     2.42\n\tMax depth:      3\n\tLeaves:         7\n\tPrefixes:       5008\n\tInternal nodes: 5\nLocal:\n\tPrefixes:       9\n';
    expect(parseFibPrefixes(trie)).toBe(5008);
    expect(() => parseFibPrefixes('Local:\n\tPrefixes: 3\n')).toThrow();
  });

  it('reads how busy all CPUs were, leaving idle and iowait out', () => {
    expect(parseCpuLine('cpu  100 5 50 800 40 1 4 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n')).toEqual({ busy: 160, total: 1000 });
    expect(() => parseCpuLine('intr 1 2 3')).toThrow();
  });

  it('sums gRPC messages per method and diffs two scrapes', () => {
    const a = parseGrpcCounter(
      [
        '# TYPE grpc_server_msg_received_total counter',
        'grpc_server_msg_received_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 10',
        'grpc_server_msg_received_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 2',
        'grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 99',
      ].join('\n'),
    );
    const b = new Map([...a, ['etcdserverpb.KV/Range', 12], ['etcdserverpb.Watch/Watch', 1]]);
    const d = diffCounts(a, b);
    expect([...d]).toEqual([['etcdserverpb.KV/Range', 2], ['etcdserverpb.Watch/Watch', 1]]);
    expect(total(a)).toBe(12);
    expect(isKeepAlive('etcdserverpb.Lease/LeaseKeepAlive')).toBe(true);
    expect(isKeepAlive('etcdserverpb.KV/Range')).toBe(false);
  });

  it('splits a start-up into first log line, lease and ready', () => {
    const log = [
      '{"level":30,"time":"2026-01-01T00:00:00.250Z","msg":"starting flanneld-ts"}',
      'not json',
      '{"level":30,"time":"2026-01-01T00:00:00.400Z","msg":"reusing lease 100.64.3.0/24 held by 10.65.154.11"}',
      '{"level":30,"time":"2026-01-01T00:00:01.500Z","msg":"ready: lease held, subnet file written, peers programmed"}',
    ].join('\n');
    const t0 = Date.parse('2026-01-01T00:00:00.000Z');
    const m = parseMilestones(log);
    expect([(m.firstMs ?? 0) - t0, (m.leaseMs ?? 0) - t0, (m.readyMs ?? 0) - t0]).toEqual([250, 400, 1500]);
    expect(parseMilestones('')).toEqual({});
  });
});

describe('bench kernel views', () => {
  const p = benchPeer(5);
  const lines = expectedLines(p);
  const json = {
    routes: JSON.stringify([{ dst: '100.64.5.0/24', gateway: '100.64.5.0', flags: ['onlink'] }]),
    neighbors: JSON.stringify([{ dst: '100.64.5.0', lladdr: '0e:66:00:00:00:05', state: ['PERMANENT'] }]),
    fdb: JSON.stringify([{ mac: '0e:66:00:00:00:05', dst: '10.66.0.5', flags: ['self'], state: 'permanent' }, { mac: '33:33:00:00:00:01', flags: ['self'], state: 'permanent' }]),
  };

  it('turns iproute2 JSON into the lines ip and bridge print, and accepts the exact state', () => {
    const dump = parseDeviceDump(json.routes, json.neighbors, json.fdb);
    expect(dump).toEqual({ routes: [lines.route], neighbors: [lines.neighbor], fdb: [lines.fdb] });
    expect(verifyDump(dump, [p])).toMatchObject({ ok: true, routes: 1, neighbors: 1, fdb: 1, checked: 1, problems: [] });
    expect(parseDeviceDump('', '\n', '[]')).toEqual({ routes: [], neighbors: [], fdb: [] });
  });

  it('fails a dump with a wrong MAC, a missing entry or an extra one', () => {
    const wrongMac = parseDeviceDump(json.routes, json.neighbors.replace(':05"', ':06"'), json.fdb);
    expect(verifyDump(wrongMac, [p]).problems).toEqual(['missing or wrong neighbor: want "100.64.5.0 lladdr 0e:66:00:00:00:05 PERMANENT"']);
    const noOnlink = parseDeviceDump(json.routes.replace('"onlink"', ''), json.neighbors, json.fdb);
    expect(verifyDump(noOnlink, [p]).ok).toBe(false);
    const missing = verifyDump({ routes: [], neighbors: [lines.neighbor], fdb: [lines.fdb] }, [p]);
    expect(missing.problems[0]).toBe('0 routes on flannel.1, want 1');
    const extra = verifyDump({ routes: [lines.route, '100.64.9.0/24 via 100.64.9.0 onlink'], neighbors: [lines.neighbor], fdb: [lines.fdb] }, [p]);
    expect(extra.ok).toBe(false);
  });

  it('writes the same entries as ip -batch and bridge -batch lines', () => {
    const b = limitBatches([p]);
    expect(b.bridge).toBe('fdb replace 0e:66:00:00:00:05 dev flannel.1 dst 10.66.0.5 self permanent\n');
    expect(b.ip).toBe('neigh replace 100.64.5.0 lladdr 0e:66:00:00:00:05 dev flannel.1 nud permanent\nroute replace 100.64.5.0/24 via 100.64.5.0 dev flannel.1 onlink\n');
  });

  it('reads ip monitor and bridge monitor lines and matches them to a peer', () => {
    const route = parseMonitorLine('100.64.5.0/24 via 100.64.5.0 dev flannel.1 onlink ');
    const neigh = parseMonitorLine('100.64.5.0 dev flannel.1 lladdr 0e:66:00:00:00:05 PERMANENT ');
    const fdb = parseMonitorLine('0e:66:00:00:00:05 dev flannel.1 dst 10.66.0.5 self permanent');
    expect([route, neigh, fdb].map((e) => e && matchPeer(e, p, false))).toEqual(['route', 'neighbor', 'fdb']);
    expect(parseMonitorLine('10.66.0.5 dev flannel.1 lladdr 0e:66:00:00:00:05 NOARP PERMANENT')).toBeUndefined();
    expect(parseMonitorLine('10.65.154.2 dev eth0 lladdr 1a:2b:3c:4d:5e:6f REACHABLE')).toBeUndefined();
    const gone = parseMonitorLine('Deleted 100.64.5.0 dev flannel.1 FAILED');
    expect(gone && matchPeer(gone, p, true)).toBe('neighbor');
    expect(gone && matchPeer(gone, p, false)).toBeUndefined();
    const otherMac = parseMonitorLine('100.64.5.0 dev flannel.1 lladdr 0e:66:00:00:00:09 PERMANENT');
    expect(otherMac && matchPeer(otherMac, p, false)).toBeUndefined();
  });
});

describe('bench command line', () => {
  it('has defaults that fit the issue', () => {
    expect(parseBenchArgs([])).toEqual({
      sizes: [100, 1000, 5000],
      out: 'bench-results.json',
      joins: 50,
      idleSeconds: undefined,
      limitRuns: 3,
      failOnMiss: false,
      daemonArgs: [],
      repeat: 3,
      churnSeconds: 60,
      churnRate: 50,
      phases: ['joins', 'idle', 'pass', 'churn', 'cold', 'warm', 'limit'],
    });
    expect([idleSecondsFor(100), idleSecondsFor(1000), idleSecondsFor(5000)]).toEqual([30, 30, 60]);
  });

  it('takes flags with a space or an equals sign', () => {
    expect(parseBenchArgs(['--sizes', '100,1000', '--out=/tmp/r.json', '--joins', '10', '--idle-seconds=5', '--limit-runs', '1', '--fail-on-miss', '--daemon-args', ' --kernel-resync 300  --iptables-resync 60'])).toEqual({
      sizes: [100, 1000],
      out: '/tmp/r.json',
      joins: 10,
      idleSeconds: 5,
      limitRuns: 1,
      failOnMiss: true,
      daemonArgs: ['--kernel-resync', '300', '--iptables-resync', '60'],
      repeat: 3,
      churnSeconds: 60,
      churnRate: 50,
      phases: ['joins', 'idle', 'pass', 'churn', 'cold', 'warm', 'limit'],
    });
    expect(parseBenchArgs(['--sizes', '20000', '--phases', 'churn', '--churn-seconds=30', '--churn-rate', '100', '--repeat', '1'])).toMatchObject({
      sizes: [20000],
      phases: ['churn'],
      churnSeconds: 30,
      churnRate: 100,
      repeat: 1,
    });
    expect(parseBenchArgs(['--help'])).toBe('help');
  });

  it('names the bad flag or value', () => {
    expect(() => parseBenchArgs(['--sizes', '100,abc'])).toThrow(new UsageError('--sizes: "abc" is not a whole number from 1 to 29998'));
    expect(() => parseBenchArgs(['--sizes', '100,100'])).toThrow(/repeats a size/);
    expect(() => parseBenchArgs(['--joins'])).toThrow(/--joins: "" is not a whole number/);
    expect(() => parseBenchArgs(['--verbose'])).toThrow('unknown argument "--verbose"');
    expect(() => parseBenchArgs(['--phases', 'idle,nap'])).toThrow('--phases: unknown phase "nap" (choose from joins, idle, pass, churn, cold, warm, limit)');
    expect(() => parseBenchArgs(['--daemon-args', '--kernel-resync 0'])).toThrow(/^--daemon-args: --kernel-resync: 0 is not a positive number of seconds$/);
    expect(() => parseBenchArgs(['--daemon-args', '--no-such-flag'])).toThrow(/^--daemon-args: Unknown argument/);
  });
});

describe('bench daemon defaults', () => {
  it('come from the daemon\'s own parser: the shipped defaults, overridden by --daemon-args as the CLI does', () => {
    expect(daemonOptionsFor([]).resyncMs).toBe(300_000);
    expect(daemonOptionsFor([]).iptablesResyncMs).toBe(5_000);
    expect(daemonOptionsFor(['--kernel-resync', '300', '--iptables-resync', '60'])).toMatchObject({ resyncMs: 300_000, iptablesResyncMs: 60_000 });
    expect(daemonOptionsFor(['--kernel-resync=30', '--kernel-resync', '86400']).resyncMs).toBe(86_400_000);
  });
});
