/**
 * A cluster of "hosts" made of network namespaces, for the integration and e2e
 * tests and the demo. Layout for prefix `flts-ab12` and the default underlay:
 *
 *   flts-ab12-ul     bridge br0 (no address): the underlay switch
 *   flts-ab12-infra  eth0 10.65.154.2/24 (etcd runs here)
 *   flts-ab12-<x>    extra namespaces, eth0 10.65.154.3/24, .4, …
 *   flts-ab12-h1     eth0 10.65.154.11/24, `default dev eth0`, ip_forward=1
 *   flts-ab12-h2     eth0 10.65.154.12/24, …
 *
 * With `underlayCidr6` (e.g. 2001:db8:154::/64) every eth0 also gets the same
 * host offset in IPv6 (h1 = 2001:db8:154::11), `default dev eth0` for IPv6 and,
 * on hosts, IPv6 forwarding.
 *
 * Every eth0 is a veth whose other end (`v-<name>`) sits on br0. There is no
 * router: the default route is on-link (`ip route add default dev eth0`) only so
 * that the daemon's default-route interface detection finds eth0. Veths are
 * created directly inside their namespaces, so the caller's namespace never sees
 * an interface. Nothing here touches the namespace the caller runs in.
 *
 * Namespaces are mounted under /var/run/netns only in the creating process's
 * mount namespace (and copied into its children's), so create clusters and pods
 * from the test process itself, never through `ip netns exec`.
 */
import { ChildProcess, spawn, SpawnOptions } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { blockSize, formatIPv4, parseCidr } from '../net/ipv4';
import { formatIPv6, parseCidr6 } from '../net/ipv6';
import { ExecOptions, ExecResult, netnsArgv, run, runChecked } from './exec';
import { deleteNetnsGroup, listNetns, netnsWithPrefix } from './netns';

export { cleanupStale } from './netns';
export { addPod, removePod, parseSubnetEnv, flannelCniDelegate } from './cni';
export type { Pod, PodOptions, PingResult, SubnetEnv, DelegateOptions } from './cni';

/** Options for `createCluster`. */
export interface ClusterOptions {
  /** Unique per cluster, e.g. from `uniquePrefix()`; every namespace name starts with `<prefix>-`. */
  readonly prefix: string;
  /** A count (names h1, h2, …) or the host names themselves. */
  readonly hosts: number | readonly string[];
  /** Default 10.65.154.0/24. */
  readonly underlayCidr?: string;
  /** Host offset of the first host's address (default 11: h1 = 10.65.154.11). */
  readonly firstHostIP?: number;
  /** More namespaces on the underlay (not hosts): addresses .3, .4, … */
  readonly extraNamespaces?: readonly string[];
  /** An IPv6 underlay beside the IPv4 one, e.g. "2001:db8:154::/64"; members get the same offsets. */
  readonly underlayCidr6?: string;
}

/** One namespace on the underlay. */
export interface ClusterMember {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  /** The IPv6 underlay address, with `underlayCidr6`. */
  readonly ip6?: string | undefined;
}

