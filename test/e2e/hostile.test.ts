/**
 * Hostile and careless etcd data while pod traffic flows (issue 9), on two
 * namespace hosts with a real etcd: leases over the underlay, non-unicast
 * PublicIPs and VtepMACs, stolen MACs, control characters, and megabytes of
 * junk at a restart. The underlay routes stay byte-identical, etcd stays
 * reachable, the ping loses nothing, each hostile lease is logged once and is
 * an error in `status`, and deleting it clears the error.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { BIN, createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { StatusReport } from '../../src/status/report';
import { backgroundPing, countLog, sceneLifecycle, waitPeers } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
let scene: Scene;
const d = new Map<string, DaemonHandle>();
const pods = new Map<string, Pod>();

const ns = (h: string): string => scene.cluster.member(h).netns;
const daemon = (h: string): DaemonHandle => d.get(h) as DaemonHandle;
const subnet = (h: string): string => subnetOf(readFileSync(daemon(h).subnetFile, 'utf8'));
const key = (s: string): string => `${PREFIX}/subnets/${s.replace('/', '-')}`;
const mac = async (h: string): Promise<string> => /link\/ether ([0-9a-f:]+)/.exec((await scene.kernel(h)).link)?.[1] as string;
const lease = (ip: string, vtepMAC: string): string => `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${vtepMAC}"}}`;

async function sh(h: string, cmd: string, args: string[]): Promise<string> {
  const r = await scene.cluster.exec(ns(h), cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} on ${h}: ${r.stderr}`);
  return r.stdout;
}

/** Every IPv4 route of every table, minus what is on flannel.1 (ours to change): must not move. */
async function underlayRoutes(h: string): Promise<string> {
  const routes = JSON.parse(await sh(h, 'ip', ['-4', '-j', 'route', 'show', 'table', 'all'])) as Array<{ dev?: string }>;
  return JSON.stringify(routes.filter((r) => r.dev !== 'flannel.1'));
}

async function status(h: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return scene.cluster.exec(ns(h), process.execPath, [BIN, 'status', '--etcd-endpoints', scene.endpoint, '--subnet-file', daemon(h).subnetFile, ...args]);
}

async function statusJson(h: string): Promise<StatusReport & { code: number }> {
  const r = await status(h, ['--json']);
  return { ...(JSON.parse(r.stdout) as StatusReport), code: r.code };
}

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2'] });
  await scene.putConfig(CONFIG);
  for (const h of ['h1', 'h2']) d.set(h, scene.startDaemon(h, ['--kernel-resync', '2']));
  await Promise.all([...d.values()].map((x) => waitReady(x)));
  for (const h of ['h1', 'h2']) pods.set(h, await addPod(scene.cluster, h, { name: 'pod', subnetEnvPath: daemon(h).subnetFile, cniDataDir: `${scene.workDir}/cni` }));
}, 90_000);

sceneLifecycle(() => scene);

