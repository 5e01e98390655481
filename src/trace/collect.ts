/**
 * The imperative half of `trace`: status's own collectors (etcd, subnet file,
 * flannel.<VNI> and its entries), then what a path walk adds: every link, the
 * source pod's namespace, the kernel's route lookups along the path, the sysctls
 * and firewall rules that can stop the packet, the UDP sockets, and an optional
 * ping. Reads only; judgement is in analyze.ts.
 */
import { parseNetworkConfig } from '../config';
import { Entry, FdbEntry, NeighborEntry } from '../kernel/kernel';
import { LinkDetail, RouteLookup, RouteQuery, RouteReader } from '../kernel/route-query';
import { IpAddr, formatIp } from '../net/family';
import { LeaseHalf, leaseHalf } from '../overlay/desired';
import { CollectDeps, CollectOptions, KernelReader, StatusFacts, collectFacts } from '../status/collect';
import { errorMessage } from '../util/errors';
import { Capture, CaptureSession, CaptureUnavailableError, CapturePoint } from '../capture/capture';
import { Exec, PodFacts, findPod } from './pod-netns';
import { TraceFamily, traceFamily } from './trace-family';

export type TraceKernel = KernelReader & RouteReader;

/** A route lookup and the kernel's answer or errno. */
export type LookupResult = { readonly query: RouteQuery<IpAddr> } & ({ readonly answer: RouteLookup<IpAddr> } | { readonly error: string });

/** The destination's lease as trace judges it: its half of the destination's family, and the backend type. */
export type TraceLease = LeaseHalf & { readonly backendType: string };

export interface TraceFacts {
  readonly status: StatusFacts;
  /** The destination pod IP; its family is the family of the whole trace (the --from address has the same). */
  readonly dst: IpAddr;
  /** The --from address; undefined for this host. */
  readonly src: IpAddr | undefined;
  /** Why the host side could not be read (not Linux, no netlink), or undefined. */
  readonly kernelError: string | undefined;
  readonly links: readonly LinkDetail[];
  readonly pod: PodFacts | { readonly notFound: string } | undefined;
  /** The packet's lookup on this host (`ip [-6] route get DST from SRC iif cni0`, or `ip [-6] route get DST`). */
  readonly forward: LookupResult | undefined;
  /** The reply's lookup as it comes back out of the overlay (`ip route get SRC from DST iif flannel.1`). */
  readonly reply: LookupResult | undefined;
  /** The lookup for the remote VTEP (`ip route get <FDB dst>`). */
  readonly underlay: LookupResult | undefined;
  /** "net.ipv4.ip_forward", "net.ipv4.conf.cni0.rp_filter", "net.bridge.bridge-nf-call-iptables" → value (IPv6: "net.ipv6.conf.all.forwarding", "net.bridge.bridge-nf-call-ip6tables"). */
  readonly sysctls: ReadonlyMap<string, string>;
  /** `iptables-save` (IPv6: `ip6tables-save`). */
  readonly iptables: { readonly text: string } | { readonly error: string };
  /** /proc/net/udp of this namespace (IPv6: /proc/net/udp6). */
  readonly udp: { readonly text: string } | { readonly error: string };
  readonly probe: { readonly command: string; readonly sent: number; readonly received: number } | undefined;
  /** With --capture: the points and the pcap bytes each gave while the probe ran, or why capture could not run. */
  readonly capture: { readonly points: readonly CapturePoint[]; readonly files: ReadonlyMap<string, Buffer> } | { readonly unavailable: string } | undefined;
}

export interface TraceCollectDeps extends Omit<CollectDeps, 'kernel'> {
  readonly kernel: () => Promise<TraceKernel>;
  readonly exec: Exec;
  readonly capture: Capture;
}

export interface TraceCollectOptions extends CollectOptions {
  readonly dst: IpAddr;
  readonly src: IpAddr | undefined;
  /** ICMP echoes to send from the source; 0 for none. */
  readonly probeCount: number;
  /** Capture the probes at each local hop. */
  readonly capture: boolean;
}

/**
 * Where `--capture` listens, in path order, each named by its hop: the pod's
 * host veth and the bridge (the ICMP probes to or from DST), flannel.<VNI>, and
 * the underlay interface (the VXLAN datagrams to and from the remote VTEP).
 */
export function capturePoints(p: { veth?: string | undefined; bridge?: string | undefined; device: string | undefined; underlay?: string | undefined; remote?: IpAddr | undefined; dst: IpAddr; port: number }): CapturePoint[] {
  const icmp = `${traceFamily(p.dst).icmp.filter} and host ${formatIp(p.dst)}`;
  const out: CapturePoint[] = [];
  if (p.veth) out.push({ name: 'veth', iface: p.veth, filter: icmp });
  if (p.bridge) out.push({ name: 'bridge', iface: p.bridge, filter: icmp });
  if (p.device) out.push({ name: 'vxlan', iface: p.device, filter: icmp });
  if (p.underlay) out.push({ name: 'underlay', iface: p.underlay, filter: `udp and port ${p.port}${p.remote === undefined ? '' : ` and host ${formatIp(p.remote)}`}` });
  return out;
}

