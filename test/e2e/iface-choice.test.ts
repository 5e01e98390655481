/**
 * Interface and public-IP choice as flanneld makes it (contract §14), on real
 * netlink: a NIC with a dynamic (DHCP-like) primary and a static secondary, a
 * route lookup for --iface-can-reach, and a non-local --public-ip.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, createScene, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

let scene: Scene;

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2'] });
  await scene.putConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
}, 60_000);

sceneLifecycle(() => scene);

/** Runs bin/flanneld-ts on a host with exactly these flags until its interface line (or its exit). */
async function chosenInterface(host: string, args: string[]): Promise<{ line: string; code: number | null }> {
  const child = scene.cluster.spawn(scene.cluster.member(host).netns, BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  await waitFor('the interface choice', () => /using interface|failed to find/.test(out) || code !== undefined, 20_000);
  if (code === undefined) child.kill('SIGTERM');
  const final = await exited;
  const line = out.split('\n').find((l) => /using interface|failed to find/.test(l)) ?? out;
  return { line, code: code === undefined ? null : final };
}

describe('interface choice as flanneld', () => {
  it('takes the static secondary over a dynamic primary: lease PublicIP and VXLAN local', async () => {
    const netns = scene.cluster.member('h1').netns;
    for (const cmd of [
      ['addr', 'del', '10.65.154.11/24', 'dev', 'eth0'],
      ['addr', 'add', '10.65.154.11/24', 'dev', 'eth0', 'valid_lft', '3600', 'preferred_lft', '3600'],
      ['addr', 'add', '10.65.154.111/24', 'dev', 'eth0'],
      ['route', 'replace', 'default', 'dev', 'eth0'],
    ]) {
      const r = await scene.cluster.exec(netns, 'ip', cmd);
      expect(r.code, `ip ${cmd.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // The kernel lists the dynamic primary first: flanneld-ts used to take it.
    const addrs = (await scene.cluster.exec(netns, 'ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
    expect(addrs.indexOf('10.65.154.11/24')).toBeLessThan(addrs.indexOf('10.65.154.111/24'));
    expect(addrs).toMatch(/10\.65\.154\.11\/24 .*dynamic/);
    const h1 = scene.startDaemon('h1');
    await waitReady(h1);
    const subnet = subnetOf(readFileSync(h1.subnetFile, 'utf8'));
    const value = await scene.etcdctl(['get', '--print-value-only', `${PREFIX}/subnets/${subnet.replace('/', '-')}`]);
    expect(JSON.parse(value).PublicIP).toBe('10.65.154.111');
    expect((await scene.kernel('h1')).link).toMatch(/local 10\.65\.154\.111 dev eth0/);
    await h1.stop();
  }, 60_000);

  it('--iface-can-reach takes the route lookup\'s device and preferred source', async () => {
    const workDir = scene.workDir;
    const r = await chosenInterface('h2', [`-etcd-endpoints=${scene.endpoint}`, '-iface-can-reach=10.65.154.111', `-subnet-file=${workDir}/h2-reach/subnet.env`]);
    expect(r.line).toContain('using interface eth0 with public IP 10.65.154.12');
  }, 40_000);

  it('exits 1 naming --iface-can-reach when nothing routes there, with no default-route fallback', async () => {
    const netns = scene.cluster.member('h2').netns;
    await scene.cluster.exec(netns, 'ip', ['route', 'add', 'unreachable', '192.0.2.0/24']);
    const r = await chosenInterface('h2', [`-etcd-endpoints=${scene.endpoint}`, '-iface-can-reach=192.0.2.1', `-subnet-file=${scene.workDir}/h2-unreach/subnet.env`]);
    expect(r.code).toBe(1);
    expect(r.line).toContain('192.0.2.1 (--iface-can-reach: no route)');
  }, 40_000);

  it('exits 1 for a --public-ip that is not on this host (no iface flag)', async () => {
    const r = await chosenInterface('h2', [`-etcd-endpoints=${scene.endpoint}`, '-public-ip=203.0.113.9', `-subnet-file=${scene.workDir}/h2-pip/subnet.env`]);
    expect(r.code).toBe(1);
    expect(r.line).toContain('--public-ip 203.0.113.9: no interface has this address');
  }, 40_000);

  it('exits 1 on a multipath default route when no iface flag is given', async () => {
    const netns = scene.cluster.member('h2').netns;
    for (const cmd of [['link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1'], ['link', 'set', 'd1', 'up'], ['link', 'set', 'd0', 'up'], ['route', 'replace', 'default', 'nexthop', 'dev', 'eth0', 'nexthop', 'dev', 'd0']]) {
      const r = await scene.cluster.exec(netns, 'ip', cmd);
      expect(r.code, `ip ${cmd.join(' ')}: ${r.stderr}`).toBe(0);
    }
    try {
      const r = await chosenInterface('h2', [`-etcd-endpoints=${scene.endpoint}`, `-subnet-file=${scene.workDir}/h2-mp/subnet.env`]);
      expect(r.code).toBe(1);
      expect(r.line).toContain('the IPv4 default route is multipath');
    } finally {
      await scene.cluster.exec(netns, 'ip', ['route', 'replace', 'default', 'dev', 'eth0']);
    }
  }, 40_000);
});
