/**
 * Kernel drift, hostile etcd data and peers that change, on three namespace
 * hosts with a real etcd: everything is repaired or skipped, nothing valid is lost.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { countLog, startEtcdProxy, summary, waitPeers, sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
let scene: Scene;
const d = new Map<string, DaemonHandle>();
const pods = new Map<string, Pod>();
let proxy: Awaited<ReturnType<typeof startEtcdProxy>>;

const ns = (h: string): string => scene.cluster.member(h).netns;
const ip = async (h: string, args: string[]): Promise<void> => {
  const r = await scene.cluster.exec(ns(h), args[0] === 'bridge' ? 'bridge' : 'ip', args[0] === 'bridge' ? args.slice(1) : args);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
};
const subnet = (h: string): string => subnetOf(readFileSync((d.get(h) as DaemonHandle).subnetFile, 'utf8'));
const gw = (s: string): string => s.split('/')[0] as string;
const mac = async (h: string): Promise<string> => /link\/ether ([0-9a-f:]+)/.exec((await scene.kernel(h)).link)?.[1] as string;
const pingOK = async (from: string, to: string): Promise<boolean> => (await (pods.get(from) as Pod).ping((pods.get(to) as Pod).ip, { count: 2, timeoutSec: 5 })).ok;

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2', 'h3'] });
  await scene.putConfig(CONFIG);
  proxy = await startEtcdProxy(scene, 23790);
  // h1 reaches etcd through the proxy, so the test can cut it off. Every daemon runs
  // with the shipped defaults: a full pass only every 300 s, so repairs come from kernel notifications.
  d.set('h1', scene.startDaemon('h1', ['--etcd-endpoints', proxy.endpoint]));
  for (const h of ['h2', 'h3']) d.set(h, scene.startDaemon(h));
  await Promise.all([...d.values()].map((x) => waitReady(x)));
  for (const h of ['h1', 'h2', 'h3']) pods.set(h, await addPod(scene.cluster, h, { name: 'pod', subnetEnvPath: (d.get(h) as DaemonHandle).subnetFile, cniDataDir: `${scene.workDir}/cni` }));
}, 90_000);

sceneLifecycle(() => scene);

/** Unix ms of each log line whose msg matches. */
function logTimes(log: string, re: RegExp): number[] {
  return log.split('\n').flatMap((l) => {
    try {
      const j = JSON.parse(l) as { msg?: unknown; time?: unknown };
      return re.test(String(j.msg ?? '')) ? [Date.parse(String(j.time))] : [];
    } catch {
      return [];
    }
  });
}

/** Issue 10: a hand-made change on flannel.1 is repaired within a second (the notification path; the full pass is 300 s away). */
const REPAIR_BUDGET_MS = 1000;
/** Our own changes are verified by a listing 2 s after the last of them: wait that out, so only a notification can explain a repair. */
const VERIFY_QUIET_MS = 2500;