/** The host side of a pod found by findPod: its veth here and the bridge that veth is a port of. */
export function podHostSide(links: readonly LinkDetail[], pod: PodFacts): { veth: LinkDetail | undefined; bridge: LinkDetail | undefined } {
  const veth = links.find((l) => l.linkNetnsid === pod.nsid && l.peerIndex === pod.iface.index);
  return { veth, bridge: links.find((l) => l.index === veth?.master) };
}

/** The nsids of the namespaces this host's veths point into: where findPod looks. */
export function vethPeerNetns(links: readonly LinkDetail[]): Set<number> {
  return new Set(links.flatMap((l) => (l.kind === 'veth' && l.linkNetnsid !== undefined ? [l.linkNetnsid] : [])));
}

/** flannel's backend (VNI and UDP port) from the network config etcd holds, or undefined when there is none usable. */
export function backendOf(status: StatusFacts): { vni: number; port: number } | undefined {
  try {
    return status.store.configText === undefined ? undefined : parseNetworkConfig(status.store.configText).backend;
  } catch {
    return undefined;
  }
}

async function lookup(kernel: TraceKernel, query: RouteQuery<IpAddr>): Promise<LookupResult> {
  try {
    return { query, answer: await kernel.routeQuery(query) };
  } catch (err) {
    const errno = /\b(E[A-Z]+)\b/.exec(errorMessage(err))?.[1];
    return { query, error: errno ?? errorMessage(err) };
  }
}

function sysctlPath(name: string, iface?: string): string {
  return iface === undefined ? `/proc/sys/${name.replace(/\./g, '/')}` : `/proc/sys/net/ipv4/conf/${iface}/${name}`;
}

async function readSysctls(readFile: (p: string) => Promise<string>, ifaces: readonly string[], tf: TraceFamily): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const read = async (key: string, path: string): Promise<void> => {
    const v = await readFile(path).catch(() => undefined);
    if (v !== undefined) out.set(key, v.trim());
  };
  await read(tf.forwardSysctl, sysctlPath(tf.forwardSysctl));
  await read(tf.bridgeNfSysctl, sysctlPath(tf.bridgeNfSysctl));
  if (tf.rpFilter) for (const i of ['all', ...ifaces]) await read(`net.ipv4.conf.${i}.rp_filter`, sysctlPath('rp_filter', i));
  return out;
}

/** The lease whose half of `ip`'s family holds `ip` (an IPv6 pod IP is in a lease's IPv6 subnet). */
export function leaseFor(status: StatusFacts, ip: IpAddr): TraceLease | undefined {
  const { fam } = traceFamily(ip);
  for (const r of status.store.records) {
    const half = r.kind === 'lease' ? leaseHalf(r.lease, fam) : undefined;
    if (r.kind === 'lease' && half && fam.contains(half.subnet, ip)) return { ...half, backendType: r.lease.backendType };
  }
  return undefined;
}

/** The VTEP the kernel would send to for `gateway`: flannel.<VNI>'s neighbour, then the FDB entry for its MAC. */
export function vtepFor(entries: readonly Entry[], gateway: IpAddr): { mac: string | undefined; dst: IpAddr | undefined } {
  const neighbor = entries.find((e): e is NeighborEntry => e.kind === 'neighbor' && e.ip === gateway);
  const fdb = neighbor && entries.find((e): e is FdbEntry => e.kind === 'fdb' && e.mac === neighbor.mac);
  // Each device's VTEPs are of its own family: flannel.<VNI> sends over IPv4, flannel-v6.<VNI> over IPv6.
  return { mac: neighbor?.mac, dst: fdb !== undefined && typeof fdb.dst === typeof gateway ? fdb.dst : undefined };
}

async function ping(exec: Exec, pod: PodFacts | undefined, dst: IpAddr, count: number): Promise<TraceFacts['probe']> {
  const args = [...traceFamily(dst).pingFlags, '-n', '-c', String(count), '-i', '0.2', '-W', '2', formatIp(dst)];
  const [cmd, argv] = pod ? ['nsenter', [`--net=${pod.path}`, 'ping', ...args]] : ['ping', args];
  const r = await exec(cmd as string, argv as string[]);
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  const command = `${pod ? `${pod.enter} ` : ''}ping ${args.join(' ')}`;
  return { command, sent: m ? Number(m[1]) : count, received: m ? Number(m[2]) : 0 };
}

