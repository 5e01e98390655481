/**
 * The trace analysis on facts read from a healthy testbed host, then one fault
 * at a time: each must make the exit code 1 and be named at the right hop with
 * its cause and fix; the report must conform to docs/trace.schema.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Entry } from '../../src/kernel/kernel';
import { parseIPv4 } from '../../src/net/ipv4';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { analyzeTrace } from '../../src/trace/analyze';
import { TraceFacts } from '../../src/trace/collect';
import { renderTrace } from '../../src/trace/render';
import { TRACE_SCHEMA_VERSION, TraceReport } from '../../src/trace/report';
import { DEVICE, DST, ENTRIES, INTERFACES, IP1, LINKS, M1, M2, OPTS, POD, healthyFacts, withKernel } from '../helpers/trace-facts';

const TRACE_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;

function trace(facts: TraceFacts): TraceReport {
  const r = analyzeTrace(facts, OPTS);
  expect(schemaErrors(TRACE_SCHEMA, JSON.parse(JSON.stringify(r)))).toEqual([]);
  return r;
}

function onlyProblem(r: TraceReport): TraceReport['problems'][number] {
  expect(r.exitCode).toBe(1);
  expect(r.ok).toBe(false);
  expect(r.problems).toHaveLength(1);
  return r.problems[0] as TraceReport['problems'][number];
}

describe('trace: a healthy pair', () => {
  const r = trace(healthyFacts());

  it('walks pod, veth, bridge, routing, flannel.1, underlay and the remote node, every hop without a problem', () => {
    expect(r.exitCode).toBe(0);
    expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'vxlan', 'underlay', 'remote']);
    expect(r.problems).toEqual([]);
    expect(r.hops.map((h) => h.predicted)).toEqual([false, false, false, false, false, false, true]);
    expect(r.verdict).toBe('OK: 10.7.24.2 → 10.7.34.2, 7 hops ok (1 warning), 3/3 echo replies');
  });

  it('names the real objects of each hop and the lookup that chose the next', () => {
    const [pod, veth, bridge, route, vxlan, underlay, remote] = r.hops;
    expect(pod?.interface).toEqual({ name: 'eth0', index: 2, mac: '62:51:44:3a:bd:70', mtu: 1450, addresses: ['10.7.24.2/24'], up: true, netns: 'pod1' });
    expect(pod?.title).toBe('pod 10.7.24.2 eth0@if5 in netns pod1');
    expect(pod?.lookup).toBe('ip route get 10.7.34.2 → via 10.7.24.1 dev eth0');
    expect(pod?.commands).toContain('ip netns exec pod1 ip route get 10.7.34.2');
    expect(veth?.interface?.name).toBe('vetha26954b2');
    expect(veth?.lookup).toBe('master cni0');
    expect(bridge?.interface).toMatchObject({ name: 'cni0', index: 4, addresses: ['10.7.24.1/24'] });
    expect(route?.lookup).toBe('ip route get 10.7.34.2 from 10.7.24.2 iif cni0 → via 10.7.34.0 dev flannel.1');
    expect(vxlan?.interface).toMatchObject({ name: 'flannel.1', index: 3, mac: M1, mtu: 1450 });
    expect(vxlan?.lookup).toBe(`neighbour 10.7.34.0 → lladdr ${M2}; fdb ${M2} → dst 10.65.154.12`);
    expect(underlay?.lookup).toBe('ip route get 10.65.154.12 → dev eth0 src 10.65.154.11');
    expect(remote?.facts.join('\n')).toContain('decapsulation: 10.65.154.12 UDP 8472 → flannel.1 (VNI 1, 5a:f9:bc:6b:1c:56) → route 10.7.34.0/24 dev cni0 → pod 10.7.34.2');
    expect(remote?.commands).toContain('flanneld-ts trace 10.7.34.2 --from 10.7.24.2 --listen (on 10.65.154.12, started before this trace: the same probes coming in)');
  });

  it('gives the VXLAN datagram: outer IPs, UDP 8472, VNI 1, the two flannel.1 MACs, the masqueraded inner source', () => {
    expect(r.encapsulation).toEqual({ outerSrc: '10.65.154.11', outerDst: '10.65.154.12', udpPort: 8472, vni: 1, innerSrcMAC: M1, innerDstMAC: M2, innerSrc: '10.7.24.0', innerDst: '10.7.34.2', egress: 'eth0' });
  });

  it('warns, without failing, that the CNI bridge plugin masquerades the pod', () => {
    const w = r.hops[3]?.checks.filter((c) => c.state === 'warning') ?? [];
    expect(w).toHaveLength(1);
    expect(w[0]?.message).toMatch(/^the source 10\.7\.24\.2 is rewritten to 10\.7\.24\.0 by -A CNI-02b82db3f14598505ffb4ba6 ! -d 224\.0\.0\.0\/4 .* -j MASQUERADE/);
  });

  it('renders every hop, the datagram and the verdict as text', () => {
    const text = renderTrace(r, false);
    expect(text).toContain('trace pod 10.7.24.2 → 10.7.34.2 (lease 10.7.34.0/24 of node 10.65.154.12)');
    expect(text).toContain(' 5 flannel.1 vxlan id 1 local 10.65.154.11 dstport 8472');
    expect(text).toContain(`VXLAN    outer 10.65.154.11 → 10.65.154.12 UDP dport 8472 VNI 1 out eth0`);
    expect(text.trimEnd().split('\n').pop()).toBe(r.verdict);
  });
});

describe('trace: one fault at a time', () => {
  it('an FDB entry missing: at flannel.1, with the bridge fdb command that fixes it', () => {
    const r = trace(withKernel({ entries: ENTRIES.filter((e) => e.kind !== 'fdb') }, { underlay: undefined }));
    const p = r.problems.find((x) => x.kind === 'vxlan');
    expect(p?.message).toBe(`FDB entry ${M2} dst 10.65.154.12 on flannel.1: missing: the kernel does not know which host to send ${M2}'s frames to`);
    expect(p?.fix).toBe(`bridge fdb replace ${M2} dev flannel.1 dst 10.65.154.12 self permanent (flanneld-ts programs it: is it running?)`);
    expect(r.problems[0]?.kind).toBe('vxlan');
    expect(r.encapsulation).toBeNull();
  });

  it('a neighbour with the wrong MAC: the plan\'s verdict', () => {
    const entries = ENTRIES.map((e) => (e.kind === 'neighbor' ? { ...e, mac: '02:de:ad:be:ef:01' } : e));
    const r = trace(withKernel({ entries }));
    expect(r.problems[0]).toMatchObject({ kind: 'vxlan', message: 'neighbour 10.7.34.0 on flannel.1: wrong mac 02:de:ad:be:ef:01' });
  });

  it('the route missing: the packet leaves by eth0', () => {
    const r = trace(withKernel({ entries: ENTRIES.filter((e) => e.kind !== 'route') }, { forward: { query: { dst: DST, src: POD.iface.addresses[0]?.ip, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: undefined } } }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: 'route 10.7.34.0/24 via 10.7.34.0 dev flannel.1 onlink is missing: the packet leaves by eth0 instead' });
  });

  it('FORWARD policy DROP with no accept rule for the network', () => {
    const r = trace(healthyFacts({ iptables: { text: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' } }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: 'FORWARD drops the request 10.7.24.2 → 10.7.34.2: policy DROP and no rule accepts 10.7.0.0/16' });
    expect(r.problems[0]?.fix).toContain('iptables -A FORWARD -s 10.7.0.0/16 -j ACCEPT');
  });

  it('FORWARD policy DROP is fine when flanneld-ts\'s accept rules are there', () => {
    const r = trace(healthyFacts({ iptables: { text: (healthyFacts().iptables as { text: string }).text.replace(':FORWARD ACCEPT', ':FORWARD DROP') } }));
    expect(r.exitCode).toBe(0);
  });

  it('a pod MTU above flannel.1\'s', () => {
    const r = trace(healthyFacts({ pod: { ...POD, iface: { ...POD.iface, mtu: 1500 } } }));
    const p = onlyProblem(r);
    expect(p).toMatchObject({ step: 1, kind: 'pod', message: "pod eth0 MTU 1500 is above flannel.1's 1450: packets over 1450 bytes cannot cross the overlay" });
    expect(p.fix).toContain('ip netns exec pod1 ip link set eth0 mtu 1450');
  });

  it('flannel.1 MTU too big for the underlay', () => {
    const links = LINKS.map((l) => (l.name === 'eth0' ? { ...l, mtu: 1400 } : l));
    const interfaces = INTERFACES.map((i) => (i.name === 'eth0' ? { ...i, mtu: 1400 } : i));
    const r = trace(withKernel({ interfaces }, { links }));
    expect(r.problems.find((p) => p.kind === 'underlay')?.message).toBe("flannel.1 MTU 1450 + 50 bytes of VXLAN headers is over eth0's MTU 1400: full-size packets are dropped");
  });

  it('ip_forward off: named once, at the routing hop', () => {
    const sysctls = new Map(healthyFacts().sysctls).set('net.ipv4.ip_forward', '0');
    const r = trace(healthyFacts({ sysctls, forward: { query: { dst: DST, src: POD.iface.addresses[0]?.ip, iif: 4 }, error: 'EHOSTUNREACH' }, reply: undefined, probe: { command: 'ping', sent: 3, received: 0 } }));
    const p = onlyProblem(r);
    expect(p).toMatchObject({ step: 4, kind: 'route', message: "ip_forward is off: this host drops the pod's packets instead of routing them", fix: 'sysctl -w net.ipv4.ip_forward=1' });
  });

  it('strict rp_filter that drops the reply', () => {
    const sysctls = new Map(healthyFacts().sysctls).set('net.ipv4.conf.all.rp_filter', '1');
    const r = trace(healthyFacts({ sysctls, reply: { query: { dst: POD.iface.addresses[0]?.ip as number, src: DST, iif: 3 }, error: 'EXDEV' } }));
    const p = onlyProblem(r);
    expect(p.message).toBe('the reply from 10.7.34.2 arriving on flannel.1 is dropped: EXDEV: the reverse-path filter (rp_filter) rejects the source on that interface (rp_filter on flannel.1 strict (all=1, flannel.1=0))');
    expect(p.fix).toContain('sysctl -w net.ipv4.conf.flannel/1.rp_filter=2');
  });

  it('no UDP socket on the VXLAN port', () => {
    const p = onlyProblem(trace(healthyFacts({ udp: { text: 'header\n' } })));
    expect(p).toMatchObject({ kind: 'vxlan', message: 'no UDP socket is bound to port 8472: flannel.1 can neither receive nor send VXLAN' });
  });

  it('a destination in no lease', () => {
    const dst = parseIPv4('10.7.99.5');
    const r = trace(healthyFacts({ dst, forward: { query: { dst, src: POD.iface.addresses[0]?.ip, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: undefined } }, underlay: undefined, probe: { command: 'ping', sent: 3, received: 0 } }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: '10.7.99.5 is in no lease: no node holds a subnet for it (leases: 10.7.24.0/24, 10.7.34.0/24)' });
    expect(r.destination.subnet).toBeNull();
    expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route']);
  });

  it('no echo reply although every local hop is ok: the loss is placed at the remote node', () => {
    const p = onlyProblem(trace(healthyFacts({ probe: { command: 'ping', sent: 3, received: 0 } })));
    expect(p.kind).toBe('remote');
    expect(p.message).toBe('0/3 echo replies (ping): every hop on this host is ok, so the packets are lost at or beyond 10.65.154.12 (its firewall on UDP 8472, its FORWARD chain or ip_forward, or the pod itself)');
  });

  it('a pod this host does not run', () => {
    const r = trace(healthyFacts({ pod: { notFound: 'no namespace behind this host\'s veths has 10.7.24.2' }, forward: undefined, reply: undefined, probe: undefined }));
    expect(onlyProblem(r)).toMatchObject({ step: 1, kind: 'pod' });
    expect(r.hops).toHaveLength(1);
  });

  it('flannel.1 with the wrong VNI: status\'s device check, at flannel.1', () => {
    const r = trace(withKernel({ device: { ...DEVICE, vni: 7 } }));
    expect(r.problems.some((p) => p.kind === 'vxlan' && p.message === 'flannel.1 vni wrong 7 (want 1)')).toBe(true);
  });
});

describe('trace: other sources and destinations', () => {
  it('from this host: the host hop, then the host\'s own lookup', () => {
    const r = trace(healthyFacts({ src: undefined, pod: undefined, reply: undefined, forward: { query: { dst: DST }, answer: { type: 'unicast', table: 254, oif: 3, gateway: parseIPv4('10.7.34.0'), prefsrc: parseIPv4('10.7.24.0') } } }));
    expect(r.exitCode).toBe(0);
    expect(r.hops.map((h) => h.kind)).toEqual(['host', 'route', 'vxlan', 'underlay', 'remote']);
    expect(r.source).toEqual({ ip: '10.65.154.11', kind: 'host', netns: null });
    expect(r.encapsulation?.innerSrc).toBe('10.7.24.0');
  });

  it('a destination on this node: delivered by cni0', () => {
    const dst = parseIPv4('10.7.24.3');
    const r = trace(healthyFacts({ dst, forward: { query: { dst, src: POD.iface.addresses[0]?.ip, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 4, gateway: undefined, prefsrc: undefined } }, reply: undefined, iptables: { error: 'not read' } }));
    expect(r.exitCode).toBe(0);
    expect(r.destination.local).toBe(true);
    expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'local']);
  });

  it('the report carries its schema version and this host\'s public IP', () => {
    const r = trace(healthyFacts());
    expect(r.schemaVersion).toBe(TRACE_SCHEMA_VERSION);
    expect(r.hops[3]?.title).toBe(`routing on this host 10.65.154.11 (the packet arrives on cni0)`);
    expect(IP1).toBe(parseIPv4('10.65.154.11'));
  });
});

describe('trace: a DirectRouting peer', () => {
  it('judges the route hop as a direct route and expects no flannel.1 or VXLAN hop', () => {
    const f = healthyFacts({ forward: { query: { dst: DST, src: POD.iface.addresses[0]?.ip, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: parseIPv4('10.65.154.12'), prefsrc: undefined } } });
    const k = f.status.kernel as Extract<NonNullable<TraceFacts['status']['kernel']>, { kind: 'read' }>;
    const direct: Entry = { kind: 'route', dst: { ip: parseIPv4('10.7.34.0'), prefixLen: 24 }, gateway: parseIPv4('10.65.154.12'), onlink: false, direct: true };
    const facts: TraceFacts = {
      ...f,
      status: {
        ...f.status,
        store: { ...f.status.store, configText: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}' },
        kernel: { ...k, entries: [direct], direct: new Set([parseIPv4('10.65.154.12')]) },
      },
    };
    const r = trace(facts);
    expect(r.problems).toEqual([]);
    expect(r.hops.map((h) => h.kind)).not.toContain('vxlan');
    const route = r.hops.find((h) => h.kind === 'route');
    expect(route?.checks.map((c) => c.message)).toContain('direct route 10.7.34.0/24 via 10.65.154.12 proto 152 (DirectRouting): the packet leaves eth0 unencapsulated');
  });
});

describe('trace: an IPv4 pod address on an IPv6-only network', () => {
  it('says the config does not enable IPv4, naming the config, instead of judging the pod IP against 0.0.0.0/0', () => {
    const f = healthyFacts();
    const facts: TraceFacts = { ...f, status: { ...f.status, store: { ...f.status.store, configText: '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}' } } };
    const r = trace(facts);
    expect(r.exitCode).toBe(1);
    expect(r.problems.map((p) => p.message)).toEqual(['the network config does not enable IPv4 (EnableIPv4 false): 10.7.34.2 is no pod address of this overlay']);
  });
});
