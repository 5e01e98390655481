/**
 * The first hops of a trace: the source pod's eth0 in its namespace, the host
 * veth that is its peer, and the bridge that veth is a port of (cni0) — or this
 * host itself when no --from is given. Pure.
 */
import { LinkDetail } from '../kernel/route-query';
import { IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { PodFacts } from './pod-netns';
import { Check, Hop } from './report';
import { TraceContext, familyAddresses, hostInterface, ok, problem, warning } from './hop-context';

export type HopDraft = Omit<Hop, 'step'>;

/** The source hops, and the bridge the pod's packet enters (undefined when the walk cannot go on). */
export function sourceHops(ctx: TraceContext): { hops: HopDraft[]; bridge: LinkDetail | undefined; stop: boolean } {
  const { facts, status } = ctx;
  if (facts.src === undefined) {
    const publicIP = ctx.tf.fam.family === 6 ? status.self.publicIPv6 : status.self.publicIP;
    const checks: Check[] = facts.kernelError ? [problem(facts.kernelError, 'run trace on a Linux node of the overlay, as root')] : [ok(`this host is ${publicIP ?? 'unknown'} on ${status.self.interface ?? 'no interface'}`)];
    const hop: HopDraft = {
      kind: 'host',
      title: `this host ${publicIP ?? ''}${ctx.ownSubnet ? ` (lease ${ctx.ownSubnet})` : ''}`.trim(),
      predicted: false,
      interface: null,
      lookup: null,
      facts: status.self.note ? [status.self.note] : [],
      commands: [`ip -${ctx.tf.fam.family} addr show`, `ip ${ctx.tf.ipFlag}route show default`],
      checks,
    };
    return { hops: [hop], bridge: undefined, stop: facts.kernelError !== undefined };
  }
  const src = formatIp(facts.src);
  const pod = facts.pod;
  if (facts.kernelError || !pod || !('iface' in pod)) {
    const why = facts.kernelError ?? (pod && 'notFound' in pod ? pod.notFound : 'not looked for');
    const hop: HopDraft = {
      kind: 'pod',
      title: `pod ${src}: not found on this host`,
      predicted: false,
      interface: null,
      lookup: null,
      facts: [],
      commands: ['ip -d link show type veth', 'ip netns list-id', 'lsns -t net'],
      checks: [problem(`pod ${src} is not on this host: ${why}`, 'run trace on the node that runs the pod (kubectl get pod -o wide), as root')],
    };
    return { hops: [hop], bridge: undefined, stop: true };
  }
  const hops: HopDraft[] = [podHop(ctx, pod)];
  const veth = ctx.facts.links.find((l) => l.linkNetnsid === pod.nsid && l.peerIndex === pod.iface.index);
  if (!veth) {
    hops.push({ kind: 'veth', title: 'host veth: none', predicted: false, interface: null, lookup: null, facts: [], commands: ['ip -d link show type veth'], checks: [problem(`no host veth is the peer of the pod's ${pod.iface.name} (ifindex ${pod.iface.index})`, 'recreate the pod (CNI DEL and ADD)')] });
    return { hops, bridge: undefined, stop: true };
  }
  const bridge = ctx.facts.links.find((l) => l.index === veth.master);
  hops.push({
    kind: 'veth',
    title: `host veth ${veth.name}@if${pod.iface.index}, peer of the pod's ${pod.iface.name}`,
    predicted: false,
    interface: hostInterface(ctx, veth),
    lookup: bridge ? `master ${bridge.name}` : null,
    facts: [],
    commands: [`ip -d link show ${veth.name}`],
    checks: [
      veth.up ? ok(`${veth.name} is up`) : problem(`${veth.name} is down`, `ip link set ${veth.name} up`),
      bridge ? ok(`${veth.name} is a port of ${bridge.name}`) : problem(`${veth.name} is a port of no bridge`, `ip link set ${veth.name} master cni0`),
    ],
  });
  if (!bridge) return { hops, bridge: undefined, stop: true };
  hops.push(bridgeHop(ctx, pod, bridge));
  return { hops, bridge, stop: false };
}

function podHop(ctx: TraceContext, pod: PodFacts): HopDraft {
  const { iface, route } = pod;
  const dst = formatIp(ctx.facts.dst);
  const ip = `ip ${ctx.tf.ipFlag}`;
  const checks: Check[] = [iface.up ? ok(`${iface.name} is up`) : problem(`the pod's ${iface.name} is down`, `${pod.enter} ip link set ${iface.name} up`)];
  if ('error' in route) checks.push(problem(`the pod has no route to ${dst}: ${route.error}`, 'recreate the pod: the CNI plugin installs its routes'));
  else checks.push(ok(`the pod routes ${dst} via ${route.gateway === undefined ? 'no gateway' : formatIp(route.gateway)} dev ${route.dev}`));
  const fl = ctx.device;
  // FLANNEL_MTU is flannel.<VNI>'s (underlay − 50); flannel-v6.<VNI> is 20 bytes lower (IPv6's longer outer header), so an
  // IPv6 pod is expected to be that much above it: the host answers with ICMPv6 Packet Too Big and the pod sends smaller.
  const slack = ctx.tf.vxlanOverhead - 50;
  if (fl && iface.mtu > fl.mtu + slack) {
    checks.push(problem(`pod ${iface.name} MTU ${iface.mtu} is above ${fl.name}'s ${fl.mtu}: packets over ${fl.mtu} bytes cannot cross the overlay`, `${pod.enter} ip link set ${iface.name} mtu ${fl.mtu} (pods get FLANNEL_MTU from subnet.env when created)`));
  } else if (fl && iface.mtu > fl.mtu) {
    checks.push(warning(`pod ${iface.name} MTU ${iface.mtu} is above ${fl.name}'s ${fl.mtu}: IPv6 packets over ${fl.mtu} bytes get ICMPv6 Packet Too Big from this host and are sent again smaller`, `FLANNEL_MTU is flannel.${ctx.config.backend.vni}'s MTU, shared by both families; ${pod.enter} ip link set ${iface.name} mtu ${fl.mtu} avoids the round trip`));
  } else if (fl) {
    checks.push(ok(`MTU ${iface.mtu} fits ${fl.name}'s ${fl.mtu}`));
  }
  return {
    kind: 'pod',
    title: `pod ${formatIp(ctx.facts.src as IpAddr)} ${iface.name}@if${iface.peerIndex ?? '?'} in netns ${pod.display}`,
    predicted: false,
    // The addresses of the traced family: a dual-stack pod has both, and IPv6 a link-local one besides.
    interface: { name: iface.name, index: iface.index, mac: iface.mac, mtu: iface.mtu, addresses: iface.addresses.filter((a) => typeof a.ip === typeof ctx.facts.dst).map(formatAnyCidr), up: iface.up, netns: pod.display },
    lookup: 'error' in route ? `${ip}route get ${dst} → error ${route.error}` : `${ip}route get ${dst} → ${route.gateway === undefined ? '' : `via ${formatIp(route.gateway)} `}dev ${route.dev}`,
    facts: [],
    commands: [`${pod.enter} ip -d addr show ${iface.name}`, `${pod.enter} ${ip}route get ${dst}`],
    checks,
  };
}

function bridgeHop(ctx: TraceContext, pod: PodFacts, bridge: LinkDetail): HopDraft {
  const iface = hostInterface(ctx, bridge);
  const info = ctx.interfaces.find((i) => i.index === bridge.index);
  const addrs = familyAddresses(ctx, info);
  const checks: Check[] = [bridge.up ? ok(`${bridge.name} is up`) : problem(`${bridge.name} is down`, `ip link set ${bridge.name} up`)];
  const gw = 'error' in pod.route ? undefined : pod.route.gateway;
  if (gw !== undefined) {
    const owns = addrs.some((a) => a.ip === gw);
    const len = ctx.dstLease?.subnet.prefixLen ?? ctx.config.subnetLen;
    if (owns) checks.push(ok(`the pod's gateway ${formatIp(gw)} is ${bridge.name}'s address`));
    else checks.push(problem(`the pod's gateway ${formatIp(gw)} is not an address of ${bridge.name} (${iface.addresses.join(' ') || 'none'})`, `ip addr add ${formatIp(gw)}/${len} dev ${bridge.name} (the CNI bridge plugin adds it)`));
  }
  const own = ctx.ownSubnet;
  const { fam } = ctx.tf;
  if (own && info && !addrs.some((a) => fam.contains(fam.parseCidr(own), a.ip))) {
    checks.push(warning(`${bridge.name} has no address in this host's lease ${own}`, 'the CNI config may use another subnet than subnet.env'));
  }
  const fl = ctx.device;
  if (fl && bridge.mtu > fl.mtu + ctx.tf.vxlanOverhead - 50) checks.push(warning(`${bridge.name} MTU ${bridge.mtu} is above ${fl.name}'s ${fl.mtu}`, `ip link set ${bridge.name} mtu ${fl.mtu}`));
  const nf = ctx.facts.sysctls.get(ctx.tf.bridgeNfSysctl);
  return {
    kind: 'bridge',
    title: `bridge ${bridge.name}`,
    predicted: false,
    interface: iface,
    lookup: null,
    facts: nf === undefined ? [`br_netfilter not loaded: bridged frames skip ${ctx.tf.iptables}`] : [`br_netfilter loaded, ${ctx.tf.bridgeNfSysctl.replace('net.bridge.', '')}=${nf}${nf === '1' ? `: frames bridged between pods pass ${ctx.tf.iptables}` : ''}`],
    commands: [`ip -d link show ${bridge.name}`, `ip -${ctx.tf.fam.family} addr show dev ${bridge.name}`, `bridge link show master ${bridge.name}`],
    checks,
  };
}
