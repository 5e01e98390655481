/**
 * flanneld's iptables rules (contract §8, §16): masquerade for traffic leaving the
 * overlay (--ip-masq) and FORWARD accepts for the network (--iptables-forward-rules).
 * The rule text is pure; `IptablesFirewall` (the iptables side of the Firewall
 * seam, src/firewall/firewall.ts) applies it with `iptables-restore --noflush`,
 * which rewrites only our chains. Each write is one transaction per table that
 * refills our chain and deletes and re-appends our jump, so the jump ends up
 * last in POSTROUTING/FORWARD, where flanneld puts it: at start, and whenever a
 * check finds a set missing or altered (other tools flush rules). Nothing is
 * removed on exit, as flanneld does.
 *
 * IPv6 (contract §11): the same chains and rules with IPv6 CIDRs and
 * `! -d ff00::/8`, through ip6tables, ip6tables-save and ip6tables-restore;
 * random-fully decided from `ip6tables --version`. One code path: the family
 * is a value.
 */
import { Firewall, FirewallOptions, FirewallTarget, firstLine } from './firewall/firewall';
import { IptablesFeatures, formatIptablesVersion, iptablesFeatures, iptablesUsesNfTables, parseIptablesVersion } from './firewall/iptables-version';
import { AddressFamily, AnyCidr, IPV4, formatAnyCidr, isCidr6 } from './net/family';
import { ExecResult, run } from './testbed/exec';
import { HostError, errorMessage } from './util/errors';
import { Logger } from './util/log';

export interface ChainRules {
  readonly table: 'nat' | 'filter';
  /** Built-in chain that jumps to ours. */
  readonly hook: 'POSTROUTING' | 'FORWARD';
  readonly chain: string;
  readonly comment: string;
  /** Rule specs of our chain, without "-A <chain>". */
  readonly rules: readonly string[];
}

export type ChainName = Omit<ChainRules, 'rules'>;
const MASQ_CHAIN: ChainName = { table: 'nat', hook: 'POSTROUTING', chain: 'FLANNEL-POSTRTG', comment: 'flanneld masq' };
const FORWARD_CHAIN: ChainName = { table: 'filter', hook: 'FORWARD', chain: 'FLANNEL-FWD', comment: 'flanneld forward' };

/** Multicast destinations are never masqueraded: 224.0.0.0/4, or ff00::/8 for IPv6. */
function multicastOf(network: AnyCidr): string {
  return isCidr6(network) ? 'ff00::/8' : '224.0.0.0/4';
}

