/**
 * DirectRouting end to end (issue 12, contract §12): h1 and h2 share one L2
 * segment, h3 sits on another underlay subnet behind a router namespace. With
 * `"DirectRouting": true`, h1 ↔ h2 traffic leaves eth0 unencapsulated (a route
 * via the peer's PublicIP, proto 152), h1/h2 ↔ h3 goes over VXLAN. Checked on
 * the wire with tcpdump in the host namespace, with pings between real CNI pods.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { routeHostAway } from '../../src/testbed/router';
import { BIN, createScene, DaemonHandle, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}';
const HOSTS = ['h1', 'h2', 'h3'] as const;
const PUBLIC = { h1: '10.65.154.11', h2: '10.65.154.12', h3: '10.65.200.13' } as Record<string, string> & { h1: string; h2: string; h3: string };

let scene: Scene;
const daemons = new Map<string, DaemonHandle>();
const subnets = new Map<string, string>();
const pods = new Map<string, Pod>();

const ns = (h: string): string => scene.cluster.member(h).netns;
const sub = (h: string): string => subnets.get(h) as string;
const pod = (h: string): Pod => pods.get(h) as Pod;

async function lines(h: string, args: string[]): Promise<string[]> {
  const r = await scene.cluster.exec(ns(h), 'ip', args);
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

/** Our direct routes on a host: `ip route show proto 152`. */
const directRoutes = (h: string): Promise<string[]> => lines(h, ['route', 'show', 'proto', '152']);

/** tcpdump on the host's eth0 while `traffic` runs; resolves with what it printed. */
async function capture(h: string, traffic: () => Promise<void>): Promise<string> {
  const cap = scene.cluster.exec(ns(h), 'timeout', ['8', 'tcpdump', '-i', 'eth0', '-n', '-l', 'udp port 8472 or icmp'], { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 1500));
  await traffic();
  const r = await cap;
  return r.stdout;
}

async function startDaemon(h: string): Promise<DaemonHandle> {
  // A full kernel pass every 2 s, so a host route change (not watched on eth0) is seen quickly.
  const d = scene.startDaemon(h, ['--kernel-resync', '2']);
  daemons.set(h, d);
  await waitReady(d);
  return d;
}

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: [...HOSTS] });
  await routeHostAway(scene.cluster, 'h3');
  // Routes flanneld-ts did not make: a proto boot route for an unrelated subnet and a hand-made static one.
  await scene.cluster.exec(ns('h1'), 'ip', ['route', 'add', '10.99.0.0/24', 'via', '10.65.154.1', 'dev', 'eth0', 'proto', 'boot']);
  await scene.cluster.exec(ns('h1'), 'ip', ['route', 'add', '10.98.0.0/24', 'dev', 'eth0', 'proto', 'static']);
  await scene.putConfig(CONFIG);
  await Promise.all(HOSTS.map((h) => startDaemon(h)));
  for (const h of HOSTS) {
    const d = daemons.get(h) as DaemonHandle;
    subnets.set(h, subnetOf(readFileSync(d.subnetFile, 'utf8')));
    pods.set(h, await addPod(scene.cluster, h, { name: 'web', subnetEnvPath: d.subnetFile, cniDataDir: `${scene.workDir}/cni-${h}` }));
  }
}, 120_000);

sceneLifecycle(() => scene);

