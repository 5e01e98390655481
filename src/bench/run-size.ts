/**
 * One size of the benchmark: a namespace host with a real etcd, N peers, and
 * the phases in an order that needs no clean-up between them. The join storm
 * always runs; the others can be chosen with `--phases` (options.ts):
 *
 *  1. daemon D1 starts with no peers; the route count of its namespace is the baseline;
 *  2. join storm: N leases written at once, timed until all 3N entries are verified;
 *     etcd's Txn counter must move meanwhile (the positive control of the idle figures);
 *  3. joins: `repeat` series of single joins on the synced daemon, each timed from the
 *     etcd write to the kernel's announcement of its three entries, then removed;
 *  4. idle: a window with the shipped defaults: CPU and etcd requests;
 *  5. pass: the CPU of one full reconcile pass, triggered by external route deletions
 *     and counted by the daemon's own pass metric (pass-cost.ts);
 *  6. churn: deletes and puts at a steady rate over the N leases; RSS before, peak, after;
 *  7. cold: D1 stops, flannel.1 is deleted (taking every entry with it), and D2 starts
 *     with the N leases in etcd, timed from spawn to all 3N entries verified;
 *  8. warm: D3 starts on the full kernel under a CPU profiler; an idle window of it is
 *     summarised by where the CPU went (cpu-profile.ts);
 *  9. limit: the same 3N entries by `bridge -batch` + `ip -batch` in fresh namespaces,
 *     with no daemon running.
 *
 * Every daemon runs with the shipped defaults (plus --daemon-args) and a health
 * server on its underlay address, from which the bench reads /metrics through the
 * etcd agent. Peak RSS is the largest VmHWM of D1 (storm to churn) and D2 (cold start).
 * Everything lives in namespaces named after a fresh `uniquePrefix()`; the scene's
 * teardown (always run) removes them, etcd and the temp directory.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatCidr, parseCidr } from '../net/ipv4';
import { runChecked } from '../testbed/exec';
import { createScene, DaemonHandle, PREFIX, Scene, subnetOf, waitReady } from '../testbed/scene';
import { runChurn } from './churn';
import { CpuProfile, summarizeProfile } from './cpu-profile';
import { parseMilestones } from './daemon-log';
import { EtcdAgent } from './etcd-agent-client';
import { measureIdle } from './idle';
import { JoinMonitor } from './join-monitor';
import { runJoinSeries } from './join-series';
import { DEVICE, verifyDevice, Verification } from './kernel-view';
import { measureKernelLimit } from './kernel-limit';
import { diffCounts, parseGrpcCounter } from './metrics';
import { daemonOptionsFor, Phase } from './options';
import { measurePassCost } from './pass-cost';
import { BENCH_CONFIG, JOIN_BASE_INDEX, leaseItem, peerRange } from './peers';
import { tail, waitProgrammed, waitQuiescent } from './probes';
import { sampleMemory } from './memory-sampler';
import { monotonicMs, readCpuLine, readCpuMs, readPeakRssKb, readRoutePrefixes } from './proc';
import { SizeResult } from './results';
import { median, round1 } from './stats';

export interface SizeOptions {
  readonly peers: number;
  readonly joins: number;
  readonly repeat: number;
  readonly idleSeconds: number;
  readonly limitRuns: number;
  readonly churnSeconds: number;
  readonly churnRate: number;
  readonly phases: readonly Phase[];
  /** Extra flags for every daemon. */
  readonly daemonArgs: readonly string[];
  /** Where the idle CPU profile is kept (the scene's directory goes at teardown); undefined: not kept. */
  readonly profileOut?: string;
  /** Progress lines for the operator. */
  readonly say: (line: string) => void;
  /** Receives the scene as soon as it exists, so an interrupt can tear it down. */
  readonly onScene?: (scene: Scene) => void;
}

const HOST = 'h1';
/** The daemons' health server (on the host's underlay address), for /metrics. */
const HEALTH_PORT = 9105;
/** External changes that each cause a full pass (and a verification pass) in the pass phase. */
const PASS_TRIGGERS = 5;
/** etcd's --max-txn-ops: the agent's puts go in transactions of at most this many (etcd-agent.ts). */
const TXN_OPS = 128;
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

/** The one profile file a daemon wrote into `dir` at exit. */
function readProfile(dir: string): { file: string; profile: CpuProfile } {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length !== 1) throw new Error(`expected one .cpuprofile in ${dir}, found ${files.length}`);
  const file = join(dir, files[0] as string);
  return { file, profile: JSON.parse(readFileSync(file, 'utf8')) as CpuProfile };
}

