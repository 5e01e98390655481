/**
 * The routing decision on this host: the kernel's own lookup for the packet
 * (RTM_GETROUTE, as `ip route get … iif cni0`), judged against the lease that
 * holds the destination and status's plan for that peer, plus what can stop or
 * rewrite a forwarded packet here: ip_forward, the FORWARD chain, masquerade
 * rules, and the reverse-path filter on the reply's way back. Pure.
 */
import { IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { FirewallPacket, FirewallVerdict, firewallVerdict, parseIptablesSave } from './iptables-path';
import { Check } from './report';
import { HopDraft } from './source-hops';
import { TraceContext, confSysctl, describeLookup, errnoText, familyAddresses, linkName, lookupCommand, ok, problem, publicText, rpFilter, warning } from './hop-context';
import { familyPool } from '../overlay/desired';


export interface RouteOutcome {
  readonly hop: HopDraft;
  /** ifindex the packet leaves by, when the lookup answered. */
  readonly oif: number | undefined;
  readonly gateway: IpAddr | undefined;
  /** What a masquerade or SNAT rule rewrites the source to, when one applies. */
  readonly rewrittenSrc: IpAddr | undefined;
}

function firewallText(v: FirewallVerdict, chain: string): string {
  return `${chain}: ${v.rule ?? `policy ${v.target}`}${v.uncertain ? ' (a rule with matches trace does not read comes first and may decide instead)' : ''}`;
}

/** The routing hop. `bridgeName` is where a pod's packet comes in (undefined for this host's own packet). */
export function routeHop(ctx: TraceContext, bridgeName: string | undefined): RouteOutcome {
  const { facts, deviceName, dstLease, tf } = ctx;
  const { fam } = tf;
  const dst = formatIp(facts.dst);
  const pool = familyPool(ctx.config, fam);
  const network = pool ? formatAnyCidr(pool.network) : '?';
  const checks: Check[] = [];
  const hopFacts: string[] = [];
  const commands: string[] = [];
  const fwd = facts.forward;
  const answer = fwd && 'answer' in fwd ? fwd.answer : undefined;
  const forwarding = facts.src !== undefined;

  if (!pool || !fam.contains(pool.network, facts.dst)) {
    checks.push(problem(`${dst} is outside the overlay network ${network}: trace follows pod-to-pod traffic only`, 'give a pod IP inside the network'));
  } else if (!dstLease) {
    const leases = ctx.status.leases.filter((l) => l.state === 'valid').flatMap((l) => [fam.family === 6 ? l.subnet6 : l.subnet].filter((s) => s !== null)).join(', ');
    checks.push(problem(`${dst} is in no lease: no node holds a subnet for it (leases: ${leases || 'none'})`, 'check the pod IP; a node whose lease is gone takes one again when flanneld-ts restarts there'));
  } else {
    checks.push(ok(`${dst} is in lease ${formatAnyCidr(dstLease.subnet)} of node ${publicText(dstLease.publicIP)}${ctx.local ? ' (this node)' : ''}`));
  }

  const ipForward = facts.sysctls.get(tf.forwardSysctl);
  if (forwarding) {
    hopFacts.push(`${tf.forwardSysctl}=${ipForward ?? '?'}`);
    commands.push(`sysctl ${tf.forwardSysctl}`);
    if (ipForward === '0') checks.push(problem(`${tf.forwardName} is off: this host drops the pod's packets instead of routing them`, `sysctl -w ${tf.forwardSysctl}=1`));
  }
  if (fwd) {
    commands.push(lookupCommand(ctx, fwd));
    if (!answer) {
      if (!(ipForward === '0' && forwarding)) checks.push(problem(`the kernel's lookup for ${dst} fails: ${errnoText('error' in fwd ? fwd.error : '?')}`, `check ${lookupCommand(ctx, fwd)} and the rp_filter of ${bridgeName ?? 'the interface'}`));
    } else if (answer.type !== 'unicast' && answer.type !== 'local') {
      checks.push(problem(`the kernel's route for ${dst} is ${answer.type}`, `ip ${tf.ipFlag}route show match ${dst}`));
    } else if (dstLease && !ctx.local) {
      const subnet = formatAnyCidr(dstLease.subnet);
      const peer = ctx.status.kernel.peers.find((p) => p.subnet === subnet);
      const direct = peer?.mode === 'direct';
      // DirectRouting: a direct peer is reached by a plain route via its PublicIP (PublicIPv6), on whichever device the kernel picked.
      const want = direct ? `${subnet} via ${publicText(dstLease.publicIP)} proto 152` : `${subnet} via ${formatIp(dstLease.subnet.ip)} dev ${deviceName} onlink`;
      const viaDevice = direct || linkName(ctx, answer.oif) === deviceName;
      if (peer && peer.route !== null && peer.route !== 'ok') {
        checks.push(problem(`route ${want} is ${peer.route}${viaDevice ? '' : `: the packet leaves by ${linkName(ctx, answer.oif)} instead`}`, `ip ${tf.ipFlag}route replace ${want} (flanneld-ts programs it: is it running?)`));
      } else if (!viaDevice) {
        checks.push(problem(`the packet leaves by ${linkName(ctx, answer.oif)}, not ${deviceName}`, `ip ${tf.ipFlag}route replace ${want}`));
      } else {
        checks.push(ok(direct ? `direct route ${want} (DirectRouting): the packet leaves ${linkName(ctx, answer.oif)} unencapsulated` : `route ${want}`));
      }
    } else if (ctx.local && bridgeName && linkName(ctx, answer.oif) !== bridgeName) {
      checks.push(problem(`${dst} is in this node's lease but leaves by ${linkName(ctx, answer.oif)}, not ${bridgeName}`, `ip ${tf.ipFlag}route show match ${dst}`));
    }
  }

  let rewrittenSrc: IpAddr | undefined;
  const ipt = tf.iptables;
  const oifName = answer ? linkName(ctx, answer.oif) : undefined;
  if (forwarding && answer && oifName) {
    if ('error' in facts.iptables) {
      hopFacts.push(`firewall not read: ${ipt}-save: ${facts.iptables.error}`);
    } else {
      const tables = parseIptablesSave(facts.iptables.text);
      commands.push(`${ipt}-save -t filter`, `${ipt}-save -t nat`);
      const packet: FirewallPacket = { src: facts.src as IpAddr, dst: facts.dst, in: bridgeName, out: oifName, protocol: tf.icmp.protocols };
      const replyPacket: FirewallPacket = { src: facts.dst, dst: facts.src as IpAddr, in: oifName, out: bridgeName, protocol: tf.icmp.protocols };
      for (const [what, p] of [['request', packet], ['reply', replyPacket]] as const) {
        const v = firewallVerdict(tables, 'filter', 'FORWARD', p);
        if (!v) continue;
        hopFacts.push(`${what} ${firewallText(v, 'FORWARD')}`);
        const dropped = v.target === 'DROP' || v.target === 'REJECT';
        if (dropped && !v.uncertain) {
          const cause = v.rule ? `rule ${v.rule} drops it` : `policy ${v.target} and no rule accepts ${network}`;
          checks.push(problem(`FORWARD drops the ${what} ${formatIp(p.src)} → ${formatIp(p.dst)}: ${cause}`, `${ipt} -A FORWARD -s ${network} -j ACCEPT; ${ipt} -A FORWARD -d ${network} -j ACCEPT (flanneld-ts adds these unless --no-iptables-forward-rules)`));
        } else if (dropped) {
          checks.push(warning(`FORWARD may drop the ${what}: ${firewallText(v, 'FORWARD')}`, `${ipt} -A FORWARD -s ${network} -j ACCEPT`));
        } else {
          checks.push(ok(`FORWARD accepts the ${what} (${v.rule ? 'rule' : 'policy'} ${v.target})`));
        }
      }
      const nat = firewallVerdict(tables, 'nat', 'POSTROUTING', packet);
      if (nat && (nat.target === 'MASQUERADE' || nat.target === 'SNAT')) {
        // SNAT --to-source 10.0.0.1[-…][:port] or [fc00::1]…; MASQUERADE takes the outgoing interface's first address.
        const to = /--to-source\s+\[?([0-9A-Fa-f.:]+?)\]?(?:[-:]\d|\s|$)/.exec(nat.rule ?? '')?.[1];
        rewrittenSrc = (to === undefined ? undefined : fam.tryParse(to)) ?? familyAddresses(ctx, ctx.interfaces.find((i) => i.index === answer.oif))[0]?.ip;
        const as = rewrittenSrc === undefined ? `${oifName}'s address` : formatIp(rewrittenSrc);
        hopFacts.push(`nat ${firewallText(nat, 'POSTROUTING')}`);
        checks.push(warning(`the source ${formatIp(facts.src as IpAddr)} is rewritten to ${as} by ${nat.rule}: ${dst} sees this node, not the pod`, 'if that is not wanted, run flanneld-ts with --ip-masq (FLANNEL_IPMASQ=true) so the CNI bridge plugin does not masquerade pod traffic'));
      } else if (nat) {
        checks.push(ok(`no masquerade: nat POSTROUTING ${nat.rule ? `rule ${nat.target}` : `policy ${nat.target}`}`));
      }
    }
    const rp = rpFilter(ctx, oifName);
    if (tf.rpFilter) hopFacts.push(rp.text);
    if (tf.rpFilter) commands.push(`sysctl net.ipv4.conf.all.rp_filter ${confSysctl(oifName, 'rp_filter')}`);
    const reply = facts.reply;
    if (reply) {
      commands.push(lookupCommand(ctx, reply));
      hopFacts.push(`reply: ${describeLookup(ctx, reply)}`);
      if ('error' in reply && !(ipForward === '0')) {
        const fix = reply.error === 'EXDEV' ? `sysctl -w ${confSysctl(oifName, 'rp_filter')}=2 (loose) or fix the route back to ${dst}` : `check ${lookupCommand(ctx, reply)}`;
        checks.push(problem(`the reply from ${dst} arriving on ${oifName} is dropped: ${errnoText(reply.error)} (${rp.text})`, fix));
      } else if ('answer' in reply) {
        checks.push(ok(`the reply from ${dst} on ${oifName} ${tf.rpFilter ? `passes the reverse-path check (${rp.text})` : 'has a route back (IPv6 has no rp_filter)'}`));
      }
    }
  }

  const hostIP = fam.family === 6 ? ctx.status.self.publicIPv6 : ctx.status.self.publicIP;
  return {
    hop: {
      kind: 'route',
      title: `routing on this host${hostIP ? ` ${hostIP}` : ''}${bridgeName ? ` (the packet arrives on ${bridgeName})` : ''}`,
      predicted: false,
      interface: null,
      lookup: fwd ? describeLookup(ctx, fwd) : null,
      facts: hopFacts,
      commands,
      checks,
    },
    oif: answer?.oif,
    gateway: answer?.gateway,
    rewrittenSrc,
  };
}