export function masqRules(network: AnyCidr, subnet: AnyCidr, fullyRandom: boolean): ChainRules {
  const cn = formatAnyCidr(network);
  const pn = formatAnyCidr(subnet);
  const c = '-m comment --comment "flanneld masq"';
  const masq = `-j MASQUERADE${fullyRandom ? ' --random-fully' : ''}`;
  return {
    ...MASQ_CHAIN,
    rules: [
      `-m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
      `-s ${pn} -d ${cn} ${c} -j RETURN`,
      `-s ${cn} -d ${pn} ${c} -j RETURN`,
      `! -s ${cn} -d ${pn} ${c} -j RETURN`,
      `-s ${cn} ! -d ${multicastOf(network)} ${c} ${masq}`,
      `! -s ${cn} -d ${cn} ${c} ${masq}`,
    ],
  };
}

export function forwardRules(network: AnyCidr): ChainRules {
  const cn = formatAnyCidr(network);
  const c = '-m comment --comment "flanneld forward"';
  return { ...FORWARD_CHAIN, rules: [`-s ${cn} ${c} -j ACCEPT`, `-d ${cn} ${c} -j ACCEPT`] };
}

/** The jump from the built-in chain, as `iptables -S` prints it. */
export function jumpRule(r: ChainName): string {
  return `-A ${r.hook} -m comment --comment "${r.comment}" -j ${r.chain}`;
}

/**
 * `iptables-restore --noflush` input: declaring our chain flushes and refills only
 * it; the `jumps` copies of our jump now in the hook chain are deleted and one is
 * appended, so it ends up last (contract §16), all in one transaction.
 */
export function restoreInput(r: ChainRules, jumps = 0): string {
  const jump = jumpRule(r);
  return [`*${r.table}`, `:${r.chain} - [0:0]`, ...r.rules.map((rule) => `-A ${r.chain} ${rule}`), ...Array<string>(jumps).fill(jump.replace(/^-A /, '-D ')), jump, 'COMMIT', ''].join('\n');
}

/** `iptables-restore --noflush` input that deletes our jumps and our (flushed) chain, nothing else. */
export function removeInput(r: ChainName, jumps: number): string {
  return [`*${r.table}`, ...Array<string>(jumps).fill(jumpRule(r).replace(/^-A /, '-D ')), `:${r.chain} - [0:0]`, `-X ${r.chain}`, 'COMMIT', ''].join('\n');
}

/** How often our jump appears in a table's listing. */
export function jumpCount(r: ChainName, listing: string): number {
  const jump = jumpRule(r);
  return listing.split('\n').filter((l) => l.trim() === jump).length;
}

/** True when an `iptables-save` table section declares our chain. */
export function chainDeclared(r: ChainName, listing: string): boolean {
  return listing.split('\n').some((l) => l.startsWith(`:${r.chain} `));
}

/** `iptables-save` output split by table: "nat" → its lines (the `-A` lines read as `iptables -S` prints them). */
export function saveSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let table: string | undefined;
  let lines: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      lines = [];
    } else if (line.trim() === 'COMMIT' && table !== undefined) {
      out.set(table, lines.join('\n'));
      table = undefined;
    } else if (table !== undefined) {
      lines.push(line);
    }
  }
  return out;
}

/** True when `iptables -t <table> -S` (or that table's `iptables-save` section) holds our chain exactly and the jump. */
export function rulesPresent(r: ChainRules, listing: string): boolean {
  const lines = listing.split('\n').map((l) => l.trim());
  const ours = lines.filter((l) => l.startsWith(`-A ${r.chain} `));
  const want = r.rules.map((rule) => `-A ${r.chain} ${rule}`);
  return lines.includes(jumpRule(r)) && ours.length === want.length && want.every((w, i) => ours[i] === w);
}

/** A set's name in logs and check results: "nat/FLANNEL-POSTRTG". */
const setName = (r: ChainName): string => `${r.table}/${r.chain}`;

export class IptablesFirewall implements Firewall {
  /** 'iptables' or 'ip6tables': the tool, and its -save and -restore. */
  readonly kind: 'iptables' | 'ip6tables';

  /** `inNfTables`: `iptables --version` says nf_tables (iptables-legacy's rules are outside nf_tables' generation). */
  constructor(private readonly opts: FirewallOptions, private readonly features: IptablesFeatures, private readonly log: Logger, family: AddressFamily = IPV4, readonly inNfTables = false) {
    this.kind = family.family === 6 ? 'ip6tables' : 'iptables';
  }

  /** Reads `iptables --version` (`ip6tables --version` for IPv6) once, as flanneld does, and logs what it decided. */
  static async create(opts: FirewallOptions, log: Logger, family: AddressFamily = IPV4): Promise<IptablesFirewall> {
    const tool = family.family === 6 ? 'ip6tables' : 'iptables';
    let text = '';
    try {
      const r = await run(tool, ['--version']);
      text = `${r.stdout}${r.stderr}`;
    } catch (err) {
      log.warn({ err: errorMessage(err) }, `failed to run ${tool} --version: ${errorMessage(err)}; assuming an old ${tool} (no --random-fully, no lock wait)`);
    }
    const features = iptablesFeatures(parseIptablesVersion(text));
    const fullyRandom = opts.fullyRandom && features.randomFully;
    if (opts.ipMasq || opts.forwardRules) log.info({ version: formatIptablesVersion(features.version), randomFully: fullyRandom, restoreWait: features.restoreWaitArgs.length > 0 }, `${tool} ${formatIptablesVersion(features.version)}: --random-fully ${fullyRandom ? 'on' : 'off'}`);
    if (opts.fullyRandom && opts.ipMasq && !features.randomFully) log.warn(`${tool} older than 1.6.2: masquerading without --random-fully`);
    return new IptablesFirewall(opts, features, log, family, iptablesUsesNfTables(text));
  }

  private sets(target: FirewallTarget): ChainRules[] {
    const out: ChainRules[] = [];
    if (this.opts.ipMasq) out.push(masqRules(target.network, target.subnet, this.opts.fullyRandom && this.features.randomFully));
    if (this.opts.forwardRules) out.push(forwardRules(target.network));
    return out;
  }

  /** One iptables-save for every table: this runs every --iptables-resync seconds, and each fork costs more than reading the rules. */
  private async tables(): Promise<Map<string, string>> {
    const r = await run(`${this.kind}-save`, []).catch((err: unknown) => ({ stdout: '', stderr: errorMessage(err), code: -1 }) as ExecResult);
    if (r.code !== 0) throw new HostError(`failed to read ${this.kind} rules (${this.kind}-save): ${firstLine(r.stderr)}`);
    return saveSections(r.stdout);
  }

  async check(target: FirewallTarget): Promise<string[]> {
    const tables = await this.tables();
    return this.sets(target).filter((r) => !rulesPresent(r, tables.get(r.table) ?? '')).map(setName);
  }

  async ensure(target: FirewallTarget, force = false): Promise<string[]> {
    const sets = this.sets(target);
    if (sets.length === 0) return [];
    const tables = await this.tables();
    const written: string[] = [];
    for (const r of sets) {
      const listing = tables.get(r.table) ?? '';
      if (!force && rulesPresent(r, listing)) continue;
      // A previous network or subnet's masquerade rules (subnet.env of an earlier run) live in the same chain: this flush replaces them.
      await this.restore(restoreInput(r, jumpCount(r, listing)), `install ${this.kind} rules ${setName(r)}`);
      written.push(setName(r));
      this.log.info({ table: r.table, chain: r.chain }, `installed ${this.kind} rules ${setName(r)}`);
    }
    return written;
  }

  async describe(): Promise<string> {
    const tables = await this.tables();
    const lines: string[] = [];
    for (const r of [MASQ_CHAIN, FORWARD_CHAIN]) {
      const listing = (tables.get(r.table) ?? '').split('\n').map((l) => l.trim());
      const ours = listing.filter((l) => l.startsWith(`-A ${r.chain} `) || l === jumpRule(r));
      if (ours.length > 0 || chainDeclared(r, listing.join('\n'))) lines.push(`*${r.table}`, `-N ${r.chain}`, ...ours);
    }
    return lines.join('\n');
  }

  async remove(): Promise<boolean> {
    const tables = await this.tables();
    let removed = false;
    for (const r of [MASQ_CHAIN, FORWARD_CHAIN]) {
      const listing = tables.get(r.table) ?? '';
      const jumps = jumpCount(r, listing);
      if (jumps === 0 && !chainDeclared(r, listing)) continue;
      await this.restore(removeInput(r, jumps), `remove ${this.kind} chain ${setName(r)}`);
      this.log.info({ table: r.table, chain: r.chain }, `removed ${this.kind} chain ${setName(r)} and its jump`);
      removed = true;
    }
    return removed;
  }

  private async restore(input: string, what: string): Promise<void> {
    const r = await run(`${this.kind}-restore`, [...this.features.restoreWaitArgs, '--noflush'], { input }).catch((err: unknown) => ({ stdout: '', stderr: errorMessage(err), code: -1 }) as ExecResult);
    if (r.code !== 0) throw new HostError(`failed to ${what} (${this.kind}-restore exit ${r.code}): ${firstLine(r.stderr)}`);
  }
}
