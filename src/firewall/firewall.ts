/**
 * The firewall seam: masquerade (--ip-masq) and forward accepts
 * (--iptables-forward-rules) for the overlay network, kept in place by a
 * periodic check (contract §8, §16). Two real backends implement it, iptables
 * (src/iptables.ts) and nftables (src/firewall/nftables.ts, `EnableNFTables`),
 * and a memory fake; test/helpers/firewall-contract.ts holds them to one
 * contract. A backend touches only its own chains/tables and the jumps to them.
 */
import { AnyCidr } from '../net/family';

/** What the rules are about: CN (the network) and PN (this node's subnet), of one family. */
export interface FirewallTarget {
  readonly network: AnyCidr;
  readonly subnet: AnyCidr;
}

/** Which rule sets a backend keeps (fixed for the daemon's life). */
export interface FirewallOptions {
  readonly ipMasq: boolean;
  readonly forwardRules: boolean;
  /** --random-fully / fully-random wanted (not --ip-masq-fully-random-disable); used only where supported. */
  readonly fullyRandom: boolean;
}

export interface Firewall {
  /** 'iptables' | 'nftables' | 'memory', for logs. */
  readonly kind: string;
  /**
   * True when every rule this backend keeps lives in nf_tables (nft, iptables-nft),
   * so nf_tables' ruleset generation moves whenever any of them changes.
   */
  readonly inNfTables: boolean;
  /**
   * Writes the rule sets that `check` finds missing or altered, or every set
   * when `force` (start-up: flanneld rewrites all, which moves iptables jumps to
   * the end of POSTROUTING/FORWARD). Returns the names of the sets written.
   * Throws HostError naming the set.
   */
  ensure(target: FirewallTarget, force?: boolean): Promise<string[]>;
  /** Names of the wanted rule sets that are missing or differ from the wanted rules; [] when all are in place. */
  check(target: FirewallTarget): Promise<string[]>;
  /** Our rules as the backend lists them (empty when none): for logs, status and tests. */
  describe(): Promise<string>;
  /** Deletes our rules, chains/tables and jumps (nothing else); returns whether anything was there. */
  remove(): Promise<boolean>;
}

/**
 * A number that changes whenever any firewall rule of the host may have
 * changed (nf_tables' ruleset generation, nft-generation.ts); undefined when it
 * cannot be read. An unchanged number lets the periodic check skip the listing.
 */
export interface RulesetGeneration {
  read(): Promise<number | undefined>;
  close(): void;
}

/** The first line of a tool's stderr, for one-line error messages. */
export function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}
