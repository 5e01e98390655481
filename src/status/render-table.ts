/**
 * The default `status` output: the pool view, the lease table, the kernel check
 * for this host, the problems, and the brief line as a verdict at the bottom.
 */
import { DeviceReport, LeaseRow, StatusReport } from './report';
import { Row, alignRows, formatDuration, paint, renderBrief, stateStyle } from './render';

function expires(r: LeaseRow): string {
  if (r.reservation) return 'never';
  return r.expiresInSeconds === null ? 'unknown' : formatDuration(r.expiresInSeconds);
}

function summary(report: StatusReport, color: boolean): string[] {
  const rows: Row[] = [];
  const line = (label: string, text: string, style?: 'bad' | 'warn'): void => void rows.push({ cells: [{ text: label, style: 'bold' }, { text, style }] });
  const c = report.config;
  const vxlan = c ? `vxlan VNI ${c.backend.vni} port ${c.backend.port}` : '';
  if (c && c.network !== null) line('Network', `${c.network}, /${c.subnetLen} subnets ${c.subnetMin}..${c.subnetMax}, ${vxlan}`);
  if (c?.ipv6) line('IPv6 network', `${c.ipv6.network}, /${c.ipv6.subnetLen} subnets ${c.ipv6.subnetMin}..${c.ipv6.subnetMax}${c.network === null ? `, ${vxlan}` : ''}`);
  if (!c) line('Network', 'no usable network config', 'bad');
  const p = report.pool;
  if (p) line('Pool', `${p.leased} leased, ${p.reserved} reserved, ${p.invalid} invalid: ${c?.network === null ? 'IPv6 only' : `${p.used} of ${p.capacity} subnets used (${p.usedPercent}%), ${p.free} free`}`);
  if (p?.ipv6) line('IPv6 pool', `${p.ipv6.used} of ${p.ipv6.capacity} subnets used (${p.ipv6.usedPercent}%), ${p.ipv6.free} free`);
  line('etcd', `${report.etcd.endpoints.join(',')} ${report.etcd.prefix} at revision ${report.etcd.revision}`);
  const s = report.self;
  const ips = [s.publicIP, s.publicIPv6].filter((x): x is string => x !== null).join(' and ');
  const where = ips ? `${ips}${s.interface ? ` on ${s.interface}` : ''}` : `public IP unknown${s.note ? ` (${s.note})` : ''}`;
  const subnets = [s.subnet, s.subnet6].filter((x): x is string => x !== null).join(' + ');
  const lease = subnets ? `lease ${subnets} (matched by ${s.matchedBy === 'subnet-file' ? 'subnet file' : 'public IP'})` : 'holds no lease';
  line('This host', `${where}, ${lease}`);
  const f = s.subnetFile;
  const fileBad = f.state === 'agrees' || f.state === 'absent' ? undefined : f.state === 'unreadable' ? 'warn' : 'bad';
  line('Subnet file', `${f.path}: ${f.state}${f.detail && f.state !== 'agrees' ? ` (${f.detail})` : ''}`, fileBad);
  return alignRows(rows, color);
}

function leaseTable(report: StatusReport, color: boolean): string[] {
  if (report.leases.length === 0) return ['  (no leases)'];
  const rows: Row[] = [{ cells: ['', 'SUBNET', 'PUBLIC IP', 'VTEP MAC', 'BACKEND', 'EXPIRES'].map((text) => ({ text, style: 'bold' as const })) }];
  for (const r of report.leases) {
    const mark = { text: r.own ? '*' : '', style: 'bold' as const };
    const subnet = { text: [r.subnet, r.subnet6].filter((x) => x !== null).join(' + ') || r.key, style: r.own ? ('bold' as const) : undefined };
    if (r.state !== 'valid') {
      const label = r.state === 'invalid' ? { text: 'INVALID', style: 'bad' as const } : { text: 'IGNORED', style: 'dim' as const };
      rows.push({ cells: [mark, subnet, label, { text: r.reason ?? '' }], span: true });
      continue;
    }
    const first = r.subnet ?? r.subnet6;
    const soon = report.problems.some((p) => p.kind === 'expiring' && first !== null && p.subnets.includes(first));
    const ips = [r.publicIP, r.publicIPv6].filter((x) => x !== null).join(' ');
    const macs = [r.vtepMAC, r.vtepMAC6].filter((x) => x !== null).join(' ') || '-';
    rows.push({ cells: [mark, subnet, { text: ips }, { text: macs }, { text: r.backendType ?? '' }, { text: expires(r), style: soon ? 'warn' : undefined }] });
  }
  const lines = alignRows(rows, color);
  if (report.leases.some((r) => r.own)) lines.push(paint('* this host', 'dim', color));
  return lines;
}