describe('kernel drift on h1 is repaired', () => {
  it('ip route del, bridge fdb del and ip neigh del by hand are each repaired within 1 s at the shipped defaults', async () => {
    const good = summary(await waitPeers(scene, 'h1', 2));
    const s2 = subnet('h2');
    const m2 = await mac('h2');
    const dot = (x: string): string => x.replace(/\./g, '\\.');
    const deletions: Array<[string, string[], RegExp]> = [
      ['ip route del', ['route', 'del', s2, 'dev', 'flannel.1'], new RegExp(`^replace route ${dot(s2)} via ${dot(gw(s2))} onlink \\(missing\\)`)],
      ['bridge fdb del', ['bridge', 'fdb', 'del', m2, 'dev', 'flannel.1', 'dst', '10.65.154.12', 'self'], new RegExp(`^replace fdb ${m2} dst 10\\.65\\.154\\.12 \\(missing\\)`)],
      ['ip neigh del', ['neigh', 'del', gw(s2), 'dev', 'flannel.1'], new RegExp(`^replace neighbor ${dot(gw(s2))} lladdr ${m2} \\(missing\\)`)],
    ];
    const took: Record<string, number> = {};
    for (const [name, args, repaired] of deletions) {
      await new Promise((r) => setTimeout(r, VERIFY_QUIET_MS));
      expect(summary(await scene.kernel('h1'))).toBe(good);
      const before = Date.now();
      await ip('h1', args);
      await waitFor(`h1 to repair ${name}`, async () => summary(await scene.kernel('h1')) === good, 10_000);
      // The daemon's own timestamp of the repair: polling the kernel through exec would add the machine's load to the figure.
      const at = await waitFor(`the repair of ${name} logged`, () => logTimes((d.get('h1') as DaemonHandle).log(), repaired).find((t) => t >= before), 5000);
      took[name] = at - before;
    }
    for (const [name, ms] of Object.entries(took)) expect(ms, `${name} repaired after ${ms} ms`).toBeLessThanOrEqual(REPAIR_BUDGET_MS);
  }, 60_000);

  it('a deleted route, a changed neighbour and a deleted FDB entry', async () => {
    const good = summary(await waitPeers(scene, 'h1', 2));
    const s2 = subnet('h2');
    const m2 = await mac('h2');
    await ip('h1', ['route', 'del', s2, 'dev', 'flannel.1']);
    await ip('h1', ['neigh', 'replace', gw(subnet('h3')), 'lladdr', '02:de:ad:be:ef:01', 'dev', 'flannel.1', 'nud', 'permanent']);
    await ip('h1', ['bridge', 'fdb', 'del', m2, 'dev', 'flannel.1', 'dst', '10.65.154.12', 'self']);
    await waitFor('h1 repaired', async () => summary(await scene.kernel('h1')) === good, 10_000);
    // The kernel is repaired a moment before the daemon's log line reaches its file.
    const logged = (re: RegExp) => waitFor(`log ${re}`, () => countLog((d.get('h1') as DaemonHandle).log(), re) >= 1, 5000);
    await logged(new RegExp(`replace route ${s2} via ${gw(s2)} onlink \\(missing\\)`));
    await logged(/replace neighbor .* \(wrong mac 02:de:ad:be:ef:01\)/);
    await logged(new RegExp(`replace fdb ${m2} dst 10.65.154.12 \\(missing\\)`));
    expect(await pingOK('h1', 'h2')).toBe(true);
  });

  it('stale entries that no lease explains are removed', async () => {
    const good = summary(await scene.kernel('h1'));
    await ip('h1', ['neigh', 'add', '10.7.200.0', 'lladdr', '02:00:00:00:02:00', 'dev', 'flannel.1', 'nud', 'permanent']);
    await ip('h1', ['bridge', 'fdb', 'add', '02:00:00:00:02:00', 'dev', 'flannel.1', 'dst', '10.65.154.200', 'self', 'permanent']);
    await ip('h1', ['route', 'add', '10.7.200.0/24', 'via', '10.7.200.0', 'dev', 'flannel.1', 'onlink']);
    await waitFor('stale entries gone', async () => summary(await scene.kernel('h1')) === good, 10_000);
    const stale = /delete route 10.7.200.0\/24 via 10.7.200.0 onlink \(stale\)/;
    await waitFor('the removal logged', () => countLog((d.get('h1') as DaemonHandle).log(), stale) >= 1, 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(countLog((d.get('h1') as DaemonHandle).log(), stale)).toBe(1);
  });

  it('flannel.1 set down, its address removed, then deleted: recreated with the same MAC, peers back', async () => {
    const good = summary(await scene.kernel('h1'));
    const m1 = await mac('h1');
    const addr = `${gw(subnet('h1'))}/32`;
    await ip('h1', ['link', 'set', 'flannel.1', 'down']);
    await waitFor('up again', async () => (await scene.kernel('h1')).link.includes(',UP,') && summary(await scene.kernel('h1')) === good, 10_000);
    await ip('h1', ['addr', 'del', addr, 'dev', 'flannel.1']);
    await waitFor('address back', async () => (await scene.kernel('h1')).addresses.join().includes(`inet ${addr}`), 10_000);
    await ip('h1', ['link', 'del', 'flannel.1']);
    await waitFor('device and peers back', async () => summary(await scene.kernel('h1')) === good, 10_000);
    expect(await mac('h1')).toBe(m1);
    expect(await pingOK('h1', 'h3')).toBe(true);
    expect(await pingOK('h2', 'h1')).toBe(true);
  });
});

describe('hostile data in etcd', () => {
  const bad: Array<[string, string]> = [
    ['10.7.240.0-24', 'not json at all'],
    ['10.7.241.0-24', '{"PublicIP":42,"BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:01"}}'],
    ['10.9.0.0-24', '{"PublicIP":"10.65.154.90","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:09:00"}}'],
    ['10.7.242.1-24', '{"PublicIP":"10.65.154.91","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:09:01"}}'],
    ['10.7.243.0-24', '{"PublicIP":"10.65.154.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:09:02"}}'],
    ['10.7.244.0-24', '{"PublicIP":"10.65.154.92","BackendType":"host-gw","BackendData":{}}'],
    ['10.7.245.0-24', `{"PublicIP":"10.65.154.93","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:09:03"},"Pad":"${'x'.repeat(1024 * 1024)}"}`],
  ];

  it('each bad lease is logged once and skipped; every valid peer stays programmed', async () => {
    const good = summary(await waitPeers(scene, 'h1', 2));
    for (const [key, value] of bad) {
      const r = await scene.cluster.exec(scene.cluster.infraNetns, 'etcdctl', ['--endpoints', scene.endpoint, 'put', `${PREFIX}/subnets/${key}`], { input: value, env: { ETCDCTL_API: '3' } });
      if (r.code !== 0) throw new Error(`put ${key}: ${r.stderr}`);
    }
    // A valid peer written after the garbage must still be programmed.
    await scene.etcdctl(['put', `${PREFIX}/subnets/10.7.246.0-24`, '{"PublicIP":"10.65.154.94","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:09:04"}}']);
    // h1 skips 10.7.243.0 (it claims h1's own PublicIP); for h2 it is just another peer.
    await waitPeers(scene, 'h1', 3);
    await waitPeers(scene, 'h2', 4);
    await new Promise((r) => setTimeout(r, 3000)); // a few reconcile passes: nothing may be logged again
    const log = (d.get('h1') as DaemonHandle).log();
    expect(countLog(log, /skipping invalid lease .*10\.7\.240\.0-24: value is not JSON/)).toBe(1);
    expect(countLog(log, /skipping invalid lease .*10\.7\.241\.0-24: PublicIP is missing or not a string/)).toBe(1);
    expect(countLog(log, /not programming lease 10\.9\.0\.0\/24: subnet is outside Network/)).toBe(1);
    expect(countLog(log, /skipping invalid lease .*10\.7\.242\.1-24: .*host bits/)).toBe(1);
    expect(countLog(log, /not programming lease 10\.7\.243\.0\/24: PublicIP 10\.65\.154\.11 is this node's own/)).toBe(1);
    expect(countLog(log, /not programming lease 10\.7\.244\.0\/24: backend type "host-gw" is not vxlan/)).toBe(1);
    expect(countLog(log, /skipping invalid lease .*10\.7\.245\.0-24: value is \d+ bytes/)).toBe(1);
    expect((d.get('h1') as DaemonHandle).process.exitCode).toBeNull();
    expect(await pingOK('h1', 'h2')).toBe(true);
    for (const [key] of [...bad, ['10.7.246.0-24']]) await scene.etcdctl(['del', `${PREFIX}/subnets/${key}`]);
    await waitFor('back to the two real peers', async () => summary(await scene.kernel('h1')) === good, 10_000);
  });
});

describe('peers that change', () => {
  it('a peer with a recreated device (new VTEP MAC) is updated; the old FDB entry goes', async () => {
    const old = await mac('h2');
    expect(await (d.get('h2') as DaemonHandle).stop('SIGKILL')).toBe(-1);
    await ip('h2', ['link', 'del', 'flannel.1']);
    d.set('h2', scene.startDaemon('h2'));
    await waitReady(d.get('h2') as DaemonHandle);
    const fresh = await mac('h2');
    expect(fresh).not.toBe(old);
    for (const h of ['h1', 'h3']) {
      await waitFor(`${h} to use h2's new MAC`, async () => {
        const k = await scene.kernel(h);
        return k.fdb.some((f) => f.startsWith(fresh)) && !k.fdb.join().includes(old) && !k.neighbors.join().includes(old);
      }, 10_000);
    }
    expect(await pingOK('h1', 'h2')).toBe(true);
    expect(await pingOK('h3', 'h2')).toBe(true);
  });

  it('a change made while h1 was cut off from etcd is picked up after the link heals', async () => {
    await proxy.cut();
    const old = await mac('h3');
    await (d.get('h3') as DaemonHandle).stop('SIGKILL');
    await ip('h3', ['link', 'del', 'flannel.1']);
    d.set('h3', scene.startDaemon('h3'));
    await waitReady(d.get('h3') as DaemonHandle);
    const fresh = await mac('h3');
    await new Promise((r) => setTimeout(r, 1000));
    expect((await scene.kernel('h1')).fdb.join()).toContain(old);
    await proxy.heal();
    await waitFor("h1 to use h3's new MAC", async () => {
      const k = await scene.kernel('h1');
      return k.fdb.some((f) => f.startsWith(fresh)) && !k.fdb.join().includes(old);
    }, 20_000);
    const h1 = d.get('h1') as DaemonHandle;
    // The log is read from the daemon's stdout pipe, which may trail the kernel by a moment.
    await waitFor('h1 to log the re-established watch', async () => countLog(h1.log(), /etcd watch re-established/) > 0, 5_000);
    const log = h1.log();
    expect(countLog(log, /lost the etcd watch/)).toBe(1);
    expect(countLog(log, /etcd watch re-established/)).toBe(1);
    expect(await pingOK('h1', 'h3')).toBe(true);
  });
});
