/**
 * Who owns which subnet: reservations, eight daemons racing for one subnet, a
 * network with room for only three, and a config that is wrong at first.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { countLog, sceneLifecycle, startEtcdProxy } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const HOSTS = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8', 'h9'];
let scene: Scene;
const start = (host: string, args: string[] = [], subnetFile?: string): DaemonHandle => scene.startDaemon(host, args, { subnetFile });

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: HOSTS });
  await scene.putConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
}, 60_000);

sceneLifecycle(() => scene);

describe('ownership', () => {
  it('a reservation (a key with no etcd lease) with our PublicIP is used and stays a reservation', async () => {
    const key = `${PREFIX}/subnets/10.7.77.0-24`;
    await scene.etcdctl(['put', key, '{"PublicIP":"10.65.154.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:77:77"}}']);
    const h1 = start('h1', ['--subnet-lease-ttl', '6']);
    await waitReady(h1);
    expect(subnetOf(readFileSync(h1.subnetFile, 'utf8'))).toBe('10.7.77.0/24');
    expect(countLog(h1.log(), /using reservation 10\.7\.77\.0\/24/)).toBe(1);
    const mac = /link\/ether ([0-9a-f:]+)/.exec((await scene.kernel('h1')).link)?.[1];
    // The value now carries the real VTEP MAC, still with no lease, also after a renewal period.
    await new Promise((r) => setTimeout(r, 4000));
    expect((await scene.etcdctl(['get', '--print-value-only', key])).trim()).toBe(`{"PublicIP":"10.65.154.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`);
    expect(await scene.etcdctl(['get', '-w', 'json', key])).not.toMatch(/"lease":/);
    expect((await scene.etcdctl(['lease', 'list'])).trim()).toMatch(/found 0 leases/);
    await h1.stop();
  }, 30_000);

  it('eight daemons started at the same moment, all wanting the same subnet, get eight distinct subnets', async () => {
    // A collision is forced rather than hoped for: every daemon's subnet file names 10.7.99.0/24 (the
    // "previous subnet" each tries first while it is free), and every etcd message is held 400 ms each
    // way, so each daemon's list-to-create window (three round trips) spans the others' lists.
    const proxy = await startEtcdProxy(scene, 23791);
    await proxy.delay(400);
    const racers = HOSTS.slice(1);
    expect(racers).toHaveLength(8);
    const all = racers.map((h) => {
      const file = `${scene.workDir}/race-${h}/subnet.env`;
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.99.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
      return start(h, ['--etcd-endpoints', proxy.endpoint], file);
    });
    await Promise.all(all.map((x) => waitReady(x, 90_000)));
    const subnets = all.map((x) => subnetOf(readFileSync(x.subnetFile, 'utf8')));
    expect(new Set([...subnets, '10.7.77.0/24']).size).toBe(9);
    expect(subnets).toContain('10.7.99.0/24');
    const lost = all.map((x) => countLog(x.log(), /^subnet 10\.7\.99\.0\/24 was taken by another node meanwhile; choosing again$/));
    expect(lost.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1);
    // The winner never lost; each loser chose again and got a subnet of its own.
    expect(lost[subnets.indexOf('10.7.99.0/24')]).toBe(0);
    const keys = (await scene.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/subnets/`])).split('\n').filter((l) => l.trim() !== '');
    expect(keys).toHaveLength(9);
    // One etcd lease per daemon: the creates that lost revoked theirs.
    const leases = (await scene.etcdctl(['lease', 'list'])).trim();
    expect(leases).toMatch(/found 8 leases/);
    await proxy.delay(0);
    await waitFor('h9 to program all 8 peers', async () => (await scene.kernel('h9')).routes.length === 8, 20_000);
    await Promise.all(all.map((x) => x.stop()));
  }, 150_000);

  it('a wrong config is reported naming the field; the corrected one is picked up without restart', async () => {
    const prefix = '/small/network';
    for (const h of HOSTS) await scene.cluster.exec(scene.cluster.member(h).netns, 'ip', ['link', 'del', 'flannel.1']);
    await scene.etcdctl(['put', `${prefix}/config`, '{"Network":"10.8.0.0/16","SubnetLen":40,"Backend":{"Type":"vxlan"}}']);
    const four = ['h2', 'h3', 'h4', 'h5'].map((h) => start(h, ['--etcd-prefix', prefix], `${scene.workDir}/small-${h}/subnet.env`));
    await waitFor('the config error', () => four.every((x) => countLog(x.log(), /invalid network config: SubnetLen: .*got 40 \(at \/small\/network\/config\)/) === 1), 10_000);
    // Room for three subnets only: 10.8.1.0, 10.8.2.0, 10.8.3.0.
    await scene.etcdctl(['put', `${prefix}/config`, '{"Network":"10.8.0.0/16","SubnetMin":"10.8.1.0","SubnetMax":"10.8.3.0","Backend":{"Type":"vxlan"}}']);
    const codes = await Promise.race([
      Promise.all(four.map((x) => Promise.race([waitReady(x, 30_000).then(() => 'ready'), x.exited.then((c) => `exit ${c}`)]))),
      new Promise<string[]>((_, rej) => setTimeout(() => rej(new Error('no outcome in 40 s')), 40_000)),
    ]);
    expect(codes.filter((c) => c === 'ready')).toHaveLength(3);
    const loser = four[codes.indexOf('exit 1')];
    expect(loser).toBeDefined();
    const l = loser as DaemonHandle;
    expect(l.log()).toContain('failed to acquire a subnet lease in 10.8.0.0/16: out of subnets');
    // No partial state on the loser: no device, no lease, no subnet file.
    expect((await scene.cluster.exec(l.host.netns, 'ip', ['link', 'show', 'flannel.1'])).code).not.toBe(0);
    expect(existsSync(l.subnetFile)).toBe(false);
    expect(await scene.etcdctl(['get', '--prefix', `${prefix}/subnets/`])).not.toContain(`"PublicIP":"${l.host.ip}"`);
    expect((await scene.etcdctl(['get', '--prefix', '--keys-only', `${prefix}/subnets/`])).split('\n').filter((x) => x.trim()).sort()).toEqual([
      `${prefix}/subnets/10.8.1.0-24`,
      `${prefix}/subnets/10.8.2.0-24`,
      `${prefix}/subnets/10.8.3.0-24`,
    ]);
  }, 90_000);
});
