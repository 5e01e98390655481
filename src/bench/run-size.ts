/**
 * One size of the benchmark: a namespace host with a real etcd, N peers, and
 * the phases in an order that needs no clean-up between them:
 *
 *  1. daemon D1 starts with no peers; the route count of its namespace is the baseline;
 *  2. join storm: N leases written at once, timed until all 3N entries are verified;
 *  3. single joins: one lease at a time on the synced daemon, each timed from the
 *     etcd write to the kernel's announcement of its three entries, then removed;
 *  4. idle window with the shipped defaults: CPU and etcd requests;
 *  5. cold start: D1 stops, flannel.1 is deleted (taking every entry with it), and
 *     D2 starts with the N leases in etcd, timed from spawn to all 3N entries verified;
 *  6. warm restart: D3 starts on the full kernel with the periodic pass off, then a
 *     second idle window, which prices one periodic pass by difference;
 *  7. the kernel limit: the same 3N entries by `bridge -batch` + `ip -batch` in
 *     fresh namespaces, with no daemon running.
 *
 * Everything lives in namespaces named after a fresh `uniquePrefix()`; the scene's
 * teardown (always run) removes them, etcd and the temp directory.
 */
import { readFileSync } from 'node:fs';
import { formatCidr, parseCidr } from '../net/ipv4';
import { runChecked } from '../testbed/exec';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitReady } from '../testbed/scene';
import { parseMilestones } from './daemon-log';
import { EtcdAgent } from './etcd-agent-client';
import { measureIdle } from './idle';
import { JoinMonitor } from './join-monitor';
import { DEVICE, verifyDevice, Verification } from './kernel-view';
import { measureKernelLimit } from './kernel-limit';
import { resyncSeconds } from './options';
import { BENCH_CONFIG, BenchPeer, JOIN_BASE_INDEX, leaseItem, peerKey, peerRange } from './peers';
import { tail, waitProgrammed, waitQuiescent } from './probes';
import { monotonicMs, readCpuLine, readPeakRssKb, readRoutePrefixes } from './proc';
import { SizeResult } from './results';
import { median, round1, summarize } from './stats';

export interface SizeOptions {
  readonly peers: number;
  readonly joins: number;
  readonly idleSeconds: number;
  readonly limitRuns: number;
  /** Extra flags for every daemon (the periodic-pass-off window appends its own after them). */
  readonly daemonArgs: readonly string[];
  /** Progress lines for the operator. */
  readonly say: (line: string) => void;
  /** Receives the scene as soon as it exists, so an interrupt can tear it down. */
  readonly onScene?: (scene: Scene) => void;
}

const HOST = 'h1';
/** The periodic pass switched off for the second idle window (a day; the flag takes seconds). */
const NO_RESYNC = ['--kernel-resync', '86400'];
const JOIN_TIMEOUT_MS = 10_000;
/** Lets `ip monitor` / `bridge monitor` join their groups before the first change. */
const MONITOR_SETTLE_MS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number): number => round1(kb / 1024);

function check(what: string, v: Verification, checks: string[]): void {
  if (!v.ok) throw new Error(`${what}: kernel state is wrong: ${v.problems.join('; ')}`);
  checks.push(`${what}: ${v.routes} routes, ${v.neighbors} neighbours, ${v.fdb} FDB entries; all ${v.checked} peers' entries match`);
}

function pidOf(d: DaemonHandle): number {
  const pid = d.process.pid;
  if (pid === undefined) throw new Error('flanneld-ts did not start');
  return pid;
}

/** SIGTERM must stop the daemon with exit code 0 (README); anything else fails the run. */
async function stopCleanly(d: DaemonHandle): Promise<void> {
  const code = await d.stop('SIGTERM');
  if (code !== 0) throw new Error(`flanneld-ts exited with ${code} on SIGTERM:\n${tail(d)}`);
}

/** Starts a daemon on HOST and waits for its "ready" line, failing with its log if it exits. */
async function startReady(scene: Scene, extraArgs: readonly string[], timeoutMs: number): Promise<{ daemon: DaemonHandle; spawnedWall: number }> {
  const spawnedWall = Date.now();
  const daemon = scene.startDaemon(HOST, extraArgs);
  await waitReady(daemon, timeoutMs);
  return { daemon, spawnedWall };
}