function deviceLines(d: DeviceReport, color: boolean): string[] {
  const get = (name: string): string => d.checks.find((c) => c.name === name)?.have ?? '?';
  const bad = d.checks.filter((c) => c.state !== 'ok' && c.state !== 'unknown');
  if (!d.present) return [`${d.name}: ${paint('missing', 'bad', color)}`];
  const learning = get('learning') === 'off' ? 'nolearning' : 'learning';
  const facts = `vxlan id ${get('vni')} local ${get('local')} dev ${get('underlay')} dstport ${get('port')} ${learning}, mtu ${get('mtu')}, address ${get('address')}, ${get('up')}`;
  const head = `${d.name}: ${bad.length === 0 ? paint('ok', 'ok', color) : paint(`${bad.length} wrong`, 'bad', color)} (${facts})`;
  const rows: Row[] = bad.map((c) => ({ cells: [{ text: c.name }, { text: `${c.state}${c.want !== null && c.state !== 'missing' ? ` (want ${c.want})` : ''}`, style: 'bad' }] }));
  const replace = d.replaceReason ? [`  the daemon would recreate it: ${d.replaceReason}`] : [];
  return [head, ...alignRows(rows, color, '  '), ...replace];
}

function kernelLines(report: StatusReport, color: boolean): string[] {
  const k = report.kernel;
  if (k.state === 'skipped' || !k.device) return [`${paint('Kernel', 'bold', color)}  ${paint(`skipped: ${k.skipReason ?? 'unknown reason'}`, 'warn', color)}`];
  const [head, ...rest] = deviceLines(k.device, color);
  const lines = [`${paint('Kernel', 'bold', color)}  ${head}`, ...rest.map((l) => `        ${l}`)];
  if (k.peers.length === 0 && k.stale.length === 0) return [...lines, '', '  (no peers)'];
  // DirectRouting: a MODE column once any peer is direct (whose neighbour and FDB columns show "-").
  const modes = k.peers.some((p) => p.mode === 'direct');
  const titles = ['', 'PEER', 'PUBLIC IP', ...(modes ? ['MODE'] : []), 'ROUTE', 'NEIGHBOUR', 'FDB'];
  const rows: Row[] = [{ cells: titles.map((text) => ({ text, style: 'bold' as const })) }];
  for (const p of k.peers) {
    const mode = modes ? [{ text: p.mode ?? '' }] : [];
    if (!p.programmed) rows.push({ cells: [{ text: '' }, { text: p.subnet }, { text: p.publicIP }, { text: `not programmed: ${p.skipReason}`, style: 'warn' }], span: true });
    else rows.push({ cells: [{ text: '' }, { text: p.subnet }, { text: p.publicIP }, ...mode, ...[p.route, p.neighbor, p.fdb].map((s) => ({ text: s ?? (p.mode === 'direct' ? '-' : ''), style: stateStyle(s) }))] });
  }
  for (const s of k.stale) rows.push({ cells: [{ text: '' }, { text: 'stale', style: 'bad' }, { text: s.entry }], span: true });
  return [...lines, '', ...alignRows(rows, color)];
}

/** The whole table output, ending in the verdict line. */
export function renderTable(report: StatusReport, color: boolean): string {
  const out = [...summary(report, color), '', ...leaseTable(report, color), '', ...kernelLines(report, color)];
  if (report.problems.length > 0) {
    out.push('', paint('Problems', 'bold', color));
    const rows: Row[] = report.problems.map((p) => ({ cells: [{ text: p.severity, style: p.severity === 'error' ? 'bad' : 'warn' }, { text: p.message }] }));
    out.push(...alignRows(rows, color, '  '));
  }
  out.push('', renderBrief(report, color));
  return `${out.join('\n')}\n`;
}
