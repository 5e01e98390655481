/**
 * The overlay hops of a trace: flannel.<VNI> (the neighbour entry for the
 * gateway, the FDB entry for its MAC, the UDP socket, the device checks of
 * status), the underlay route to the remote VTEP and the VXLAN datagram that
 * results, and the remote node as its lease implies it (predicted). Entry
 * verdicts are status's plan for that peer, not a second comparison. Pure.
 */
import { LinkDetail } from '../kernel/route-query';
import { IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { formatDuration } from '../status/render';
import { vtepFor } from './collect';
import { Check, Encapsulation } from './report';
import { HopDraft } from './source-hops';
import { TraceContext, describeLookup, hostInterface, linkByIndex, lookupCommand, ok, problem, publicText, warning } from './hop-context';

/** Local UDP ports with a socket, from /proc/net/udp ("  0: 00000000:2118 00000000:0000 07 …") or /proc/net/udp6 (32 hex digits of address). */
export function boundUdpPorts(text: string): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const m = /^\s*\d+:\s+(?:[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})\s/.exec(line);
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
export function vxlanHop(ctx: TraceContext, gateway: IpAddr | undefined, innerSrc: IpAddr | undefined): { hop: HopDraft; remote: IpAddr | undefined; encapsulation: Omit<Encapsulation, 'egress'> | undefined } {
  const { device, deviceName, dstLease, config, tf } = ctx;
  const link = device ? ctx.facts.links.find((l) => l.index === device.index) : undefined;
  const checks: Check[] = [];
  const gw = gateway ?? ctx.facts.dst;
  const { mac, dst: fdbDst } = vtepFor(ctx.entries, gw);
  const commands = [`ip -d link show ${deviceName}`, `ip ${tf.ipFlag}neigh show ${formatIp(gw)} dev ${deviceName}`, `bridge fdb show dev ${deviceName}${mac ? ` | grep ${mac}` : ''}`, `ss -uln${tf.fam.family === 6 ? '6' : ''} 'sport = :${config.backend.port}'`];
  if (!device) {
    checks.push(problem(`${deviceName} does not exist`, 'start flanneld-ts on this host: it creates the device'));
  } else if (ctx.status.kernel.device?.name !== deviceName) {
    // Status details the checks of its first device only (flannel.<VNI> when IPv4 is on); flannel-v6.<VNI>'s come as its problem line.
    for (const p of ctx.status.problems) if (p.kind === 'device' && p.message.startsWith(`${deviceName} `)) checks.push(problem(p.message, 'restart flanneld-ts: it replaces a device with other parameters'));
  } else {
    for (const c of ctx.status.kernel.device?.checks ?? []) {
      if (c.state === 'ok' || c.state === 'unknown') continue;
      const fix = (DEVICE_FIX[c.name] ?? 'restart flanneld-ts: it replaces a device with other parameters').replace('{dev}', deviceName).replace('{want}', c.want ?? '');
      checks.push(problem(`${deviceName} ${c.name} ${c.state}${c.want !== null && c.state.startsWith('wrong') ? ` (want ${c.want})` : ''}`, fix));
    }
  }
  const peer = dstLease ? ctx.status.kernel.peers.find((p) => p.subnet === formatAnyCidr(dstLease.subnet)) : undefined;
  if (dstLease && peer && !peer.programmed) {
    checks.push(problem(`this host does not program lease ${peer.subnet}: ${peer.skipReason ?? 'skipped'}`, `fix the lease value in etcd (flanneld-ts status --subnet ${peer.subnet})`));
  } else if (dstLease && peer) {
    const vtepMAC = peer.vtepMAC ?? '?';
    const publicIP = publicText(dstLease.publicIP);
    if (peer.neighbor !== 'ok') {
      checks.push(problem(`neighbour ${formatIp(gw)} on ${deviceName}: ${peer.neighbor}`, `ip ${tf.ipFlag}neigh replace ${formatIp(gw)} lladdr ${vtepMAC} dev ${deviceName} nud permanent (flanneld-ts programs it: is it running?)`));
    } else {
      checks.push(ok(`neighbour ${formatIp(gw)} lladdr ${vtepMAC} permanent`));
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
  const lookup = mac === undefined ? `ip ${tf.ipFlag}neigh show ${formatIp(gw)} dev ${deviceName} → none` : `neighbour ${formatIp(gw)} → lladdr ${mac}; fdb ${mac} → ${fdbDst === undefined ? 'none' : `dst ${formatIp(fdbDst)}`}`;
  const encapsulation =
    device && mac !== undefined && fdbDst !== undefined
      ? {
          outerSrc: formatIp(device.localIP ?? tf.fam.zero),
          outerDst: formatIp(fdbDst),
          udpPort: device.port ?? config.backend.port,
          vni: device.vni ?? config.backend.vni,
          innerSrcMAC: device.mac,
          innerDstMAC: mac,
          innerSrc: innerSrc === undefined ? '?' : formatIp(innerSrc),
          innerDst: formatIp(ctx.facts.dst),
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
export function underlayHop(ctx: TraceContext, remote: IpAddr | undefined): { hop: HopDraft; egress: LinkDetail | undefined } {
  const r = ctx.facts.underlay;
  const checks: Check[] = [];
  const answer = r && 'answer' in r ? r.answer : undefined;
  const egress = linkByIndex(ctx, answer?.oif);
  const overhead = ctx.tf.vxlanOverhead;
  if (r && !answer) checks.push(problem(`no route to the remote VTEP ${formatIp(r.query.dst)}: ${'error' in r ? r.error : ''}`, `ip ${ctx.tf.ipFlag}route get ${formatIp(r.query.dst)}; the underlay must reach every node's public IP`));
  if (remote === undefined && r && ctx.dstLease) checks.push(warning(`no FDB entry gives the VTEP: looked up the lease's public IP ${publicText(ctx.dstLease.publicIP)} instead`, null));
  const device = ctx.device;
  if (egress && device) {
    if (device.underlayIndex !== undefined && device.underlayIndex !== egress.index) {
      checks.push(warning(`VXLAN to ${formatIp((r as { query: { dst: IpAddr } }).query.dst)} leaves by ${egress.name}, not ${ctx.deviceName}'s underlay ${linkByIndex(ctx, device.underlayIndex)?.name ?? device.underlayIndex}`, 'check --iface and the underlay routes'));
    }
    if (device.mtu + overhead > egress.mtu) {
      checks.push(problem(`${ctx.deviceName} MTU ${device.mtu} + ${overhead} bytes of VXLAN headers is over ${egress.name}'s MTU ${egress.mtu}: full-size packets are dropped`, `ip link set ${ctx.deviceName} mtu ${egress.mtu - overhead}`));
    } else {
      checks.push(ok(`${ctx.deviceName} MTU ${device.mtu} + ${overhead} fits ${egress.name}'s MTU ${egress.mtu}`));
    }
    if (!egress.up) checks.push(problem(`${egress.name} is down`, `ip link set ${egress.name} up`));
  }
  return {
    hop: {
      kind: 'underlay',
      title: r ? `underlay to ${formatIp(r.query.dst)}${egress ? ` via ${egress.name}` : ''}` : 'underlay: no remote VTEP to look up',
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
  const subnet = formatAnyCidr(lease.subnet);
  const row = ctx.status.leases.find((l) => l.subnet === subnet || l.subnet6 === subnet);
  const publicIP = publicText(lease.publicIP);
  const port = ctx.config.backend.port;
  const checks: Check[] = [];
  if (lease.vni !== ctx.config.backend.vni) checks.push(problem(`the lease's VNI ${lease.vni} is not the network's ${ctx.config.backend.vni}`, 'restart flanneld-ts on that node'));
  else checks.push(ok(`lease ${subnet} of ${publicIP} is valid (VNI ${lease.vni})`));
  if (lease.publicIP === undefined) checks.push(problem(`lease ${subnet} has no PublicIPv6 (null): no host can send VXLAN to it`, 'restart flanneld-ts on that node: it writes its PublicIPv6'));
  return {
    kind: 'remote',
    title: `node ${publicIP}, lease ${subnet} (predicted from the lease)`,
    predicted: true,
    interface: null,
    lookup: null,
    facts: [
      `lease ${row?.key ?? subnet}: ${ctx.tf.fam.family === 6 ? 'PublicIPv6' : 'PublicIP'} ${publicIP}, VtepMAC ${lease.vtepMAC ?? '(none)'}, backend ${lease.backendType}${row?.expiresInSeconds != null ? `, expires in ${formatDuration(row.expiresInSeconds)}` : ''}`,
      `decapsulation: ${publicIP} UDP ${port} → ${ctx.deviceName} (VNI ${lease.vni}, ${lease.vtepMAC ?? '?'}) → route ${subnet} dev cni0 → pod ${formatIp(ctx.facts.dst)}`,
    ],
    commands: [
      `etcdctl get ${ctx.status.etcd.prefix}/subnets/${row?.key.replace(/^.*\/subnets\//, '') ?? subnet.replace('/', '-')}`,
      ...(ctx.facts.src === undefined
        ? []
        : [
            `flanneld-ts trace ${formatIp(ctx.facts.dst)} --from ${formatIp(ctx.facts.src)} --listen (on ${publicIP}, started before this trace: the same probes coming in)`,
            `flanneld-ts trace ${formatIp(ctx.facts.src)} --from ${formatIp(ctx.facts.dst)} (on ${publicIP}: the way back)`,
          ]),
    ],
    checks,
  };
}
