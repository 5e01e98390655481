/** The trace report as text for people (`--json` prints the report itself). Pure. */
import { paint } from '../status/render';
import { CaptureReport } from './capture-verdict';
import { Check, Hop, TraceReport } from './report';

const LABEL = 9;
const label = (name: string): string => `   ${name.padEnd(LABEL)}`;

function checkLines(c: Check, color: boolean): string[] {
  const state = c.state === 'ok' ? paint('ok', 'ok', color) : c.state === 'warning' ? paint('warning', 'warn', color) : paint('PROBLEM', 'bad', color);
  const lines = [`${label('')}${state} ${c.message}`];
  if (c.fix) lines.push(`${label('')}    fix: ${c.fix}`);
  return lines;
}

function hopLines(h: Hop, color: boolean): string[] {
  const lines = [paint(`${String(h.step).padStart(2)} ${h.title}`, 'bold', color)];
  const i = h.interface;
  if (i) {
    const addrs = i.addresses.length > 0 ? `  ${i.addresses.join(' ')}` : '';
    lines.push(`${label('iface')}${i.name}  index ${i.index}  ${i.mac || 'no mac'}  mtu ${i.mtu}${addrs}  ${i.up ? 'up' : 'DOWN'}${i.netns === 'host' ? '' : `  (netns ${i.netns})`}`);
  }
  if (h.lookup) lines.push(`${label('lookup')}${h.lookup}`);
  h.facts.forEach((f, n) => lines.push(`${label(n === 0 ? 'facts' : '')}${f}`));
  h.commands.forEach((c, n) => lines.push(`${label(n === 0 ? 'see' : '')}${paint(c, 'dim', color)}`));
  for (const c of h.checks) lines.push(...checkLines(c, color));
  return lines;
}

function captureLines(c: CaptureReport, color: boolean): string[] {
  if (!c.available) return [paint(`capture  unavailable: ${c.reason}`, 'warn', color)];
  const lines = ['capture  tcpdump on each local hop while the probes ran'];
  for (const p of c.points) {
    const verdict = paint(p.verdict, p.verdict === 'not seen' ? 'bad' : p.verdict === 'altered' ? 'warn' : 'ok', color);
    lines.push(`   ${p.kind.padEnd(LABEL)}${p.iface}: ${verdict}, ${p.requests} request${p.requests === 1 ? '' : 's'}, ${p.replies} repl${p.replies === 1 ? 'y' : 'ies'}  (tcpdump -i ${p.iface} '${p.filter}')`);
    for (const n of p.notes) lines.push(`${label('')}${n}`);
    for (const pkt of p.packets) lines.push(`${label('')}${paint(pkt, 'dim', color)}`);
  }
  lines.push(lostLine(c, color));
  return lines;
}

function lostLine(c: CaptureReport, color: boolean): string {
  return c.lost ? paint(`   lost     at the ${c.lost.kind} hop: ${c.lost.message}`, 'bad', color) : '   lost     nowhere: requests and replies seen at every hop';
}

export function renderTrace(r: TraceReport, color: boolean): string {
  const src = r.source.kind === 'host' ? `this host ${r.source.ip ?? ''}`.trim() : `pod ${r.source.ip}`;
  const where = r.destination.subnet ? ` (lease ${r.destination.subnet} of node ${r.destination.publicIP}${r.destination.local ? ', this node' : ''})` : ' (in no lease)';
  const head = r.listen
    ? `trace --listen: echo requests from ${r.source.ip ?? 'any source'} → ${r.destination.ip}${where}, ${r.listen.count} awaited, ${r.listen.waitedSeconds} s${r.listen.timedOut ? ` (timed out after ${r.listen.timeoutSeconds} s)` : ''}`
    : `trace ${src} → ${r.destination.ip}${where}`;
  const out = [head, ''];
  // --listen: the hops are the capture points, so each shows its own packets.
  const wire = (i: number): string[] => (r.listen ? (r.capture?.points[i]?.packets ?? []).map((p, n) => `${label(n === 0 ? 'wire' : '')}${paint(p, 'dim', color)}`) : []);
  r.hops.forEach((h, i) => out.push(...hopLines(h, color), ...wire(i), ''));
  const e = r.encapsulation;
  if (e) {
    out.push(`VXLAN    outer ${e.outerSrc} → ${e.outerDst} UDP dport ${e.udpPort} VNI ${e.vni}${e.egress ? ` out ${e.egress}` : ''}`);
    out.push(`         inner ${e.innerSrcMAC} → ${e.innerDstMAC}, ${e.innerSrc} → ${e.innerDst}`);
  }
  if (r.probe) out.push(`probe    ${r.probe.received}/${r.probe.sent} echo replies: ${r.probe.command}`);
  if (e || r.probe) out.push('');
  if (r.capture) out.push(...(r.listen && r.capture.available ? [lostLine(r.capture, color)] : captureLines(r.capture, color)), '');
  out.push(paint(r.verdict, r.ok ? 'ok' : 'bad', color));
  return `${out.join('\n')}\n`;
}
