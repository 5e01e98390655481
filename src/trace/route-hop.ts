/**
 * The routing decision on this host: the kernel's own lookup for the packet
 * (RTM_GETROUTE, as `ip route get … iif cni0`), judged against the lease that
 * holds the destination and status's plan for that peer, plus what can stop or
 * rewrite a forwarded packet here: ip_forward, the FORWARD chain, masquerade
 * rules, and the reverse-path filter on the reply's way back. Pure.
 */
import { cidrContains, formatCidr, formatIPv4, parseIPv4 } from '../net/ipv4';
import { FirewallPacket, FirewallVerdict, firewallVerdict, parseIptablesSave } from './iptables-path';
import { Check } from './report';
import { HopDraft } from './source-hops';
import { TraceContext, confSysctl, describeLookup, errnoText, linkName, lookupCommand, ok, problem, rpFilter, warning } from './hop-context';

export interface RouteOutcome {
  readonly hop: HopDraft;
  /** ifindex the packet leaves by, when the lookup answered. */
  readonly oif: number | undefined;
  readonly gateway: number | undefined;
  /** What a masquerade or SNAT rule rewrites the source to, when one applies. */
  readonly rewrittenSrc: number | undefined;
}

function firewallText(v: FirewallVerdict, chain: string): string {
  return `${chain}: ${v.rule ?? `policy ${v.target}`}${v.uncertain ? ' (a rule with matches trace does not read comes first and may decide instead)' : ''}`;
}

