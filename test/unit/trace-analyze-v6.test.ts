/**
 * The trace analysis for an IPv6 pod address on a dual-stack network (and an
 * IPv6-only one): the same hops as IPv4, judged against the lease's IPv6 half,
 * flannel-v6.1's entries, ip6tables and IPv6 forwarding; then one fault at a
 * time. The report must conform to docs/trace.schema.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Entry } from '../../src/kernel/kernel';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { analyzeTrace } from '../../src/trace/analyze';
import { TraceFacts, capturePoints } from '../../src/trace/collect';
import { renderTrace } from '../../src/trace/render';
import { TraceReport } from '../../src/trace/report';
import { DEVICE6, DST6, ENTRIES6, IP2V6, IP6TABLES, M1V6, M2V6, OPTS, POD6, PROC_NET_UDP6, SRC6, healthyFacts6, withKernel6 } from '../helpers/trace-facts';

const TRACE_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;

function trace(facts: TraceFacts): TraceReport {
  const r = analyzeTrace(facts, OPTS);
  expect(schemaErrors(TRACE_SCHEMA, JSON.parse(JSON.stringify(r)))).toEqual([]);
  return r;
}

type ReadKernel = Extract<NonNullable<TraceFacts['status']['kernel']>, { kind: 'read' }>;

describe('trace of an IPv6 pod address: a healthy dual-stack pair', () => {
  const r = trace(healthyFacts6());

  it('walks pod, veth, bridge, routing, flannel-v6.1, underlay and the remote node without a problem', () => {
    expect(r.problems).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'vxlan', 'underlay', 'remote']);
    expect(r.verdict).toBe('OK: fc00:0:0:18::2 → fc00:0:0:22::2, 7 hops ok (2 warnings), 3/3 echo replies');
    expect(r.destination).toEqual({ ip: 'fc00:0:0:22::2', subnet: 'fc00:0:0:22::/64', publicIP: '2001:db8:154::12', vtepMAC: M2V6, local: false });
    expect(r.source).toEqual({ ip: 'fc00:0:0:18::2', kind: 'pod', netns: 'pod1' });
  });

  it('names the IPv6 objects and lookups of each hop, in ip -6 words', () => {
    const [pod, , bridge, route, vxlan, underlay, remote] = r.hops;
    expect(pod?.interface?.addresses).toEqual(['fc00:0:0:18::2/64', 'fe80::6051:44ff:fe3a:bd70/64']);
    expect(pod?.lookup).toBe('ip -6 route get fc00:0:0:22::2 → via fc00:0:0:18::1 dev eth0');
    expect(bridge?.interface?.addresses).toEqual(['fc00:0:0:18::1/64']);
    expect(bridge?.checks.map((c) => c.message)).toContain("the pod's gateway fc00:0:0:18::1 is cni0's address");
    expect(route?.title).toBe('routing on this host 2001:db8:154::11 (the packet arrives on cni0)');
    expect(route?.lookup).toBe('ip -6 route get fc00:0:0:22::2 from fc00:0:0:18::2 iif cni0 → via fc00:0:0:22:: dev flannel-v6.1');
    expect(route?.facts).toContain('net.ipv6.conf.all.forwarding=1');
    expect(route?.commands).toContain('ip6tables-save -t filter');
    expect(route?.checks.map((c) => c.message)).toEqual(expect.arrayContaining([
      'fc00:0:0:22::2 is in lease fc00:0:0:22::/64 of node 2001:db8:154::12',
      'route fc00:0:0:22::/64 via fc00:0:0:22:: dev flannel-v6.1 onlink',
      'FORWARD accepts the request (rule ACCEPT)',
      'FORWARD accepts the reply (rule ACCEPT)',
      'the reply from fc00:0:0:22::2 on flannel-v6.1 has a route back (IPv6 has no rp_filter)',
    ]));
    expect(vxlan?.title).toBe('flannel-v6.1 vxlan id 1 local 2001:db8:154::11 dstport 8472');
    expect(vxlan?.interface).toMatchObject({ name: 'flannel-v6.1', index: 6, mac: M1V6, mtu: 1430, addresses: ['fc00:0:0:18::/128'] });
    expect(vxlan?.lookup).toBe(`neighbour fc00:0:0:22:: → lladdr ${M2V6}; fdb ${M2V6} → dst 2001:db8:154::12`);
    expect(vxlan?.checks.map((c) => c.message)).toEqual([`neighbour fc00:0:0:22:: lladdr ${M2V6} permanent`, `FDB ${M2V6} dst 2001:db8:154::12 permanent`, 'a UDP socket is bound to port 8472']);
    expect(underlay?.lookup).toBe('ip -6 route get 2001:db8:154::12 → dev eth0 src 2001:db8:154::11');
    expect(underlay?.checks.map((c) => c.message)).toEqual(["flannel-v6.1 MTU 1430 + 70 fits eth0's MTU 1500"]);
    expect(remote?.facts[0]).toBe(`lease /coreos.com/network/subnets/10.7.34.0-24&fc00:0:0:22::-64: PublicIPv6 2001:db8:154::12, VtepMAC ${M2V6}, backend vxlan, expires in 23h53m`);
    expect(remote?.commands).toContain('flanneld-ts trace fc00:0:0:18::2 --from fc00:0:0:22::2 (on 2001:db8:154::12: the way back)');
  });

  it('gives the VXLAN datagram over the IPv6 underlay, with flannel-v6.1\'s MACs and the masqueraded inner source', () => {
    expect(r.encapsulation).toEqual({ outerSrc: '2001:db8:154::11', outerDst: '2001:db8:154::12', udpPort: 8472, vni: 1, innerSrcMAC: M1V6, innerDstMAC: M2V6, innerSrc: 'fc00:0:0:18::', innerDst: 'fc00:0:0:22::2', egress: 'eth0' });
  });

  it('warns (not fails) that the pod\'s MTU, FLANNEL_MTU, is 20 bytes above flannel-v6.1\'s, and about the bridge plugin\'s IPv6 masquerade', () => {
    const warnings = r.hops.flatMap((h) => h.checks.filter((c) => c.state === 'warning').map((c) => c.message));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toBe("pod eth0 MTU 1450 is above flannel-v6.1's 1430: IPv6 packets over 1430 bytes get ICMPv6 Packet Too Big from this host and are sent again smaller");
    expect(warnings[1]).toMatch(/^the source fc00:0:0:18::2 is rewritten to fc00:0:0:18:: by -A CNI-\S+ ! -d ff00::\/8 .* -j MASQUERADE/);
  });

  it('renders as text with the IPv6 lease and datagram', () => {
    const text = renderTrace(r, false);
    expect(text).toContain('trace pod fc00:0:0:18::2 → fc00:0:0:22::2 (lease fc00:0:0:22::/64 of node 2001:db8:154::12)');
    expect(text).toContain('VXLAN    outer 2001:db8:154::11 → 2001:db8:154::12 UDP dport 8472 VNI 1 out eth0');
  });

  it('captures ICMPv6 at the local hops and UDP to the IPv6 VTEP on the underlay', () => {
    expect(capturePoints({ veth: 'veth1', bridge: 'cni0', device: 'flannel-v6.1', underlay: 'eth0', remote: IP2V6, dst: DST6, port: 8472 }).map((p) => p.filter)).toEqual([
      'icmp6 and host fc00:0:0:22::2',
      'icmp6 and host fc00:0:0:22::2',
      'icmp6 and host fc00:0:0:22::2',
      'udp and port 8472 and host 2001:db8:154::12',
    ]);
  });
});

describe('trace of an IPv6 pod address: one fault at a time', () => {
  it('flannel-v6.1\'s FDB entry missing: status\'s plan verdict, at the vxlan hop, with the fix', () => {
    const r = trace(withKernel6({ entries6: ENTRIES6.filter((e) => e.kind !== 'fdb') }));
    const p = r.problems.find((x) => x.kind === 'vxlan');
    expect(p?.message).toBe(`FDB entry ${M2V6} dst 2001:db8:154::12 on flannel-v6.1: missing: the kernel does not know which host to send ${M2V6}'s frames to`);
    expect(p?.fix).toBe(`bridge fdb replace ${M2V6} dev flannel-v6.1 dst 2001:db8:154::12 self permanent (flanneld-ts programs it: is it running?)`);
    expect(r.encapsulation).toBeNull();
  });

  it('the IPv6 neighbour with the wrong MAC', () => {
    const entries6 = ENTRIES6.map((e) => (e.kind === 'neighbor' ? { ...e, mac: '02:de:ad:be:ef:01' } : e));
    expect(trace(withKernel6({ entries6 })).problems[0]).toMatchObject({ kind: 'vxlan', message: 'neighbour fc00:0:0:22:: on flannel-v6.1: wrong mac 02:de:ad:be:ef:01' });
  });

  it('the IPv6 route missing: the packet leaves by eth0', () => {
    const forward = { query: { dst: DST6, src: SRC6, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: undefined } };
    const r = trace(withKernel6({ entries6: ENTRIES6.filter((e) => e.kind !== 'route') }, { forward }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: 'route fc00:0:0:22::/64 via fc00:0:0:22:: dev flannel-v6.1 onlink is missing: the packet leaves by eth0 instead' });
    expect(r.problems[0]?.fix).toBe('ip -6 route replace fc00:0:0:22::/64 via fc00:0:0:22:: dev flannel-v6.1 onlink (flanneld-ts programs it: is it running?)');
  });

  it('ip6tables FORWARD policy DROP without the accept rules (the IPv4 rules do not count)', () => {
    const r = trace(healthyFacts6({ iptables: { text: '*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.7.0.0/16 -j ACCEPT\nCOMMIT\n' } }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: 'FORWARD drops the request fc00:0:0:18::2 → fc00:0:0:22::2: policy DROP and no rule accepts fc00::/48' });
    expect(r.problems[0]?.fix).toContain('ip6tables -A FORWARD -s fc00::/48 -j ACCEPT');
    // flanneld-ts's IPv6 accept rules make the same policy harmless.
    expect(trace(healthyFacts6({ iptables: { text: IP6TABLES.replace(':FORWARD ACCEPT', ':FORWARD DROP') } })).exitCode).toBe(0);
  });

  it('an ICMPv6 reject before the accepts', () => {
    const text = IP6TABLES.replace('-A FORWARD -m comment', '-A FORWARD -p ipv6-icmp -d fc00:0:0:22::/64 -j REJECT\n-A FORWARD -m comment');
    expect(trace(healthyFacts6({ iptables: { text } })).problems[0]?.message).toBe('FORWARD drops the request fc00:0:0:18::2 → fc00:0:0:22::2: rule -A FORWARD -p ipv6-icmp -d fc00:0:0:22::/64 -j REJECT drops it');
  });

  it('IPv6 forwarding off (ip_forward on does not help)', () => {
    const sysctls = new Map([...healthyFacts6().sysctls, ['net.ipv6.conf.all.forwarding', '0'], ['net.ipv4.ip_forward', '1']]);
    const r = trace(healthyFacts6({ sysctls, forward: { query: { dst: DST6, src: SRC6, iif: 4 }, error: 'ENETUNREACH' }, reply: undefined, probe: { command: 'ping', sent: 3, received: 0 } }));
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: "IPv6 forwarding is off: this host drops the pod's packets instead of routing them", fix: 'sysctl -w net.ipv6.conf.all.forwarding=1' });
  });

  it('no UDP6 socket on the VXLAN port (one on 4789 does not count)', () => {
    const r = trace(healthyFacts6({ udp: { text: PROC_NET_UDP6.replace(':2118 ', ':12B5 ') } }));
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'vxlan', message: 'no UDP socket is bound to port 8472: flannel-v6.1 can neither receive nor send VXLAN' })]);
  });

  it('flannel-v6.1 MTU too big for the IPv6 underlay: 70 bytes of headers', () => {
    const r = trace(withKernel6({ device6: { ...DEVICE6, mtu: 1450 } }));
    expect(r.problems.find((p) => p.kind === 'underlay')?.message).toBe("flannel-v6.1 MTU 1450 + 70 bytes of VXLAN headers is over eth0's MTU 1500: full-size packets are dropped");
  });

  it('flannel-v6.1 missing, and a wrong device: status\'s problem line for it (status details flannel.1\'s checks only)', () => {
    const f = healthyFacts6();
    const k = f.status.kernel as ReadKernel;
    const gone = trace({ ...f, status: { ...f.status, kernel: { ...k, device6: undefined, entries6: [] } } });
    expect(gone.problems.find((p) => p.kind === 'vxlan')?.message).toBe('flannel-v6.1 does not exist');
    const wrong = trace(withKernel6({ device6: { ...DEVICE6, vni: 7 } }));
    expect(wrong.problems.find((p) => p.kind === 'vxlan')?.message).toBe('flannel-v6.1 is wrong: vni wrong 7 (want 1)');
  });

  it('an IPv6 address in no lease names the IPv6 subnets', () => {
    const dst = parseIPv6('fc00:0:0:99::5');
    const r = trace(healthyFacts6({ dst, forward: { query: { dst, src: SRC6, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: undefined, prefsrc: undefined } }, underlay: undefined, probe: undefined }));
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: 'fc00:0:0:99::5 is in no lease: no node holds a subnet for it (leases: fc00:0:0:18::/64, fc00:0:0:22::/64)' });
  });

  it('no echo reply while every local hop is ok: placed at the remote node\'s PublicIPv6', () => {
    const r = trace(healthyFacts6({ probe: { command: 'ping -6', sent: 3, received: 0 } }));
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'remote', message: expect.stringContaining('lost at or beyond 2001:db8:154::12 (its firewall on UDP 8472') })]);
  });
});

describe('trace of an IPv6 pod address: other networks', () => {
  it('an IPv6-only network: flannel-v6.1 is status\'s device, judged check by check', () => {
    const f = healthyFacts6();
    const k = f.status.kernel as ReadKernel;
    const configText = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
    const records = f.status.store.records.map((rec) => (rec.kind === 'lease' ? { ...rec, key: rec.key.replace(/subnets\/[^&]+&/, 'subnets/0.0.0.0-0&'), lease: { ...rec.lease, subnet: { ip: 0, prefixLen: 0 }, publicIP: 0, vtepMAC: undefined, hasIPv4: false } } : rec));
    const status = { ...f.status, store: { ...f.status.store, configText, records }, subnetFile: { path: '/run/flannel/subnet.env', text: 'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:18::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n' } };
    const healthy = trace({ ...f, pod: { ...POD6, iface: { ...POD6.iface, mtu: 1430 } }, status: { ...status, kernel: { ...k, device: undefined, entries: [] } } });
    expect(healthy.problems).toEqual([]);
    expect(healthy.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'vxlan', 'underlay', 'remote']);
    const wrong = trace({ ...f, status: { ...status, kernel: { ...k, device: undefined, entries: [], device6: { ...DEVICE6, up: false } } } });
    expect(wrong.problems.find((p) => p.kind === 'vxlan')).toMatchObject({ message: 'flannel-v6.1 up wrong down (want up)', fix: 'ip link set flannel-v6.1 up' });
  });

  it('an IPv6 pod address on a network without IPv6: says so at the config', () => {
    const f = healthyFacts6();
    const r = trace({ ...f, status: { ...f.status, store: { ...f.status.store, configText: '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}' } } });
    expect(r.problems.map((p) => p.message)).toEqual(['the network config does not enable IPv6 (EnableIPv6 false): fc00:0:0:22::2 is no pod address of this overlay']);
  });

  it('a DirectRouting peer over IPv6: the route via its PublicIPv6, no flannel-v6.1 hop', () => {
    const f = healthyFacts6({ forward: { query: { dst: DST6, src: SRC6, iif: 4 }, answer: { type: 'unicast', table: 254, oif: 2, gateway: IP2V6, prefsrc: undefined } } });
    const k = f.status.kernel as ReadKernel;
    const direct: Entry = { kind: 'route', dst: parseCidr6('fc00:0:0:22::/64'), gateway: IP2V6, onlink: false, direct: true };
    const r = trace({ ...f, status: { ...f.status, store: { ...f.status.store, configText: DUAL_DIRECT }, kernel: { ...k, entries6: [direct], direct: new Set([IP2V6]) } } });
    expect(r.hops.map((h) => h.kind)).not.toContain('vxlan');
    expect(r.hops.find((h) => h.kind === 'route')?.checks.map((c) => c.message)).toContain('direct route fc00:0:0:22::/64 via 2001:db8:154::12 proto 152 (DirectRouting): the packet leaves eth0 unencapsulated');
  });

  it('from this host: the host hop shows the public IPv6 and the IPv6 lease', () => {
    const forward = { query: { dst: DST6 }, answer: { type: 'unicast', table: 254, oif: 6, gateway: parseIPv6('fc00:0:0:22::'), prefsrc: parseIPv6('fc00:0:0:18::') } };
    const r = trace(healthyFacts6({ src: undefined, pod: undefined, reply: undefined, forward }));
    expect(r.exitCode).toBe(0);
    expect(r.hops[0]?.title).toBe('this host 2001:db8:154::11 (lease fc00:0:0:18::/64)');
    expect(r.source).toEqual({ ip: '2001:db8:154::11', kind: 'host', netns: null });
    expect(r.encapsulation?.innerSrc).toBe('fc00:0:0:18::');
  });
});

const DUAL_DIRECT = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan","DirectRouting":true}}';
