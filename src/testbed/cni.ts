/**
 * Pods for the namespace testbed, wired exactly as the flannel CNI plugin would
 * wire them: read subnet.env, build the `bridge` delegate config, and run the real
 * reference plugin (/usr/lib/cni/bridge + host-local) inside the host namespace.
 *
 * parseSubnetEnv and flannelCniDelegate follow flannel-io/cni-plugin (flannel.go
 * loadFlannelSubnetEnv, flannel_linux.go doCmdAdd/getDelegateIPAM), so a file the
 * daemon writes is accepted here only if the real plugin would accept it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatCidr, parseCidr } from '../net/ipv4';
import { formatCidr6, parseCidr6 } from '../net/ipv6';
import { ExecResult, run, runChecked } from './exec';
import type { Cluster, ClusterMember } from './netns-cluster';

/** What the plugin takes from subnet.env (CIDRs with host bits masked, as Go's net.ParseCIDR returns them). */
export interface SubnetEnv {
  /** FLANNEL_NETWORK / FLANNEL_SUBNET; undefined for an IPv6-only node. */
  readonly network: string | undefined;
  readonly subnet: string | undefined;
  /** FLANNEL_IPV6_NETWORK / FLANNEL_IPV6_SUBNET, when the node has IPv6. */
  readonly ipv6Network?: string | undefined;
  readonly ipv6Subnet?: string | undefined;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

const KEYS = ['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ'] as const;

/**
 * Parses subnet.env as the plugin does: each line split at the first `=`, values
 * taken verbatim (no unquoting, so `"10.7.5.1/24"` is an invalid CIDR and
 * `FLANNEL_IPMASQ="true"` means false), unknown keys ignored, the last of a
 * repeated key wins. Throws naming the missing key or the bad key and value.
 */
export function parseSubnetEnv(text: string, source = 'subnet.env'): SubnetEnv {
  const raw = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq);
    if ((KEYS as readonly string[]).includes(key)) {
      if (eq < 0) throw new Error(`${source}: ${key} has no value`);
      raw.set(key, line.slice(eq + 1));
    }
  }
  // Either family's network and subnet will do (flannel-io/cni-plugin flannel.go missingKeys).
  const missing: string[] = [];
  if (!raw.has('FLANNEL_NETWORK') && !raw.has('FLANNEL_IPV6_NETWORK')) missing.push('FLANNEL_NETWORK');
  if (!raw.has('FLANNEL_SUBNET') && !raw.has('FLANNEL_IPV6_SUBNET')) missing.push('FLANNEL_SUBNET');
  for (const k of ['FLANNEL_MTU', 'FLANNEL_IPMASQ'] as const) if (!raw.has(k)) missing.push(k);
  if (missing.length > 0) throw new Error(`${source} is missing ${missing.join(', ')}`);
  const value = (k: (typeof KEYS)[number]): string => raw.get(k) as string;
  const cidr = (k: 'FLANNEL_NETWORK' | 'FLANNEL_SUBNET' | 'FLANNEL_IPV6_NETWORK' | 'FLANNEL_IPV6_SUBNET'): string | undefined => {
    if (!raw.has(k)) return undefined;
    try {
      return k.includes('IPV6') ? formatCidr6(parseCidr6(value(k))) : formatCidr(parseCidr(value(k)));
    } catch {
      throw new Error(`${source}: ${k}: invalid CIDR ${JSON.stringify(value(k))}`);
    }
  };
  const mtuText = value('FLANNEL_MTU');
  const mtu = Number(mtuText);
  // strconv.ParseUint(s, 10, 32): decimal digits only.
  if (!/^\d+$/.test(mtuText) || mtu > 0xffffffff) throw new Error(`${source}: FLANNEL_MTU: invalid number ${JSON.stringify(mtuText)}`);
  return {
    network: cidr('FLANNEL_NETWORK'),
    subnet: cidr('FLANNEL_SUBNET'),
    ipv6Network: cidr('FLANNEL_IPV6_NETWORK'),
    ipv6Subnet: cidr('FLANNEL_IPV6_SUBNET'),
    mtu,
    ipMasq: value('FLANNEL_IPMASQ') === 'true',
  };
}