interface JoinTimes {
  readonly joinMs: number[];
  readonly leaveMs: number[];
  readonly putMs: number[];
}

/** One join and leave of `peer`, each timed from the etcd write to the kernel's last announcement. */
async function joinAndLeave(monitor: JoinMonitor, agent: EtcdAgent, pid: number, peer: BenchPeer, into: JoinTimes): Promise<void> {
  await waitQuiescent(pid);
  const added = monitor.waitForPeer(peer, false, JOIN_TIMEOUT_MS);
  const put = await agent.put([leaseItem(PREFIX, peer)]);
  into.joinMs.push((await added) - put.sentMs);
  into.putMs.push(put.doneMs - put.sentMs);
  await waitQuiescent(pid);
  const removed = monitor.waitForPeer(peer, true, JOIN_TIMEOUT_MS);
  const del = await agent.del([peerKey(PREFIX, peer)]);
  into.leaveMs.push((await removed) - del.sentMs);
}

export async function runSize(opts: SizeOptions): Promise<SizeResult> {
  const { peers: n, say } = opts;
  const checks: string[] = [];
  const cpuAtStart = readCpuLine();
  const scene = await createScene({ hosts: [HOST] });
  opts.onScene?.(scene);
  let agent: EtcdAgent | undefined;
  let monitor: JoinMonitor | undefined;
  try {
    const { cluster } = scene;
    const host = cluster.member(HOST);
    say(`[${n}] cluster ${cluster.prefix}: etcd ${scene.endpoint}, host ${host.netns}`);
    agent = await EtcdAgent.start(cluster, cluster.infraNetns, scene.endpoint);
    await scene.putConfig(BENCH_CONFIG);
    // A process that only sits in the host's namespace: /proc/<its pid>/net is that namespace, whatever daemon runs.
    const anchorPid = cluster.spawn(host.netns, 'sleep', ['infinity']).pid;
    if (anchorPid === undefined) throw new Error(`failed to start a process in ${host.netns}`);
    const waitTimeoutMs = Math.max(60_000, n * 20);

    // 1. D1 with no peers.
    const { daemon: d1 } = await startReady(scene, opts.daemonArgs, 30_000);
    const pid1 = pidOf(d1);
    const own = parseCidr(subnetOf(readFileSync(d1.subnetFile, 'utf8')));
    await waitQuiescent(pid1);
    const baseline = readRoutePrefixes(anchorPid);
    const peers = peerRange(n, own);
    say(`[${n}] daemon ready on ${formatCidr(own)} with no peers; namespace has ${baseline} routes`);

    // 2. Join storm.
    const wanted = { targetPrefixes: baseline + n, anchorPid, netns: host.netns, peers, timeoutMs: waitTimeoutMs };
    const programmed = waitProgrammed({ ...wanted, daemon: d1 });
    const written = await agent.put(peers.map((p) => leaseItem(PREFIX, p)));
    const storm = await programmed;
    const stormMs = storm.at - written.sentMs;
    check(`join storm of ${n}`, storm.verification, checks);
    say(`[${n}] join storm: ${Math.round(stormMs)} ms (etcd took ${Math.round(written.doneMs - written.sentMs)} ms to accept the writes)`);

    // 3. Single joins (the first one warms the monitors and is not counted).
    monitor = new JoinMonitor(cluster, host.netns);
    await sleep(MONITOR_SETTLE_MS);
    const joinPeers = peerRange(opts.joins + 1, own, JOIN_BASE_INDEX);
    const times: JoinTimes = { joinMs: [], leaveMs: [], putMs: [] };
    for (const p of joinPeers) await joinAndLeave(monitor, agent, pid1, p, times);
    const counted: JoinTimes = { joinMs: times.joinMs.slice(1), leaveMs: times.leaveMs.slice(1), putMs: times.putMs.slice(1) };
    monitor.close();
    monitor = undefined;
    check(`after ${opts.joins} joins and leaves`, await verifyDevice(host.netns, peers), checks);
    const join = summarize(counted.joinMs);
    say(`[${n}] single join: median ${join.medianMs} ms, p99 ${join.p99Ms} ms over ${join.count}`);

    // 4. Idle, shipped defaults.
    const idle = await measureIdle(pid1, agent, opts.idleSeconds);
    const rssAfterStormMB = mb(readPeakRssKb(pid1));
    say(`[${n}] idle ${opts.idleSeconds} s: ${idle.cpuPctOfCore} % of a core, ${idle.etcdRequests} etcd requests`);

    // 5. Cold start on an empty kernel.
    await stopCleanly(d1);
    await runChecked('ip', ['-n', host.netns, 'link', 'del', DEVICE]);
    const spawnedWall = Date.now();
    const spawnedMono = monotonicMs();
    const d2 = scene.startDaemon(HOST, opts.daemonArgs);
    const cold = await waitProgrammed({ ...wanted, daemon: d2 });
    const coldMs = cold.at - spawnedMono;
    check(`cold start with ${n}`, cold.verification, checks);
    await waitReady(d2, waitTimeoutMs);
    await waitQuiescent(pidOf(d2));
    const peakRssMB = mb(readPeakRssKb(pidOf(d2)));
    const marks = parseMilestones(d2.log());
    const since = (t: number | undefined): number | undefined => (t === undefined ? undefined : t - spawnedWall);
    say(`[${n}] cold start: ${Math.round(coldMs)} ms, peak RSS ${peakRssMB} MB`);
    await stopCleanly(d2);

    // 6. Warm restart, then idle without the periodic pass.
    const warm = await startReady(scene, [...opts.daemonArgs, ...NO_RESYNC], waitTimeoutMs);
    const warmMarks = parseMilestones(warm.daemon.log());
    check(`warm restart with ${n}`, await verifyDevice(host.netns, peers), checks);
    const idleNoResync = await measureIdle(pidOf(warm.daemon), agent, opts.idleSeconds);
    await stopCleanly(warm.daemon);
    const passes = Math.floor(opts.idleSeconds / resyncSeconds(opts.daemonArgs));
    const resyncPassCpuMs = passes > 0 ? round1(Math.max(0, idle.selfCpuMs - idleNoResync.selfCpuMs) / passes) : Number.NaN;

    // 7. The kernel limit.
    const runsMs: number[] = [];
    for (let i = 1; i <= opts.limitRuns; i++) {
      const limit = await measureKernelLimit(`${cluster.prefix}-lim${i}`, peers, scene.workDir);
      check(`ip -batch run ${i}`, limit.verification, checks);
      runsMs.push(round1(limit.ms));
    }
    const limitMs = median(runsMs);
    say(`[${n}] kernel limit: ${runsMs.map((x) => Math.round(x)).join(', ')} ms`);
    const cpuAtEnd = readCpuLine();
    const machineBusyPct = round1(((cpuAtEnd.busy - cpuAtStart.busy) / Math.max(1, cpuAtEnd.total - cpuAtStart.total)) * 100);

    return {
      peers: n,
      limit: { runsMs, ms: limitMs },
      coldStart: {
        ms: round1(coldMs),
        ...(marks.firstMs !== undefined && { firstLogMs: since(marks.firstMs) }),
        ...(marks.leaseMs !== undefined && { leaseMs: since(marks.leaseMs) }),
        ...(marks.readyMs !== undefined && { readyLogMs: since(marks.readyMs) }),
        peakRssMB,
      },
      storm: { ms: round1(stormMs), etcdWriteMs: round1(written.doneMs - written.sentMs) },
      join: { ...join, samplesMs: counted.joinMs.map(round1), etcdPutMedianMs: round1(median(counted.putMs)) },
      leave: summarize(counted.leaveMs),
      idle,
      idleNoResync,
      resyncPassCpuMs,
      ...(warmMarks.readyMs !== undefined && { warmRestartMs: warmMarks.readyMs - warm.spawnedWall }),
      rssAfterStormMB,
      machineBusyPct,
      checks,
    };
  } catch (err) {
    throw new Error(`${n} peers: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    monitor?.close();
    agent?.close();
    await scene.destroy();
  }
}
