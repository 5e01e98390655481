/**
 * The first hops of a trace: the source pod's eth0 in its namespace, the host
 * veth that is its peer, and the bridge that veth is a port of (cni0) — or this
 * host itself when no --from is given. Pure.
 */
import { LinkDetail } from '../kernel/route-query';
import { cidrContains, formatCidr, formatIPv4, parseCidr } from '../net/ipv4';
import { PodFacts } from './pod-netns';
import { Check, Hop } from './report';
import { TraceContext, hostInterface, ok, problem, warning } from './hop-context';

export type HopDraft = Omit<Hop, 'step'>;

/** The source hops, and the bridge the pod's packet enters (undefined when the walk cannot go on). */
export function sourceHops(ctx: TraceContext): { hops: HopDraft[]; bridge: LinkDetail | undefined; stop: boolean } {
  const { facts, status } = ctx;
  if (facts.src === undefined) {
    const checks: Check[] = facts.kernelError ? [problem(facts.kernelError, 'run trace on a Linux node of the overlay, as root')] : [ok(`this host is ${status.self.publicIP ?? 'unknown'} on ${status.self.interface ?? 'no interface'}`)];
    const hop: HopDraft = {
      kind: 'host',
      title: `this host ${status.self.publicIP ?? ''}${status.self.subnet ? ` (lease ${status.self.subnet})` : ''}`.trim(),
      predicted: false,
      interface: null,
      lookup: null,
      facts: status.self.note ? [status.self.note] : [],
      commands: ['ip -4 addr show', 'ip route show default'],
      checks,
    };
    return { hops: [hop], bridge: undefined, stop: facts.kernelError !== undefined };
  }
  const src = formatIPv4(facts.src);
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
  const dst = formatIPv4(ctx.facts.dst);
  const checks: Check[] = [iface.up ? ok(`${iface.name} is up`) : problem(`the pod's ${iface.name} is down`, `${pod.enter} ip link set ${iface.name} up`)];
  if ('error' in route) checks.push(problem(`the pod has no route to ${dst}: ${route.error}`, 'recreate the pod: the CNI plugin installs its routes'));
  else checks.push(ok(`the pod routes ${dst} via ${route.gateway === undefined ? 'no gateway' : formatIPv4(route.gateway)} dev ${route.dev}`));
  const fl = ctx.device;
  if (fl && iface.mtu > fl.mtu) {
    checks.push(problem(`pod ${iface.name} MTU ${iface.mtu} is above ${fl.name}'s ${fl.mtu}: packets over ${fl.mtu} bytes cannot cross the overlay`, `${pod.enter} ip link set ${iface.name} mtu ${fl.mtu} (pods get FLANNEL_MTU from subnet.env when created)`));
  } else if (fl) {
    checks.push(ok(`MTU ${iface.mtu} fits ${fl.name}'s ${fl.mtu}`));
  }
  return {
    kind: 'pod',
    title: `pod ${formatIPv4(ctx.facts.src as number)} ${iface.name}@if${iface.peerIndex ?? '?'} in netns ${pod.display}`,
    predicted: false,
    interface: { name: iface.name, index: iface.index, mac: iface.mac, mtu: iface.mtu, addresses: iface.addresses.map(formatCidr), up: iface.up, netns: pod.display },
    lookup: 'error' in route ? `ip route get ${dst} → error ${route.error}` : `ip route get ${dst} → ${route.gateway === undefined ? '' : `via ${formatIPv4(route.gateway)} `}dev ${route.dev}`,
    facts: [],
    commands: [`${pod.enter} ip -d addr show ${iface.name}`, `${pod.enter} ip route get ${dst}`],
    checks,
  };
}

function bridgeHop(ctx: TraceContext, pod: PodFacts, bridge: LinkDetail): HopDraft {
  const iface = hostInterface(ctx, bridge);
  const info = ctx.interfaces.find((i) => i.index === bridge.index);
  const checks: Check[] = [bridge.up ? ok(`${bridge.name} is up`) : problem(`${bridge.name} is down`, `ip link set ${bridge.name} up`)];
  const gw = 'error' in pod.route ? undefined : pod.route.gateway;
  if (gw !== undefined) {
    const owns = (info?.addresses ?? []).some((a) => a.ip === gw);
    if (owns) checks.push(ok(`the pod's gateway ${formatIPv4(gw)} is ${bridge.name}'s address`));
    else checks.push(problem(`the pod's gateway ${formatIPv4(gw)} is not an address of ${bridge.name} (${iface.addresses.join(' ') || 'none'})`, `ip addr add ${formatIPv4(gw)}/${ctx.config.subnetLen} dev ${bridge.name} (the CNI bridge plugin adds it)`));
  }
  const own = ctx.status.self.subnet;
  if (own && info && !info.addresses.some((a) => cidrContains(parseCidr(own), a.ip))) {
    checks.push(warning(`${bridge.name} has no address in this host's lease ${own}`, 'the CNI config may use another subnet than subnet.env'));
  }
  const fl = ctx.device;
  if (fl && bridge.mtu > fl.mtu) checks.push(warning(`${bridge.name} MTU ${bridge.mtu} is above ${fl.name}'s ${fl.mtu}`, `ip link set ${bridge.name} mtu ${fl.mtu}`));
  const nf = ctx.facts.sysctls.get('net.bridge.bridge-nf-call-iptables');
  return {
    kind: 'bridge',
    title: `bridge ${bridge.name}`,
    predicted: false,
    interface: iface,
    lookup: null,
    facts: nf === undefined ? ['br_netfilter not loaded: bridged frames skip iptables'] : [`br_netfilter loaded, bridge-nf-call-iptables=${nf}${nf === '1' ? ': frames bridged between pods pass iptables' : ''}`],
    commands: [`ip -d link show ${bridge.name}`, `ip -4 addr show dev ${bridge.name}`, `bridge link show master ${bridge.name}`],
    checks,
  };
}
