/** Helpers shared by the e2e fault-injection tests. */
import { resolve } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { proxyControl } from '../../src/testbed/tcp-proxy';
import { ETCD_PORT, HostKernel, Scene, waitFor } from '../../src/testbed/scene';

const PROXY_JS = resolve(__dirname, '..', '..', 'dist', 'testbed', 'tcp-proxy.js');

/** A TCP proxy in the infra namespace in front of etcd; returns its endpoint, cut/heal and a one-way delay. */
export async function startEtcdProxy(scene: Scene, port: number): Promise<{ endpoint: string; cut(): Promise<void>; heal(): Promise<void>; delay(ms: number): Promise<void> }> {
  const ip = scene.cluster.infraIP;
  const child = scene.cluster.spawn(scene.cluster.infraNetns, process.execPath, [PROXY_JS, ip, String(port), ip, String(ETCD_PORT)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ctl = proxyControl(child);
  await ctl.ready;
  return { endpoint: `http://${ip}:${port}`, cut: () => ctl.send('cut'), heal: () => ctl.send('heal'), delay: (ms) => ctl.send(`delay ${ms}`) };
}

/** One line per entry kind, for comparing whole kernel states. */
export function summary(k: HostKernel): string {
  return [...k.routes].sort().join('\n') + '\n--\n' + [...k.neighbors].sort().join('\n') + '\n--\n' + [...k.fdb].sort().join('\n');
}

/** Waits until the host programs exactly `peers` peers (route, neighbour and FDB entry each). */
export function waitPeers(scene: Scene, host: string, peers: number, timeoutMs = 10_000): Promise<HostKernel> {
  return waitFor(`${host} to hold ${peers} peers`, async () => {
    const k = await scene.kernel(host);
    return k.routes.length === peers && k.neighbors.filter((n) => n.includes('PERMANENT')).length === peers && k.fdb.length === peers ? k : undefined;
  }, timeoutMs);
}

/** Starts a long ping in a namespace; resolves with its loss and output when done. */
export function backgroundPing(scene: Scene, netns: string, target: string, seconds: number): Promise<{ transmitted: number; received: number; output: string }> {
  const count = Math.round(seconds * 10);
  return scene.cluster.exec(netns, 'ping', ['-n', '-i', '0.1', '-c', String(count), '-w', String(seconds + 10), target], { timeoutMs: (seconds + 20) * 1000 }).then((r) => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    return { transmitted: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), output: r.stdout.split('\n').slice(-4).join('\n') };
  });
}

/** Counts log lines (pino JSON) whose msg matches. */
export function countLog(log: string, re: RegExp): number {
  return log.split('\n').filter((l) => {
    try {
      return re.test(String((JSON.parse(l) as { msg?: unknown }).msg ?? ''));
    } catch {
      return false;
    }
  }).length;
}

/**
 * Registers the hooks every e2e file wants: when any test (or the set-up) failed,
 * print the scene's report (kernel state, etcd, daemon logs); always destroy it.
 */
export function sceneLifecycle(get: () => Scene | undefined, extra?: () => Promise<string>): void {
  let failed = false;
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });
  afterAll(async ({}, suite) => {
    const scene = get();
    if (scene && (failed || suite.result?.state === 'fail')) {
      process.stderr.write(`${await scene.report()}\n${extra ? await extra().catch((err: unknown) => String(err)) : ''}\n`);
    }
    await scene?.destroy();
  }, 60_000);
}