/**
 * Everything trace looks at. Rejects only like status (StoreUnavailableError
 * when etcd does not answer in time); a kernel that cannot be read is a fact.
 */
export async function collectTraceFacts(deps: TraceCollectDeps, opts: TraceCollectOptions): Promise<TraceFacts> {
  const status = await collectFacts({ ...deps, kernel: deps.kernel }, opts);
  const base = { status, dst: opts.dst, src: opts.src };
  const tf = traceFamily(opts.dst);
  let kernel: TraceKernel;
  let links: LinkDetail[];
  try {
    kernel = await deps.kernel();
    links = await kernel.listLinks();
  } catch (err) {
    const none = { pod: undefined, forward: undefined, reply: undefined, underlay: undefined, probe: undefined, capture: undefined, sysctls: new Map(), links: [] };
    return { ...base, ...none, kernelError: `failed to read kernel state: ${errorMessage(err)}`, iptables: { error: 'not read' }, udp: { error: 'not read' } };
  }
  let pod: TraceFacts['pod'];
  let iif: number | undefined;
  let vethName: string | undefined;
  if (opts.src !== undefined) {
    pod = await findPod(deps.exec, (p) => kernel.netnsId(p), vethPeerNetns(links), opts.src, opts.dst);
    if ('iface' in pod) {
      const { veth } = podHostSide(links, pod);
      iif = veth?.master ?? veth?.index;
      vethName = veth?.name;
    }
  }
  const forward = opts.src !== undefined && iif === undefined ? undefined : await lookup(kernel, { dst: opts.dst, src: opts.src, iif });
  const out = forward && 'answer' in forward ? forward.answer.oif : undefined;
  const reply = opts.src !== undefined && out !== undefined && iif !== undefined ? await lookup(kernel, { dst: opts.src, src: opts.dst, iif: out }) : undefined;
  const k = status.kernel;
  const entries = k?.kind !== 'read' ? [] : tf.fam.family === 6 ? (k.entries6 ?? []) : k.entries;
  const gateway = forward && 'answer' in forward ? (forward.answer.gateway ?? opts.dst) : opts.dst;
  const remote = vtepFor(entries, gateway).dst ?? leaseFor(status, opts.dst)?.publicIP;
  const backend = backendOf(status);
  const vni = backend?.vni;
  const underlay = remote === undefined ? undefined : await lookup(kernel, { dst: remote });
  const names = new Set<string>();
  for (const index of [iif, out, underlay && 'answer' in underlay ? underlay.answer.oif : undefined]) {
    const name = links.find((l) => l.index === index)?.name;
    if (name) names.add(name);
  }
  if (vni !== undefined) names.add(tf.device(vni));
  const [sysctls, iptables, udp] = await Promise.all([
    readSysctls(deps.readFile, [...names], tf),
    deps.exec(`${tf.iptables}-save`, []).then(
      (r) => (r.code === 0 ? { text: r.stdout } : { error: (r.stderr.trim() || `exit ${r.code}`).split('\n')[0] as string }),
      (err: unknown) => ({ error: errorMessage(err) }),
    ),
    deps.readFile(tf.procUdp).then((text) => ({ text }), (err: unknown) => ({ error: errorMessage(err) })),
  ]);
  const podFound = pod && 'iface' in pod ? pod : undefined;
  const probing = opts.probeCount > 0 && (opts.src === undefined || podFound !== undefined);
  let capture: TraceFacts['capture'];
  let session: CaptureSession | undefined;
  let points: CapturePoint[] = [];
  if (opts.capture && probing) {
    const device = vni === undefined ? undefined : links.find((l) => l.name === tf.device(vni))?.name;
    const egress = underlay && 'answer' in underlay ? links.find((l) => l.index === underlay.answer.oif)?.name : undefined;
    const toDevice = forward && 'answer' in forward && links.find((l) => l.index === forward.answer.oif)?.name === device;
    points = capturePoints({ veth: vethName, bridge: links.find((l) => l.index === iif)?.name, device: toDevice ? device : undefined, underlay: toDevice ? egress : undefined, remote, dst: opts.dst, port: backend?.port ?? 8472 });
    try {
      session = await deps.capture.start(points);
    } catch (err) {
      if (!(err instanceof CaptureUnavailableError)) throw err;
      capture = { unavailable: err.message };
    }
  }
  const probe = probing ? await ping(deps.exec, podFound, opts.dst, opts.probeCount) : undefined;
  if (session) {
    // Replies still in flight when ping gives up, and tcpdump's last buffer.
    await deps.clock.sleep(300);
    capture = { points, files: await session.stop() };
  }
  return { ...base, kernelError: undefined, links, pod, forward, reply, underlay, sysctls, iptables, udp, probe, capture };
}
