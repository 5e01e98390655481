/**
 * Proves the namespace testbed on its own, without the daemon: the underlay, the
 * real CNI plugins, and an overlay programmed by hand with exactly the commands of
 * flannel-contract.md §4–§5. If this passes and an e2e test fails, the daemon is at fault.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { run } from '../../src/testbed/exec';
import { addPod, Cluster, ClusterMember, createCluster, dumpState, Pod, removePod, uniquePrefix } from '../../src/testbed/netns-cluster';
import { assertPrivateNetns } from '../helpers/private-netns';

const NETWORK = '10.7.0.0/16';
// h1 masquerades through the bridge plugin (FLANNEL_IPMASQ=false), h2 leaves it to flannel (true): both plugin paths run.
const SITES = [
  { subnet: '10.7.5', ipMasq: false, mac: '02:f1:75:00:05:00' },
  { subnet: '10.7.12', ipMasq: true, mac: '02:f1:75:00:0c:00' },
] as const;

const subnetEnv = (subnet: string, ipMasq: boolean): string =>
  `FLANNEL_NETWORK=${NETWORK}\nFLANNEL_SUBNET=${subnet}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=${ipMasq}\n`;

describe('netns cluster testbed', () => {
  let cluster: Cluster;
  let prefix: string;
  let cniDir: string;
  let hosts: readonly ClusterMember[];
  const pods: Pod[] = [];

  const sh = async (h: ClusterMember, cmd: string, ...args: string[]): Promise<string> => {
    const r = await cluster.exec(h.netns, cmd, args);
    expect(r.code, `${h.name}: ${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const dumpOnFailure = (): void => onTestFailed(async () => console.error(await dumpState(cluster)));

  beforeAll(async () => {
    assertPrivateNetns();
    cniDir = await mkdtemp(join(tmpdir(), 'flts-cni-'));
    prefix = uniquePrefix();
    cluster = await createCluster({ prefix, hosts: 2 });
    hosts = cluster.hosts;
  });

  afterAll(async () => {
    await cluster?.destroy();
    if (cniDir) await rm(cniDir, { recursive: true, force: true });
  });

  it('gives each host eth0 on the underlay, an on-link default route and forwarding', async () => {
    expect(hosts.map((h) => [h.name, h.netns, h.ip])).toEqual([
      ['h1', `${prefix}-h1`, '10.65.154.11'],
      ['h2', `${prefix}-h2`, '10.65.154.12'],
    ]);
    expect(cluster.infraIP).toBe('10.65.154.2');
    for (const h of hosts) {
      expect(await sh(h, 'ip', 'route', 'show', 'default')).toMatch(/^default dev eth0 /);
      expect((await sh(h, 'cat', '/proc/sys/net/ipv4/ip_forward')).trim()).toBe('1');
    }
  });

  it('lets hosts and infra ping each other over the underlay', async () => {
    for (const [from, to] of [
      [hosts[0], hosts[1]],
      [hosts[1], hosts[0]],
    ] as const) {
      const out = await sh(from as ClusterMember, 'ping', '-n', '-c', '2', '-i', '0.2', '-w', '5', (to as ClusterMember).ip);
      expect(out).toContain(' 0% packet loss');
    }
    expect(await sh(hosts[0] as ClusterMember, 'ping', '-n', '-c', '1', '-w', '5', cluster.infraIP)).toContain(' 0% packet loss');
  });

  it('adds a pod per host through the real bridge and host-local plugins', async () => {
    for (const [i, site] of SITES.entries()) {
      const pod = await addPod(cluster, hosts[i] as ClusterMember, { name: 'p1', subnetEnvText: subnetEnv(site.subnet, site.ipMasq), cniDataDir: cniDir });
      pods.push(pod);
      expect(pod.netns).toBe(`${prefix}-h${i + 1}-p1`);
      expect(pod.ip.startsWith(`${site.subnet}.`)).toBe(true);
      expect(pod.gateway).toBe(`${site.subnet}.1`);
      const host = hosts[i] as ClusterMember;
      expect(await sh(host, 'ip', '-br', 'addr', 'show', 'cni0')).toContain(`${site.subnet}.1/24`);
      expect(await sh(host, 'ip', 'link', 'show', 'cni0')).toContain('mtu 1450');
      expect(await cluster.exec(pod.netns, 'ip', ['route']).then((r) => r.stdout)).toContain(`${NETWORK} via ${site.subnet}.1 dev eth0`);
    }
  });

  it('lets each pod ping its own host gateway', async () => {
    dumpOnFailure();
    for (const pod of pods) {
      const res = await pod.ping(pod.gateway as string, { count: 2, timeoutSec: 5 });
      expect(res.ok, res.output).toBe(true);
      expect(res.loss).toBe(0);
    }
  });

  it('carries pod-to-pod traffic over a VXLAN overlay programmed by hand', async () => {
    dumpOnFailure();
    for (const [i, site] of SITES.entries()) {
      const h = hosts[i] as ClusterMember;
      const peer = hosts[1 - i] as ClusterMember;
      const peerSite = SITES[1 - i] as (typeof SITES)[number];
      await sh(h, 'ip', 'link', 'add', 'flannel.1', 'address', site.mac, 'type', 'vxlan', 'id', '1', 'local', h.ip, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
      await sh(h, 'ip', 'link', 'set', 'flannel.1', 'mtu', '1450');
      await sh(h, 'ip', 'addr', 'add', `${site.subnet}.0/32`, 'dev', 'flannel.1');
      await sh(h, 'ip', 'link', 'set', 'flannel.1', 'up');
      // Neighbour, FDB, then route: the route last, so the gateway always resolves.
      await sh(h, 'ip', 'neigh', 'replace', `${peerSite.subnet}.0`, 'lladdr', peerSite.mac, 'dev', 'flannel.1', 'nud', 'permanent');
      await sh(h, 'bridge', 'fdb', 'replace', peerSite.mac, 'dev', 'flannel.1', 'dst', peer.ip, 'self', 'permanent');
      await sh(h, 'ip', 'route', 'replace', `${peerSite.subnet}.0/24`, 'via', `${peerSite.subnet}.0`, 'dev', 'flannel.1', 'onlink');
    }
    expect(await sh(hosts[0] as ClusterMember, 'ip', '-d', 'link', 'show', 'flannel.1')).toMatch(/vxlan id 1 local 10\.65\.154\.11 dev eth0 .*dstport 8472 nolearning/);

    const [p1, p2] = pods as [Pod, Pod];
    for (const [from, to] of [
      [p1, p2],
      [p2, p1],
    ] as const) {
      const res = await from.ping(to.ip, { count: 3, timeoutSec: 10 });
      console.log(`ping ${from.netns} (${from.ip}) -> ${to.netns} (${to.ip}):\n${res.output}`);
      expect(res.ok, res.output).toBe(true);
      expect(res.loss).toBe(0);
    }
  });

  it('removes a pod with CNI DEL, releasing its address', async () => {
    const pod = pods[0] as Pod;
    await removePod(cluster, pod);
    const leases = await readdir(join(cniDir, 'h1', 'cbr0'));
    expect(leases).not.toContain(pod.ip);
    expect((await run('ip', ['netns', 'list'])).stdout).not.toContain(pod.netns);
    await removePod(cluster, pod); // already gone: still success
  });

  it('destroy() deletes every namespace with the prefix, and can run again', async () => {
    await cluster.destroy();
    await cluster.destroy();
    const names = (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]);
    expect(names.filter((n) => n?.startsWith(`${prefix}-`))).toEqual([]);
  });
});
