/**
 * IPv6 end to end (issue 12 item 2, contract §11): namespace hosts with an IPv4
 * and an IPv6 underlay, a real etcd, bin/flanneld-ts on each host, pods wired
 * by the real CNI bridge + host-local plugins with the IPv6 range subnet.env
 * gives them, and ping / ping6 across hosts.
 *   - IPv6-only: flannel-v6.1 only, pod-to-pod ping6, `0.0.0.0-0&…` keys.
 *   - dual-stack: flannel.1 and flannel-v6.1, ping and ping6 between the same
 *     pods, subnet.env holding both families in flanneld's order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { BIN, createScene, DaemonHandle, PREFIX, Scene, waitFor, waitReady } from '../../src/testbed/scene';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { StatusReport } from '../../src/status/report';
import { TraceReport } from '../../src/trace/report';
import { sceneLifecycle } from '../helpers/overlay';
import { pingUntil } from '../helpers/ping-until';
import { assertPrivateNetns } from '../helpers/private-netns';
import { statusJson } from '../helpers/status-json';

const UNDERLAY6 = '2001:db8:154::/64';
const TRACE_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;
const HOSTS = ['h1', 'h2'] as const;

interface Setup {
  scene: Scene;
  daemons: Map<string, DaemonHandle>;
  pods: Map<string, Pod>;
}

async function bringUp(config: string): Promise<Setup> {
  const scene = await createScene({ hosts: [...HOSTS], underlayCidr6: UNDERLAY6 });
  const daemons = new Map<string, DaemonHandle>();
  const pods = new Map<string, Pod>();
  try {
    await scene.putConfig(config);
    for (const h of HOSTS) daemons.set(h, scene.startDaemon(h));
    await Promise.all([...daemons.values()].map((d) => waitReady(d, 30_000)));
    for (const h of HOSTS) {
      pods.set(h, await addPod(scene.cluster, h, { name: 'p', subnetEnvPath: (daemons.get(h) as DaemonHandle).subnetFile, cniDataDir: `${scene.workDir}/cni` }));
    }
  } catch (err) {
    process.stderr.write(`${await scene.report()}\n`);
    await scene.destroy();
    throw err;
  }
  return { scene, daemons, pods };
}

/** `ip -6 route|neigh` and `bridge fdb` of flannel-v6.1 on a host. */
async function kernel6(s: Setup, host: string): Promise<{ link: string; routes: string[]; neighbors: string[]; fdb: string[]; addresses: string[] }> {
  const ns = s.scene.cluster.member(host).netns;
  const lines = async (cmd: string, args: string[]): Promise<string[]> => (await s.scene.cluster.exec(ns, cmd, args)).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return {
    link: (await s.scene.cluster.exec(ns, 'ip', ['-d', 'link', 'show', 'flannel-v6.1'])).stdout,
    routes: await lines('ip', ['-6', 'route', 'show', 'dev', 'flannel-v6.1']),
    neighbors: await lines('ip', ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1']),
    fdb: await lines('bridge', ['fdb', 'show', 'dev', 'flannel-v6.1']),
    addresses: await lines('ip', ['-6', '-o', 'addr', 'show', 'dev', 'flannel-v6.1']),
  };
}

/** A describe's cluster: brought up with `config` before its tests, reported on failure and destroyed after them. */
function clusterFor(config: string): () => Setup {
  let s: Setup | undefined;
  beforeAll(async () => {
    assertPrivateNetns();
    s = await bringUp(config);
  }, 120_000);
  sceneLifecycle(() => s?.scene);
  return () => {
    if (!s) throw new Error('the cluster did not come up (see the set-up failure)');
    return s;
  };
}

/** The subnet.env of `host`'s daemon. */
function envOf(s: Setup, host: string): string {
  return readFileSync((s.daemons.get(host) as DaemonHandle).subnetFile, 'utf8');
}

/** The MAC in `ip -d link show` output. */
function vtepMac(link: string): string {
  return /link\/ether ([0-9a-f:]+)/.exec(link)?.[1] as string;
}

function subnet6Of(env: string): string {
  const m = /^FLANNEL_IPV6_SUBNET=([0-9a-f:]+)::1\/(\d+)$/m.exec(env);
  if (!m) throw new Error(`no FLANNEL_IPV6_SUBNET in ${JSON.stringify(env)}`);
  return `${m[1]}::/${m[2]}`;
}

describe('IPv6-only cluster', () => {
  const cluster = clusterFor('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}');

  it('pods ping6 each other across hosts over flannel-v6.1', async () => {
    const [p1, p2] = [cluster().pods.get('h1') as Pod, cluster().pods.get('h2') as Pod];
    expect(p1.ip).toBe('');
    expect(p1.ip6).toMatch(/^fc00:0:0:[0-9a-f]+::[0-9a-f]+$/);
    // The first echoes may wait for the pods' neighbour discovery; once one round got through, none may be lost.
    await pingUntil(p1, p2.ip6 as string);
    expect((await p1.ping(p2.ip6 as string, { count: 5 })).loss).toBe(0);
    expect((await p2.ping(p1.ip6 as string)).ok).toBe(true);
  }, 60_000);

  it('has flannel-v6.1 as the contract says and no flannel.1; subnet.env and the lease hold IPv6 only', async () => {
    const setup = cluster();
    for (const h of HOSTS) {
      const member = setup.scene.cluster.member(h);
      const env = envOf(setup, h);
      expect(env).toMatch(/^FLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$/);
      const k = await kernel6(setup, h);
      expect(k.link).toContain(`vxlan id 1 local ${member.ip6} dev eth0 srcport 0 0 dstport 8472 nolearning`);
      // The kernel clamps VXLAN over IPv6 to 1500 - 70, as it does for flanneld; FLANNEL_MTU stays 1450.
      expect(k.link).toMatch(/mtu 1430 /);
      const subnet6 = subnet6Of(env);
      expect(k.addresses.join('\n')).toContain(`inet6 ${subnet6.split('/')[0]}/128 `);
      expect((await setup.scene.cluster.exec(member.netns, 'ip', ['link', 'show', 'flannel.1'])).code).not.toBe(0);
      expect((await setup.scene.cluster.exec(member.netns, 'cat', ['/proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra'])).stdout.trim()).toBe('0');
      const mac = vtepMac(k.link);
      const value = (await setup.scene.etcdctl(['get', '--print-value-only', `${PREFIX}/subnets/0.0.0.0-0&${subnet6.replace('/', '-')}`])).trim();
      expect(value).toBe(`{"PublicIP":"0.0.0.0","PublicIPv6":"${member.ip6}","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"${mac}"}}`);
    }
    // h1 programs h2's three entries, as `ip -6 neigh|route` and `bridge fdb` show flanneld's.
    const env2 = envOf(setup, 'h2');
    const peer = subnet6Of(env2);
    const gw = peer.split('/')[0] as string;
    const k1 = await kernel6(setup, 'h1');
    const mac2 = vtepMac((await kernel6(setup, 'h2')).link);
    expect(k1.routes).toContain(`${peer} via ${gw} metric 1024 onlink pref medium`);
    expect(k1.neighbors).toContain(`${gw} lladdr ${mac2} PERMANENT`);
    expect(k1.fdb).toContain(`${mac2} dst ${setup.scene.cluster.member('h2').ip6} self permanent`);
  }, 30_000);
  it('puts back flannel-v6.1\'s /128 soon after someone deletes it (the watch hears flannel-v6.1 change), not at the 5-minute pass', async () => {
    const setup = cluster();
    const ns = setup.scene.cluster.member('h1').netns;
    const own = `${subnet6Of(envOf(setup, 'h1')).split('/')[0]}/128`;
    // Past the reconciler's verification listing of its own changes (2 s after the last one).
    await new Promise((r) => setTimeout(r, 3000));
    await setup.scene.cluster.exec(ns, 'ip', ['-6', 'addr', 'del', own, 'dev', 'flannel-v6.1']);
    // Well inside the 5-minute periodic pass: only the watch can explain it.
    await waitFor('the /128 back on flannel-v6.1', async () => ((await kernel6(setup, 'h1')).addresses.join('\n').includes(`inet6 ${own} `) ? true : undefined), 15_000, 200);
  }, 30_000);
});

describe('dual-stack cluster', () => {
  const cluster = clusterFor('{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}');

  it('the same pods answer ping and ping6 across hosts', async () => {
    const [p1, p2] = [cluster().pods.get('h1') as Pod, cluster().pods.get('h2') as Pod];
    expect(p2.ip).toMatch(/^10\.7\.\d+\.\d+$/);
    expect(p2.ip6).toMatch(/^fc00:0:0:[0-9a-f]+::[0-9a-f]+$/);
    for (const target of [p2.ip, p2.ip6 as string]) {
      await pingUntil(p1, target);
      expect((await p1.ping(target, { count: 5 })).loss).toBe(0);
    }
    expect((await p2.ping(p1.ip)).ok).toBe(true);
    expect((await p2.ping(p1.ip6 as string)).ok).toBe(true);
  }, 60_000);

  it('subnet.env holds both families in flanneld\'s order; both devices share VNI and port; one `&` key per node; forward rules for both families', async () => {
    const setup = cluster();
    for (const h of HOSTS) {
      const member = setup.scene.cluster.member(h);
      const env = envOf(setup, h);
      expect(env).toMatch(/^FLANNEL_NETWORK=10\.7\.0\.0\/16\nFLANNEL_SUBNET=10\.7\.\d+\.1\/24\nFLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$/);
      const v4 = (await setup.scene.kernel(h)).link;
      const v6 = (await kernel6(setup, h)).link;
      expect(v4).toContain(`vxlan id 1 local ${member.ip} dev eth0 srcport 0 0 dstport 8472 nolearning`);
      expect(v6).toContain(`vxlan id 1 local ${member.ip6} dev eth0 srcport 0 0 dstport 8472 nolearning`);
      const mac4 = vtepMac(v4);
      const mac6 = vtepMac(v6);
      expect(mac4).not.toBe(mac6);
      const subnet4 = /^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.1\/24$/m.exec(env)?.[1] as string;
      const key = `${PREFIX}/subnets/${subnet4}.0-24&${subnet6Of(env).replace('/', '-')}`;
      const value = (await setup.scene.etcdctl(['get', '--print-value-only', key])).trim();
      expect(value).toBe(`{"PublicIP":"${member.ip}","PublicIPv6":"${member.ip6}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac4}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${mac6}"}}`);
    }
    // The forward accepts (--iptables-forward-rules, on by default) for both families.
    const ns1 = setup.scene.cluster.member('h1').netns;
    expect((await setup.scene.cluster.exec(ns1, 'ip6tables-save', ['-t', 'filter'])).stdout).toContain('-A FLANNEL-FWD -s fc00::/48 -m comment --comment "flanneld forward" -j ACCEPT');
    expect((await setup.scene.cluster.exec(ns1, 'iptables-save', ['-t', 'filter'])).stdout).toContain('-A FLANNEL-FWD -s 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT');
    // Each host holds one peer in each family.
    for (const h of HOSTS) {
      expect((await setup.scene.kernel(h)).routes).toHaveLength(1);
      expect((await kernel6(setup, h)).routes.filter((r) => r.includes('onlink'))).toHaveLength(1);
    }
  }, 30_000);

  it('trace follows an IPv6 pod address from pod to pod: flannel-v6.1, the IPv6 lease half, ping -6 answered, ICMPv6 and UDP 8472 over IPv6 captured at each hop', async () => {
    {
      const setup = cluster();
      const [p1, p2] = [setup.pods.get('h1') as Pod, setup.pods.get('h2') as Pod];
      const ns = setup.scene.cluster.member('h1').netns;
      const h2 = setup.scene.cluster.member('h2');
      const args = [BIN, 'trace', p2.ip6 as string, '--from', p1.ip6 as string, '--json', '--count', '2', '--capture', '--iface', 'eth0', '--etcd-endpoints', setup.scene.endpoint, '--subnet-file', (setup.daemons.get('h1') as DaemonHandle).subnetFile];
      const run = await setup.scene.cluster.exec(ns, process.execPath, args, { timeoutMs: 60_000 });
      let r: TraceReport;
      try {
        r = JSON.parse(run.stdout) as TraceReport;
      } catch {
        throw new Error(`trace printed no JSON (exit ${run.code}): ${run.stdout}${run.stderr}`);
      }
      expect(schemaErrors(TRACE_SCHEMA, r)).toEqual([]);
      expect(r.problems).toEqual([]);
      expect(run.code).toBe(0);
      expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'vxlan', 'underlay', 'remote']);
      const peer6 = subnet6Of(readFileSync((setup.daemons.get('h2') as DaemonHandle).subnetFile, 'utf8'));
      expect(r.destination).toMatchObject({ ip: p2.ip6, subnet: peer6, publicIP: h2.ip6, local: false });
      const [pod, , bridge, route, vxlan, underlay] = r.hops;
      expect(pod?.interface?.addresses).toContain(`${p1.ip6}/64`);
      expect(bridge?.interface?.name).toBe('cni0');
      expect(route?.lookup).toMatch(new RegExp(`^ip -6 route get ${p2.ip6} from ${p1.ip6} iif cni0 → via ${peer6.split('/')[0]} dev flannel-v6\\.1`));
      expect(route?.commands).toContain('ip6tables-save -t filter');
      // The objects trace names are the ones iproute2 reports.
      const k = await kernel6(setup, 'h1');
      const mac6 = /link\/ether ([0-9a-f:]+)/.exec(k.link)?.[1];
      expect(vxlan?.interface).toMatchObject({ name: 'flannel-v6.1', mac: mac6 });
      expect(k.fdb.join('\n')).toContain(`dst ${h2.ip6} `);
      expect(vxlan?.lookup).toContain(`dst ${h2.ip6}`);
      expect(underlay?.lookup).toBe(`ip -6 route get ${h2.ip6} → dev eth0 src ${setup.scene.cluster.member('h1').ip6}`);
      expect(r.encapsulation).toMatchObject({ outerSrc: setup.scene.cluster.member('h1').ip6, outerDst: h2.ip6, udpPort: 8472, vni: 1, innerSrcMAC: mac6, innerDst: p2.ip6, egress: 'eth0' });
      // The probe: ping -6 from the pod, answered.
      expect(r.probe?.command).toMatch(/ping -6 .* fc00:/);
      expect(r.probe).toMatchObject({ sent: 2, received: 2 });
      // tcpdump at each local hop: ICMPv6 echoes, and VXLAN over IPv6 on eth0.
      expect(r.capture?.available).toBe(true);
      expect(r.capture?.lost).toBeNull();
      expect(r.capture?.points.map((p) => [p.kind, p.requests >= 2, p.replies >= 2])).toEqual([['veth', true, true], ['bridge', true, true], ['vxlan', true, true], ['underlay', true, true]]);
      expect(r.capture?.points[3]?.filter).toBe(`udp and port 8472 and host ${h2.ip6}`);
      expect(r.capture?.points[3]?.packets.join('\n')).toContain(`${setup.scene.cluster.member('h1').ip6}.`);
      expect(r.capture?.points[3]?.notes.join('\n')).toContain('VXLAN UDP dport 8472, VNI 1');
    }
  }, 90_000);

  it('status checks both devices: a dual-stack peer has a row per family; a deleted IPv6 route is drift, repaired by a restarted daemon that keeps flannel-v6.1', async () => {
    const setup = cluster();
    const ns = setup.scene.cluster.member('h1').netns;
    const status = (): Promise<StatusReport> => statusJson(setup.scene, 'h1', (setup.daemons.get('h1') as DaemonHandle).subnetFile, ['--iface', 'eth0']);
    const before = await status();
    expect(before.problems).toEqual([]);
    expect(before.healthy).toBe(true);
    const peer6 = subnet6Of(envOf(setup, 'h2'));
    expect(before.kernel.peers.map((p) => p.subnet)).toContain(peer6);
    expect(before.kernel.peers).toHaveLength(2);
    expect(before.kernel.peers.every((p) => p.route === 'ok' && p.neighbor === 'ok' && p.fdb === 'ok')).toBe(true);
    // With h1's daemon stopped, someone deletes the IPv6 route: status reports the drift; a restarted daemon adopts
    // flannel-v6.1 (same MAC, so the lease stays valid) and puts the route back.
    const mac6 = vtepMac((await kernel6(setup, 'h1')).link);
    await (setup.daemons.get('h1') as DaemonHandle).stop('SIGKILL');
    await setup.scene.cluster.exec(ns, 'ip', ['-6', 'route', 'del', peer6, 'dev', 'flannel-v6.1']);
    const drift = await status();
    expect(drift.healthy).toBe(false);
    expect(drift.kernel.peers.find((p) => p.subnet === peer6)?.route).toBe('missing');
    expect(drift.problems.map((p) => p.message).join('\n')).toContain(`peer ${peer6}`);
    const again = setup.scene.startDaemon('h1');
    setup.daemons.set('h1', again);
    await waitReady(again, 30_000);
    expect(again.log()).toContain('adopted existing flannel-v6.1');
    expect(vtepMac((await kernel6(setup, 'h1')).link)).toBe(mac6);
    expect((await kernel6(setup, 'h1')).routes.some((r) => r.startsWith(`${peer6} via`))).toBe(true);
    expect((await status()).healthy).toBe(true);
  }, 60_000);
});

