/**
 * The first pings of a new path may wait for neighbour discovery or the
 * daemons' first pass: ping in rounds until one gets through. What is lost
 * afterwards is for the test to judge.
 */
import { Pod } from '../../src/testbed/netns-cluster';
import { waitFor } from '../../src/testbed/scene';

/** Pings `target` from `pod`, `count` echoes a round, until a round gets an answer (30 s at most). */
export async function pingUntil(pod: Pod, target: string, opts: { count?: number; timeoutSec?: number } = {}): Promise<void> {
  const round = { count: opts.count ?? 3, timeoutSec: opts.timeoutSec ?? 6 };
  await waitFor(`ping ${pod.netns} → ${target}`, async () => ((await pod.ping(target, round)).ok ? true : undefined), 30_000, 500);
}