describe('hostile leases while traffic flows', () => {
  it('are skipped, logged once and reported by status; the underlay, etcd and the pods are untouched; deleting them clears it', async () => {
    const taken = new Set([subnet('h1'), subnet('h2')]);
    const free = [...Array(200).keys()].map((i) => `10.7.${50 + i}.0/24`).filter((s) => !taken.has(s));
    const [opRoute, veth, ...rest] = free as [string, string, ...string[]];
    // On h1: an operator's route on eth0 and another device's connected route, both inside the Network.
    await sh('h1', 'ip', ['route', 'add', opRoute, 'via', '10.65.154.2', 'dev', 'eth0']);
    await sh('h1', 'ip', ['link', 'add', 'hx0', 'type', 'veth', 'peer', 'name', 'hx1']);
    await sh('h1', 'ip', ['addr', 'add', `${veth.replace(/0\/24$/, '1')}/24`, 'dev', 'hx0']);
    await sh('h1', 'ip', ['link', 'set', 'hx0', 'up']);
    await waitPeers(scene, 'h1', 1);
    const before = { h1: await underlayRoutes('h1'), h2: await underlayRoutes('h2') };
    const [m1, m2] = [await mac('h1'), await mac('h2')];

    const ping = backgroundPing(scene, (pods.get('h1') as Pod).netns, (pods.get('h2') as Pod).ip, 25);
    await new Promise((r) => setTimeout(r, 1500));
    const at = rest.slice(0, 10);
    const hostile: Record<string, string> = {
      '10.65.154.0/24': lease('10.65.154.99', '02:00:00:00:00:99'), // the underlay itself
      [opRoute]: lease('10.65.154.98', '02:00:00:00:00:98'),
      [veth]: lease('10.65.154.97', '02:00:00:00:00:97'),
      [at[0] as string]: lease('127.0.0.1', '02:00:00:00:00:a0'),
      [at[1] as string]: lease('0.0.0.0', '02:00:00:00:00:a1'),
      [at[2] as string]: lease('224.0.0.1', '02:00:00:00:00:a2'),
      [at[3] as string]: lease('255.255.255.255', '02:00:00:00:00:a3'),
      [at[4] as string]: lease('10.65.154.94', 'ff:ff:ff:ff:ff:ff'),
      [at[5] as string]: lease('10.65.154.95', '01:00:5e:00:00:01'),
      [at[6] as string]: lease('10.65.154.96', '00:00:00:00:00:00'),
      [at[7] as string]: lease('10.65.154.93', m2), // h2's MAC: h1 keeps it with h2
      [at[8] as string]: lease('10.65.154.92', m1), // h1's own MAC
      [at[9] as string]: '{"PublicIP":"10.65.154.91","BackendType":"udp\\u001b[2J\\nOK: forged\\u202e"}',
    };
    const mark = daemon('h1').log().length;
    for (const [s, v] of Object.entries(hostile)) await scene.etcdctl(['put', key(s), v]);
    // Several full passes (--kernel-resync 2) go by while the values sit there.
    await new Promise((r) => setTimeout(r, 7000));

    expect(await underlayRoutes('h1')).toBe(before.h1);
    expect(await underlayRoutes('h2')).toBe(before.h2);
    const k1 = await scene.kernel('h1');
    expect(k1.routes).toHaveLength(1);
    expect(k1.fdb).toEqual([expect.stringContaining(`${m2} dst 10.65.154.12`)]);
    const log1 = daemon('h1').log().slice(mark);
    for (const s of Object.keys(hostile)) {
      const re = new RegExp(`^not programming lease ${s.replace(/\./g, '\\.')}: `);
      expect(countLog(log1, re), `h1 logs ${s} once`).toBe(1);
    }
    // Neither an etcd problem nor a kernel call that failed.
    expect(countLog(log1, /lost the etcd watch|^failed to/)).toBe(0);

    const report = await statusJson('h1');
    expect(report.code).toBe(1);
    const errors = report.problems.filter((p) => p.severity === 'error');
    for (const s of Object.keys(hostile)) expect(errors.some((p) => p.subnets.includes(s)), `status names ${s}`).toBe(true);
    expect(errors.some((p) => p.kind === 'underlay' && p.subnets.includes(opRoute))).toBe(true);
    expect(errors.some((p) => p.kind === 'underlay' && p.subnets.includes(veth))).toBe(true);
    const brief = await status('h1', ['--brief']);
    expect(brief.code).toBe(1);
    expect(brief.stdout.split('\n')).toHaveLength(2);
    expect(brief.stdout.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);

    for (const s of Object.keys(hostile)) await scene.etcdctl(['del', key(s)]);
    const result = await ping;
    expect(result.received, result.output).toBe(result.transmitted);
    expect(result.transmitted).toBeGreaterThan(200);
    for (const h of ['h1', 'h2']) expect(daemon(h).process.exitCode).toBeNull();
    await waitFor('h1 healthy again', async () => (await status('h1', ['--brief'])).code === 0, 15_000);
    await waitFor('h2 healthy again', async () => (await status('h2', ['--brief'])).code === 0, 15_000);
    expect(await underlayRoutes('h1')).toBe(before.h1);
    expect(await underlayRoutes('h2')).toBe(before.h2);
    await sh('h1', 'ip', ['link', 'del', 'hx0']);
    await sh('h1', 'ip', ['route', 'del', opRoute]);
  }, 120_000);
});

describe('junk in etcd at a restart', () => {
  it('five 1 MB values do not stop a restarted daemon from starting; status names them, exit 1 (not "unreachable")', async () => {
    const junk = ['10.7.251.0/24', '10.7.252.0/24', '10.7.253.0/24', '10.7.254.0/24', '10.7.255.0/24'].filter((s) => s !== subnet('h1') && s !== subnet('h2'));
    for (const s of junk) {
      const r = await scene.cluster.exec(scene.cluster.infraNetns, 'sh', ['-c', `head -c 1000000 /dev/zero | tr '\\0' x | etcdctl --endpoints ${scene.endpoint} put ${key(s)}`], { env: { ETCDCTL_API: '3' } });
      expect(r.code, r.stderr).toBe(0);
    }
    const ping = backgroundPing(scene, (pods.get('h1') as Pod).netns, (pods.get('h2') as Pod).ip, 12);
    await daemon('h2').stop('SIGTERM');
    d.set('h2', scene.startDaemon('h2', ['--kernel-resync', '2']));
    await waitReady(daemon('h2'), 30_000);
    const log = daemon('h2').log();
    for (const s of junk) expect(countLog(log, new RegExp(`^skipping invalid lease ${key(s)}: value is 1000000 bytes`))).toBe(1);
    const result = await ping;
    expect(result.received, result.output).toBe(result.transmitted);
    const r = await status('h2', ['--brief']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('is invalid: value is 1000000 bytes (limit 65536)');
    expect(r.stderr).not.toContain('unreachable');
    for (const s of junk) await scene.etcdctl(['del', key(s)]);
    await waitFor('h2 healthy again', async () => (await status('h2', ['--brief'])).code === 0, 15_000);
  }, 120_000);
});
