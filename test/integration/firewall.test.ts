/**
 * The iptables and nftables backends against the real tools, in the private
 * network namespace the suite runs in: the shared Firewall contract, then what
 * is particular to each (iptables: the jumps end up last and nothing foreign is
 * touched; nftables: `nft list ruleset` holds exactly the rendered tables), and
 * --ip-blackhole-route's route against the real routing table.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Firewall, FirewallOptions } from '../../src/firewall/firewall';
import { keepFirewall } from '../../src/firewall/firewall-keeper';
import { NfTablesGeneration } from '../../src/firewall/nft-generation';
import { NftablesFirewall, nftForwardChain, nftMasqChain } from '../../src/firewall/nftables';
import { IptablesFirewall } from '../../src/iptables';
import { IprouteBlackholeRoutes } from '../../src/kernel/blackhole-route';
import { parseCidr } from '../../src/net/ipv4';
import { systemClock } from '../../src/util/clock';
import { createLogger } from '../../src/util/log';
import { FirewallFixture, V6_TARGETS, firewallContract } from '../helpers/firewall-contract';
import { AddressFamily, IPV6 } from '../../src/net/family';
import { parseCidr6 } from '../../src/net/ipv6';
import { assertPrivateNetns } from '../helpers/private-netns';

assertPrivateNetns();

const log = createLogger('silent');
const ALL: FirewallOptions = { ipMasq: true, forwardRules: true, fullyRandom: true };
const NONE: FirewallOptions = { ipMasq: false, forwardRules: false, fullyRandom: false };
const T = { network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.5.0/24') };

function sh(cmd: string, args: readonly string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
}

/** The `table …` blocks of `nft list ruleset` whose name starts with flannel-. */
function ourTables(ruleset: string): string {
  const blocks = ruleset.split(/^(?=table )/m);
  return blocks.filter((b) => /^table ip6? flannel-/.test(b)).join('');
}

/** Deletes whatever a test left in iptables or nftables (our chains via the backends, the test's own marks by comment). */
async function cleanAll(): Promise<void> {
  await (await IptablesFirewall.create(NONE, log)).remove();
  await (await IptablesFirewall.create(NONE, log, IPV6)).remove();
  await (await NftablesFirewall.create(NONE, log)).remove();
  for (const [table, chain] of [['nat', 'POSTROUTING'], ['filter', 'FORWARD']] as const) {
    const lines = sh('iptables-save', ['-t', table]).split('\n').filter((l) => l.includes('flts-test'));
    for (const l of lines) sh('iptables', ['-t', table, ...l.replace(`-A ${chain}`, `-D ${chain}`).split(' ').map((w) => w.replace(/^"|"$/g, ''))]);
  }
}

/** The contract's fixture for the iptables backend of a family: `tool` is iptables or ip6tables, `foreign` a source CIDR of that family. */
function iptablesFixture(family: AddressFamily | undefined, tool: 'iptables' | 'ip6tables', foreign: string): FirewallFixture {
  return {
    open: (opts) => IptablesFirewall.create(opts, log, family),
    names: { masq: 'nat/FLANNEL-POSTRTG', forward: 'filter/FLANNEL-FWD' },
    flush: async (set) => {
      sh(tool, set === 'masq' ? ['-t', 'nat', '-F', 'FLANNEL-POSTRTG'] : ['-F', 'FLANNEL-FWD']);
    },
    addForeignRule: async (set) => {
      sh(tool, set === 'masq' ? ['-t', 'nat', '-A', 'FLANNEL-POSTRTG', '-s', foreign, '-j', 'RETURN'] : ['-A', 'FLANNEL-FWD', '-s', foreign, '-j', 'ACCEPT']);
    },
    foreignSource: foreign,
    cleanup: cleanAll,
    ...(family === IPV6 && { targets: V6_TARGETS }),
  };
}

/** The same for the nftables backend: its table is `<nftFamily> <table>` (ip flannel-ipv4, ip6 flannel-ipv6). */
function nftablesFixture(family: AddressFamily | undefined, nftFamily: 'ip' | 'ip6', table: string, foreign: string): FirewallFixture {
  return {
    open: (opts) => NftablesFirewall.create(opts, log, family),
    names: { masq: `${nftFamily} ${table}/postrtg`, forward: `${nftFamily} ${table}/forward` },
    flush: async (set) => {
      sh('nft', ['flush', 'chain', nftFamily, table, set === 'masq' ? 'postrtg' : 'forward']);
    },
    addForeignRule: async (set) => {
      sh('nft', ['add', 'rule', nftFamily, table, set === 'masq' ? 'postrtg' : 'forward', nftFamily, 'saddr', foreign, 'accept']);
    },
    foreignSource: foreign,
    cleanup: cleanAll,
    ...(family === IPV6 && { targets: V6_TARGETS }),
  };
}

