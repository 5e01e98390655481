/**
 * The `Firewall` contract: one suite run against MemoryFirewall (unit) and the
 * iptables and nftables backends in the suite's private network namespace
 * (integration), so the fake cannot drift from the real ones. Each fixture says
 * how "another tool" damages its sets; the suite says what must follow.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Firewall, FirewallOptions, FirewallTarget } from '../../src/firewall/firewall';
import { parseCidr } from '../../src/net/ipv4';
import { parseCidr6 } from '../../src/net/ipv6';
import { formatAnyCidr } from '../../src/net/family';

export type SetKind = 'masq' | 'forward';

export interface FirewallFixture {
  /** A backend with these options over the same host tables as every other one the fixture opened. */
  open(opts: FirewallOptions): Promise<Firewall>;
  /** The name `check`/`ensure` use for a set. */
  readonly names: Record<SetKind, string>;
  /** Deletes a set's rules as another tool would (iptables -F / nft flush chain). */
  flush(set: SetKind): Promise<void>;
  /** Appends a foreign rule to one of our sets. */
  addForeignRule(set: SetKind): Promise<void>;
  /** The source CIDR of that foreign rule (default 192.0.2.0/24), which `ensure` must leave out. */
  readonly foreignSource?: string;
  /** Removes everything of ours, whatever the test left. */
  cleanup(): Promise<void>;
  /** Two different targets of the backend's family (default: IPv4 ones). */
  readonly targets?: readonly [FirewallTarget, FirewallTarget];
}

const ALL: FirewallOptions = { ipMasq: true, forwardRules: true, fullyRandom: true };
const V4_TARGETS: readonly [FirewallTarget, FirewallTarget] = [
  { network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.5.0/24') },
  { network: parseCidr('10.8.0.0/16'), subnet: parseCidr('10.8.9.0/24') },
];
/** IPv6 targets for the ip6tables and `ip6 flannel-ipv6` fixtures. */
export const V6_TARGETS: readonly [FirewallTarget, FirewallTarget] = [
  { network: parseCidr6('fc00::/48'), subnet: parseCidr6('fc00:0:0:5::/64') },
  { network: parseCidr6('fd00:8::/48'), subnet: parseCidr6('fd00:8:0:9::/64') },
];

export function firewallContract(name: string, setup: () => FirewallFixture): void {
  describe(`Firewall contract: ${name}`, () => {
    let f: FirewallFixture;
    let T1: FirewallTarget;
    let T2: FirewallTarget;
    beforeEach(() => {
      f = setup();
      [T1, T2] = f.targets ?? V4_TARGETS;
    });
    afterEach(async () => {
      await f.cleanup();
    });

    it('installs every wanted set, then finds nothing to do; force rewrites them all', async () => {
      const fw = await f.open(ALL);
      expect((await fw.check(T1)).sort()).toEqual([f.names.masq, f.names.forward].sort());
      expect((await fw.ensure(T1)).sort()).toEqual([f.names.masq, f.names.forward].sort());
      expect(await fw.check(T1)).toEqual([]);
      expect(await fw.ensure(T1)).toEqual([]);
      expect((await fw.ensure(T1, true)).sort()).toEqual([f.names.masq, f.names.forward].sort());
      expect(await fw.check(T1)).toEqual([]);
    });

    it('keeps only the sets its options ask for', async () => {
      const fwd = await f.open({ ipMasq: false, forwardRules: true, fullyRandom: true });
      expect(await fwd.ensure(T1)).toEqual([f.names.forward]);
      expect(await fwd.check(T1)).toEqual([]);
      expect(await (await f.open(ALL)).check(T1)).toEqual([f.names.masq]);
      const none = await f.open({ ipMasq: false, forwardRules: false, fullyRandom: false });
      expect(await none.ensure(T1)).toEqual([]);
    });

    it('describes the rules with the network and subnet in them, and nothing once removed', async () => {
      const fw = await f.open(ALL);
      expect(await fw.describe()).toBe('');
      await fw.ensure(T1);
      const text = await fw.describe();
      expect(text).toContain(formatAnyCidr(T1.network));
      expect(text).toContain(formatAnyCidr(T1.subnet));
      expect(await fw.remove()).toBe(true);
      expect(await fw.describe()).toBe('');
      expect(await fw.remove()).toBe(false);
      expect((await fw.check(T1)).length).toBe(2);
    });

    it('a backend opened without rule sets still removes ours (the other mode\'s clean-up)', async () => {
      await (await f.open(ALL)).ensure(T1);
      expect(await (await f.open({ ipMasq: false, forwardRules: false, fullyRandom: false })).remove()).toBe(true);
      expect(await (await f.open(ALL)).describe()).toBe('');
    });

    it('notices a flushed set and rewrites only that one', async () => {
      const fw = await f.open(ALL);
      await fw.ensure(T1);
      await f.flush('masq');
      expect(await fw.check(T1)).toEqual([f.names.masq]);
      expect(await fw.ensure(T1)).toEqual([f.names.masq]);
      expect(await fw.check(T1)).toEqual([]);
    });

    it('notices a foreign rule in our set and puts the set back as wanted', async () => {
      const fw = await f.open(ALL);
      await fw.ensure(T1);
      await f.addForeignRule('forward');
      expect(await fw.check(T1)).toEqual([f.names.forward]);
      expect(await fw.ensure(T1)).toEqual([f.names.forward]);
      expect(await fw.check(T1)).toEqual([]);
      expect(await fw.describe()).not.toContain(f.foreignSource ?? '192.0.2.0/24');
    });

    it('replaces the rules of a previous network and subnet (subnet.env of an earlier run)', async () => {
      const fw = await f.open(ALL);
      await fw.ensure(T2);
      expect((await fw.check(T1)).sort()).toEqual([f.names.masq, f.names.forward].sort());
      await fw.ensure(T1, true);
      const text = await fw.describe();
      expect(text).toContain(formatAnyCidr(T1.subnet));
      expect(text).not.toContain(formatAnyCidr(T2.subnet));
      expect(text).not.toContain(formatAnyCidr(T2.network));
      expect(await fw.check(T1)).toEqual([]);
    });
  });
}
