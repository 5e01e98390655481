/**
 * End to end on real kernel objects: three namespace hosts on one underlay, a
 * real etcd, bin/flanneld-ts on each host, pods wired by the real CNI bridge and
 * host-local plugins from the subnet.env the daemon wrote, and ping across hosts.
 */
import { readFileSync, statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const HOSTS = ['h1', 'h2', 'h3'] as const;

let scene: Scene;
const daemons = new Map<string, DaemonHandle>();
const subnets = new Map<string, string>();
const macs = new Map<string, string>();
const pods = new Map<string, Pod>();

function leaseValue(host: string): Promise<string> {
  return scene.etcdctl(['get', '--print-value-only', `${PREFIX}/subnets/${(subnets.get(host) as string).replace('/', '-')}`]).then((s) => s.replace(/\n$/, ''));
}

function gw(subnet: string): string {
  return subnet.split('/')[0] as string;
}

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: [...HOSTS] });
  await scene.putConfig(CONFIG);
  for (const h of HOSTS) daemons.set(h, scene.startDaemon(h));
  await Promise.all([...daemons.values()].map((d) => waitReady(d)));
  for (const h of HOSTS) {
    const env = readFileSync((daemons.get(h) as DaemonHandle).subnetFile, 'utf8');
    subnets.set(h, subnetOf(env));
    const k = await scene.kernel(h);
    macs.set(h, /link\/ether ([0-9a-f:]+)/.exec(k.link)?.[1] as string);
  }
}, 90_000);

sceneLifecycle(() => scene);


