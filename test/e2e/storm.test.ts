/**
 * A kernel notification storm in the daemon's own namespace: another process
 * adds and deletes 240,000 host routes on eth0 with `ip -batch` while a peer
 * joins. Before the kernel watch moved into an `ip monitor` child, the daemon
 * aborted inside the netlink addon (`terminate called after throwing an
 * instance of 'Napi::Error'`) when its listening socket overflowed. Now it must
 * stay up (same process, no abort), program the peer, leave flannel.1 matching
 * the leases, and count any overflow in /metrics with one log line.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createScene, DaemonHandle, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { countLog, sceneLifecycle, summary, waitPeers } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const ROUTES = 60_000;
const ROUNDS = 2;
let scene: Scene;
let h1: DaemonHandle;

async function get(path: string): Promise<string> {
  const script = `fetch('http://127.0.0.1:8471${path}').then(async (r) => console.log(await r.text()))`;
  const r = await scene.cluster.exec(scene.cluster.member('h1').netns, process.execPath, ['-e', script]);
  if (r.code !== 0) throw new Error(`GET ${path} failed: ${r.stderr}`);
  return r.stdout;
}

/** Pids of `ip -o monitor` processes descending from `root`. */
function monitorChildren(root: number): number[] {
  const parent = new Map<number, number>();
  const monitors: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      parent.set(pid, Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]));
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, 3).join(' ') === 'ip -o monitor') monitors.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  const descends = (pid: number): boolean => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) if (p === root) return true;
    return false;
  };
  return monitors.filter(descends);
}

/** `ip -batch` lines adding (or deleting) ROUTES host routes 10.200.x.y on eth0: nothing of the overlay's. */
function batch(dir: string, verb: 'add' | 'del'): string {
  const lines: string[] = [];
  for (let i = 0; i < ROUTES; i++) lines.push(`route ${verb} 10.200.${i >> 8}.${i & 255}/32 dev eth0`);
  const file = join(dir, `storm-${verb}.batch`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2'] });
  await scene.putConfig(CONFIG);
  h1 = scene.startDaemon('h1', ['--healthz-port', '8471', '--healthz-ip', '127.0.0.1']);
  await waitReady(h1);
}, 60_000);

sceneLifecycle(() => scene);

describe('a route storm on eth0 while a peer joins', () => {
  it('the daemon stays up, programs the peer and counts any overflow', async () => {
    const pid = h1.process.pid;
    const files = { add: batch(scene.workDir, 'add'), del: batch(scene.workDir, 'del') };
    const netns = scene.cluster.member('h1').netns;
    const storm = (async () => {
      for (let round = 0; round < ROUNDS; round++) {
        for (const file of [files.add, files.del]) {
          const r = await scene.cluster.exec(netns, 'ip', ['-batch', file], { timeoutMs: 120_000 });
          if (r.code !== 0) throw new Error(`ip -batch ${file}: ${r.stderr.slice(0, 500)}`);
        }
      }
    })();
    // The peer joins while the storm runs.
    await new Promise((r) => setTimeout(r, 500));
    const h2 = scene.startDaemon('h2');
    await storm;
    await waitReady(h2, 60_000);

    expect(h1.process.exitCode).toBeNull();
    expect(h1.process.signalCode).toBeNull();
    expect(h1.process.pid).toBe(pid);
    expect(h1.log()).not.toMatch(/terminate called|Napi::Error/);

    // flannel.1 on h1 holds exactly h2's lease: route, neighbour, FDB entry.
    const s2 = subnetOf(readFileSync(h2.subnetFile, 'utf8'));
    const gw = s2.split('/')[0] as string;
    const k = await waitPeers(scene, 'h1', 1, 30_000);
    const h2mac = /link\/ether ([0-9a-f:]+)/.exec((await scene.kernel('h2')).link)?.[1] as string;
    expect(summary(k)).toBe(`${s2} via ${gw} onlink\n--\n${gw} lladdr ${h2mac} PERMANENT\n--\n${h2mac} dst 10.65.154.12 self permanent`);

    // The overflow counter is exported; an overflow, if there was one, was logged (once per episode).
    const metrics = await get('/metrics');
    const line = metrics.split('\n').find((l) => l.startsWith('flanneld_kernel_watch_overflows_total '));
    expect(line).toBeDefined();
    const overflows = Number(line?.split(' ')[1]);
    const logged = countLog(h1.log(), /kernel notifications were lost/);
    console.log(`storm: ${ROUNDS * 2 * ROUTES} route changes on eth0; overflows counted ${overflows}, logged ${logged}`);
    if (overflows > 0) expect(logged).toBeGreaterThanOrEqual(1);
    expect(logged).toBeLessThanOrEqual(overflows);
    // Still listening after the storm: a hand-made change on flannel.1 is repaired.
    await scene.cluster.exec(netns, 'ip', ['route', 'del', s2, 'dev', 'flannel.1']);
    await waitFor('the deleted route repaired', async () => summary(await scene.kernel('h1')) === summary(k), 10_000);
  }, 300_000);

  it('an overflow of the watch is counted, logged once and repaired by a full re-list', async () => {
    const netns = scene.cluster.member('h1').netns;
    const [monitor] = monitorChildren(h1.process.pid as number);
    expect(monitor).toBeDefined();
    const good = summary(await scene.kernel('h1'));
    const s2 = good.split(' ')[0] as string;
    // While the monitor is stopped its socket fills up and the kernel drops what follows.
    process.kill(monitor as number, 'SIGSTOP');
    try {
      const r = await scene.cluster.exec(netns, 'ip', ['-batch', batch(scene.workDir, 'add')], { timeoutMs: 120_000 });
      expect(r.code).toBe(0);
      await scene.cluster.exec(netns, 'ip', ['route', 'del', s2, 'dev', 'flannel.1']);
    } finally {
      process.kill(monitor as number, 'SIGCONT');
    }
    await waitFor('the route lost in the overflow repaired', async () => summary(await scene.kernel('h1')) === good, 20_000);
    const overflows = async (): Promise<number> => Number((await get('/metrics')).split('\n').find((l) => l.startsWith('flanneld_kernel_watch_overflows_total '))?.split(' ')[1]);
    await waitFor('the overflow counted', async () => (await overflows()) > 0, 10_000);
    expect(countLog(h1.log(), /kernel notifications were lost/)).toBe(1);
    expect(monitorChildren(h1.process.pid as number)).toEqual([monitor]);
    expect(h1.process.exitCode).toBeNull();
    const r = await scene.cluster.exec(netns, 'ip', ['-batch', batch(scene.workDir, 'del')], { timeoutMs: 120_000 });
    expect(r.code).toBe(0);
  }, 300_000);
});
