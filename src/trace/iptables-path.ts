/**
 * What the firewall does to one packet, read from `iptables-save` (or
 * `ip6tables-save`: the same format, IPv6 addresses) output: which
 * rule of a built-in chain decides it (ACCEPT, DROP, MASQUERADE, …) or the chain's
 * policy. Only the matches a path question needs are understood (-s, -d, -i, -o,
 * -p, comments); a rule with any other match "may" apply, and a verdict that
 * depends on such a rule is reported as uncertain rather than guessed. Pure.
 */
import { AddressFamily, IPV4, IPV6, IpAddr } from '../net/family';

/** The packet a trace asks about. */
export interface FirewallPacket {
  /** Addresses of one family: ip6tables-save's rules for IPv6, iptables-save's for IPv4. */
  readonly src: IpAddr;
  readonly dst: IpAddr;
  /** Input and output interface names; undefined where the chain has none (POSTROUTING has no input). */
  readonly in?: string | undefined;
  readonly out?: string | undefined;
  /** "icmp", "udp", …, or every name `-p` may give it (ICMPv6: "ipv6-icmp", "icmpv6", "58"). */
  readonly protocol: string | readonly string[];
}

export interface FirewallVerdict {
  /** The deciding target ("ACCEPT", "DROP", "REJECT", "MASQUERADE", "SNAT", …) or the chain's policy. */
  readonly target: string;
  /** The deciding rule as iptables-save prints it, or null when the policy decided. */
  readonly rule: string | null;
  /** A rule with matches this module does not read came before the decision: it might have decided instead. */
  readonly uncertain: boolean;
}

interface Rule {
  readonly text: string;
  readonly args: readonly string[];
}

interface Table {
  readonly policies: Map<string, string>;
  readonly chains: Map<string, Rule[]>;
}

/** iptables-save's words: quoted strings keep their spaces. */
function tokenize(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1] : (m[2] as string)));
}

/** Tables by name ("filter", "nat") from iptables-save output. */
export function parseIptablesSave(text: string): Map<string, Table> {
  const tables = new Map<string, Table>();
  let table: Table | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      table = { policies: new Map(), chains: new Map() };
      tables.set(line.slice(1), table);
    } else if (table && line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      table.policies.set(name as string, policy as string);
      if (!table.chains.has(name as string)) table.chains.set(name as string, []);
    } else if (table && line.startsWith('-A ')) {
      const [, chain, ...args] = tokenize(line);
      const rules = table.chains.get(chain as string) ?? [];
      rules.push({ text: line, args });
      table.chains.set(chain as string, rules);
    }
  }
  return tables;
}

type Match = 'yes' | 'no' | 'maybe';

function ifaceMatches(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function addressMatches(spec: string, ip: IpAddr): boolean | undefined {
  // iptables-save prints networks with a prefix ("10.7.0.0/16", "10.7.24.2/32", "fc00::/48"), in the packet's family.
  const v6 = typeof ip === 'bigint';
  const fam: AddressFamily = v6 ? IPV6 : IPV4;
  const other: AddressFamily = v6 ? IPV4 : IPV6;
  // An address of the other family never matches the packet.
  if (other.tryParse(spec.split('/')[0] ?? '') !== undefined) return false;
  const single = fam.tryParse(spec);
  if (single !== undefined) return single === ip;
  try {
    return fam.contains(fam.parseCidr(spec), ip);
  } catch {
    return undefined;
  }
}

/** Does the rule's match part apply to the packet; its target and goto flag. */
function matchRule(args: readonly string[], p: FirewallPacket): { match: Match; target: string | undefined; goto: boolean } {
  let match: Match = 'yes';
  let target: string | undefined;
  let goto = false;
  const lower = (m: Match): void => {
    if (m === 'no' || (m === 'maybe' && match === 'yes')) match = m === 'no' ? 'no' : 'maybe';
  };
  for (let i = 0; i < args.length; i++) {
    let negate = false;
    let a = args[i] as string;
    if (a === '!') {
      negate = true;
      a = args[++i] as string;
    }
    const value = args[i + 1];
    const test = (ok: boolean | undefined): void => lower(ok === undefined ? 'maybe' : ok !== negate ? 'yes' : 'no');
    switch (a) {
      case '-s':
        test(addressMatches(value ?? '', p.src));
        i++;
        break;
      case '-d':
        test(addressMatches(value ?? '', p.dst));
        i++;
        break;
      case '-i':
        test(p.in === undefined ? undefined : ifaceMatches(value ?? '', p.in));
        i++;
        break;
      case '-o':
        test(p.out === undefined ? undefined : ifaceMatches(value ?? '', p.out));
        i++;
        break;
      case '-p':
        test(value === 'all' || (typeof p.protocol === 'string' ? value === p.protocol : p.protocol.includes(value ?? '')));
        i++;
        break;
      case '-m':
        // A module name: its options follow; only "comment" is known to match everything.
        if (value !== 'comment') lower('maybe');
        i++;
        break;
      case '--comment':
        i++;
        break;
      case '-j':
      case '-g':
        target = value;
        goto = a === '-g';
        // Target options (--to-source, --random-fully, …) follow and match nothing.
        i = args.length;
        break;
      default:
        lower('maybe');
        if (value !== undefined && !value.startsWith('-')) i++;
    }
  }
  return { match, target, goto };
}

const TERMINAL = new Set(['ACCEPT', 'DROP', 'REJECT', 'MASQUERADE', 'SNAT', 'DNAT', 'REDIRECT']);

/**
 * Walks `chain` of `table` for the packet, jumping into user chains, and says
 * which rule decides it or which policy applies. Returns undefined when the table
 * or chain does not exist (nothing in that table touches the packet).
 */
export function firewallVerdict(tables: Map<string, Table>, tableName: string, chain: string, p: FirewallPacket): FirewallVerdict | undefined {
  const table = tables.get(tableName);
  if (!table || !table.chains.has(chain)) return undefined;
  let uncertain = false;
  const walk = (name: string, depth: number): { target: string; rule: string } | undefined => {
    if (depth > 32) return undefined;
    for (const rule of table.chains.get(name) ?? []) {
      const { match, target, goto } = matchRule(rule.args, p);
      if (match === 'no' || target === undefined) continue;
      if (match === 'maybe') {
        if (TERMINAL.has(target) || table.chains.has(target)) uncertain = true;
        continue;
      }
      if (target === 'RETURN') return undefined;
      if (TERMINAL.has(target)) return { target, rule: rule.text };
      if (table.chains.has(target)) {
        const inner = walk(target, depth + 1);
        if (inner) return inner;
        if (goto) return undefined;
      }
      // LOG, MARK, … do not decide; the walk goes on.
    }
    return undefined;
  };
  const decided = walk(chain, 0);
  if (decided) return { ...decided, uncertain };
  return { target: table.policies.get(chain) ?? 'ACCEPT', rule: null, uncertain };
}