/** The flannel CNI network config fields that shape the delegate. */
export interface DelegateOptions {
  /** The network name (default "cbr0", as in kube-flannel.yml). */
  readonly name?: string;
  /** Default "0.3.1", as in kube-flannel.yml; the installed plugins (v1.1.1) accept 0.1.0–1.0.0. */
  readonly cniVersion?: string;
  /** The flannel config's `delegate` map (default kube-flannel's, plus the bridge name spelled out). */
  readonly delegate?: Readonly<Record<string, unknown>>;
  /** The flannel config's `ipam` map, e.g. `{dataDir}` for host-local. */
  readonly ipam?: Readonly<Record<string, unknown>>;
}

/** kube-flannel.yml's delegate; `bridge: cni0` is the bridge plugin's default, written out so dumps match. */
export const DEFAULT_DELEGATE: Readonly<Record<string, unknown>> = { bridge: 'cni0', hairpinMode: true, isDefaultGateway: true };

/**
 * The config the flannel plugin hands to its delegate: the `delegate` map plus
 * name; type (default bridge); ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU and,
 * for bridge, isGateway = true, each only where the map does not set it; and
 * host-local IPAM over the node's subnet with a route to the whole network.
 */
export function flannelCniDelegate(env: SubnetEnv, opts: DelegateOptions = {}): Record<string, unknown> {
  const given = opts.delegate ?? DEFAULT_DELEGATE;
  if ('type' in given && typeof given.type !== 'string') throw new Error(`'delegate' dictionary, if present, must have (string) 'type' field`);
  if ('name' in given) throw new Error(`'delegate' dictionary must not have 'name' field, it'll be set by flannel`);
  if ('ipam' in given) throw new Error(`'delegate' dictionary must not have 'ipam' field, it'll be set by flannel`);
  const d: Record<string, unknown> = { ...given, name: opts.name ?? 'cbr0' };
  if (!('type' in d)) d.type = 'bridge';
  if (!('ipMasq' in d)) d.ipMasq = !env.ipMasq; // flannel not masquerading means the bridge should
  if (!('mtu' in d)) d.mtu = env.mtu;
  if (d.type === 'bridge' && !('isGateway' in d)) d.isGateway = true;
  d.cniVersion = opts.cniVersion ?? '0.3.1';
  const ipam: Record<string, unknown> = { ...opts.ipam };
  if (!('type' in ipam)) ipam.type = 'host-local';
  // One range and one route per family (flannel_linux.go getDelegateIPAM).
  ipam.ranges = [...(env.subnet ? [[{ subnet: env.subnet }]] : []), ...(env.ipv6Subnet ? [[{ subnet: env.ipv6Subnet }]] : [])];
  ipam.routes = [...((opts.ipam?.routes as unknown[] | undefined) ?? []), ...(env.network ? [{ dst: env.network }] : []), ...(env.ipv6Network ? [{ dst: env.ipv6Network }] : [])];
  d.ipam = ipam;
  return d;
}

/** Options for `addPod`. */
export interface PodOptions {
  /** Short name ([a-z0-9]); the namespace is `<prefix>-<host>-<name>`. */
  readonly name: string;
  readonly subnetEnvPath?: string;
  readonly subnetEnvText?: string;
  /** host-local keeps its leases in `<cniDataDir>/<host>` (per host, as on real nodes). */
  readonly cniDataDir: string;
  readonly delegate?: Readonly<Record<string, unknown>>;
}

/** Result of `Pod.ping`: ok when every echo was answered; loss in percent. */
export interface PingResult {
  readonly ok: boolean;
  readonly loss: number;
  readonly output: string;
}

/** A pod namespace with eth0 on the host's cni0 bridge. */
export interface Pod {
  readonly name: string;
  readonly host: ClusterMember;
  readonly netns: string;
  readonly containerId: string;
  /** The pod's IPv4 address; "" on an IPv6-only node. */
  readonly ip: string;
  readonly gateway: string | undefined;
  /** The pod's IPv6 address, when the node has IPv6. */
  readonly ip6: string | undefined;
  /** The delegate config used for ADD (DEL needs the same). */
  readonly config: Readonly<Record<string, unknown>>;
  ping(target: string, opts?: { count?: number; timeoutSec?: number }): Promise<PingResult>;
}

/** Where Debian's containernetworking-plugins installs the reference plugins. */
export const CNI_PATH = '/usr/lib/cni';

