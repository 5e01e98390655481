/**
 * IPv6 interop with flanneld (issue 12 "How it is proved", contract §11): a
 * dual-stack reference node configured by hand exactly as flanneld would be
 * (etcdctl put of its `&` key and dual-stack value; iproute2 for flannel.1,
 * flannel-v6.1 and the entries it makes for each peer; test/helpers/
 * flanneld-reference.ts) shares etcd and the overlay with two flanneld-ts
 * nodes. Pods ping and ping6 across both kinds of node, each way; then an
 * IPv4-only lease (as an IPv4-only flanneld node would write) makes `status`
 * warn about mixed families.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { createScene, DaemonHandle, PREFIX, Scene, waitFor, waitReady } from '../../src/testbed/scene';
import { ReferenceNode } from '../helpers/flanneld-reference';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const BIN = `${__dirname}/../../bin/flanneld-ts`;
const CONFIG = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const REF = { subnet: '10.7.200.0/24', mac: '0a:58:0a:07:c8:00', subnet6: 'fc00:0:0:c8::/64', mac6: '0a:58:0a:07:c8:06' };
const TS_HOSTS = ['h2', 'h3'] as const;

let scene: Scene;
let ref: ReferenceNode;
const daemons = new Map<string, DaemonHandle>();
const pods = new Map<string, Pod>();
const subnets6 = new Map<string, string>();

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['ref', ...TS_HOSTS], underlayCidr6: '2001:db8:154::/64' });
  await scene.putConfig(CONFIG);
  ref = new ReferenceNode(scene, 'ref', REF.subnet, REF.mac, { subnet6: REF.subnet6, mac6: REF.mac6 });
  await ref.setUp();
  await ref.startWatcher();
  for (const h of TS_HOSTS) daemons.set(h, scene.startDaemon(h));
  await Promise.all([...daemons.values()].map((d) => waitReady(d, 30_000)));
  const cniDataDir = `${scene.workDir}/cni`;
  const refEnv = `FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.200.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:c8::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`;
  pods.set('ref', await addPod(scene.cluster, 'ref', { name: 'p', cniDataDir, subnetEnvText: refEnv }));
  for (const h of TS_HOSTS) {
    const file = (daemons.get(h) as DaemonHandle).subnetFile;
    const m = /^FLANNEL_IPV6_SUBNET=([0-9a-f:]+)::1\/64$/m.exec(readFileSync(file, 'utf8'));
    subnets6.set(h, `${m?.[1]}::/64`);
    pods.set(h, await addPod(scene.cluster, h, { name: 'p', cniDataDir, subnetEnvPath: file }));
  }
}, 120_000);

sceneLifecycle(() => scene, async () => `reference node: ${ref?.wipes ?? 0} wipes, peers ${JSON.stringify([...(ref?.peers.entries() ?? [])])}`);

const pod = (h: string): Pod => pods.get(h) as Pod;

async function pings(from: string, to: string, family: 4 | 6): Promise<void> {
  const target = family === 4 ? pod(to).ip : (pod(to).ip6 as string);
  // The first echoes may wait for neighbour discovery inside the pods; after one round nothing may be lost.
  await waitFor(`ping${family === 6 ? '6' : ''} ${from} → ${to} (${target})`, async () => ((await pod(from).ping(target, { count: 2, timeoutSec: 6 })).ok ? true : undefined), 30_000, 500);
  const r = await pod(from).ping(target, { count: 4, timeoutSec: 10 });
  expect(r.loss, `${from} → ${to}: ${r.output}`).toBe(0);
}

describe('a hand-made dual-stack flanneld node and flanneld-ts nodes', () => {
  it('learn each other in both families', async () => {
    // The reference node programs our & keys on both devices, as flanneld does.
    await waitFor('reference node knows both flanneld-ts nodes', () => (TS_HOSTS.every((h) => [...ref.peers.values()].some((p) => p.v6?.subnet === subnets6.get(h))) ? true : undefined), 20_000, 200);
    const h2 = scene.cluster.member('h2').netns;
    const refIp6 = scene.cluster.member('ref').ip6 as string;
    const lines = async (args: string[]): Promise<string> => (await scene.cluster.exec(h2, args[0] as string, args.slice(1))).stdout;
    await waitFor('h2 programs the reference node on flannel-v6.1', async () => ((await lines(['ip', '-6', 'route', 'show', 'dev', 'flannel-v6.1'])).includes('fc00:0:0:c8::/64 via fc00:0:0:c8:: ') ? true : undefined), 20_000, 200);
    expect(await lines(['ip', '-6', 'route', 'show', 'dev', 'flannel-v6.1'])).toMatch(/fc00:0:0:c8::\/64 via fc00:0:0:c8:: metric 1024 onlink/);
    expect(await lines(['ip', '-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).toContain(`fc00:0:0:c8:: lladdr ${REF.mac6} PERMANENT`);
    expect(await lines(['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).toContain(`${REF.mac6} dst ${refIp6} self permanent`);
    expect(await lines(['ip', 'route', 'show', 'dev', 'flannel.1'])).toContain('10.7.200.0/24 via 10.7.200.0 onlink');
    // flanneld reads every key and value flanneld-ts wrote: nothing it could not decode (which would have wiped its peers).
    expect(ref.wipes).toBe(0);
  }, 60_000);

  it('pods ping6 and ping both ways between the reference node and flanneld-ts nodes', async () => {
    for (const h of TS_HOSTS) {
      await pings('ref', h, 6);
      await pings(h, 'ref', 6);
      await pings(h, 'ref', 4);
    }
    await pings('h2', 'h3', 6);
  }, 120_000);

  it('status warns when an IPv4-only lease (an IPv4-only flanneld node) joins the dual-stack network', async () => {
    const key = `${PREFIX}/subnets/10.7.201.0-24`;
    const ns = scene.cluster.member('h2').netns;
    const status = async () => {
      const r = await scene.cluster.exec(ns, process.execPath, [BIN, 'status', '--json', '--no-kernel-check', '--etcd-endpoints', scene.endpoint, '--subnet-file', (daemons.get('h2') as DaemonHandle).subnetFile]);
      return JSON.parse(r.stdout) as { schemaVersion: number; problems: Array<{ kind: string; severity: string; subnets: string[]; message: string }>; leases: Array<{ subnet: string | null; subnet6: string | null; publicIPv6: string | null }>; pool: { ipv6: { used: number } } };
    };
    const before = await status();
    expect(before.schemaVersion).toBe(2);
    expect(before.problems.filter((p) => p.kind === 'mixed-family')).toEqual([]);
    expect(before.pool.ipv6.used).toBe(3);
    expect(before.leases.find((l) => l.subnet === REF.subnet)).toMatchObject({ subnet6: REF.subnet6, publicIPv6: scene.cluster.member('ref').ip6 });
    await scene.etcdctl(['put', key, '{"PublicIP":"10.65.154.201","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:07:c9:00"}}']);
    try {
      const after = await status();
      const warnings = after.problems.filter((p) => p.kind === 'mixed-family');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ severity: 'warning', subnets: ['10.7.201.0/24'] });
      expect(warnings[0]?.message).toMatch(/no IPv6 half though the config enables IPv6 .*crashes on the dual-stack keys/);
    } finally {
      await scene.etcdctl(['del', key]);
    }
  }, 60_000);
});
