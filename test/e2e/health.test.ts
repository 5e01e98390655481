/**
 * /healthz, /readyz and /metrics of a real daemon on a namespace host, scraped
 * from inside that host: readiness, peers, lease-event latency, drift repairs
 * and etcd reconnects show up as they happen.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createScene, DaemonHandle, PREFIX, Scene, waitFor, waitReady } from '../../src/testbed/scene';
import { waitPeers, sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

let scene: Scene;
let h1: DaemonHandle;
const PEER = '{"PublicIP":"10.65.154.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}';

async function get(path: string): Promise<{ status: number; body: string }> {
  const script = `fetch('http://127.0.0.1:8471${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`;
  const r = await scene.cluster.exec(scene.cluster.member('h1').netns, process.execPath, ['-e', script]);
  if (r.code !== 0) throw new Error(`GET ${path} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status: number; body: string };
}
const metric = async (name: string): Promise<number> => {
  const line = (await get('/metrics')).body.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ')[1]);
};

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2'] });
  h1 = scene.startDaemon('h1', ['--healthz-port', '8471', '--healthz-ip', '127.0.0.1']);
  await waitFor('health server', async () => (await get('/healthz')).status === 200, 10_000);
}, 60_000);

sceneLifecycle(() => scene);

describe('health and metrics', () => {
  it('/readyz is 503 while waiting for the config, /healthz 200 throughout', async () => {
    const r = await get('/readyz');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ ready: false, phase: 'starting' });
    await scene.putConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
    const h2 = scene.startDaemon('h2');
    await Promise.all([waitReady(h1), waitReady(h2)]);
    await waitPeers(scene, 'h1', 1);
    const ok = await get('/readyz');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ ready: true, leaseHeld: true, kernelInSync: true, peers: 1 });
    expect(await metric('flanneld_peers_programmed')).toBe(1);
    expect(await metric('flanneld_kernel_in_sync')).toBe(1);
  });

  it('counts a joining peer and its event-to-kernel latency', async () => {
    const before = await metric('flanneld_lease_event_to_kernel_seconds_count');
    await scene.etcdctl(['put', `${PREFIX}/subnets/10.7.250.0-24`, PEER]);
    await waitPeers(scene, 'h1', 2);
    await waitFor('latency observed', async () => (await metric('flanneld_lease_event_to_kernel_seconds_count')) > before, 5000);
    expect(await metric('flanneld_peers_programmed')).toBe(2);
    expect((await get('/metrics')).body).toMatch(/flanneld_leases\{state="valid"\} 3/);
  });

  it('counts drift repairs, and etcd reconnects after an outage', async () => {
    expect(await metric('flanneld_drift_repairs_total')).toBe(0);
    await scene.cluster.exec(scene.cluster.member('h1').netns, 'ip', ['route', 'del', '10.7.250.0/24', 'dev', 'flannel.1']);
    await waitFor('repair counted', async () => (await metric('flanneld_drift_repairs_total')) === 1, 10_000);
    await scene.etcd.restart();
    await waitFor('reconnect counted', async () => (await metric('flanneld_etcd_reconnects_total')) === 1, 20_000);
    expect((await get('/readyz')).status).toBe(200);
    expect((await get('/metrics')).body).toMatch(/^process_resident_memory_bytes \d+/m);
  }, 40_000);
});
