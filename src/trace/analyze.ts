/**
 * From trace facts to the trace report: status's analysis of this host (the
 * same function `flanneld-ts status` runs), then the hops in path order, the
 * VXLAN datagram, the probe and the verdict. Pure.
 */
import { NetworkConfig, parseNetworkConfig } from '../config';
import { formatAnyCidr, formatIp } from '../net/family';
import { familyPool } from '../overlay/desired';
import { AnalyzeOptions, analyzeStatus } from '../status/analyze';
import { TraceFacts, leaseFor } from './collect';
import { CaptureReport, judgeCapture } from './capture-verdict';
import { TraceContext, ok, problem, warning } from './hop-context';
import { remoteHop, underlayHop, vxlanHop } from './overlay-hops';
import { Check, Encapsulation, Hop, TRACE_SCHEMA_VERSION, TraceProblem, TraceReport } from './report';
import { routeHop } from './route-hop';
import { HopDraft, sourceHops } from './source-hops';
import { traceFamily } from './trace-family';

export type TraceAnalyzeOptions = Omit<AnalyzeOptions, 'filter'>;

function probeCheck(facts: TraceFacts, localProblems: boolean, remote: string | undefined, port: number): Check | undefined {
  const p = facts.probe;
  if (!p) return undefined;
  const what = `${p.received}/${p.sent} echo replies (${p.command})`;
  if (p.received === p.sent) return ok(what);
  if (p.received > 0) return warning(`${what}: some were lost`, 'run again with --count 20; look for drops with --capture');
  if (localProblems) return undefined;
  const where = remote ? ` at or beyond ${remote} (its firewall on UDP ${port}, its FORWARD chain or ip_forward, or the pod itself)` : '';
  return problem(`${what}: every hop on this host is ok, so the packets are lost${where}`, `on ${remote ?? 'the destination node'}: flanneld-ts status, iptables-save, and flanneld-ts trace back to the source`);
}

/** The capture's verdicts, with the hop where the probes stop marked as a problem there. */
function captureReport(facts: TraceFacts, drafts: HopDraft[], config: NetworkConfig, encapsulation: Encapsulation | null): CaptureReport | null {
  const c = facts.capture;
  if (!c) return null;
  if ('unavailable' in c) return { available: false, reason: c.unavailable, points: [], lost: null };
  const report = judgeCapture(c.points, c.files, {
    src: facts.src === undefined ? undefined : formatIp(facts.src),
    dst: formatIp(facts.dst),
    port: config.backend.port,
    vni: config.backend.vni,
    remote: encapsulation?.outerDst,
  });
  if (report.lost) {
    const at = drafts.findIndex((d) => d.kind === report.lost?.kind);
    const i = at >= 0 ? at : drafts.length - 1;
    const hop = drafts[i] as HopDraft;
    drafts[i] = { ...hop, checks: [...hop.checks, problem(`on the wire: ${report.lost.message}`, 'the other checks of this hop say why; tcpdump lines below')] };
  }
  return report;
}

function numbered(drafts: readonly HopDraft[]): Hop[] {
  return drafts.map((d, i) => ({ step: i + 1, ...d }));
}

