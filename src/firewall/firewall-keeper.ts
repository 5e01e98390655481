/**
 * Start-up and resync of the firewall rules (contract §8, §16), whichever
 * backend the network config chose. At start: the backend not in use has its
 * rules removed (iptables mode deletes our nft tables, as flanneld does;
 * nftables mode deletes our iptables chains and jumps, in nat and filter, which
 * flanneld's cleanup leaves half done), then every set is written once. Then
 * every --iptables-resync seconds a check rewrites what is missing or altered
 * (flanneld does so for iptables only; we do it for nftables too), skipped
 * while nf_tables' ruleset generation says nothing changed (nft-generation.ts).
 */
import { Clock } from '../util/clock';
import { HostError, errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { AddressFamily, IPV4, formatAnyCidr } from '../net/family';
import { Firewall, FirewallOptions, FirewallTarget, RulesetGeneration } from './firewall';

/** Opens a backend for one family's rules (iptables or ip6tables; nft table ip flannel-ipv4 or ip6 flannel-ipv6). */
export interface FirewallBackends {
  iptables(opts: FirewallOptions, log: Logger, family?: AddressFamily): Promise<Firewall>;
  nftables(opts: FirewallOptions, log: Logger, family?: AddressFamily): Promise<Firewall>;
}

const NO_RULES: FirewallOptions = { ipMasq: false, forwardRules: false, fullyRandom: false };

/**
 * Opens the chosen backend, removes the other's rules and writes ours. In
 * nftables mode a failure is fatal (flanneld exits 1 when it cannot make its
 * tables); in iptables mode it is logged and the resync keeps trying, as before.
 */
export async function startFirewall(nftables: boolean, opts: FirewallOptions, target: FirewallTarget, backends: FirewallBackends, log: Logger, family: AddressFamily = IPV4): Promise<Firewall> {
  const [mode, other] = nftables ? (['nftables', 'iptables'] as const) : (['iptables', 'nftables'] as const);
  const firewall = await backends[mode](opts, log, family);
  try {
    await (await backends[other](NO_RULES, log, family)).remove();
  } catch (err) {
    // A host without the other tool cannot hold rules we made with it (flanneld exits 1 without iptables in nftables mode; we go on).
    log.warn({ err: errorMessage(err) }, `could not remove our ${other} rules: ${errorMessage(err)}`);
  }
  try {
    await firewall.ensure(target, true);
  } catch (err) {
    if (nftables) throw err instanceof HostError ? err : new HostError(errorMessage(err), { cause: err });
    log.error({ err: errorMessage(err) }, errorMessage(err));
  }
  return firewall;
}

/**
 * Re-checks every `resyncMs` until `signal` aborts; failures are logged once per
 * outage. With `generation` (only for a firewall whose rules are in nf_tables), a period in which nf_tables'
 * ruleset generation has not moved since a check found every set in place ends
 * without forking a listing: no rule of the host changed, ours included. Any
 * change of any rule (a flush, someone's deleted rule, our own rewrite) moves
 * it, and the next period lists and repairs as before, so drift is still
 * repaired within one period.
 */
export async function keepFirewall(firewall: Firewall, target: () => FirewallTarget, resyncMs: number, clock: Clock, log: Logger, signal: AbortSignal, generation?: RulesetGeneration): Promise<void> {
  let failing = false;
  // The generation read just before the last check that wrote nothing, for that target.
  let clean: { generation: number; target: string } | undefined;
  try {
    while (!signal.aborted) {
      await clock.sleep(resyncMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      const want = target();
      const key = `${formatAnyCidr(want.network)} ${formatAnyCidr(want.subnet)}`;
      // Read before listing: a change made during the listing moves it past what we keep.
      const gen = await generation?.read();
      if (gen !== undefined && clean?.generation === gen && clean.target === key) continue;
      clean = undefined;
      try {
        const written = await firewall.ensure(want);
        if (failing) log.info(`${firewall.kind} rules restored`);
        failing = false;
        if (gen !== undefined && written.length === 0) clean = { generation: gen, target: key };
      } catch (err) {
        if (!failing) log.warn({ err: errorMessage(err) }, errorMessage(err));
        failing = true;
      }
    }
  } finally {
    generation?.close();
  }
}