describe('DirectRouting on the namespace testbed', () => {
  it('programs a direct route (proto 152, no neighbour, no FDB) for the peer on the same segment and VXLAN for the routed one', async () => {
    for (const [h, peer] of [['h1', 'h2'], ['h2', 'h1']] as const) {
      expect(await directRoutes(h)).toEqual([`${sub(peer)} via ${PUBLIC[peer]} dev eth0`]);
      const k = await scene.kernel(h);
      expect(k.routes).toEqual([`${sub('h3')} via ${sub('h3').split('/')[0]} onlink`]);
      expect(k.neighbors.filter((n) => n.includes('PERMANENT'))).toHaveLength(1);
      expect(k.fdb).toEqual([expect.stringContaining(`dst ${PUBLIC.h3} self permanent`)]);
    }
    const k3 = await scene.kernel('h3');
    expect(await directRoutes('h3')).toEqual([]);
    expect(k3.routes).toHaveLength(2);
    expect(k3.fdb.map((f) => /dst (\S+)/.exec(f)?.[1]).sort()).toEqual([PUBLIC.h1, PUBLIC.h2]);
  });

  it('h1 ↔ h2: pods ping each other and eth0 carries the inner ICMP, no UDP 8472', async () => {
    let ok = true;
    const seen = await capture('h1', async () => {
      ok = (await pod('h1').ping(pod('h2').ip, { count: 3, timeoutSec: 5 })).ok && (await pod('h2').ping(pod('h1').ip, { count: 2, timeoutSec: 5 })).ok;
    });
    expect(ok).toBe(true);
    // The testbed's CNI bridge masquerades pod traffic leaving the node (the flannel CNI plugin turns
    // the bridge's ipMasq on when FLANNEL_IPMASQ=false), so the sources are the hosts' addresses; the
    // destinations are the pods themselves, in plain IP on eth0.
    expect(seen).toContain(`> ${pod('h2').ip}: ICMP echo request`);
    expect(seen).toContain(`> ${pod('h1').ip}: ICMP echo request`);
    expect(seen).not.toMatch(/\.8472[: ]/);
  });

  it('h1 ↔ h3 (another subnet, behind the router): over VXLAN, pings work both ways', async () => {
    let ok = true;
    const seen = await capture('h1', async () => {
      ok = (await pod('h1').ping(pod('h3').ip, { count: 3, timeoutSec: 5 })).ok && (await pod('h3').ping(pod('h1').ip, { count: 2, timeoutSec: 5 })).ok;
    });
    expect(ok).toBe(true);
    // tcpdump names VXLAN on port 8472 "OTV"; the inner packet is printed on the next line.
    expect(seen).toContain(`${PUBLIC.h1}.`);
    expect(seen).toMatch(new RegExp(`${PUBLIC.h1.replace(/\./g, '\\.')}\\.\\d+ > ${PUBLIC.h3.replace(/\./g, '\\.')}\\.8472: `));
    expect(seen).toMatch(new RegExp(`${PUBLIC.h3.replace(/\./g, '\\.')}\\.\\d+ > ${PUBLIC.h1.replace(/\./g, '\\.')}\\.8472: `));
    // The inner ICMP travels inside the VXLAN datagrams only.
    expect(seen.split('\n').some((l) => l.startsWith(`${pod('h1').ip}`) || /^\S+ IP 10\.7\./.test(l))).toBe(false);
  });

  it('status shows each peer\'s mode and checks the entries of that mode', async () => {
    const r = await scene.cluster.exec(ns('h1'), process.execPath, [BIN, 'status', '--json', '--etcd-endpoints', scene.endpoint, '--subnet-file', (daemons.get('h1') as DaemonHandle).subnetFile]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { kernel: { peers: Array<{ subnet: string; mode: string; route: string; neighbor: string | null; fdb: string | null }> } };
    const bySubnet = new Map(report.kernel.peers.map((p) => [p.subnet, p]));
    expect(bySubnet.get(sub('h2'))).toMatchObject({ mode: 'direct', route: 'ok', neighbor: null, fdb: null });
    expect(bySubnet.get(sub('h3'))).toMatchObject({ mode: 'vxlan', route: 'ok', neighbor: 'ok', fdb: 'ok' });
  });

  it('repairs a hand-deleted direct route through the kernel watch', async () => {
    const d1 = daemons.get('h1') as DaemonHandle;
    const repairs = (): number => d1.log().split('\n').filter((l) => l.includes(`replace route ${sub('h2')} via ${PUBLIC.h2} proto 152 (missing)`)).length;
    const before = repairs();
    expect((await scene.cluster.exec(ns('h1'), 'ip', ['route', 'del', sub('h2'), 'via', PUBLIC.h2, 'proto', '152'])).code).toBe(0);
    await waitFor('h1 to restore its direct route', () => repairs() > before, 10_000);
    expect(await directRoutes('h1')).toEqual([`${sub('h2')} via ${PUBLIC.h2} dev eth0`]);
  });

  it('a peer that stops being on-link moves to VXLAN (old route replaced in place) and back; pings work after each move', async () => {
    // h1 now reaches 10.65.154.12 through the router: h2 is no longer direct for h1.
    await scene.cluster.exec(ns('h1'), 'ip', ['route', 'add', `${PUBLIC.h2}/32`, 'via', '10.65.154.1']);
    await waitFor('h1 to reach h2 over VXLAN', async () => (await directRoutes('h1')).length === 0 && (await scene.kernel('h1')).fdb.some((f) => f.includes(`dst ${PUBLIC.h2} `)), 15_000);
    const k = await scene.kernel('h1');
    expect(k.routes.sort()).toEqual([sub('h2'), sub('h3')].map((s) => `${s} via ${s.split('/')[0]} onlink`).sort());
    expect((daemons.get('h1') as DaemonHandle).log()).toContain(`peer ${sub('h2')} is now reached over VXLAN`);
    expect((await pod('h1').ping(pod('h2').ip, { count: 2, timeoutSec: 5 })).ok).toBe(true);
    // And back: the direct route takes the onlink route's place, then h2's neighbour and FDB entry go.
    await scene.cluster.exec(ns('h1'), 'ip', ['route', 'del', `${PUBLIC.h2}/32`]);
    await waitFor('h1 to reach h2 directly again', async () => (await directRoutes('h1')).length === 1 && !(await scene.kernel('h1')).fdb.some((f) => f.includes(`dst ${PUBLIC.h2} `)), 15_000);
    const back = await scene.kernel('h1');
    expect(back.routes).toEqual([`${sub('h3')} via ${sub('h3').split('/')[0]} onlink`]);
    expect(back.neighbors.filter((n) => n.includes('PERMANENT'))).toHaveLength(1);
    expect((await pod('h1').ping(pod('h2').ip, { count: 2, timeoutSec: 5 })).ok).toBe(true);
  });

  it('takes over flanneld\'s direct route for a lease (proto boot → 152) and never touches other routes', async () => {
    const d1 = daemons.get('h1') as DaemonHandle;
    expect(await d1.stop('SIGTERM')).toBe(0);
    // What flanneld would have left: the same route with proto boot.
    await scene.cluster.exec(ns('h1'), 'ip', ['route', 'del', sub('h2'), 'proto', '152']);
    await scene.cluster.exec(ns('h1'), 'ip', ['route', 'add', sub('h2'), 'via', PUBLIC.h2 as string, 'proto', 'boot']);
    const routeJson = async (): Promise<Record<string, unknown>[]> => JSON.parse((await scene.cluster.exec(ns('h1'), 'ip', ['-j', '-d', 'route', 'show', 'table', 'all', sub('h2')])).stdout) as Record<string, unknown>[];
    const flanneld = await routeJson();
    await startDaemon('h1');
    await waitFor('h1 to own the route to h2', async () => (await directRoutes('h1')).length === 1, 10_000);
    // The entry flanneld makes for a direct peer and ours are the same route but for the protocol.
    const ours = await routeJson();
    expect(ours.map((r) => String(r.protocol))).toEqual(['152']);
    expect(ours.map(({ protocol: _p, ...r }) => r)).toEqual(flanneld.map(({ protocol: _p, ...r }) => r));
    const boot = await lines('h1', ['route', 'show', 'proto', 'boot']);
    expect(boot.join('\n')).not.toContain(sub('h2'));
    expect(boot).toContain('10.99.0.0/24 via 10.65.154.1 dev eth0');
    expect(await lines('h1', ['route', 'show', 'proto', 'static'])).toEqual(['10.98.0.0/24 dev eth0 scope link']);
    expect((await pod('h2').ping(pod('h1').ip, { count: 2, timeoutSec: 5 })).ok).toBe(true);
  });
});
