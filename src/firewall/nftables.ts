/**
 * The nftables side of the Firewall seam, chosen by `"EnableNFTables": true` in
 * the network config (contract §16). Tables `ip flannel-ipv4` and
 * `ip6 flannel-ipv6` (flanneld makes both, even for IPv4 only), chain `forward`
 * (filter, hook forward, priority filter) with the --iptables-forward-rules
 * accepts, chain `postrtg` (nat, hook postrouting, priority srcnat) with the
 * --ip-masq rules. Applied with the `nft` tool, one atomic `nft -f` script per
 * write that (re)creates, flushes and refills our chains; checked against
 * `nft list table`. Unlike flanneld we check every --iptables-resync seconds.
 *
 * The masquerade rules are the iptables ones (§8) in nft syntax, which differs
 * from flanneld's nft rules on purpose (README "Firewall"): flanneld's rule 4
 * reads `ip saddr != PN ip daddr CN return`, which returns all traffic from
 * outside the network before rule 6 can masquerade it, and its mark match is
 * exact where iptables masks 0x4000.
 *
 * One instance per family: IPv4 rules live in `ip flannel-ipv4` with `ip
 * saddr/daddr`, IPv6 ones in `ip6 flannel-ipv6` with `ip6 saddr/daddr` and
 * `ff00::/8` for multicast (contract §16).
 */