firewallContract('IptablesFirewall', () => iptablesFixture(undefined, 'iptables', '192.0.2.0/24'));
firewallContract('NftablesFirewall', () => nftablesFixture(undefined, 'ip', 'flannel-ipv4', '192.0.2.0/24'));
// IPv6 (contract §11, §16): the same contract through ip6tables and `ip6 flannel-ipv6`.
firewallContract('IptablesFirewall (IPv6, ip6tables)', () => iptablesFixture(IPV6, 'ip6tables', '2001:db8::/32'));
firewallContract('NftablesFirewall (IPv6, ip6 flannel-ipv6)', () => nftablesFixture(IPV6, 'ip6', 'flannel-ipv6', '2001:db8::/32'));

describe('IPv6 rules as ip6tables-save and nft list print them', () => {
  it('ip6tables: flanneld\'s masquerade rules with IPv6 CIDRs and ! -d ff00::/8; nft: ip6 saddr/daddr', async () => {
    const [t] = V6_TARGETS;
    await (await IptablesFirewall.create(ALL, log, IPV6)).ensure(t);
    const nat = sh('ip6tables-save', ['-t', 'nat']);
    expect(nat).toContain('-A FLANNEL-POSTRTG -s fc00::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE');
    expect(nat).toContain('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG');
    expect(sh('ip6tables-save', ['-t', 'filter'])).toContain('-A FLANNEL-FWD -s fc00::/48 -m comment --comment "flanneld forward" -j ACCEPT');
    // The IPv4 tables are not touched by the IPv6 backend.
    expect(sh('iptables-save', ['-t', 'nat'])).not.toContain('FLANNEL-POSTRTG');
    const fw = await NftablesFirewall.create(ALL, log, IPV6);
    await fw.ensure(t);
    const listing = sh('nft', ['list', 'table', 'ip6', 'flannel-ipv6']);
    expect(listing).toContain('ip6 saddr fc00::/48 ip6 daddr != ff00::/8 masquerade');
    expect(listing).toContain('ip6 daddr fc00::/48 accept');
    expect(await fw.check(t)).toEqual([]);
  });
  afterEach(cleanAll);
});

describe('IptablesFirewall on the real iptables', () => {
  afterEach(cleanAll);

  it('detects --random-fully from this iptables and uses it', async () => {
    const version = sh('iptables', ['--version']);
    await (await IptablesFirewall.create(ALL, log)).ensure(T);
    expect(sh('iptables-save', ['-t', 'nat']).includes('--random-fully')).toBe(/v1\.([7-9]|\d\d)|v1\.6\.([2-9])|v[2-9]/.test(version));
  });

  it('moves its jumps to the end of POSTROUTING and FORWARD at start and on repair, leaving other rules alone', async () => {
    const fw = await IptablesFirewall.create(ALL, log);
    await fw.ensure(T);
    sh('iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-m', 'comment', '--comment', 'flts-test', '-j', 'RETURN']);
    sh('iptables', ['-A', 'FORWARD', '-m', 'comment', '--comment', 'flts-test', '-j', 'ACCEPT']);
    const last = (table: string, chain: string): string => sh('iptables', ['-t', table, '-S', chain]).trim().split('\n').pop() ?? '';
    expect(last('nat', 'POSTROUTING')).toContain('flts-test');
    // Start-up: every set rewritten, each jump re-appended last.
    await fw.ensure(T, true);
    expect(last('nat', 'POSTROUTING')).toBe('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG');
    expect(last('filter', 'FORWARD')).toBe('-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD');
    // The foreign rules are still there, once each, and our jump is there once.
    const nat = sh('iptables', ['-t', 'nat', '-S', 'POSTROUTING']);
    expect(nat.split('\n').filter((l) => l.includes('flts-test'))).toHaveLength(1);
    expect(nat.split('\n').filter((l) => l.includes('FLANNEL-POSTRTG'))).toHaveLength(1);
    // A resync that finds a rule missing re-appends the jump too.
    sh('iptables', ['-A', 'FORWARD', '-m', 'comment', '--comment', 'flts-test', '-j', 'ACCEPT']);
    sh('iptables', ['-D', 'FLANNEL-FWD', '-s', '10.7.0.0/16', '-m', 'comment', '--comment', 'flanneld forward', '-j', 'ACCEPT']);
    expect(await fw.ensure(T)).toEqual(['filter/FLANNEL-FWD']);
    expect(last('filter', 'FORWARD')).toBe('-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD');
  });

  it('removes our chains and jumps in nat and filter, and nothing else', async () => {
    await (await IptablesFirewall.create(ALL, log)).ensure(T);
    sh('iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-m', 'comment', '--comment', 'flts-test', '-j', 'RETURN']);
    expect(await (await IptablesFirewall.create(NONE, log)).remove()).toBe(true);
    const all = sh('iptables-save', []);
    expect(all).not.toMatch(/FLANNEL-/);
    expect(all).toContain('flts-test');
  });
});