/** A created cluster; `destroy()` removes everything it made. */
export interface Cluster {
  readonly prefix: string;
  readonly underlayNetns: string;
  /** e.g. "10.65.154.0/24" */
  readonly underlayCidr: string;
  readonly infraNetns: string;
  readonly infraIP: string;
  readonly hosts: readonly ClusterMember[];
  readonly extras: readonly ClusterMember[];
  /** The host or extra member with that name; throws when there is none. */
  member(name: string): ClusterMember;
  /** `ip netns exec <netns> cmd args…` to completion; resolves with the exit code, never rejects on failure. */
  exec(netns: string, cmd: string, args: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running process in `netns` (stdio defaults to 'ignore'); `destroy()` stops it. */
  spawn(netns: string, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Stops spawned processes and deletes every `<prefix>-…` namespace. Idempotent; never throws. */
  destroy(): Promise<void>;
}

/** A fresh prefix `flts-` + 4 hex digits that no existing namespace uses. */
export function uniquePrefix(): string {
  const taken = listNetns();
  for (;;) {
    const p = `flts-${randomBytes(2).toString('hex')}`;
    if (netnsWithPrefix(p, taken).length === 0) return p;
  }
}

const NAME_RE = /^[a-z0-9]{1,12}$/; // the bridge-side veth `v-<name>` must fit IFNAMSIZ (15)
const PREFIX_RE = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;

class NetnsCluster implements Cluster {
  readonly underlayNetns: string;
  readonly infraNetns: string;
  hosts: ClusterMember[] = [];
  extras: ClusterMember[] = [];
  infraIP = '';
  private readonly children = new Set<ChildProcess>();

  constructor(
    readonly prefix: string,
    readonly underlayCidr: string,
  ) {
    this.underlayNetns = `${prefix}-ul`;
    this.infraNetns = `${prefix}-infra`;
  }

  member(name: string): ClusterMember {
    const m = [...this.hosts, ...this.extras].find((h) => h.name === name);
    if (!m) throw new Error(`cluster ${this.prefix} has no host named ${JSON.stringify(name)}`);
    return m;
  }

  exec(netns: string, cmd: string, args: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return run('ip', netnsArgv(netns, cmd, args), opts);
  }

  spawn(netns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    // `ip netns exec` execs the command in place, so the child's pid is the command's pid.
    const child = spawn('ip', netnsArgv(netns, cmd, args), { stdio: 'ignore', ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
    return child;
  }

  async destroy(): Promise<void> {
    try {
      await Promise.all([...this.children].map(stopChild));
      await deleteNetnsGroup(this.prefix);
    } catch (err) {
      process.stderr.write(`netns-cluster: failed to destroy cluster ${this.prefix}: ${String(err)}\n`);
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const within = (ms: number): Promise<boolean> =>
    Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
  child.kill('SIGTERM');
  if (await within(3000)) return;
  child.kill('SIGKILL');
  await within(2000);
}

/**
 * Builds the cluster (layout in the module comment). On any failure it deletes
 * what it made and rethrows. When FLTS_CLUSTER_LOG names a file, the prefix is
 * appended to it first, so scripts/test.sh can delete clusters of a killed run.
 */
export async function createCluster(opts: ClusterOptions): Promise<Cluster> {
  const { prefix } = opts;
  if (!PREFIX_RE.test(prefix)) throw new Error(`invalid cluster prefix ${JSON.stringify(prefix)}`);
  const hostNames = typeof opts.hosts === 'number' ? Array.from({ length: opts.hosts }, (_, i) => `h${i + 1}`) : [...opts.hosts];
  const extraNames = [...(opts.extraNamespaces ?? [])];
  const all = [...hostNames, ...extraNames];
  for (const n of all) {
    if (!NAME_RE.test(n) || n === 'ul' || n === 'infra') throw new Error(`invalid cluster member name ${JSON.stringify(n)}`);
  }
  if (new Set(all).size !== all.length) throw new Error(`duplicate cluster member names in ${all.join(', ')}`);

  const underlay = parseCidr(opts.underlayCidr ?? '10.65.154.0/24');
  const firstHost = opts.firstHostIP ?? 11;
  const size = blockSize(underlay.prefixLen);
  if (3 + extraNames.length > firstHost) throw new Error(`too many extra namespaces for first host offset ${firstHost}`);
  if (firstHost + hostNames.length >= size - 1) throw new Error(`underlay ${opts.underlayCidr} too small for ${hostNames.length} hosts`);
  const addr = (offset: number): string => formatIPv4(underlay.ip + offset);
  const underlay6 = opts.underlayCidr6 === undefined ? undefined : parseCidr6(opts.underlayCidr6);
  // The same offset as the IPv4 one, written in hex digits that read alike (h1: .11 and ::11).
  const addr6 = (offset: number): string | undefined => (underlay6 ? formatIPv6(underlay6.ip + BigInt(`0x${offset}`)) : undefined);

  if (process.env.FLTS_CLUSTER_LOG) appendFileSync(process.env.FLTS_CLUSTER_LOG, `${prefix}\n`);
  const c = new NetnsCluster(prefix, `${formatIPv4(underlay.ip)}/${underlay.prefixLen}`);
  c.infraIP = addr(2);
  c.extras = extraNames.map((name, i) => ({ name, netns: `${prefix}-${name}`, ip: addr(3 + i), ip6: addr6(3 + i) }));
  c.hosts = hostNames.map((name, i) => ({ name, netns: `${prefix}-${name}`, ip: addr(firstHost + i), ip6: addr6(firstHost + i) }));
  try {
    const ul = c.underlayNetns;
    await runChecked('ip', ['netns', 'add', ul]);
    await runChecked('ip', ['-n', ul, 'link', 'set', 'lo', 'up']);
    await runChecked('ip', ['-n', ul, 'link', 'add', 'br0', 'type', 'bridge']);
    await runChecked('ip', ['-n', ul, 'link', 'set', 'br0', 'up']);
    const infra = { name: 'infra', netns: c.infraNetns, ip: c.infraIP, ip6: addr6(2) };
    for (const m of [infra, ...c.extras, ...c.hosts]) await attachMember(ul, m, underlay.prefixLen, underlay6?.prefixLen);
    for (const h of c.hosts) {
      // A forwarding host, as a Kubernetes node is; only inside the host's own namespace.
      await runChecked('ip', netnsArgv(h.netns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']));
      if (underlay6) await runChecked('ip', netnsArgv(h.netns, 'sh', ['-c', 'echo 1 > /proc/sys/net/ipv6/conf/all/forwarding']));
    }
  } catch (err) {
    await c.destroy();
    throw err;
  }
  return c;
}

async function attachMember(ul: string, m: ClusterMember, prefixLen: number, prefixLen6: number | undefined): Promise<void> {
  const bridgePort = `v-${m.name}`;
  await runChecked('ip', ['netns', 'add', m.netns]);
  await runChecked('ip', ['-n', m.netns, 'link', 'set', 'lo', 'up']);
  await runChecked('ip', ['link', 'add', bridgePort, 'netns', ul, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', m.netns]);
  await runChecked('ip', ['-n', ul, 'link', 'set', bridgePort, 'master', 'br0', 'up']);
  await runChecked('ip', ['-n', m.netns, 'addr', 'add', `${m.ip}/${prefixLen}`, 'dev', 'eth0']);
  await runChecked('ip', ['-n', m.netns, 'link', 'set', 'eth0', 'up']);
  await runChecked('ip', ['-n', m.netns, 'route', 'add', 'default', 'dev', 'eth0']);
  if (m.ip6 !== undefined && prefixLen6 !== undefined) {
    // nodad: usable at once (no duplicate address detection on a test switch).
    await runChecked('ip', ['-n', m.netns, '-6', 'addr', 'add', `${m.ip6}/${prefixLen6}`, 'dev', 'eth0', 'nodad']);
    await runChecked('ip', ['-n', m.netns, '-6', 'route', 'add', 'default', 'dev', 'eth0']);
  }
}

const DUMP_COMMANDS: readonly (readonly string[])[] = [
  ['ip', '-br', 'addr'],
  ['ip', '-d', 'link', 'show', 'flannel.1'],
  ['ip', 'route'],
  ['ip', 'neigh', 'show', 'dev', 'flannel.1'],
  ['bridge', 'fdb', 'show', 'dev', 'flannel.1'],
];

// Printed only for hosts that have flannel-v6.1.
const DUMP_COMMANDS6: readonly (readonly string[])[] = [
  ['ip', '-d', 'link', 'show', 'flannel-v6.1'],
  ['ip', '-6', 'route'],
  ['ip', '-6', 'neigh', 'show', 'dev', 'flannel-v6.1'],
  ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'],
];

/** Addresses, flannel.1, routes, neighbours and FDB of every host, as text to print when an e2e test fails. */
export async function dumpState(cluster: Cluster): Promise<string> {
  const sections = await Promise.all(
    cluster.hosts.map(async (h) => {
      const parts = [`=== ${h.name} (netns ${h.netns}, ${h.ip})`];
      const v6 = (await cluster.exec(h.netns, 'ip', ['link', 'show', 'flannel-v6.1'])).code === 0;
      for (const [cmd, ...args] of [...DUMP_COMMANDS, ...(v6 ? DUMP_COMMANDS6 : [])]) {
        const res = await cluster.exec(h.netns, cmd as string, args);
        parts.push(`$ ${[cmd, ...args].join(' ')}`, (res.stdout + res.stderr).trimEnd());
      }
      return parts.join('\n');
    }),
  );
  return `${sections.join('\n\n')}\n`;
}
