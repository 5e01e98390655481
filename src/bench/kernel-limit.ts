/**
 * The kernel limit: the same 3N entries the daemon programs, applied by
 * iproute2 in batch mode (`bridge -batch` for the FDB, then `ip -batch` for
 * neighbours and routes) to a fresh flannel.1 in a fresh namespace. iproute2
 * sends one request per line and waits for its ACK, so this is what one
 * well-written client reaches on this machine; the daemon is judged against it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { run, runChecked } from '../testbed/exec';
import { DEVICE, verifyDevice, Verification } from './kernel-view';
import { BenchPeer } from './peers';
import { monotonicMs } from './proc';

/** The batch files: FDB entries for `bridge -batch`; neighbours, then routes, for `ip -batch`. */
export function limitBatches(peers: readonly BenchPeer[]): { bridge: string; ip: string } {
  const fdb = peers.map((p) => `fdb replace ${p.mac} dev ${DEVICE} dst ${formatIPv4(p.publicIP)} self permanent`);
  const neigh = peers.map((p) => `neigh replace ${formatIPv4(p.gateway)} lladdr ${p.mac} dev ${DEVICE} nud permanent`);
  const routes = peers.map((p) => `route replace ${formatCidr(p.subnet)} via ${formatIPv4(p.gateway)} dev ${DEVICE} onlink`);
  return { bridge: `${fdb.join('\n')}\n`, ip: `${[...neigh, ...routes].join('\n')}\n` };
}

export interface LimitRun {
  readonly ms: number;
  readonly verification: Verification;
}

// An underlay and a flannel.1 like the daemon's (vxlan id 1, dstport 8472, nolearning, MTU 1450, a /32).
const SETUP: readonly (readonly string[])[] = [
  ['link', 'set', 'lo', 'up'],
  ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p'],
  ['addr', 'add', '10.65.154.250/24', 'dev', 'eth0'],
  ['link', 'set', 'eth0', 'up'],
  ['link', 'add', DEVICE, 'type', 'vxlan', 'id', '1', 'local', '10.65.154.250', 'dev', 'eth0', 'dstport', '8472', 'nolearning'],
  ['link', 'set', DEVICE, 'mtu', '1450', 'up'],
  ['addr', 'add', '100.127.255.0/32', 'dev', DEVICE],
];

/**
 * One timed run in the new namespace `netns` (it must not exist; the caller's
 * cluster prefix makes the cluster's teardown delete it should this throw).
 * The namespace is deleted before returning.
 */
export async function measureKernelLimit(netns: string, peers: readonly BenchPeer[], workDir: string): Promise<LimitRun> {
  const files = limitBatches(peers);
  const bridgeFile = join(workDir, `${netns}.bridge`);
  const ipFile = join(workDir, `${netns}.ip`);
  writeFileSync(bridgeFile, files.bridge);
  writeFileSync(ipFile, files.ip);
  await runChecked('ip', ['netns', 'add', netns]);
  try {
    for (const args of SETUP) await runChecked('ip', ['-n', netns, ...args]);
    const started = monotonicMs();
    await runChecked('bridge', ['-n', netns, '-batch', bridgeFile], { timeoutMs: 120_000 });
    await runChecked('ip', ['-n', netns, '-batch', ipFile], { timeoutMs: 120_000 });
    const ms = monotonicMs() - started;
    return { ms, verification: await verifyDevice(netns, peers) };
  } finally {
    await run('ip', ['netns', 'del', netns]);
  }
}
