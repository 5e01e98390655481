/**
 * Finding a pod's network namespace from its IP the way an operator would, and
 * reading it. Candidates are the namespace files container runtimes and
 * `ip netns` keep (/var/run/netns, /run/netns, Docker's /var/run/docker/netns)
 * and every process's /proc/<pid>/ns/net, one per namespace. Only those a host
 * veth points into (its link-netnsid equals the id this host gives the file) are
 * opened, so a namespace of another node in the same machine never matches.
 *
 * Reading inside a pod namespace means entering it, and Node.js cannot call
 * setns(2) (no API, and the process is multi-threaded), so iproute2 runs there
 * through `nsenter --net=<file>` with `-j` (JSON) output. The parsers are pure.
 */
import { readdir, stat } from 'node:fs/promises';
import { AnyCidr, IpAddr, formatIp } from '../net/family';
import { tryParseIPv4 } from '../net/ipv4';
import { tryParseIPv6 } from '../net/ipv6';

/** Runs a program to completion (src/testbed/exec.ts `run` in production). */
export type Exec = (cmd: string, args: readonly string[]) => Promise<{ readonly code: number; readonly stdout: string; readonly stderr: string }>;

/** A namespace file and how an operator enters it. */
export interface NetnsFile {
  readonly path: string;
  /** For people: the `ip netns` name, else the path. */
  readonly display: string;
  /** Command prefix that runs a program inside ("ip netns exec pod1", "nsenter --net=/proc/42/ns/net"). */
  readonly enter: string;
}

/** An interface inside a namespace, from `ip -j addr show`. */
export interface NsInterface {
  readonly index: number;
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly up: boolean;
  /** Addresses of both families with their prefix length (host bits kept: 10.7.24.2/24, fc00:0:0:18::2/64). */
  readonly addresses: readonly AnyCidr[];
  /** `eth0@if5`: the veth peer's ifindex, in the namespace link-netnsid names. */
  readonly peerIndex: number | undefined;
}

/** `ip -j route get` inside the pod. */
export type NsRoute = { readonly dev: string; readonly gateway: IpAddr | undefined } | { readonly error: string };

export interface PodFacts extends NetnsFile {
  /** The id the host gives this namespace (a host veth's link-netnsid). */
  readonly nsid: number;
  readonly iface: NsInterface;
  readonly route: NsRoute;
}

const NETNS_DIRS = ['/var/run/netns', '/run/netns', '/var/run/docker/netns', '/run/docker/netns'];

interface AddrJson {
  ifindex?: number;
  ifname?: string;
  link_index?: number;
  address?: string;
  mtu?: number;
  flags?: string[];
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }>;
}

/** `ip -j addr show` → interfaces with their IPv4 and IPv6 addresses. */
export function parseIpAddrJson(text: string): NsInterface[] {
  const links = JSON.parse(text) as AddrJson[];
  return links.map((l) => ({
    index: l.ifindex ?? 0,
    name: l.ifname ?? '',
    mac: l.address ?? '',
    mtu: l.mtu ?? 0,
    up: (l.flags ?? []).includes('UP'),
    peerIndex: l.link_index,
    addresses: (l.addr_info ?? []).flatMap((a) => {
      const ip = !a.local ? undefined : a.family === 'inet' ? tryParseIPv4(a.local) : a.family === 'inet6' ? tryParseIPv6(a.local) : undefined;
      return ip === undefined ? [] : [{ ip, prefixLen: a.prefixlen ?? (typeof ip === 'bigint' ? 128 : 32) } as AnyCidr];
    }),
  }));
}

/** `ip -j route get` → the device and gateway of the answer. */
export function parseIpRouteGetJson(text: string): NsRoute {
  const [r] = JSON.parse(text) as Array<{ dev?: string; gateway?: string }>;
  if (!r?.dev) return { error: 'no route in the answer' };
  return { dev: r.dev, gateway: r.gateway === undefined ? undefined : (tryParseIPv4(r.gateway) ?? tryParseIPv6(r.gateway)) };
}

/** The namespace files on this machine, one per namespace, not counting this process's own. */
export async function netnsFiles(): Promise<NetnsFile[]> {
  const seen = new Set<string>();
  const key = async (path: string): Promise<string | undefined> => {
    try {
      const s = await stat(path);
      return `${s.dev}:${s.ino}`;
    } catch {
      return undefined;
    }
  };
  const own = await key('/proc/self/ns/net');
  if (own) seen.add(own);
  const out: NetnsFile[] = [];
  const add = async (path: string, display: string, enter: string): Promise<void> => {
    const k = await key(path);
    if (k === undefined || seen.has(k)) return;
    seen.add(k);
    out.push({ path, display, enter });
  };
  for (const dir of NETNS_DIRS) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const named = dir.endsWith('/run/netns');
    for (const name of names.sort()) await add(`${dir}/${name}`, named ? name : `${dir}/${name}`, named ? `ip netns exec ${name}` : `nsenter --net=${dir}/${name}`);
  }
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((p) => /^\d+$/.test(p)).sort((a, b) => Number(a) - Number(b));
  for (const pid of pids) await add(`/proc/${pid}/ns/net`, `/proc/${pid}/ns/net`, `nsenter -t ${pid} -n`);
  return out;
}

/** Runs `ip -j <args>` inside the namespace file. */
export async function ipJsonIn(exec: Exec, file: NetnsFile, args: readonly string[]): Promise<string> {
  const r = await exec('nsenter', [`--net=${file.path}`, 'ip', '-j', ...args]);
  if (r.code !== 0) throw new Error(`${file.enter} ip ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/**
 * The pod namespace holding `ip` among the namespaces host veths point into
 * (`wanted`: nsid → the veths), with its interface and its route lookup for `dst`.
 * Returns a reason instead when none holds it.
 */
export async function findPod(exec: Exec, nsidOf: (path: string) => Promise<number | undefined>, wanted: ReadonlySet<number>, ip: IpAddr, dst: IpAddr): Promise<PodFacts | { notFound: string }> {
  const files = await netnsFiles();
  let looked = 0;
  for (const file of files) {
    const nsid = await nsidOf(file.path).catch(() => undefined);
    if (nsid === undefined || !wanted.has(nsid)) continue;
    looked++;
    let ifaces: NsInterface[];
    try {
      ifaces = parseIpAddrJson(await ipJsonIn(exec, file, ['addr', 'show']));
    } catch {
      continue;
    }
    const iface = ifaces.find((i) => i.addresses.some((a) => a.ip === ip));
    if (!iface) continue;
    let route: NsRoute;
    try {
      route = parseIpRouteGetJson(await ipJsonIn(exec, file, ['route', 'get', formatIp(dst), 'from', formatIp(ip)]));
    } catch (err) {
      route = { error: (err as Error).message.replace(/^.*?: /, '') };
    }
    return { ...file, nsid, iface, route };
  }
  return {
    notFound: `no namespace behind this host's veths has ${formatIp(ip)} (${looked} of ${files.length} namespaces in ${NETNS_DIRS.join(', ')} and /proc/*/ns/net are attached here)`,
  };
}
