/**
 * Single joins on a synced daemon: one lease at a time, each timed from the
 * etcd write to the kernel's announcement of its three entries (JoinMonitor),
 * then removed and timed likewise. `runs` series go back to back with the same
 * peers, so the spread of p99 between runs is seen, not only the best run.
 */
import { EtcdAgent } from './etcd-agent-client';
import { JoinMonitor } from './join-monitor';
import { BenchPeer, leaseItem, peerKey } from './peers';
import { waitQuiescent } from './probes';
import { JoinRun } from './results';
import { median, round1, summarize, Summary } from './stats';

const JOIN_TIMEOUT_MS = 10_000;

interface JoinTimes {
  readonly joinMs: number[];
  readonly leaveMs: number[];
  readonly putMs: number[];
}

/** One join and leave of `peer`, each timed from the etcd write to the kernel's last announcement. */
async function joinAndLeave(monitor: JoinMonitor, agent: EtcdAgent, prefix: string, pid: number, peer: BenchPeer, into: JoinTimes): Promise<void> {
  await waitQuiescent(pid);
  const added = monitor.waitForPeer(peer, false, JOIN_TIMEOUT_MS);
  const put = await agent.put([leaseItem(prefix, peer)]);
  into.joinMs.push((await added) - put.sentMs);
  into.putMs.push(put.doneMs - put.sentMs);
  await waitQuiescent(pid);
  const removed = monitor.waitForPeer(peer, true, JOIN_TIMEOUT_MS);
  const del = await agent.del([peerKey(prefix, peer)]);
  into.leaveMs.push((await removed) - del.sentMs);
}

function joinRun(t: JoinTimes): JoinRun {
  return { ...summarize(t.joinMs), samplesMs: t.joinMs.map(round1), etcdPutMedianMs: round1(median(t.putMs)) };
}

/**
 * `runs` series of joins and leaves of `peers`; the first join of each series
 * (monitors and caches warming up) is not counted.
 */
export async function runJoinSeries(monitor: JoinMonitor, agent: EtcdAgent, prefix: string, pid: number, peers: readonly BenchPeer[], runs: number): Promise<{ pooled: JoinRun; runs: JoinRun[]; leave: Summary }> {
  const all: JoinTimes = { joinMs: [], leaveMs: [], putMs: [] };
  const out: JoinRun[] = [];
  for (let r = 0; r < runs; r++) {
    const times: JoinTimes = { joinMs: [], leaveMs: [], putMs: [] };
    for (const p of peers) await joinAndLeave(monitor, agent, prefix, pid, p, times);
    const counted: JoinTimes = { joinMs: times.joinMs.slice(1), leaveMs: times.leaveMs.slice(1), putMs: times.putMs.slice(1) };
    out.push(joinRun(counted));
    all.joinMs.push(...counted.joinMs);
    all.leaveMs.push(...counted.leaveMs);
    all.putMs.push(...counted.putMs);
  }
  return { pooled: joinRun(all), runs: out, leave: summarize(all.leaveMs) };
}