import { AddressFamily, AnyCidr, IPV4, formatAnyCidr, isCidr6 } from '../net/family';
import { ExecResult, run } from '../testbed/exec';
import { HostError, errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { Firewall, FirewallOptions, FirewallTarget, firstLine } from './firewall';

export const NFT_TABLE = 'flannel-ipv4';
export const NFT_TABLE6 = 'flannel-ipv6';

export interface NftChain {
  readonly name: 'forward' | 'postrtg';
  /** The chain's first line as `nft list` prints it. */
  readonly header: string;
  /** The rules as `nft list` prints them (also valid `add rule` input). */
  readonly rules: readonly string[];
}

const FORWARD_HEADER = 'type filter hook forward priority filter; policy accept;';
const POSTRTG_HEADER = 'type nat hook postrouting priority srcnat; policy accept;';

/** The nft family of a network's rules and table: `ip` (flannel-ipv4) or `ip6` (flannel-ipv6). */
export function nftFamily(family: AddressFamily): { readonly family: 'ip' | 'ip6'; readonly table: string } {
  return family.family === 6 ? { family: 'ip6', table: NFT_TABLE6 } : { family: 'ip', table: NFT_TABLE };
}

export function nftMasqChain(network: AnyCidr, subnet: AnyCidr, fullyRandom: boolean): NftChain {
  const cn = formatAnyCidr(network);
  const pn = formatAnyCidr(subnet);
  const ip = isCidr6(network) ? 'ip6' : 'ip';
  const multicast = isCidr6(network) ? 'ff00::/8' : '224.0.0.0/4';
  const masq = `masquerade${fullyRandom ? ' fully-random' : ''}`;
  return {
    name: 'postrtg',
    header: POSTRTG_HEADER,
    rules: [
      'meta mark & 0x00004000 == 0x00004000 return',
      `${ip} saddr ${pn} ${ip} daddr ${cn} return`,
      `${ip} saddr ${cn} ${ip} daddr ${pn} return`,
      `${ip} saddr != ${cn} ${ip} daddr ${pn} return`,
      `${ip} saddr ${cn} ${ip} daddr != ${multicast} ${masq}`,
      `${ip} saddr != ${cn} ${ip} daddr ${cn} ${masq}`,
    ],
  };
}

export function nftForwardChain(network: AnyCidr): NftChain {
  const cn = formatAnyCidr(network);
  const ip = isCidr6(network) ? 'ip6' : 'ip';
  return { name: 'forward', header: FORWARD_HEADER, rules: [`${ip} saddr ${cn} accept`, `${ip} daddr ${cn} accept`] };
}

/** `nft -f` input that creates both tables and (re)creates, flushes and refills each chain of `family`'s table: one transaction. */
export function nftScript(chains: readonly NftChain[], family: AddressFamily = IPV4): string {
  const lines = [`add table ip ${NFT_TABLE}`, `add table ip6 ${NFT_TABLE6}`];
  const t = nftFamily(family);
  for (const c of chains) {
    const spec = c.header.replace(' policy accept;', '').replace(/;$/, ' ;');
    lines.push(`add chain ${t.family} ${t.table} ${c.name} { ${spec} }`, `flush chain ${t.family} ${t.table} ${c.name}`, ...c.rules.map((r) => `add rule ${t.family} ${t.table} ${c.name} ${r}`));
  }
  return `${lines.join('\n')}\n`;
}

/** The fully-random probe flanneld runs (a throwaway chain checked, never committed, with `nft --check`). */
export const FULLY_RANDOM_PROBE = `add table ip ${NFT_TABLE}\nadd chain ip ${NFT_TABLE} masqueradeTest { type nat hook postrouting priority srcnat ; }\nadd rule ip ${NFT_TABLE} masqueradeTest masquerade fully-random\n`;

/** Chains of one `nft list table` output: name → header and rule lines. */
export function parseNftTable(listing: string): Map<string, { header: string; rules: string[] }> {
  const out = new Map<string, { header: string; rules: string[] }>();
  let current: { header: string; rules: string[] } | undefined;
  for (const raw of listing.split('\n')) {
    const line = raw.trim();
    const open = /^chain (\S+) \{$/.exec(line);
    if (open) {
      current = { header: '', rules: [] };
      out.set(open[1]!, current);
    } else if (line === '}') {
      current = undefined;
    } else if (current && line !== '') {
      if (current.header === '' && line.startsWith('type ')) current.header = line;
      else current.rules.push(line);
    }
  }
  return out;
}

export function nftChainPresent(want: NftChain, table: Map<string, { header: string; rules: string[] }>): boolean {
  const have = table.get(want.name);
  return have !== undefined && have.header === want.header && have.rules.length === want.rules.length && want.rules.every((r, i) => have.rules[i] === r);
}

export class NftablesFirewall implements Firewall {
  readonly kind = 'nftables';
  private readonly t: { readonly family: 'ip' | 'ip6'; readonly table: string };
  readonly inNfTables = true;

  constructor(private readonly opts: FirewallOptions, private readonly fullyRandom: boolean, private readonly log: Logger, private readonly family: AddressFamily = IPV4) {
    this.t = nftFamily(family);
  }

  /** Probes fully-random once, as flanneld does; a missing `nft` is a start-up error. */
  static async create(opts: FirewallOptions, log: Logger, family: AddressFamily = IPV4): Promise<NftablesFirewall> {
    let fullyRandom = false;
    if (opts.fullyRandom && opts.ipMasq) {
      fullyRandom = (await nft(['--check', '-f', '-'], FULLY_RANDOM_PROBE)).code === 0;
      if (!fullyRandom) log.warn('nftables masquerade fully-random is not supported here: masquerading without it');
    }
    const t = nftFamily(family);
    if (opts.ipMasq || opts.forwardRules) log.info({ fullyRandom }, `using nftables (table ${t.family} ${t.table}): fully-random ${fullyRandom ? 'on' : 'off'}`);
    return new NftablesFirewall(opts, fullyRandom, log, family);
  }

  private chains(target: FirewallTarget): NftChain[] {
    const out: NftChain[] = [];
    if (this.opts.forwardRules) out.push(nftForwardChain(target.network));
    if (this.opts.ipMasq) out.push(nftMasqChain(target.network, target.subnet, this.fullyRandom));
    return out;
  }

  private async table(family: 'ip' | 'ip6', name: string): Promise<string> {
    const r = await nft(['list', 'table', family, name]);
    if (r.code === 0) return r.stdout;
    if (/No such file or directory/.test(r.stderr)) return '';
    throw new HostError(`failed to read nftables table ${family} ${name} (nft exit ${r.code}): ${firstLine(r.stderr)}`);
  }

  private setName(c: NftChain): string {
    return `${this.t.family} ${this.t.table}/${c.name}`;
  }

  async check(target: FirewallTarget): Promise<string[]> {
    const table = parseNftTable(await this.table(this.t.family, this.t.table));
    return this.chains(target).filter((c) => !nftChainPresent(c, table)).map((c) => this.setName(c));
  }

  async ensure(target: FirewallTarget, force = false): Promise<string[]> {
    const chains = this.chains(target);
    if (chains.length === 0) return [];
    const table = force ? new Map() : parseNftTable(await this.table(this.t.family, this.t.table));
    const stale = chains.filter((c) => !nftChainPresent(c, table));
    if (stale.length === 0) return [];
    const names = stale.map((c) => this.setName(c));
    const r = await nft(['-f', '-'], nftScript(stale, this.family));
    if (r.code !== 0) throw new HostError(`failed to install nftables rules ${names.join(', ')} (nft exit ${r.code}): ${firstLine(r.stderr)}`);
    for (const [i, c] of stale.entries()) this.log.info({ table: this.t.table, chain: c.name }, `installed nftables rules ${names[i]}`);
    return names;
  }

  async describe(): Promise<string> {
    return `${await this.table('ip', NFT_TABLE)}${await this.table('ip6', NFT_TABLE6)}`.trim();
  }

  async remove(): Promise<boolean> {
    const present = [['ip', NFT_TABLE], ['ip6', NFT_TABLE6]] as const;
    const script: string[] = [];
    try {
      for (const [family, name] of present) if ((await this.table(family, name)) !== '') script.push(`delete table ${family} ${name}`);
    } catch (err) {
      if (err instanceof NftMissingError) return false; // no nft here: nothing of ours to remove (iptables mode)
      throw err;
    }
    if (script.length === 0) return false;
    const r = await nft(['-f', '-'], `${script.join('\n')}\n`);
    if (r.code !== 0) throw new HostError(`failed to remove nftables tables (nft exit ${r.code}): ${firstLine(r.stderr)}`);
    this.log.info(`removed nftables tables: ${script.map((l) => l.replace('delete table ', '')).join(', ')}`);
    return true;
  }
}

class NftMissingError extends HostError {}

/** Runs `nft`; a binary that cannot be started becomes a HostError that says so. */
async function nft(args: readonly string[], input?: string): Promise<ExecResult> {
  try {
    return await run('nft', args, input === undefined ? {} : { input });
  } catch (err) {
    throw new NftMissingError(`failed to run nft (is the nftables package installed?): ${errorMessage(err)}`, { cause: err });
  }
}
