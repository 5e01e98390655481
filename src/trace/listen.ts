/**
 * `flanneld-ts trace DST --listen [--from SRC]` on the destination node: the
 * decapsulation side of the probes another node sends. It finds the hops a
 * request crosses here (the underlay interface filtered to the VXLAN port,
 * flannel.<VNI>, the bridge, the destination pod's host veth), captures at all
 * of them with the same Capture seam as `--capture`, and waits until N echo
 * requests and their replies crossed every hop, or the timeout. Reads only.
 */
import { CapturePoint, CaptureSession, CaptureUnavailableError } from '../capture/capture';
import { LinkDetail } from '../kernel/route-query';
import { IpAddr, formatIp } from '../net/family';
import { analyzeStatus } from '../status/analyze';
import { StatusFacts, collectFacts } from '../status/collect';
import { Clock } from '../util/clock';
import { errorMessage } from '../util/errors';
import { TraceAnalyzeOptions } from './analyze';
import { CaptureExpectation, judgeCapture } from './capture-verdict';
import { TraceCollectDeps, TraceCollectOptions, TraceKernel, backendOf, capturePoints, leaseFor, podHostSide, vethPeerNetns } from './collect';
import { findPod } from './pod-netns';
import { traceFamily } from './trace-family';
import { publicText } from './hop-context';

/** How often the running capture is read to see whether the probes are all through. */
const POLL_MS = 250;

export interface ListenCollectOptions extends Omit<TraceCollectOptions, 'probeCount' | 'capture'> {
  /** Echo requests (and their replies) to wait for at every hop. */
  readonly count: number;
  readonly timeoutMs: number;
}

/** What --listen could not set up: one line and the fix. */
export interface ListenSetupProblem {
  readonly message: string;
  readonly fix: string | null;
}

export interface ListenFacts {
  readonly status: StatusFacts;
  readonly dst: IpAddr;
  readonly src: IpAddr | undefined;
  readonly count: number;
  readonly timeoutMs: number;
  /** The links of this namespace (for the hops' interfaces). */
  readonly links: readonly LinkDetail[];
  readonly setup: { readonly points: readonly CapturePoint[]; readonly expect: CaptureExpectation } | ListenSetupProblem;
  /** The pcap bytes per point, how long the wait took and whether it ran out, or why capture could not run. */
  readonly capture: { readonly files: ReadonlyMap<string, Buffer>; readonly waitedMs: number; readonly timedOut: boolean } | { readonly unavailable: string } | undefined;
}

export interface ListenDeps extends TraceCollectDeps {
  /** Told once every capture point listens (the text goes to stderr: start the probes now). */
  readonly listening: (points: readonly CapturePoint[]) => void;
}

/** Where the requests come in on this host, in their order, or why that cannot be told. */
async function listenPoints(deps: ListenDeps, opts: ListenCollectOptions, status: StatusFacts, analyze: TraceAnalyzeOptions, kernel: TraceKernel, links: readonly LinkDetail[]): Promise<ListenFacts['setup']> {
  const backend = backendOf(status);
  if (!backend) return { message: 'no usable network config in etcd: the VXLAN port and VNI are unknown', fix: 'flanneld-ts status says what is wrong with the config' };
  const dst = formatIp(opts.dst);
  const tf = traceFamily(opts.dst);
  const pod = await findPod(deps.exec, (p) => kernel.netnsId(p), vethPeerNetns(links), opts.dst, opts.src ?? opts.dst);
  if (!('iface' in pod)) {
    const lease = leaseFor(status, opts.dst);
    const elsewhere = lease ? `; ${dst} is in the lease of node ${publicText(lease.publicIP)}: run --listen there` : '';
    return { message: `${pod.notFound}${elsewhere}`, fix: `--listen runs on the node of the destination pod; DST names a pod there` };
  }
  const { veth, bridge } = podHostSide(links, pod);
  const device = links.find((l) => l.name === tf.device(backend.vni));
  if (!device) return { message: `${tf.device(backend.vni)} does not exist on this host: nothing can be decapsulated here`, fix: 'start flanneld-ts; flanneld-ts status shows the device' };
  const remote = opts.src === undefined ? undefined : leaseFor(status, opts.src)?.publicIP;
  let underlay: string | undefined;
  if (remote !== undefined) {
    const oif = await kernel.routeQuery({ dst: remote }).then((a) => a.oif, () => undefined);
    underlay = links.find((l) => l.index === oif)?.name;
  }
  underlay ??= analyzeStatus(status, { ...analyze, filter: {} }).self.interface ?? undefined;
  const points = capturePoints({ veth: veth?.name, bridge: bridge?.name, device: device.name, underlay, remote, dst: opts.dst, port: backend.port }).reverse();
  const expect: CaptureExpectation = { src: opts.src === undefined ? undefined : formatIp(opts.src), dst, port: backend.port, vni: backend.vni, remote: remote === undefined ? undefined : formatIp(remote), listen: true };
  return { points, expect };
}

/** Polls the running capture until `count` requests and replies crossed every point, or the timeout. */
export async function waitForProbes(clock: Pick<Clock, 'now' | 'sleep'>, session: CaptureSession, points: readonly CapturePoint[], expect: CaptureExpectation, count: number, timeoutMs: number): Promise<{ waitedMs: number; timedOut: boolean }> {
  const start = clock.now();
  for (;;) {
    const seen = judgeCapture(points, await session.snapshot(), expect).points;
    const waitedMs = clock.now() - start;
    if (seen.every((p) => p.requests >= count && p.replies >= count)) return { waitedMs, timedOut: false };
    if (waitedMs >= timeoutMs) return { waitedMs, timedOut: true };
    await clock.sleep(Math.min(POLL_MS, timeoutMs - waitedMs));
  }
}

/** Everything --listen looks at. Rejects only like status (StoreUnavailableError when etcd does not answer). */
export async function collectListenFacts(deps: ListenDeps, opts: ListenCollectOptions, analyze: TraceAnalyzeOptions): Promise<ListenFacts> {
  const status = await collectFacts(deps, opts);
  const base = { status, dst: opts.dst, src: opts.src, count: opts.count, timeoutMs: opts.timeoutMs };
  let kernel: TraceKernel;
  let links: LinkDetail[];
  try {
    kernel = await deps.kernel();
    links = await kernel.listLinks();
  } catch (err) {
    return { ...base, links: [], setup: { message: `failed to read kernel state: ${errorMessage(err)}`, fix: 'run as root on the destination node' }, capture: undefined };
  }
  const setup = await listenPoints(deps, opts, status, analyze, kernel, links);
  if (!('points' in setup)) return { ...base, links, setup, capture: undefined };
  let session: CaptureSession;
  try {
    session = await deps.capture.start(setup.points);
  } catch (err) {
    if (!(err instanceof CaptureUnavailableError)) throw err;
    return { ...base, links, setup, capture: { unavailable: err.message } };
  }
  let wait: { waitedMs: number; timedOut: boolean };
  try {
    deps.listening(setup.points);
    wait = await waitForProbes(deps.clock, session, setup.points, setup.expect, opts.count, opts.timeoutMs);
    // The last packets still on their way into tcpdump's file.
    await deps.clock.sleep(300);
  } catch (err) {
    await session.stop();
    throw err;
  }
  const files = await session.stop();
  return { ...base, links, setup, capture: { files, ...wait } };
}