/** The report for `facts`. Exit code 1 when any hop has a problem. */
export function analyzeTrace(facts: TraceFacts, opts: TraceAnalyzeOptions): TraceReport {
  const status = analyzeStatus(facts.status, { ...opts, filter: {} });
  const k = facts.status.kernel;
  let config: NetworkConfig | undefined;
  try {
    config = facts.status.store.configText === undefined ? undefined : parseNetworkConfig(facts.status.store.configText);
  } catch {
    config = undefined;
  }
  const tf = traceFamily(facts.dst);
  const pool = config && familyPool(config, tf.fam);
  const dstLease = leaseFor(facts.status, facts.dst);
  const drafts: HopDraft[] = [];
  let encapsulation: Encapsulation | null = null;
  let capture: CaptureReport | null = null;
  if (!config) {
    const message = status.problems.find((p) => p.kind === 'config')?.message ?? 'no usable network config';
    drafts.push({ kind: 'host', title: 'network config', predicted: false, interface: null, lookup: null, facts: [], commands: [`etcdctl get ${opts.prefix}/config`], checks: [problem(message, `etcdctl put ${opts.prefix}/config '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}'`)] });
  } else if (!pool) {
    // The destination's family has no pool: no lease can hold it and no device carries it.
    const flag = tf.fam.family === 6 ? 'EnableIPv6' : 'EnableIPv4';
    const check = problem(`the network config does not enable ${tf.fam.name} (${flag} false): ${formatIp(facts.dst)} is no pod address of this overlay`, `trace a pod address of the family the network uses (flanneld-ts status shows its config)`);
    drafts.push({ kind: 'host', title: 'network config', predicted: false, interface: null, lookup: null, facts: [], commands: [`etcdctl get ${opts.prefix}/config`], checks: [check] });
  } else {
    const v6 = tf.fam.family === 6;
    const ownSubnet = v6 ? status.self.subnet6 : status.self.subnet;
    const ctx: TraceContext = {
      facts,
      status,
      config,
      tf,
      deviceName: tf.device(config.backend.vni),
      device: k?.kind === 'read' ? (v6 ? k.device6 : k.device) : undefined,
      entries: k?.kind === 'read' ? (v6 ? (k.entries6 ?? []) : k.entries) : [],
      interfaces: k?.kind === 'read' ? k.interfaces : [],
      dstLease,
      ownSubnet,
      local: dstLease !== undefined && ownSubnet === formatAnyCidr(dstLease.subnet),
      enter: facts.pod && 'enter' in facts.pod ? facts.pod.enter : '',
    };
    const source = sourceHops(ctx);
    drafts.push(...source.hops);
    if (!source.stop) {
      const route = routeHop(ctx, source.bridge?.name);
      drafts.push(route.hop);
      const innerSrc = route.rewrittenSrc ?? facts.src ?? (facts.forward && 'answer' in facts.forward ? facts.forward.answer.prefsrc : undefined);
      if (ctx.local) {
        drafts.push({ kind: 'local', title: `delivered on this node by ${source.bridge?.name ?? 'cni0'}`, predicted: false, interface: null, lookup: null, facts: [], commands: [`ip ${tf.ipFlag}neigh show ${formatIp(facts.dst)}`], checks: [] });
      } else if (dstLease && route.oif !== undefined && !isDirectPeer(ctx.status.kernel.peers, formatAnyCidr(dstLease.subnet))) {
        const vx = vxlanHop(ctx, route.gateway, innerSrc);
        drafts.push(vx.hop);
        const under = underlayHop(ctx, vx.remote);
        drafts.push(under.hop);
        if (vx.encapsulation) encapsulation = { ...vx.encapsulation, egress: under.egress?.name ?? null };
      }
      const remote = ctx.local ? undefined : remoteHop(ctx);
      if (remote) drafts.push(remote);
    }
    const localProblems = drafts.some((d) => d.checks.some((c) => c.state === 'problem'));
    const pc = probeCheck(facts, localProblems, dstLease?.publicIP !== undefined && !ctx.local ? formatIp(dstLease.publicIP) : undefined, config.backend.port);
    const last = drafts[drafts.length - 1];
    if (pc && last) drafts[drafts.length - 1] = { ...last, checks: [...last.checks, pc] };
    capture = captureReport(facts, drafts, config, encapsulation);
  }
  const hops = numbered(drafts);
  const problems: TraceProblem[] = hops.flatMap((h) => h.checks.filter((c) => c.state === 'problem').map((c) => ({ step: h.step, kind: h.kind, message: c.message, fix: c.fix })));
  const src = facts.src === undefined ? 'this host' : formatIp(facts.src);
  const dst = formatIp(facts.dst);
  const first = problems[0];
  const warnings = hops.reduce((n, h) => n + h.checks.filter((c) => c.state === 'warning').length, 0);
  const verdict = first
    ? `PROBLEM at hop ${first.step} (${first.kind}): ${first.message}${problems.length > 1 ? ` (+${problems.length - 1} more)` : ''}`
    : `OK: ${src} → ${dst}, ${hops.length} hops ok${warnings ? ` (${warnings} warning${warnings > 1 ? 's' : ''})` : ''}${facts.probe ? `, ${facts.probe.received}/${facts.probe.sent} echo replies` : ''}`;
  const podNetns = facts.pod && 'display' in facts.pod ? facts.pod.display : null;
  return {
    schemaVersion: TRACE_SCHEMA_VERSION,
    generatedAt: new Date(facts.status.now).toISOString(),
    ok: first === undefined,
    exitCode: first === undefined ? 0 : 1,
    source: { ip: facts.src === undefined ? (tf.fam.family === 6 ? status.self.publicIPv6 : status.self.publicIP) : formatIp(facts.src), kind: facts.src === undefined ? 'host' : 'pod', netns: podNetns },
    destination: describeDestination(dst, dstLease, status),
    etcd: status.etcd,
    hops,
    encapsulation,
    probe: facts.probe ?? null,
    capture,
    problems,
    verdict,
  };
}

/** The report's `destination`: the pod IP and the lease that holds it, as trace and trace --listen show it. */
export function describeDestination(dst: string, lease: ReturnType<typeof leaseFor>, status: ReturnType<typeof analyzeStatus>): TraceReport['destination'] {
  const subnet = lease ? formatAnyCidr(lease.subnet) : null;
  return {
    ip: dst,
    subnet,
    publicIP: lease?.publicIP === undefined ? null : formatIp(lease.publicIP),
    vtepMAC: lease?.vtepMAC ?? null,
    local: subnet !== null && (status.self.subnet === subnet || status.self.subnet6 === subnet),
  };
}

/** DirectRouting: a direct peer has no flannel.<VNI> hop and no VXLAN underlay hop (no neighbour or FDB entry is expected). */
function isDirectPeer(peers: ReadonlyArray<{ readonly subnet: string; readonly mode?: string | null }>, subnet: string): boolean {
  return peers.some((p) => p.subnet === subnet && p.mode === 'direct');
}
