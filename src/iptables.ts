/**
 * flanneld's iptables rules (contract §8): masquerade for traffic leaving the
 * overlay (--ip-masq) and FORWARD accepts for the network (--iptables-forward-rules).
 * The rule text is pure; `IptablesRules` applies it with `iptables-restore
 * --noflush` (which rewrites only our chains) and re-checks it periodically,
 * because other tools (kube-proxy restarts, firewall reloads) flush rules.
 * Nothing is removed on exit, as flanneld does.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cidr, formatCidr } from './net/ipv4';
import { Clock } from './util/clock';
import { HostError, errorMessage } from './util/errors';
import { Logger } from './util/log';

const run = promisify(execFile);

export interface ChainRules {
  readonly table: 'nat' | 'filter';
  /** Built-in chain that jumps to ours. */
  readonly hook: 'POSTROUTING' | 'FORWARD';
  readonly chain: string;
  readonly comment: string;
  /** Rule specs of our chain, without "-A <chain>". */
  readonly rules: readonly string[];
}

export function masqRules(network: Cidr, subnet: Cidr, fullyRandom: boolean): ChainRules {
  const cn = formatCidr(network);
  const pn = formatCidr(subnet);
  const c = '-m comment --comment "flanneld masq"';
  const masq = `-j MASQUERADE${fullyRandom ? ' --random-fully' : ''}`;
  return {
    table: 'nat',
    hook: 'POSTROUTING',
    chain: 'FLANNEL-POSTRTG',
    comment: 'flanneld masq',
    rules: [
      `-m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
      `-s ${pn} -d ${cn} ${c} -j RETURN`,
      `-s ${cn} -d ${pn} ${c} -j RETURN`,
      `! -s ${cn} -d ${pn} ${c} -j RETURN`,
      `-s ${cn} ! -d 224.0.0.0/4 ${c} ${masq}`,
      `! -s ${cn} -d ${cn} ${c} ${masq}`,
    ],
  };
}

export function forwardRules(network: Cidr): ChainRules {
  const cn = formatCidr(network);
  const c = '-m comment --comment "flanneld forward"';
  return { table: 'filter', hook: 'FORWARD', chain: 'FLANNEL-FWD', comment: 'flanneld forward', rules: [`-s ${cn} ${c} -j ACCEPT`, `-d ${cn} ${c} -j ACCEPT`] };
}

/** The jump from the built-in chain, as `iptables -S` prints it. */
export function jumpRule(r: ChainRules): string {
  return `-A ${r.hook} -m comment --comment "${r.comment}" -j ${r.chain}`;
}

/** `iptables-restore --noflush` input: declaring our chain flushes and refills only it. */
export function restoreInput(r: ChainRules): string {
  return [`*${r.table}`, `:${r.chain} - [0:0]`, ...r.rules.map((rule) => `-A ${r.chain} ${rule}`), 'COMMIT', ''].join('\n');
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

export interface IptablesOptions {
  readonly ipMasq: boolean;
  readonly fullyRandom: boolean;
  readonly forwardRules: boolean;
  readonly resyncMs: number;
}

export class IptablesRules {
  constructor(private readonly opts: IptablesOptions, private readonly log: Logger, private readonly clock: Clock) {}

  private sets(network: Cidr, subnet: Cidr): ChainRules[] {
    const out: ChainRules[] = [];
    if (this.opts.ipMasq) out.push(masqRules(network, subnet, this.opts.fullyRandom));
    if (this.opts.forwardRules) out.push(forwardRules(network));
    return out;
  }

  /** Installs whatever is missing; returns how many chains were (re)written. Throws HostError. */
  async ensure(network: Cidr, subnet: Cidr): Promise<number> {
    const sets = this.sets(network, subnet);
    if (sets.length === 0) return 0;
    let written = 0;
    // One iptables-save for every table: this runs every --iptables-resync seconds,
    // and each process the daemon forks costs more than reading the rules.
    let tables: Map<string, string>;
    try {
      tables = saveSections((await run('iptables-save', [])).stdout);
    } catch (err) {
      throw new HostError(`failed to read iptables rules (iptables-save): ${errorMessage(err).split('\n')[0]}`, { cause: err });
    }
    for (const r of sets) {
      try {
        if (rulesPresent(r, tables.get(r.table) ?? '')) continue;
        await restore(restoreInput(r));
        const { stdout: after } = await run('iptables', ['-w', '5', '-t', r.table, '-S']);
        if (!after.split('\n').map((l) => l.trim()).includes(jumpRule(r))) {
          await run('iptables', ['-w', '5', '-t', r.table, '-A', r.hook, '-m', 'comment', '--comment', r.comment, '-j', r.chain]);
        }
        written++;
        this.log.info({ table: r.table, chain: r.chain }, `installed iptables rules ${r.table}/${r.chain}`);
      } catch (err) {
        throw new HostError(`failed to install iptables rules ${r.table}/${r.chain}: ${errorMessage(err).split('\n')[0]}`, { cause: err });
      }
    }
    return written;
  }

  /** Re-checks every resync period until `signal` aborts; failures are logged once per outage. */
  async run(network: () => Cidr, subnet: () => Cidr, signal: AbortSignal): Promise<void> {
    let failing = false;
    while (!signal.aborted) {
      await this.clock.sleep(this.opts.resyncMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      try {
        await this.ensure(network(), subnet());
        if (failing) this.log.info('iptables rules restored');
        failing = false;
      } catch (err) {
        if (!failing) this.log.warn({ err: errorMessage(err) }, errorMessage(err));
        failing = true;
      }
    }
  }
}

function restore(input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('iptables-restore', ['-w', '5', '--noflush'], (err) => (err ? reject(err) : resolve()));
    child.stdin?.end(input);
  });
}