/** The routing hop. `bridgeName` is where a pod's packet comes in (undefined for this host's own packet). */
export function routeHop(ctx: TraceContext, bridgeName: string | undefined): RouteOutcome {
  const { facts, config, deviceName, dstLease } = ctx;
  const dst = formatIPv4(facts.dst);
  const network = formatCidr(config.network);
  const checks: Check[] = [];
  const hopFacts: string[] = [];
  const commands: string[] = [];
  const fwd = facts.forward;
  const answer = fwd && 'answer' in fwd ? fwd.answer : undefined;
  const forwarding = facts.src !== undefined;

  if (!cidrContains(config.network, facts.dst)) {
    checks.push(problem(`${dst} is outside the overlay network ${network}: trace follows pod-to-pod traffic only`, 'give a pod IP inside the network'));
  } else if (!dstLease) {
    const leases = ctx.status.leases.filter((l) => l.state === 'valid').map((l) => l.subnet).join(', ');
    checks.push(problem(`${dst} is in no lease: no node holds a subnet for it (leases: ${leases || 'none'})`, 'check the pod IP; a node whose lease is gone takes one again when flanneld-ts restarts there'));
  } else {
    checks.push(ok(`${dst} is in lease ${formatCidr(dstLease.subnet)} of node ${formatIPv4(dstLease.publicIP)}${ctx.local ? ' (this node)' : ''}`));
  }

  const ipForward = facts.sysctls.get('net.ipv4.ip_forward');
  if (forwarding) {
    hopFacts.push(`net.ipv4.ip_forward=${ipForward ?? '?'}`);
    commands.push('sysctl net.ipv4.ip_forward');
    if (ipForward === '0') checks.push(problem('ip_forward is off: this host drops the pod\'s packets instead of routing them', 'sysctl -w net.ipv4.ip_forward=1'));
  }
  if (fwd) {
    commands.push(lookupCommand(ctx, fwd));
    if (!answer) {
      if (!(ipForward === '0' && forwarding)) checks.push(problem(`the kernel's lookup for ${dst} fails: ${errnoText('error' in fwd ? fwd.error : '?')}`, `check ${lookupCommand(ctx, fwd)} and the rp_filter of ${bridgeName ?? 'the interface'}`));
    } else if (answer.type !== 'unicast' && answer.type !== 'local') {
      checks.push(problem(`the kernel's route for ${dst} is ${answer.type}`, `ip route show match ${dst}`));
    } else if (dstLease && !ctx.local) {
      const peer = ctx.status.kernel.peers.find((p) => p.subnet === formatCidr(dstLease.subnet));
      const direct = peer?.mode === 'direct';
      // DirectRouting: a direct peer is reached by a plain route via its PublicIP, on whichever device the kernel picked.
      const want = direct ? `${formatCidr(dstLease.subnet)} via ${formatIPv4(dstLease.publicIP)} proto 152` : `${formatCidr(dstLease.subnet)} via ${formatIPv4(dstLease.subnet.ip)} dev ${deviceName} onlink`;
      const viaDevice = direct || linkName(ctx, answer.oif) === deviceName;
      if (peer && peer.route !== null && peer.route !== 'ok') {
        checks.push(problem(`route ${want} is ${peer.route}${viaDevice ? '' : `: the packet leaves by ${linkName(ctx, answer.oif)} instead`}`, `ip route replace ${want} (flanneld-ts programs it: is it running?)`));
      } else if (!viaDevice) {
        checks.push(problem(`the packet leaves by ${linkName(ctx, answer.oif)}, not ${deviceName}`, `ip route replace ${want}`));
      } else {
        checks.push(ok(direct ? `direct route ${want} (DirectRouting): the packet leaves ${linkName(ctx, answer.oif)} unencapsulated` : `route ${want}`));
      }
    } else if (ctx.local && bridgeName && linkName(ctx, answer.oif) !== bridgeName) {
      checks.push(problem(`${dst} is in this node's lease but leaves by ${linkName(ctx, answer.oif)}, not ${bridgeName}`, `ip route show match ${dst}`));
    }
  }

  let rewrittenSrc: number | undefined;
  const oifName = answer ? linkName(ctx, answer.oif) : undefined;
  if (forwarding && answer && oifName) {
    if ('error' in facts.iptables) {
      hopFacts.push(`firewall not read: iptables-save: ${facts.iptables.error}`);
    } else {
      const tables = parseIptablesSave(facts.iptables.text);
      commands.push('iptables-save -t filter', 'iptables-save -t nat');
      const packet: FirewallPacket = { src: facts.src as number, dst: facts.dst, in: bridgeName, out: oifName, protocol: 'icmp' };
      const replyPacket: FirewallPacket = { src: facts.dst, dst: facts.src as number, in: oifName, out: bridgeName, protocol: 'icmp' };
      for (const [what, p] of [['request', packet], ['reply', replyPacket]] as const) {
        const v = firewallVerdict(tables, 'filter', 'FORWARD', p);
        if (!v) continue;
        hopFacts.push(`${what} ${firewallText(v, 'FORWARD')}`);
        const dropped = v.target === 'DROP' || v.target === 'REJECT';
        if (dropped && !v.uncertain) {
          const cause = v.rule ? `rule ${v.rule} drops it` : `policy ${v.target} and no rule accepts ${network}`;
          checks.push(problem(`FORWARD drops the ${what} ${formatIPv4(p.src)} → ${formatIPv4(p.dst)}: ${cause}`, `iptables -A FORWARD -s ${network} -j ACCEPT; iptables -A FORWARD -d ${network} -j ACCEPT (flanneld-ts adds these unless --no-iptables-forward-rules)`));
        } else if (dropped) {
          checks.push(warning(`FORWARD may drop the ${what}: ${firewallText(v, 'FORWARD')}`, `iptables -A FORWARD -s ${network} -j ACCEPT`));
        } else {
          checks.push(ok(`FORWARD accepts the ${what} (${v.rule ? 'rule' : 'policy'} ${v.target})`));
        }
      }
      const nat = firewallVerdict(tables, 'nat', 'POSTROUTING', packet);
      if (nat && (nat.target === 'MASQUERADE' || nat.target === 'SNAT')) {
        const to = /--to-source\s+(\d+\.\d+\.\d+\.\d+)/.exec(nat.rule ?? '')?.[1];
        // MASQUERADE takes the outgoing interface's first address.
        rewrittenSrc = to ? parseIPv4(to) : ctx.interfaces.find((i) => i.index === answer.oif)?.addresses[0]?.ip;
        const as = rewrittenSrc === undefined ? `${oifName}'s address` : formatIPv4(rewrittenSrc);
        hopFacts.push(`nat ${firewallText(nat, 'POSTROUTING')}`);
        checks.push(warning(`the source ${formatIPv4(facts.src as number)} is rewritten to ${as} by ${nat.rule}: ${dst} sees this node, not the pod`, 'if that is not wanted, run flanneld-ts with --ip-masq (FLANNEL_IPMASQ=true) so the CNI bridge plugin does not masquerade pod traffic'));
      } else if (nat) {
        checks.push(ok(`no masquerade: nat POSTROUTING ${nat.rule ? `rule ${nat.target}` : `policy ${nat.target}`}`));
      }
    }
    const rp = rpFilter(ctx, oifName);
    hopFacts.push(rp.text);
    commands.push(`sysctl net.ipv4.conf.all.rp_filter ${confSysctl(oifName, 'rp_filter')}`);
    const reply = facts.reply;
    if (reply) {
      commands.push(lookupCommand(ctx, reply));
      hopFacts.push(`reply: ${describeLookup(ctx, reply)}`);
      if ('error' in reply && !(ipForward === '0')) {
        const fix = reply.error === 'EXDEV' ? `sysctl -w ${confSysctl(oifName, 'rp_filter')}=2 (loose) or fix the route back to ${dst}` : `check ${lookupCommand(ctx, reply)}`;
        checks.push(problem(`the reply from ${dst} arriving on ${oifName} is dropped: ${errnoText(reply.error)} (${rp.text})`, fix));
      } else if ('answer' in reply) {
        checks.push(ok(`the reply from ${dst} on ${oifName} passes the reverse-path check (${rp.text})`));
      }
    }
  }

  return {
    hop: {
      kind: 'route',
      title: `routing on this host${ctx.status.self.publicIP ? ` ${ctx.status.self.publicIP}` : ''}${bridgeName ? ` (the packet arrives on ${bridgeName})` : ''}`,
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
