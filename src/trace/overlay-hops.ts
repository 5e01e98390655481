/**
 * The overlay hops of a trace: flannel.<VNI> (the neighbour entry for the
 * gateway, the FDB entry for its MAC, the UDP socket, the device checks of
 * status), the underlay route to the remote VTEP and the VXLAN datagram that
 * results, and the remote node as its lease implies it (predicted). Entry
 * verdicts are status's plan for that peer, not a second comparison. Pure.
 */
import { LinkDetail } from '../kernel/route-query';
import { formatCidr, formatIPv4 } from '../net/ipv4';
import { formatIp } from '../net/family';
import { formatDuration } from '../status/render';
import { vtepFor } from './collect';
import { Check, Encapsulation } from './report';
import { HopDraft } from './source-hops';
import { TraceContext, describeLookup, hostInterface, linkByIndex, lookupCommand, ok, problem, warning } from './hop-context';

/** Local UDP ports with a socket, from /proc/net/udp ("  0: 00000000:2118 00000000:0000 07 …"). */
export function boundUdpPorts(text: string): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const m = /^\s*\d+:\s+[0-9A-Fa-f]{8}:([0-9A-Fa-f]{4})\s/.exec(line);
    if (m) ports.add(parseInt(m[1] as string, 16));
  }
  return ports;
}

const DEVICE_FIX: Record<string, string> = {
  mtu: 'ip link set {dev} mtu {want}',
  up: 'ip link set {dev} up',
  address: 'ip addr add {want} dev {dev}',
};

