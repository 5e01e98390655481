/**
 * A mixed cluster (contract §13): a reference node configured by hand exactly
 * as flanneld would be (test/helpers/flanneld-reference.ts) shares etcd and the
 * overlay with two flanneld-ts nodes started from Go-style flanneld command
 * lines. The reference node drops every peer after an undecodable event or a
 * failed lease-TTL call and relearns only from PUTs: flanneld-ts's re-puts must
 * bring it back within one re-put interval. Pod traffic flows both ways
 * throughout restarts of either side.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { ReferenceNode } from '../helpers/flanneld-reference';
import { backgroundPing, sceneLifecycle, waitPeers } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

// Short for the test; the default is 3600 s (±25 %).
const REPUT_SECONDS = 6;
// As a flanneld.service would say it: single dashes, a Go boolean, -v.
const GO_STYLE = ['-ip-masq=false', `-subnet-lease-reput-interval=${REPUT_SECONDS}`, '-v=1', '-vmodule=main=2'];

let scene: Scene;
let ref: ReferenceNode;
const daemons = new Map<string, DaemonHandle>();
const subnets = new Map<string, string>();
const pods = new Map<string, Pod>();

const startTs = (host: string): DaemonHandle => {
  const d = scene.startDaemon(host, GO_STYLE);
  daemons.set(host, d);
  return d;
};
const refKnows = (hosts: string[]) => hosts.every((h) => ref.peers.has(subnets.get(h) as string));

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['ref', 'h2', 'h3'] });
  await scene.putConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
  ref = new ReferenceNode(scene, 'ref', '10.7.200.0/24', '0a:58:0a:07:c8:00');
  await ref.setUp();
  await ref.startWatcher();
  for (const h of ['h2', 'h3']) startTs(h);
  await Promise.all([...daemons.values()].map((d) => waitReady(d)));
  for (const h of ['h2', 'h3']) subnets.set(h, subnetOf(readFileSync((daemons.get(h) as DaemonHandle).subnetFile, 'utf8')));
  const cniDataDir = `${scene.workDir}/cni`;
  pods.set('ref', await addPod(scene.cluster, 'ref', { name: 'p', cniDataDir, subnetEnvText: 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.200.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n' }));
  for (const h of ['h2', 'h3']) pods.set(h, await addPod(scene.cluster, h, { name: 'p', cniDataDir, subnetEnvPath: (daemons.get(h) as DaemonHandle).subnetFile }));
}, 120_000);

sceneLifecycle(() => scene, async () => `reference node: ${ref?.wipes ?? 0} wipes, peers ${JSON.stringify([...(ref?.peers.keys() ?? [])])}`);

const podIP = (h: string) => (pods.get(h) as Pod).ip;
async function pingBothWays(a: string, b: string): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const r = await (pods.get(from) as Pod).ping(podIP(to), { count: 3, timeoutSec: 10 });
    expect(r.ok, `${from} → ${to}: ${r.output}`).toBe(true);
  }
}

describe('a flanneld node and flanneld-ts nodes in one cluster', () => {
  it('program each other, and pods talk both ways', async () => {
    await waitFor('the reference node to learn both flanneld-ts nodes', () => refKnows(['h2', 'h3']), 20_000);
    for (const h of ['h2', 'h3']) await waitPeers(scene, h, 2, 20_000);
    await pingBothWays('ref', 'h2');
    await pingBothWays('ref', 'h3');
    await pingBothWays('h2', 'h3');
  }, 60_000);

  it('after a wipe the reference node cannot see (a failed lease-TTL call) it relearns both within one re-put interval', async () => {
    const wipedAt = Date.now();
    await ref.wipe();
    // One interval is at most 1.25 × REPUT_SECONDS; the rest is slack for a loaded machine.
    await waitFor('relearning from re-puts', () => refKnows(['h2', 'h3']), (REPUT_SECONDS * 1.25 + 10) * 1000, 50);
    // Learnt again from PUTs that came after the wipe (the watcher learns from nothing else).
    for (const h of ['h2', 'h3']) expect(ref.learnt.get(subnets.get(h) as string) ?? 0).toBeGreaterThan(wipedAt);
    await pingBothWays('ref', 'h2');
    await pingBothWays('ref', 'h3');
  }, 60_000);

  it('an undecodable key wipes the reference node; flanneld-ts notices and re-puts at once, and stays untouched itself', async () => {
    const before = ref.wipes;
    const h2Routes = (await scene.kernel('h2')).routes.join('\n');
    await scene.etcdctl(['put', `${PREFIX}/subnets/not-a-subnet`, 'garbage']);
    await waitFor('the wipe', () => ref.wipes > before, 10_000, 20);
    // The trigger spreads re-puts over a 1 s window for three leases: well before the periodic one.
    await waitFor('relearning', () => refKnows(['h2', 'h3']), 10_000, 20);
    await scene.etcdctl(['del', `${PREFIX}/subnets/not-a-subnet`]);
    await waitFor('the second wipe (a DELETE of a bad key)', () => ref.wipes > before + 1, 10_000, 20);
    await waitFor('relearning again', () => refKnows(['h2', 'h3']), 15_000, 20);
    // flanneld-ts skipped the bad key: its own entries never moved.
    expect((await scene.kernel('h2')).routes.join('\n')).toBe(h2Routes);
    await pingBothWays('ref', 'h2');
  }, 60_000);

  it('keeps pod traffic flowing both ways while a flanneld-ts node and the reference node restart', async () => {
    const seconds = 14;
    const pings = [backgroundPing(scene, (pods.get('ref') as Pod).netns, podIP('h2'), seconds), backgroundPing(scene, (pods.get('h2') as Pod).netns, podIP('ref'), seconds)];
    await new Promise((r) => setTimeout(r, 1500));
    // flanneld-ts restarts: kernel state and lease stay; it adopts its lease (same subnet, same MAC).
    await (daemons.get('h2') as DaemonHandle).stop();
    const h2 = startTs('h2');
    await waitReady(h2);
    expect(subnetOf(readFileSync(h2.subnetFile, 'utf8'))).toBe(subnets.get('h2'));
    // flanneld restarts: its entries stay in the kernel; it re-lists and re-programs.
    await ref.stopWatcher();
    await ref.startWatcher();
    expect(refKnows(['h2', 'h3'])).toBe(true);
    for (const r of await Promise.all(pings)) {
      expect(r.received, r.output).toBeGreaterThan(0);
      expect(r.received / r.transmitted, r.output).toBeGreaterThanOrEqual(0.9);
    }
    await pingBothWays('ref', 'h3');
  }, 90_000);
});