describe('nf_tables ruleset generation and the periodic check on the real tools', () => {
  afterEach(cleanAll);

  it('stands still while nothing changes and moves on an iptables-nft or nft change, ours or not', async () => {
    const gen = new NfTablesGeneration(log);
    try {
      const g0 = await gen.read();
      expect(g0).toEqual(expect.any(Number));
      expect(await gen.read()).toBe(g0);
      sh('iptables', ['-t', 'filter', '-N', 'FLTS-TEST-GEN']);
      const g1 = await gen.read();
      expect(g1).not.toBe(g0);
      sh('nft', ['add', 'table', 'ip', 'flts-test-gen']);
      sh('nft', ['delete', 'table', 'ip', 'flts-test-gen']);
      const g2 = await gen.read();
      expect(g2).not.toBe(g1);
      sh('iptables', ['-t', 'filter', '-X', 'FLTS-TEST-GEN']);
      expect(await gen.read()).not.toBe(g2);
    } finally {
      gen.close();
    }
  });

  it.each(['iptables', 'nftables'] as const)('%s: idle periods list nothing, and a rule deleted by hand is back after the next period', async (kind) => {
    const real = kind === 'iptables' ? await IptablesFirewall.create(ALL, log) : await NftablesFirewall.create(ALL, log);
    expect(real.inNfTables).toBe(kind === 'nftables' || /\(nf_tables\)/.test(sh('iptables', ['--version'])));
    let ensures = 0;
    const counted: Firewall = { kind: real.kind, inNfTables: real.inNfTables, ensure: (t, f) => (ensures++, real.ensure(t, f)), check: (t) => real.check(t), describe: () => real.describe(), remove: () => real.remove() };
    await real.ensure(T, true);
    const ctl = new AbortController();
    const kept = keepFirewall(counted, () => T, 100, systemClock, log, ctl.signal, new NfTablesGeneration(log));
    try {
      await new Promise((r) => setTimeout(r, 1000)); // about ten periods
      expect(ensures).toBeLessThanOrEqual(2);
      if (kind === 'iptables') sh('iptables', ['-D', 'FLANNEL-FWD', '-s', '10.7.0.0/16', '-m', 'comment', '--comment', 'flanneld forward', '-j', 'ACCEPT']);
      else sh('nft', ['flush', 'chain', 'ip', 'flannel-ipv4', 'forward']);
      const set = kind === 'iptables' ? 'filter/FLANNEL-FWD' : 'ip flannel-ipv4/forward';
      expect(await real.check(T)).toEqual([set]);
      const t0 = Date.now();
      while ((await real.check(T)).length > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      expect(await real.check(T)).toEqual([]);
      expect(Date.now() - t0).toBeLessThan(3000); // the period is 100 ms; generous for a busy machine
    } finally {
      ctl.abort();
      await kept;
    }
  });
});

describe('NftablesFirewall on the real nft', () => {
  afterEach(cleanAll);

  it('makes exactly flanneld\'s tables and chains, with the rendered rules, as nft list ruleset shows them', async () => {
    const fw = await NftablesFirewall.create(ALL, log);
    await fw.ensure(T, true);
    // iptables-nft keeps its own tables (ip nat, ip filter) in the same ruleset: look at ours.
    const ruleset = ourTables(sh('nft', ['list', 'ruleset']));
    const fullyRandom = sh('nft', ['--check', '-f', '-'], 'add table ip flts-probe\nadd chain ip flts-probe c { type nat hook postrouting priority srcnat ; }\nadd rule ip flts-probe c masquerade fully-random\n') === '';
    const chain = (c: { name: string; header: string; rules: readonly string[] }): string[] => [`\tchain ${c.name} {`, `\t\t${c.header}`, ...c.rules.map((r) => `\t\t${r}`), '\t}'];
    expect(ruleset).toBe(
      [
        'table ip flannel-ipv4 {',
        ...chain(nftForwardChain(T.network)),
        '',
        ...chain(nftMasqChain(T.network, T.subnet, fullyRandom)),
        '}',
        'table ip6 flannel-ipv6 {',
        '}',
        '',
      ].join('\n'),
    );
    expect(fullyRandom).toBe(true); // this kernel and nft support it; the probe left nothing behind
    expect(ruleset).toContain('ip saddr 10.7.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random');
  });

  it('restores a deleted table', async () => {
    const fw = await NftablesFirewall.create(ALL, log);
    await fw.ensure(T, true);
    sh('nft', ['delete', 'table', 'ip', 'flannel-ipv4']);
    expect((await fw.check(T)).sort()).toEqual(['ip flannel-ipv4/forward', 'ip flannel-ipv4/postrtg']);
    await fw.ensure(T);
    expect(await fw.check(T)).toEqual([]);
  });

  it('leaves other nft tables alone when it removes its own', async () => {
    await (await NftablesFirewall.create(ALL, log)).ensure(T);
    sh('nft', ['add', 'table', 'ip', 'flts-test']);
    try {
      expect(await (await NftablesFirewall.create(NONE, log)).remove()).toBe(true);
      const tables = sh('nft', ['list', 'tables']).trim().split('\n');
      expect(tables).toContain('table ip flts-test');
      expect(tables.filter((t) => t.includes('flannel'))).toEqual([]);
    } finally {
      sh('nft', ['delete', 'table', 'ip', 'flts-test']);
    }
  });
});

describe('--ip-blackhole-route on the real routing table', () => {
  const routes = new IprouteBlackholeRoutes();
  const subnet = parseCidr('10.77.5.0/24');
  beforeAll(() => {
    sh('ip', ['link', 'set', 'lo', 'up']);
  });
  afterEach(() => {
    for (const args of [['route', 'del', 'blackhole', '10.77.5.0/24'], ['link', 'del', 'flts-br']]) {
      try {
        sh('ip', args);
      } catch {
        // already gone
      }
    }
  });

  it('adds blackhole <subnet> once, then finds it present', async () => {
    expect(await routes.ensure(subnet)).toBe('added');
    expect(sh('ip', ['route', 'show', 'exact', '10.77.5.0/24']).trim()).toBe('blackhole 10.77.5.0/24');
    expect(await routes.ensure(subnet)).toBe('present');
    expect(sh('ip', ['route', 'show', 'exact', '10.77.5.0/24']).trim().split('\n')).toHaveLength(1);
  });

  it('never replaces another route that holds the prefix', async () => {
    sh('ip', ['link', 'add', 'flts-br', 'type', 'bridge']);
    sh('ip', ['addr', 'add', '10.77.5.1/24', 'dev', 'flts-br']);
    sh('ip', ['link', 'set', 'flts-br', 'up']);
    const before = sh('ip', ['route', 'show', 'exact', '10.77.5.0/24']);
    expect(before).toContain('dev flts-br');
    expect(await routes.ensure(subnet)).toBe('taken');
    expect(sh('ip', ['route', 'show', 'exact', '10.77.5.0/24'])).toBe(before);
  });

  it('IPv6: adds blackhole <own IPv6 subnet> once, then finds it present', async () => {
    const subnet6 = parseCidr6('fc00:0:0:77::/64');
    try {
      expect(await routes.ensure(subnet6)).toBe('added');
      expect(sh('ip', ['-6', 'route', 'show', 'exact', 'fc00:0:0:77::/64']).trim()).toMatch(/^blackhole fc00:0:0:77::\/64 /);
      expect(await routes.ensure(subnet6)).toBe('present');
    } finally {
      sh('ip', ['-6', 'route', 'del', 'blackhole', 'fc00:0:0:77::/64']);
    }
  });
});