function cniCall(cluster: Cluster, command: 'ADD' | 'DEL', host: ClusterMember, podNetns: string, containerId: string, config: Readonly<Record<string, unknown>>): Promise<ExecResult> {
  return cluster.exec(host.netns, `${CNI_PATH}/${String(config.type)}`, [], {
    input: JSON.stringify(config),
    env: { CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_NETNS: `/var/run/netns/${podNetns}`, CNI_IFNAME: 'eth0', CNI_PATH },
  });
}

interface CniResult {
  ips?: { version?: string; address?: string; gateway?: string }[];
}

/** Creates a pod namespace on `host` and runs CNI ADD for it inside the host namespace. */
export async function addPod(cluster: Cluster, host: string | ClusterMember, opts: PodOptions): Promise<Pod> {
  const h = typeof host === 'string' ? cluster.member(host) : host;
  if (!/^[a-z0-9]{1,16}$/.test(opts.name)) throw new Error(`invalid pod name ${JSON.stringify(opts.name)}`);
  const source = opts.subnetEnvPath ?? `subnet.env of ${h.name}`;
  const text = opts.subnetEnvText ?? (opts.subnetEnvPath ? await readFile(opts.subnetEnvPath, 'utf8') : undefined);
  if (text === undefined) throw new Error(`failed to add pod ${opts.name}: give subnetEnvPath or subnetEnvText`);
  const config = flannelCniDelegate(parseSubnetEnv(text, source), {
    delegate: opts.delegate,
    ipam: { dataDir: join(opts.cniDataDir, h.name) },
  });
  const netns = `${cluster.prefix}-${h.name}-${opts.name}`;
  const containerId = netns;
  // Created from this process, not through `ip netns exec`: that runs in a throwaway mount
  // namespace, so the bind mount under /var/run/netns would vanish with it (the plugin then
  // fails with "unknown FS magic"). The plugin's own `ip netns exec` inherits this mount.
  await runChecked('ip', ['netns', 'add', netns]);
  await runChecked('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  const res = await cniCall(cluster, 'ADD', h, netns, containerId, config);
  const ip = res.code === 0 ? parseAddress(res.stdout, '.') : undefined;
  const ip6 = res.code === 0 ? parseAddress(res.stdout, ':') : undefined;
  if (!ip && !ip6) {
    await cniCall(cluster, 'DEL', h, netns, containerId, config);
    await run('ip', ['netns', 'del', netns]);
    throw new Error(`failed to add pod ${netns}: CNI ADD exit ${res.code}: ${(res.stdout + res.stderr).trim()}`);
  }
  return {
    name: opts.name,
    host: h,
    netns,
    containerId,
    ip: ip?.address ?? '',
    gateway: ip?.gateway,
    ip6: ip6?.address,
    config,
    async ping(target, p = {}) {
      const count = p.count ?? 3;
      // -w is a deadline for the whole run: with -c, ping exits 0 only when all `count` replies came back.
      const r = await cluster.exec(netns, 'ping', ['-n', '-i', '0.2', '-c', String(count), '-w', String(p.timeoutSec ?? 5), target]);
      const m = /([\d.]+)% packet loss/.exec(r.stdout);
      return { ok: r.code === 0, loss: m ? Number(m[1]) : 100, output: (r.stdout + r.stderr).trim() };
    },
  };
}

function parseAddress(stdout: string, marker: '.' | ':'): { address: string; gateway: string | undefined } | undefined {
  try {
    const result = JSON.parse(stdout) as CniResult;
    const found = (result.ips ?? []).find((i) => i.address?.includes(marker));
    return found?.address ? { address: found.address.split('/')[0] as string, gateway: found.gateway } : undefined;
  } catch {
    return undefined;
  }
}

/** CNI DEL for the pod, then deletes its namespace. A pod already gone is not an error. */
export async function removePod(cluster: Cluster, pod: Pod): Promise<void> {
  const res = await cniCall(cluster, 'DEL', pod.host, pod.netns, pod.containerId, pod.config);
  await run('ip', ['netns', 'del', pod.netns]);
  if (res.code !== 0) throw new Error(`failed to remove pod ${pod.netns}: CNI DEL exit ${res.code}: ${(res.stdout + res.stderr).trim()}`);
}
