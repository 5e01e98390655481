/**
 * From `trace --listen` facts to the trace report: one hop per capture point in
 * the order the requests come in (eth0 → flannel.<VNI> → cni0 → the pod's
 * veth), each with what the wire showed there, and the hop where the requests
 * or the replies disappear marked as the problem. Same document as `trace`
 * (docs/trace.schema.json), with `listen` set. Pure.
 */
import { formatIp } from '../net/family';
import { traceFamily } from './trace-family';
import { analyzeStatus } from '../status/analyze';
import { TraceAnalyzeOptions, describeDestination } from './analyze';
import { CaptureReport, CapturedHop, judgeCapture } from './capture-verdict';
import { leaseFor } from './collect';
import { hostInterface, ok, problem, warning } from './hop-context';
import { ListenFacts } from './listen';
import { Check, Hop, HopKind, TRACE_SCHEMA_VERSION, TraceProblem, TraceReport } from './report';

// Where each kind of loss is shown: the point at which the packets are missing.
const SHOWN_AT: Partial<Record<HopKind, HopKind>> = { remote: 'underlay', route: 'bridge', pod: 'veth' };

/** What to look at when the probes vanish at a hop of kind `kind`. */
function fixFor(kind: HopKind, r: ListenReportContext): string | null {
  const dev = `flannel.${r.vni}`;
  if (kind === 'remote') return `on the source node${r.remote ? ` ${r.remote}` : ''}: flanneld-ts trace ${r.dst}${r.src ? ` --from ${r.src}` : ''} --capture shows where the requests stop there`;
  if (kind === 'vxlan') return `iptables-save | grep ${r.port} (INPUT must accept UDP ${r.port}); ip -d link show ${dev} (VNI ${r.vni}, dstport ${r.port}); flanneld-ts status`;
  if (kind === 'route') return `ip route get ${r.dst} iif ${dev}; sysctl net.ipv4.ip_forward; iptables-save (FORWARD)`;
  if (kind === 'bridge') return 'bridge link show; ip link show master cni0';
  if (kind === 'pod') return "the pod does not answer: its firewall, or its route back (ip route in the pod's namespace)";
  return null;
}

function title(p: CapturedHop, r: ListenReportContext): string {
  const from = r.remote ? ` from ${r.remote}` : '';
  if (p.kind === 'underlay') return `${p.iface} receives the VXLAN datagrams (UDP ${r.port}${from})`;
  if (p.kind === 'vxlan') return `${p.iface} decapsulates VNI ${r.vni}`;
  if (p.kind === 'bridge') return `${p.iface} forwards to the pod's veth`;
  return `${p.iface} delivers to pod ${r.dst}`;
}

interface ListenReportContext {
  readonly dst: string;
  /** The --from pod IP, or undefined. */
  readonly src: string | undefined;
  readonly remote: string | undefined;
  readonly port: number;
  readonly vni: number;
}

function pointChecks(p: CapturedHop, lostHere: CaptureReport['lost'], ctx: ListenReportContext): Check[] {
  const counts = `${p.requests} echo request${p.requests === 1 ? '' : 's'}, ${p.replies} repl${p.replies === 1 ? 'y' : 'ies'}`;
  const changes = p.notes.filter((n) => !n.startsWith('VXLAN '));
  const checks: Check[] = [];
  if (p.verdict === 'seen') checks.push(ok(`seen: ${counts}`));
  else if (p.verdict === 'altered') checks.push(warning(`seen but altered: ${counts} (${changes.join('; ')})`, null));
  if (lostHere) checks.push(problem(`on the wire: ${lostHere.message}`, fixFor(lostHere.kind, ctx)));
  else if (p.verdict === 'not seen') checks.push(warning(`not seen: ${counts}`, null));
  return checks;
}

/** The report for `facts`. Exit code 1 when the requests or replies stop at a hop, or nothing could be captured. */
export function listenReport(facts: ListenFacts, opts: TraceAnalyzeOptions): TraceReport {
  const status = analyzeStatus(facts.status, { ...opts, filter: {} });
  const k = facts.status.kernel;
  const interfaces = k?.kind === 'read' ? k.interfaces : [];
  const dst = formatIp(facts.dst);
  const src = facts.src === undefined ? 'any source' : formatIp(facts.src);
  const tf = traceFamily(facts.dst);
  const dstLease = leaseFor(facts.status, facts.dst);
  let hops: Hop[] = [];
  let capture: CaptureReport | null = null;
  let setupProblem: TraceProblem | undefined;
  if (!('points' in facts.setup)) {
    setupProblem = { step: 1, kind: 'local', message: facts.setup.message, fix: facts.setup.fix };
  } else if (facts.capture && 'unavailable' in facts.capture) {
    capture = { available: false, reason: facts.capture.unavailable, points: [], lost: null };
    setupProblem = { step: 1, kind: 'local', message: `capture unavailable: ${facts.capture.unavailable}`, fix: '--listen needs tcpdump and root (CAP_NET_RAW) on the destination node' };
  } else if (facts.capture) {
    const { points, expect } = facts.setup;
    capture = judgeCapture(points, facts.capture.files, expect);
    const lost = capture.lost;
    const lostAt = lost ? (SHOWN_AT[lost.kind] ?? lost.kind) : undefined;
    const ctx: ListenReportContext = { dst, src: expect.src, remote: expect.remote, port: expect.port, vni: expect.vni };
    hops = capture.points.map((p, i) => {
      const link = facts.links.find((l) => l.name === p.iface);
      return {
        step: i + 1,
        kind: p.kind,
        title: title(p, ctx),
        predicted: false,
        interface: link ? hostInterface({ interfaces, tf }, link) : null,
        lookup: null,
        facts: p.notes.filter((n) => n.startsWith('VXLAN ')),
        commands: [`tcpdump -e -v -n -i ${p.iface} '${p.filter}'`],
        checks: pointChecks(p, p.kind === lostAt ? lost : null, ctx),
      };
    });
  }
  const problems: TraceProblem[] = setupProblem ? [setupProblem] : hops.flatMap((h) => h.checks.filter((c) => c.state === 'problem').map((c) => ({ step: h.step, kind: h.kind, message: c.message, fix: c.fix })));
  const first = problems[0];
  const c = facts.capture && 'files' in facts.capture ? facts.capture : undefined;
  const waited = c ? `${(c.waitedMs / 1000).toFixed(1)} s` : '';
  const verdict = first
    ? `PROBLEM at hop ${first.step} (${first.kind}): ${first.message}${c?.timedOut ? ` (waited ${waited} for ${facts.count} echo requests from ${src} to ${dst})` : ''}`
    : `OK: ${facts.count} echo request${facts.count === 1 ? '' : 's'} from ${src} to ${dst} and the replies crossed every hop here (${hops.map((h) => h.interface?.name ?? h.kind).join(' → ')}) in ${waited}`;
  return {
    schemaVersion: TRACE_SCHEMA_VERSION,
    generatedAt: new Date(facts.status.now).toISOString(),
    ok: first === undefined,
    exitCode: first === undefined ? 0 : 1,
    source: { ip: facts.src === undefined ? null : formatIp(facts.src), kind: 'pod', netns: null },
    destination: describeDestination(dst, dstLease, status),
    etcd: status.etcd,
    hops,
    encapsulation: null,
    probe: null,
    capture,
    problems,
    verdict,
    listen: { count: facts.count, timeoutSeconds: facts.timeoutMs / 1000, waitedSeconds: c ? Math.round(c.waitedMs / 100) / 10 : 0, timedOut: c?.timedOut ?? false },
  };
}
