/**
 * What the wire says: the probes' echo requests and replies found in each local
 * hop's capture, a verdict per hop (seen / not seen / altered), and the first
 * hop where the requests, or the replies, disappear. Pure: it reads pcap bytes
 * (from tcpdump, or replayed by a fake) and the trace's own facts.
 */
import { CapturePoint } from '../capture/capture';
import { ECHO_TYPES, Frame, decodePcap, formatPacket, parsePcap } from '../capture/pcap';
import { HopKind } from './report';

export interface CapturedHop {
  readonly kind: HopKind;
  readonly iface: string;
  readonly filter: string;
  readonly requests: number;
  readonly replies: number;
  readonly verdict: 'seen' | 'not seen' | 'altered';
  /** What differs from the packet the pod sent, and the VXLAN header where there is one. */
  readonly notes: readonly string[];
  /** One `tcpdump -e -v` style line per probe packet. */
  readonly packets: readonly string[];
}

export interface CaptureReport {
  readonly available: boolean;
  /** Why capture could not run, or null. */
  readonly reason: string | null;
  readonly points: readonly CapturedHop[];
  /** The hop where the probes stop, or null when requests and replies were seen at every point. */
  readonly lost: { readonly kind: HopKind; readonly message: string } | null;
}

export interface CaptureExpectation {
  /** The source pod's IP, or undefined for this host. */
  readonly src: string | undefined;
  readonly dst: string;
  readonly port: number;
  readonly vni: number;
  /** The remote VTEP (the FDB dst; with --listen the source node), for messages. */
  readonly remote: string | undefined;
  /** `trace --listen`: the points run eth0 → flannel.1 → cni0 → veth, the way the requests come in. */
  readonly listen?: boolean;
}

// The hop between two adjacent capture points (either way), where a packet seen at one and not at the next was lost.
const BETWEEN: Record<string, HopKind> = { 'veth>bridge': 'bridge', 'bridge>vxlan': 'route', 'vxlan>underlay': 'vxlan', 'underlay>vxlan': 'vxlan', 'vxlan>bridge': 'route', 'bridge>veth': 'bridge' };
// The hop after the last capture point: where requests seen there, with no reply ever, went on to.
const AFTER: Record<string, HopKind> = { veth: 'bridge', bridge: 'route', vxlan: 'vxlan', underlay: 'remote' };
// With --listen the last point is the pod's veth: requests seen there and never answered stop at the pod.
const AFTER_LISTEN: Record<string, HopKind> = { veth: 'pod', bridge: 'bridge', vxlan: 'route', underlay: 'vxlan' };

function judgePoint(point: CapturePoint & { name: HopKind }, bytes: Buffer | undefined, e: CaptureExpectation): CapturedHop {
  const base = { kind: point.name, iface: point.iface, filter: point.filter };
  if (!bytes || bytes.length === 0) return { ...base, requests: 0, replies: 0, verdict: 'not seen', notes: ['no capture file'], packets: [] };
  const notes = new Set<string>();
  const packets: string[] = [];
  let requests = 0;
  let replies = 0;
  for (const { timeUs, frame } of decodePcap(parsePcap(bytes), e.port)) {
    const inner: Frame = frame.vxlan ? frame.vxlan.inner : frame;
    if (!inner.icmp || !inner.ip) continue;
    const echo = ECHO_TYPES[inner.ip.version ?? 4];
    const request = inner.icmp.type === echo.request && inner.ip.dst === e.dst;
    const reply = inner.icmp.type === echo.reply && inner.ip.src === e.dst;
    if (!request && !reply) continue;
    packets.push(formatPacket(timeUs, frame));
    if (request) requests++;
    else replies++;
    if (request && e.src !== undefined && inner.ip.src !== e.src) notes.add(`source rewritten: ${e.src} → ${inner.ip.src}`);
    if (frame.vxlan && frame.udp) {
      notes.add(`VXLAN UDP dport ${frame.udp.dstPort}, VNI ${frame.vxlan.vni}, inner ${request ? `${inner.srcMAC} > ${inner.dstMAC}` : `${inner.dstMAC} < ${inner.srcMAC}`}`);
      if (frame.vxlan.vni !== e.vni) notes.add(`VNI ${frame.vxlan.vni} is not the network's ${e.vni}`);
    }
  }
  const altered = [...notes].some((n) => n.startsWith('source rewritten') || n.startsWith('VNI '));
  return { ...base, requests, replies, verdict: requests + replies === 0 ? 'not seen' : altered ? 'altered' : 'seen', notes: [...notes], packets };
}

/** Verdicts for the points (in path order, named by hop kind) from the captured pcap bytes. */
export function judgeCapture(points: readonly CapturePoint[], files: ReadonlyMap<string, Buffer>, e: CaptureExpectation): CaptureReport {
  const hops = points.map((p) => judgePoint(p as CapturePoint & { name: HopKind }, files.get(p.name), e));
  let lost: CaptureReport['lost'] = null;
  const firstNoRequest = hops.findIndex((h) => h.requests === 0);
  if (firstNoRequest === 0) {
    const h = hops[0] as CapturedHop;
    lost = e.listen
      ? { kind: 'remote', message: `no echo request to ${e.dst}${e.src ? ` from ${e.src}` : ''} arrived on ${h.iface}: the probes stop before this host${e.remote ? ` (at the source node ${e.remote} or on the way)` : ''}` }
      : { kind: h.kind === 'veth' ? 'pod' : h.kind, message: `no echo request seen on ${h.iface}: the probes never reach it` };
  } else if (firstNoRequest > 0) {
    const [prev, cur] = [hops[firstNoRequest - 1] as CapturedHop, hops[firstNoRequest] as CapturedHop];
    lost = { kind: BETWEEN[`${prev.kind}>${cur.kind}`] ?? cur.kind, message: `the echo requests are seen on ${prev.iface} but not on ${cur.iface}` };
  } else if (hops.length > 0) {
    const back = [...hops].reverse();
    const firstNoReply = back.findIndex((h) => h.replies === 0);
    if (firstNoReply === 0) {
      const h = back[0] as CapturedHop;
      const to = e.remote ? ` to ${e.remote} UDP ${e.port}` : '';
      if (e.listen) lost = { kind: AFTER_LISTEN[h.kind] ?? h.kind, message: `the echo requests reach ${h.iface}${h.kind === 'veth' ? ", the pod's veth," : ', the last capture point,'} and no reply comes back` };
      else lost = { kind: AFTER[h.kind] ?? h.kind, message: h.kind === 'underlay' ? `the echo requests leave by ${h.iface}${to} and no reply comes back${e.remote ? `: lost at or beyond ${e.remote}` : ''}` : `the echo requests reach ${h.iface}, the last capture point, and no reply comes back` };
    } else if (firstNoReply > 0) {
      const [prev, cur] = [back[firstNoReply - 1] as CapturedHop, back[firstNoReply] as CapturedHop];
      lost = { kind: BETWEEN[`${prev.kind}>${cur.kind}`] ?? cur.kind, message: `the echo replies are seen on ${prev.iface} but not on ${cur.iface}` };
    }
  }
  return { available: true, reason: null, points: hops, lost };
}