export async function runSize(opts: SizeOptions): Promise<SizeResult> {
  const { peers: n, say } = opts;
  const has = (p: Phase): boolean => opts.phases.includes(p);
  const defaults = daemonOptionsFor(opts.daemonArgs);
  const checks: string[] = [];
  const cpuByPhaseMs: Record<string, number> = {};
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
    const etcd = agent;
    await scene.putConfig(BENCH_CONFIG);
    // A process that only sits in the host's namespace: /proc/<its pid>/net is that namespace, whatever daemon runs.
    const anchorPid = cluster.spawn(host.netns, 'sleep', ['infinity']).pid;
    if (anchorPid === undefined) throw new Error(`failed to start a process in ${host.netns}`);
    const waitTimeoutMs = Math.max(60_000, n * 20);
    const daemonArgs = [...opts.daemonArgs, '--healthz-ip', host.ip, '--healthz-port', String(HEALTH_PORT)];
    const metricsUrl = `http://${host.ip}:${HEALTH_PORT}/metrics`;
    /** Runs a phase and books the daemon's CPU (and its children's) to it. */
    const phase = async <T>(name: string, pid: number, fn: () => Promise<T>): Promise<T> => {
      const c0 = readCpuMs(pid);
      const out = await fn();
      cpuByPhaseMs[name] = Math.round(readCpuMs(pid) - c0);
      return out;
    };

    // 1. D1 with no peers.
    const spawned1 = Date.now();
    const d1 = scene.startDaemon(HOST, daemonArgs);
    await waitReady(d1, 30_000);
    const pid1 = pidOf(d1);
    cpuByPhaseMs.start = Math.round(readCpuMs(pid1));
    const own = parseCidr(subnetOf(readFileSync(d1.subnetFile, 'utf8')));
    await waitQuiescent(pid1);
    const baseline = readRoutePrefixes(anchorPid);
    const peers = peerRange(n, own);
    say(`[${n}] daemon ready on ${formatCidr(own)} with no peers after ${Date.now() - spawned1} ms; namespace has ${baseline} routes`);

    // 2. Join storm, with the etcd request counter's positive control.
    const wanted = { targetPrefixes: baseline + n, anchorPid, netns: host.netns, peers, timeoutMs: waitTimeoutMs };
    const before = parseGrpcCounter(await etcd.metrics());
    const stormMemory = sampleMemory(pid1, () => etcd.fetch(metricsUrl));
    const { storm, written } = await phase('storm', pid1, async () => {
      const programmed = waitProgrammed({ ...wanted, daemon: d1 });
      const w = await etcd.put(peers.map((p) => leaseItem(PREFIX, p)));
      return { storm: await programmed, written: w };
    });
    // The peak comes with the storm's last passes; a second more takes in what they leave behind.
    await sleep(1000);
    const stormPeak = await stormMemory.stop();
    const stormMs = storm.at - written.sentMs;
    check(`join storm of ${n}`, storm.verification, checks);
    const etcdTxns = diffCounts(before, parseGrpcCounter(await etcd.metrics())).get('etcdserverpb.KV/Txn') ?? 0;
    if (etcdTxns < Math.ceil(n / TXN_OPS)) {
      throw new Error(`etcd's request counter (grpc_server_msg_received_total) saw ${etcdTxns} Txn messages during a storm of ${Math.ceil(n / TXN_OPS)} transactions: the idle etcd figures cannot be trusted`);
    }
    checks.push(`etcd request counter moved during the storm: ${etcdTxns} Txn messages for ${Math.ceil(n / TXN_OPS)} transactions sent`);
    const afterStormMB = mb(readPeakRssKb(pid1));
    say(`[${n}] join storm: ${Math.round(stormMs)} ms (etcd took ${Math.round(written.doneMs - written.sentMs)} ms to accept the writes); RSS peak ${afterStormMB} MB`);
    say(`[${n}] storm memory at its sampled peak: RSS ${stormPeak.rssMB} MB = anon ${stormPeak.anonMB} + file ${stormPeak.fileMB}; V8 heap ${stormPeak.heapUsedMB ?? '?'} used of ${stormPeak.heapTotalMB ?? '?'} MB, external ${stormPeak.externalMB ?? '?'} MB`);

    // 3. Single joins, `repeat` series back to back (the first join of each warms up and is not counted).
    let joins: Awaited<ReturnType<typeof runJoinSeries>> | undefined;
    if (has('joins')) {
      monitor = new JoinMonitor(cluster, host.netns);
      const mon = monitor;
      await sleep(MONITOR_SETTLE_MS);
      const joinPeers = peerRange(opts.joins + 1, own, JOIN_BASE_INDEX);
      joins = await phase('joins', pid1, () => runJoinSeries(mon, etcd, PREFIX, pid1, joinPeers, opts.repeat));
      monitor.close();
      monitor = undefined;
      check(`after ${opts.repeat} × ${opts.joins} joins and leaves`, await verifyDevice(host.netns, peers), checks);
      say(`[${n}] single join: median ${joins.pooled.medianMs} ms; p99 per run ${joins.runs.map((r) => r.p99Ms).join(' / ')} ms`);
    }

    // 4. Idle, shipped defaults.
    const idle = has('idle') ? await phase('idle', pid1, () => measureIdle(pid1, etcd, opts.idleSeconds)) : undefined;
    if (idle) say(`[${n}] idle ${opts.idleSeconds} s: ${idle.cpuPctOfCore} % of a core, ${idle.etcdRequests} etcd requests`);

    // 5. One full pass, measured.
    const idleRate = idle ? (idle.selfCpuMs + idle.childCpuMs) / idle.seconds : 0;
    // /proc only: polling /metrics would add its own CPU to the pass cost measured here.
    const passMemory = has('pass') ? sampleMemory(pid1, undefined) : undefined;
    const fullPass = has('pass')
      ? await phase('pass', pid1, () => measurePassCost({ agent: etcd, metricsUrl, pid: pid1, netns: host.netns, peers, triggers: PASS_TRIGGERS, idleCpuMsPerS: idleRate }))
      : undefined;
    const passPeak = await passMemory?.stop();
    if (fullPass) {
      check(`after ${PASS_TRIGGERS} external route deletions`, await verifyDevice(host.netns, peers), checks);
      say(`[${n}] full pass: ${fullPass.cpuMsPerPass} ms CPU, ${fullPass.wallMsPerPass} ms wall (${fullPass.passes} passes for ${fullPass.triggers} external changes)`);
      if (passPeak) say(`[${n}] pass-phase memory at its sampled peak: RSS ${passPeak.rssMB} MB = anon ${passPeak.anonMB} + file ${passPeak.fileMB}; V8 heap ${passPeak.heapUsedMB ?? '?'} used of ${passPeak.heapTotalMB ?? '?'} MB, external ${passPeak.externalMB ?? '?'} MB`);
    }

    // 6. Churn.
    let churn: SizeResult['churn'];
    if (has('churn')) {
      const c = await phase('churn', pid1, () => runChurn({ agent: etcd, prefix: PREFIX, pid: pid1, netns: host.netns, peers, seconds: opts.churnSeconds, rate: opts.churnRate, metrics: () => etcd.fetch(metricsUrl) }));
      check(`after ${c.result.writes} churn writes`, c.verification, checks);
      churn = c.result;
      say(`[${n}] churn: ${churn.writes} writes in ${churn.seconds} s; RSS ${churn.rssBeforeMB} MB before, ${churn.rssPeakMB} MB peak, ${churn.rssAfterMB} MB after (${churn.rssGrowthPct} %); V8 heap used ${churn.heapUsedBeforeMB} → ${churn.heapUsedAfterMB} MB of ${churn.heapTotalBeforeMB} → ${churn.heapTotalAfterMB} MB, external ${churn.externalBeforeMB} → ${churn.externalAfterMB} MB, anonymous RSS ${churn.anonBeforeMB} → ${churn.anonAfterMB} MB`);
    }
    const firstDaemonPeakMB = mb(readPeakRssKb(pid1));
    await stopCleanly(d1);

    // 7. Cold start on an empty kernel.
    let coldStart: SizeResult['coldStart'];
    let coldStartPeakMB: number | undefined;
    if (has('cold')) {
      await runChecked('ip', ['-n', host.netns, 'link', 'del', DEVICE]);
      const spawnedWall = Date.now();
      const spawnedMono = monotonicMs();
      const d2 = scene.startDaemon(HOST, daemonArgs);
      const cold = await waitProgrammed({ ...wanted, daemon: d2 });
      const coldMs = cold.at - spawnedMono;
      check(`cold start with ${n}`, cold.verification, checks);
      await waitReady(d2, waitTimeoutMs);
      await waitQuiescent(pidOf(d2));
      cpuByPhaseMs.cold = Math.round(readCpuMs(pidOf(d2)));
      coldStartPeakMB = mb(readPeakRssKb(pidOf(d2)));
      const marks = parseMilestones(d2.log());
      const since = (t: number | undefined): number | undefined => (t === undefined ? undefined : t - spawnedWall);
      coldStart = {
        ms: round1(coldMs),
        ...(marks.firstMs !== undefined && { firstLogMs: since(marks.firstMs) }),
        ...(marks.leaseMs !== undefined && { leaseMs: since(marks.leaseMs) }),
        ...(marks.readyMs !== undefined && { readyLogMs: since(marks.readyMs) }),
      };
      say(`[${n}] cold start: ${Math.round(coldMs)} ms, peak RSS ${coldStartPeakMB} MB`);
      await stopCleanly(d2);
    }

    // 8. Warm restart under the CPU profiler, then an idle window of it.
    let warmRestartMs: number | undefined;
    let idleProfile: SizeResult['idleProfile'];
    if (has('warm')) {
      const profDir = join(scene.workDir, 'cpu-profile');
      mkdirSync(profDir, { recursive: true });
      const spawnedWall = Date.now();
      const d3 = scene.startDaemon(HOST, daemonArgs, { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
      await waitReady(d3, waitTimeoutMs);
      const warmMarks = parseMilestones(d3.log());
      if (warmMarks.readyMs !== undefined) warmRestartMs = warmMarks.readyMs - spawnedWall;
      check(`warm restart with ${n}`, await verifyDevice(host.netns, peers), checks);
      const window = await phase('warm idle (profiled)', pidOf(d3), () => measureIdle(pidOf(d3), etcd, opts.idleSeconds));
      await stopCleanly(d3);
      const { file, profile } = readProfile(profDir);
      const fromUs = window.fromMonoMs * 1000;
      const toUs = window.toMonoMs * 1000;
      if (fromUs < profile.startTime || toUs > profile.endTime) throw new Error(`the idle window is outside the CPU profile's time span (${file}): the clocks differ`);
      let kept: string | undefined;
      if (opts.profileOut) {
        copyFileSync(file, opts.profileOut);
        kept = opts.profileOut;
      }
      idleProfile = { ...summarizeProfile(profile, fromUs, toUs), ...(kept && { file: kept }) };
      say(`[${n}] warm restart: ${warmRestartMs ?? '?'} ms; profiled idle: ${idleProfile.busyMs} ms busy in ${opts.idleSeconds} s`);
    }

    // 9. The kernel limit.
    let limit: SizeResult['limit'];
    if (has('limit')) {
      const runsMs: number[] = [];
      for (let i = 1; i <= opts.limitRuns; i++) {
        const l = await measureKernelLimit(`${cluster.prefix}-lim${i}`, peers, scene.workDir);
        check(`ip -batch run ${i}`, l.verification, checks);
        runsMs.push(round1(l.ms));
      }
      limit = { runsMs, ms: median(runsMs) };
      say(`[${n}] kernel limit: ${runsMs.map((x) => Math.round(x)).join(', ')} ms`);
    }
    const cpuAtEnd = readCpuLine();
    const machineBusyPct = round1(((cpuAtEnd.busy - cpuAtStart.busy) / Math.max(1, cpuAtEnd.total - cpuAtStart.total)) * 100);

    return {
      peers: n,
      daemon: { periodicPassS: defaults.resyncMs / 1000, iptablesCheckS: defaults.iptablesResyncMs / 1000 },
      storm: { ms: round1(stormMs), etcdWriteMs: round1(written.doneMs - written.sentMs), etcdTxns },
      rss: { afterStormMB, stormPeak, ...(passPeak && { passPeak }), firstDaemonPeakMB, ...(coldStartPeakMB !== undefined && { coldStartPeakMB }), peakMB: Math.max(firstDaemonPeakMB, coldStartPeakMB ?? 0) },
      cpuByPhaseMs,
      ...(limit && { limit }),
      ...(coldStart && { coldStart }),
      ...(joins && { join: joins.pooled, joinRuns: joins.runs, leave: joins.leave }),
      ...(idle && { idle }),
      ...(fullPass && { fullPass }),
      ...(churn && { churn }),
      ...(warmRestartMs !== undefined && { warmRestartMs }),
      ...(idleProfile && { idleProfile }),
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