/** The flannel.<VNI> hop and the VTEP it sends to. */
export function vxlanHop(ctx: TraceContext, gateway: number | undefined, innerSrc: number | undefined): { hop: HopDraft; remote: number | undefined; encapsulation: Omit<Encapsulation, 'egress'> | undefined } {
  const { device, deviceName, dstLease, config } = ctx;
  const link = device ? ctx.facts.links.find((l) => l.index === device.index) : undefined;
  const checks: Check[] = [];
  const gw = gateway ?? ctx.facts.dst;
  const { mac, dst: fdbDst } = vtepFor(ctx.entries, gw);
  const commands = [`ip -d link show ${deviceName}`, `ip neigh show ${formatIPv4(gw)} dev ${deviceName}`, `bridge fdb show dev ${deviceName}${mac ? ` | grep ${mac}` : ''}`, `ss -uln 'sport = :${config.backend.port}'`];
  if (!device) {
    checks.push(problem(`${deviceName} does not exist`, 'start flanneld-ts on this host: it creates the device'));
  } else {
    for (const c of ctx.status.kernel.device?.checks ?? []) {
      if (c.state === 'ok' || c.state === 'unknown') continue;
      const fix = (DEVICE_FIX[c.name] ?? 'restart flanneld-ts: it replaces a device with other parameters').replace('{dev}', deviceName).replace('{want}', c.want ?? '');
      checks.push(problem(`${deviceName} ${c.name} ${c.state}${c.want !== null && c.state.startsWith('wrong') ? ` (want ${c.want})` : ''}`, fix));
    }
  }
  const peer = dstLease ? ctx.status.kernel.peers.find((p) => p.subnet === formatCidr(dstLease.subnet)) : undefined;
  if (dstLease && peer && !peer.programmed) {
    checks.push(problem(`this host does not program lease ${peer.subnet}: ${peer.skipReason ?? 'skipped'}`, `fix the lease value in etcd (flanneld-ts status --subnet ${peer.subnet})`));
  } else if (dstLease && peer) {
    const vtepMAC = peer.vtepMAC ?? '?';
    const publicIP = formatIPv4(dstLease.publicIP);
    if (peer.neighbor !== 'ok') {
      checks.push(problem(`neighbour ${formatIPv4(gw)} on ${deviceName}: ${peer.neighbor}`, `ip neigh replace ${formatIPv4(gw)} lladdr ${vtepMAC} dev ${deviceName} nud permanent (flanneld-ts programs it: is it running?)`));
    } else {
      checks.push(ok(`neighbour ${formatIPv4(gw)} lladdr ${vtepMAC} permanent`));
    }
    if (peer.fdb !== 'ok') {
      checks.push(problem(`FDB entry ${vtepMAC} dst ${publicIP} on ${deviceName}: ${peer.fdb}${fdbDst === undefined ? `: the kernel does not know which host to send ${vtepMAC}'s frames to` : ''}`, `bridge fdb replace ${vtepMAC} dev ${deviceName} dst ${publicIP} self permanent (flanneld-ts programs it: is it running?)`));
    } else {
      checks.push(ok(`FDB ${vtepMAC} dst ${publicIP} permanent`));
    }
  }
  const udp = ctx.facts.udp;
  if ('text' in udp) {
    const port = config.backend.port;
    if (boundUdpPorts(udp.text).has(port)) checks.push(ok(`a UDP socket is bound to port ${port}`));
    else checks.push(problem(`no UDP socket is bound to port ${port}: ${deviceName} can neither receive nor send VXLAN`, `ip link set ${deviceName} up (a VXLAN device opens its socket when up)`));
  }
  const lookup = mac === undefined ? `ip neigh show ${formatIPv4(gw)} dev ${deviceName} → none` : `neighbour ${formatIPv4(gw)} → lladdr ${mac}; fdb ${mac} → ${fdbDst === undefined ? 'none' : `dst ${formatIPv4(fdbDst)}`}`;
  const encapsulation =
    device && mac !== undefined && fdbDst !== undefined
      ? {
          outerSrc: formatIp(device.localIP ?? 0),
          outerDst: formatIPv4(fdbDst),
          udpPort: device.port ?? config.backend.port,
          vni: device.vni ?? config.backend.vni,
          innerSrcMAC: device.mac,
          innerDstMAC: mac,
          innerSrc: innerSrc === undefined ? '?' : formatIPv4(innerSrc),
          innerDst: formatIPv4(ctx.facts.dst),
        }
      : undefined;
  const title = device ? `${deviceName} vxlan id ${device.vni ?? '?'} local ${device.localIP === undefined ? '?' : formatIp(device.localIP)} dstport ${device.port ?? '?'}` : `${deviceName}: missing`;
  return {
    hop: { kind: 'vxlan', title, predicted: false, interface: link ? hostInterface(ctx, link) : null, lookup, facts: [], commands, checks },
    remote: fdbDst,
    encapsulation,
  };
}

/** The underlay hop: the kernel's route to the remote VTEP and the MTU it allows. */
export function underlayHop(ctx: TraceContext, remote: number | undefined): { hop: HopDraft; egress: LinkDetail | undefined } {
  const r = ctx.facts.underlay;
  const checks: Check[] = [];
  const answer = r && 'answer' in r ? r.answer : undefined;
  const egress = linkByIndex(ctx, answer?.oif);
  if (r && !answer) checks.push(problem(`no route to the remote VTEP ${formatIPv4(r.query.dst)}: ${'error' in r ? r.error : ''}`, `ip route get ${formatIPv4(r.query.dst)}; the underlay must reach every node's public IP`));
  if (remote === undefined && r && ctx.dstLease) checks.push(warning(`no FDB entry gives the VTEP: looked up the lease's public IP ${formatIPv4(ctx.dstLease.publicIP)} instead`, null));
  const device = ctx.device;
  if (egress && device) {
    if (device.underlayIndex !== undefined && device.underlayIndex !== egress.index) {
      checks.push(warning(`VXLAN to ${formatIPv4((r as { query: { dst: number } }).query.dst)} leaves by ${egress.name}, not ${ctx.deviceName}'s underlay ${linkByIndex(ctx, device.underlayIndex)?.name ?? device.underlayIndex}`, 'check --iface and the underlay routes'));
    }
    if (device.mtu + 50 > egress.mtu) {
      checks.push(problem(`${ctx.deviceName} MTU ${device.mtu} + 50 bytes of VXLAN headers is over ${egress.name}'s MTU ${egress.mtu}: full-size packets are dropped`, `ip link set ${ctx.deviceName} mtu ${egress.mtu - 50}`));
    } else {
      checks.push(ok(`${ctx.deviceName} MTU ${device.mtu} + 50 fits ${egress.name}'s MTU ${egress.mtu}`));
    }
    if (!egress.up) checks.push(problem(`${egress.name} is down`, `ip link set ${egress.name} up`));
  }
  return {
    hop: {
      kind: 'underlay',
      title: r ? `underlay to ${formatIPv4(r.query.dst)}${egress ? ` via ${egress.name}` : ''}` : 'underlay: no remote VTEP to look up',
      predicted: false,
      interface: egress ? hostInterface(ctx, egress) : null,
      lookup: r ? describeLookup(ctx, r) : null,
      facts: [],
      commands: r ? [lookupCommand(ctx, r), ...(egress ? [`ip -d link show ${egress.name}`] : [])] : [],
      checks,
    },
    egress,
  };
}

/** The remote node as its lease implies it: marked predicted. */
export function remoteHop(ctx: TraceContext): HopDraft | undefined {
  const lease = ctx.dstLease;
  if (!lease) return undefined;
  const row = ctx.status.leases.find((l) => l.subnet === formatCidr(lease.subnet));
  const publicIP = formatIPv4(lease.publicIP);
  const port = ctx.config.backend.port;
  const checks: Check[] = [];
  if (lease.vni !== ctx.config.backend.vni) checks.push(problem(`the lease's VNI ${lease.vni} is not the network's ${ctx.config.backend.vni}`, 'restart flanneld-ts on that node'));
  else checks.push(ok(`lease ${formatCidr(lease.subnet)} of ${publicIP} is valid (VNI ${lease.vni})`));
  return {
    kind: 'remote',
    title: `node ${publicIP}, lease ${formatCidr(lease.subnet)} (predicted from the lease)`,
    predicted: true,
    interface: null,
    lookup: null,
    facts: [
      `lease ${row?.key ?? formatCidr(lease.subnet)}: PublicIP ${publicIP}, VtepMAC ${lease.vtepMAC ?? '(none)'}, backend ${lease.backendType}${row?.expiresInSeconds != null ? `, expires in ${formatDuration(row.expiresInSeconds)}` : ''}`,
      `decapsulation: ${publicIP} UDP ${port} → ${ctx.deviceName} (VNI ${lease.vni}, ${lease.vtepMAC ?? '?'}) → route ${formatCidr(lease.subnet)} dev cni0 → pod ${formatIPv4(ctx.facts.dst)}`,
    ],
    commands: [
      `etcdctl get ${ctx.status.etcd.prefix}/subnets/${formatCidr(lease.subnet).replace('/', '-')}`,
      ...(ctx.facts.src === undefined
        ? []
        : [
            `flanneld-ts trace ${formatIPv4(ctx.facts.dst)} --from ${formatIPv4(ctx.facts.src)} --listen (on ${publicIP}, started before this trace: the same probes coming in)`,
            `flanneld-ts trace ${formatIPv4(ctx.facts.src)} --from ${formatIPv4(ctx.facts.dst)} (on ${publicIP}: the way back)`,
          ]),
    ],
    checks,
  };
}