describe('flanneld-ts on a three-host namespace cluster', () => {
  it('writes subnet.env for the flannel CNI plugin, 0644, distinct subnets', async () => {
    for (const h of HOSTS) {
      const d = daemons.get(h) as DaemonHandle;
      const env = readFileSync(d.subnetFile, 'utf8');
      expect(env).toMatch(/^FLANNEL_NETWORK=10\.7\.0\.0\/16\nFLANNEL_SUBNET=10\.7\.\d+\.1\/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$/);
      expect(statSync(d.subnetFile).mode & 0o777).toBe(0o644);
    }
    expect(new Set(subnets.values()).size).toBe(3);
  });

  it('holds byte-exact flannel leases on a 24 h etcd lease', async () => {
    for (const [i, h] of HOSTS.entries()) {
      expect(await leaseValue(h)).toBe(`{"PublicIP":"10.65.154.${11 + i}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${macs.get(h)}"}}`);
      // Lease IDs are int64: read them from the JSON text, JSON.parse would round them.
      const json = await scene.etcdctl(['get', '-w', 'json', `${PREFIX}/subnets/${(subnets.get(h) as string).replace('/', '-')}`]);
      const leaseId = BigInt(/"lease":(\d+)/.exec(json)?.[1] ?? 0).toString(16);
      const ttl = await scene.etcdctl(['lease', 'timetolive', leaseId]);
      const granted = Number(/granted with TTL\((\d+)s\)/.exec(ttl)?.[1]);
      expect(granted).toBe(86_400);
    }
  });

  it('creates flannel.1 as the contract says', async () => {
    for (const [i, h] of HOSTS.entries()) {
      const k = await scene.kernel(h);
      expect(k.link).toMatch(new RegExp(`vxlan id 1 local 10\\.65\\.154\\.${11 + i} dev eth0 srcport 0 0 dstport 8472 nolearning`));
      expect(k.link).toMatch(/mtu 1450 /);
      expect(k.link).toMatch(/<BROADCAST,MULTICAST,UP,LOWER_UP>/);
      expect(k.addresses.join('\n')).toContain(`inet ${gw(subnets.get(h) as string)}/32 `);
      expect(macs.get(h)).toMatch(/^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/);
    }
  });

  it('programs route, neighbour and FDB for every peer and nothing for itself', async () => {
    for (const [i, h] of HOSTS.entries()) {
      const k = await scene.kernel(h);
      const peers = HOSTS.filter((p) => p !== h);
      expect(k.routes.sort()).toEqual(peers.map((p) => `${subnets.get(p)} via ${gw(subnets.get(p) as string)} onlink`).sort());
      expect(k.neighbors.sort()).toEqual(peers.map((p) => `${gw(subnets.get(p) as string)} lladdr ${macs.get(p)} PERMANENT`).sort());
      expect(k.fdb.sort()).toEqual(peers.map((p) => `${macs.get(p)} dst 10.65.154.${11 + HOSTS.indexOf(p)} self permanent`).sort());
      expect(k.fdb.join('\n')).not.toContain(`10.65.154.${11 + i} `);
    }
  });

  it('carries pod-to-pod traffic across hosts through the real CNI plugins', async () => {
    for (const h of HOSTS) {
      pods.set(h, await addPod(scene.cluster, h, { name: 'nginx', subnetEnvPath: (daemons.get(h) as DaemonHandle).subnetFile, cniDataDir: `${scene.workDir}/cni` }));
    }
    const p1 = pods.get('h1') as Pod;
    expect(p1.ip.startsWith(gw(subnets.get('h1') as string).replace(/\.0$/, '.'))).toBe(true);
    for (const target of ['h2', 'h3']) {
      const r = await p1.ping((pods.get(target) as Pod).ip, { count: 3, timeoutSec: 10 });
      expect(r.output).toContain(' 0% packet loss');
      expect(r.ok).toBe(true);
    }
    const back = await (pods.get('h3') as Pod).ping(p1.ip, { count: 2, timeoutSec: 10 });
    expect(back.ok).toBe(true);
  });

  it('skips a garbage lease value without losing any peer', async () => {
    await scene.etcdctl(['put', `${PREFIX}/subnets/10.7.250.0-24`, 'this is not json']);
    const d1 = daemons.get('h1') as DaemonHandle;
    await waitFor('h1 to log the invalid lease', () => /skipping invalid lease .*10\.7\.250\.0-24: value is not JSON/.test(d1.log()));
    expect((await scene.kernel('h1')).routes).toHaveLength(2);
    const r = await (pods.get('h1') as Pod).ping((pods.get('h2') as Pod).ip, { count: 1, timeoutSec: 5 });
    expect(r.ok).toBe(true);
    await scene.etcdctl(['del', `${PREFIX}/subnets/10.7.250.0-24`]);
  });

  it('stops on SIGTERM within 2 s, leaving device, entries and lease in place', async () => {
    const d3 = daemons.get('h3') as DaemonHandle;
    const before = await scene.kernel('h3');
    const t0 = Date.now();
    expect(await d3.stop('SIGTERM')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    const after = await scene.kernel('h3');
    expect(after).toEqual(before);
    expect(await leaseValue('h3')).toContain(macs.get('h3') as string);
    const r = await (pods.get('h1') as Pod).ping((pods.get('h3') as Pod).ip, { count: 1, timeoutSec: 5 });
    expect(r.ok).toBe(true);
  });

  it('removes all three entries on every host when a lease is removed', async () => {
    const s3 = subnets.get('h3') as string;
    await scene.etcdctl(['del', `${PREFIX}/subnets/${s3.replace('/', '-')}`]);
    for (const h of ['h1', 'h2']) {
      await waitFor(`${h} to drop ${s3}`, async () => {
        const k = await scene.kernel(h);
        return k.routes.length === 1 && k.neighbors.length === 1 && k.fdb.length === 1 && !k.routes.join().includes(s3);
      }, 10_000);
      const k = await scene.kernel(h);
      expect(k.fdb.join('\n')).not.toContain(macs.get('h3') as string);
      expect(k.neighbors.join('\n')).not.toContain(gw(s3));
    }
  });

  it('restarts with the same subnet and VTEP MAC and re-learns a returning peer', async () => {
    const d1 = daemons.get('h1') as DaemonHandle;
    expect(await d1.stop('SIGINT')).toBe(0);
    const again = scene.startDaemon('h1');
    daemons.set('h1', again);
    await waitReady(again);
    expect(subnetOf(readFileSync(again.subnetFile, 'utf8'))).toBe(subnets.get('h1'));
    expect(/link\/ether ([0-9a-f:]+)/.exec((await scene.kernel('h1')).link)?.[1]).toBe(macs.get('h1'));
    expect(again.log()).toMatch(/reusing lease 10\.7\.\d+\.0\/24/);
    // h3 comes back: it takes its old subnet again from its subnet file, and h1 and h2 program it.
    const d3 = scene.startDaemon('h3');
    daemons.set('h3', d3);
    await waitReady(d3);
    expect(subnetOf(readFileSync(d3.subnetFile, 'utf8'))).toBe(subnets.get('h3'));
    await waitFor('h1 to program h3 again', async () => (await scene.kernel('h1')).routes.length === 2);
    const r = await (pods.get('h1') as Pod).ping((pods.get('h3') as Pod).ip, { count: 2, timeoutSec: 10 });
    expect(r.ok).toBe(true);
  });
});
