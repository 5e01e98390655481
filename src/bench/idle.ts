/**
 * Steady-state cost of an idle, synced daemon: its CPU time (and its children's:
 * the iptables checks it spawns) over a window, as a share of one core, and the
 * gRPC messages etcd received meanwhile (nothing but the daemon talks to etcd
 * then). The daemon's CPU time is its threads' scheduler time (schedstat,
 * nanoseconds): utime and stime come in 10 ms ticks charged to whatever runs at
 * a tick, so over 60 s one tick is 0.017 % and an idle daemon's few ms per
 * wake-up came out as 4 to 7 ticks in runs of the same code. The tick figure is
 * kept beside it; children's CPU (reaped iptables checks) only exists in ticks.
 */
import { EtcdAgent } from './etcd-agent-client';
import { diffCounts, isKeepAlive, parseGrpcCounter, total } from './metrics';
import { waitQuiescent } from './probes';
import { clockTicksPerSecond, monotonicMs, readCpuTicks, readThreadsCpuNs } from './proc';
import { IdleResult } from './results';
import { round1 } from './stats';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Before an idle window: V8 keeps collecting for several seconds after a burst of
 * work (its memory reducer), which is the tail of the burst, not steady state.
 */
const SETTLE_MS = 10_000;

export async function measureIdle(pid: number, agent: EtcdAgent, seconds: number): Promise<IdleResult> {
  await sleep(SETTLE_MS);
  await waitQuiescent(pid);
  const hz = clockTicksPerSecond();
  const m0 = parseGrpcCounter(await agent.metrics());
  const c0 = readCpuTicks(pid);
  const ns0 = readThreadsCpuNs(pid);
  const t0 = monotonicMs();
  await sleep(seconds * 1000);
  const ns1 = readThreadsCpuNs(pid);
  const c1 = readCpuTicks(pid);
  const t1 = monotonicMs();
  const byMethod = diffCounts(m0, parseGrpcCounter(await agent.metrics()));
  const windowMs = t1 - t0;
  const selfCpuMs = Math.round((ns1 - ns0) / 1e4) / 100;
  const selfCpuTicksMs = ((c1.utime - c0.utime + c1.stime - c0.stime) * 1000) / hz;
  const childCpuMs = ((c1.cutime - c0.cutime + c1.cstime - c0.cstime) * 1000) / hz;
  const requests = total(byMethod);
  return {
    seconds,
    selfCpuMs,
    selfCpuTicksMs,
    childCpuMs,
    cpuPctOfCore: Math.round(((selfCpuMs + childCpuMs) / windowMs) * 100 * 1000) / 1000,
    etcdRequests: requests,
    etcdRequestsPerMin: round1(requests / (windowMs / 60_000)),
    etcdNonKeepAlive: [...byMethod].filter(([m]) => !isKeepAlive(m)).reduce((s, [, n]) => s + n, 0),
    etcdByMethod: Object.fromEntries(byMethod),
    fromMonoMs: t0,
    toMonoMs: t1,
  };
}