describe('dual-stack cluster with DirectRouting, hosts sharing an IPv4 and an IPv6 segment', () => {
  const cluster = clusterFor('{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan","DirectRouting":true}}');

  const env = (h: string): string => envOf(cluster(), h);
  const lines = async (h: string, args: string[]): Promise<string[]> =>
    (await cluster().scene.cluster.exec(cluster().scene.cluster.member(h).netns, 'ip', args)).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');

  it('programs `<v6 subnet> via <PublicIPv6> proto 152` in the main table, nothing on flannel-v6.1, and the IPv4 direct route beside it', async () => {
    const setup = cluster();
    for (const [h, peer] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      const m = setup.scene.cluster.member(peer);
      const sub6 = subnet6Of(env(peer));
      const sub4 = `${/^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.1\/24$/m.exec(env(peer))?.[1]}.0/24`;
      await waitFor(`${h}: direct IPv6 route to ${peer}`, async () => ((await lines(h, ['-6', 'route', 'show', 'proto', '152'])).length === 1 ? true : undefined), 15_000, 200);
      expect(await lines(h, ['-6', 'route', 'show', 'proto', '152'])).toEqual([`${sub6} via ${m.ip6} dev eth0 metric 1024 pref medium`]);
      expect(await lines(h, ['route', 'show', 'proto', '152'])).toEqual([`${sub4} via ${m.ip} dev eth0`]);
      const k = await kernel6(setup, h);
      expect(k.routes.filter((r) => r.includes(' via '))).toEqual([]);
      expect(k.neighbors.filter((n) => n.includes('PERMANENT'))).toEqual([]);
      expect(k.fdb.filter((f) => f.includes(' dst '))).toEqual([]);
    }
  }, 60_000);

  it('pods ping6 each other and eth0 carries the inner ICMPv6, no UDP 8472', async () => {
    const setup = cluster();
    const [p1, p2] = [setup.pods.get('h1') as Pod, setup.pods.get('h2') as Pod];
    const ns = setup.scene.cluster.member('h1').netns;
    await pingUntil(p1, p2.ip6 as string, { count: 2, timeoutSec: 5 });
    const cap = setup.scene.cluster.exec(ns, 'timeout', ['8', 'tcpdump', '-i', 'eth0', '-n', '-l', 'udp port 8472 or icmp6'], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1500));
    const ok = (await p1.ping(p2.ip6 as string, { count: 3, timeoutSec: 5 })).ok && (await p2.ping(p1.ip6 as string, { count: 2, timeoutSec: 5 })).ok;
    const seen = (await cap).stdout;
    expect(ok).toBe(true);
    // The pods' addresses travel in plain IPv6 on eth0 (the CNI bridge may masquerade the sources; the destinations are the pods).
    expect(seen).toContain(`> ${p2.ip6}: ICMP6, echo request`);
    expect(seen).toContain(`> ${p1.ip6}: ICMP6, echo request`);
    expect(seen).not.toMatch(/\.8472[: ]/);
  }, 60_000);

  it('an IPv6 half that stops being on-link goes to VXLAN (the direct route deleted just before the onlink route) and back; ping6 after', async () => {
    const setup = cluster();
    const ns = setup.scene.cluster.member('h1').netns;
    const sub6 = subnet6Of(env('h2'));
    const ip6 = setup.scene.cluster.member('h2').ip6 as string;
    // The daemon being replaced may already have seen the host change (an address or link notification
    // re-decides every peer) and made the move itself: the log lines are looked for in both daemons' logs.
    let earlierLogs = '';
    const restart = async (): Promise<DaemonHandle> => {
      const old = setup.daemons.get('h1') as DaemonHandle;
      expect(await old.stop('SIGTERM')).toBe(0);
      earlierLogs += old.log();
      const d = setup.scene.startDaemon('h1');
      setup.daemons.set('h1', d);
      await waitReady(d, 30_000);
      return d;
    };
    // h1 now reaches h2's PublicIPv6 through a gateway (route changes on eth0 are read at the next full pass: restart instead of waiting).
    await setup.scene.cluster.exec(ns, 'ip', ['-6', 'route', 'add', `${ip6}/128`, 'via', '2001:db8:154::99', 'dev', 'eth0']);
    const d = await restart();
    await waitFor('h1 to reach h2 over flannel-v6.1', async () => ((await kernel6(setup, 'h1')).routes.some((r) => r.startsWith(`${sub6} via`)) ? true : undefined), 15_000, 200);
    expect(await lines('h1', ['-6', 'route', 'show', 'proto', '152'])).toEqual([]);
    expect((await kernel6(setup, 'h1')).fdb).toContainEqual(expect.stringContaining(`dst ${ip6} self permanent`));
    expect(earlierLogs + d.log()).toContain(`delete route ${sub6} via ${ip6} proto 152 (peer is vxlan)`);
    expect(earlierLogs + d.log()).not.toMatch(/failed to replace|kernel refused/);
    // And back: direct again, flannel-v6.1 empty of h2's entries, ping6 works.
    await setup.scene.cluster.exec(ns, 'ip', ['-6', 'route', 'del', `${ip6}/128`]);
    await restart();
    await waitFor('h1 to reach h2 directly again', async () => ((await lines('h1', ['-6', 'route', 'show', 'proto', '152'])).length === 1 ? true : undefined), 15_000, 200);
    expect((await kernel6(setup, 'h1')).fdb.filter((f) => f.includes(' dst '))).toEqual([]);
    const [p1, p2] = [setup.pods.get('h1') as Pod, setup.pods.get('h2') as Pod];
    await pingUntil(p1, p2.ip6 as string, { count: 2, timeoutSec: 5 });
  }, 90_000);

  it('status shows the IPv6 peer as direct with only its route checked; a hand-deleted IPv6 direct route is repaired', async () => {
    const setup = cluster();
    const ns = setup.scene.cluster.member('h1').netns;
    const sub6 = subnet6Of(env('h2'));
    const status = (): Promise<StatusReport> => statusJson(setup.scene, 'h1', (setup.daemons.get('h1') as DaemonHandle).subnetFile, ['--iface', 'eth0']);
    // The daemon restarted by the test before may still be removing the VXLAN entries of the move back to direct.
    let report = await status();
    await waitFor('status of h1 to be healthy', async () => ((report = await status()).healthy ? true : undefined), 15_000, 500).catch(() => undefined);
    expect(report.healthy, JSON.stringify(report)).toBe(true);
    expect(report.kernel.peers.find((p) => p.subnet === sub6)).toMatchObject({ mode: 'direct', route: 'ok', neighbor: null, fdb: null });
    expect(report.kernel.peers.filter((p) => p.mode === 'direct')).toHaveLength(2);
    const ip6 = setup.scene.cluster.member('h2').ip6 as string;
    expect((await setup.scene.cluster.exec(ns, 'ip', ['-6', 'route', 'del', sub6, 'via', ip6, 'proto', '152'])).code).toBe(0);
    await waitFor('h1 to restore its IPv6 direct route', async () => ((await lines('h1', ['-6', 'route', 'show', 'proto', '152'])).length === 1 ? true : undefined), 10_000, 100);
    expect((setup.daemons.get('h1') as DaemonHandle).log()).toContain(`replace route ${sub6} via ${ip6} proto 152 (missing)`);
  }, 60_000);
});
