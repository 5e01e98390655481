/**
 * The in-memory Firewall: what the daemon's unit tests use, held to the same
 * contract as the real backends (test/helpers/firewall-contract.ts). Its rule
 * sets are the iptables ones (src/iptables.ts) kept as lines; `tamper` plays
 * the other tool that flushes or edits them.
 */
import { forwardRules, masqRules } from '../iptables';
import { Firewall, FirewallOptions, FirewallTarget } from './firewall';

export class MemoryFirewall implements Firewall {
  readonly kind = 'memory';
  readonly inNfTables = false;
  /**
   * `sets` and `writes` may be shared between instances with different options,
   * as one host's tables are shared by every process that opens them.
   */
  constructor(
    private readonly opts: FirewallOptions,
    private readonly sets = new Map<string, readonly string[]>(),
    /** Every set written, in order: what tests count. */
    readonly writes: string[] = [],
  ) {}

  private wanted(target: FirewallTarget): Map<string, readonly string[]> {
    const out = new Map<string, readonly string[]>();
    for (const r of [...(this.opts.ipMasq ? [masqRules(target.network, target.subnet, this.opts.fullyRandom)] : []), ...(this.opts.forwardRules ? [forwardRules(target.network)] : [])]) {
      out.set(`${r.table}/${r.chain}`, r.rules);
    }
    return out;
  }

  async check(target: FirewallTarget): Promise<string[]> {
    return [...this.wanted(target)].filter(([name, rules]) => !sameLines(this.sets.get(name), rules)).map(([name]) => name);
  }

  async ensure(target: FirewallTarget, force = false): Promise<string[]> {
    const written: string[] = [];
    for (const [name, rules] of this.wanted(target)) {
      if (!force && sameLines(this.sets.get(name), rules)) continue;
      this.sets.set(name, rules);
      written.push(name);
    }
    this.writes.push(...written);
    return written;
  }

  async describe(): Promise<string> {
    return [...this.sets].map(([name, rules]) => [`# ${name}`, ...rules].join('\n')).join('\n');
  }

  async remove(): Promise<boolean> {
    const had = this.sets.size > 0;
    this.sets.clear();
    return had;
  }

  /** Replaces a set's lines (undefined deletes it), as another tool would. */
  tamper(name: string, rules: readonly string[] | undefined): void {
    if (rules === undefined) this.sets.delete(name);
    else this.sets.set(name, rules);
  }
}

function sameLines(have: readonly string[] | undefined, want: readonly string[]): boolean {
  return have !== undefined && have.length === want.length && want.every((w, i) => have[i] === w);
}
