/**
 * What flanneld's interface choice reads beyond `ip -4 addr` (route-lookup.ts),
 * through NetlinkKernel against the real kernel, in the suite's private network
 * namespace: address flags as `ip addr` shows them, and `ip route get`.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_TEMPORARY, addressKey, chooseExternalInterface, readInterfaceFacts } from '../../src/kernel/interfaces';
import { NetlinkKernel } from '../../src/kernel/netlink-kernel';
import { formatIPv4, parseIPv4 } from '../../src/net/ipv4';
import { formatIPv6, parseIPv6 } from '../../src/net/ipv6';
import { isDirectRoute } from '../../src/overlay/direct-routing';
import { assertPrivateNetns } from '../helpers/private-netns';

const ip = parseIPv4;
const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
const NAME = `rlk${process.pid % 10000}`;

assertPrivateNetns();

describe('route lookup and address flags over netlink', () => {
  let kernel: NetlinkKernel;
  let index: number;
  beforeAll(() => {
    sh('ip', 'link', 'add', NAME, 'type', 'veth', 'peer', 'name', `${NAME}p`);
    // A DHCP-like primary (finite lifetime), a static secondary, a deprecated one.
    sh('ip', 'addr', 'add', '10.66.160.5/24', 'dev', NAME, 'valid_lft', '600', 'preferred_lft', '600');
    sh('ip', 'addr', 'add', '10.66.160.9/24', 'dev', NAME);
    sh('ip', 'addr', 'add', '10.66.160.7/24', 'dev', NAME, 'preferred_lft', '0');
    sh('ip', 'link', 'set', NAME, 'up');
    sh('ip', 'link', 'set', `${NAME}p`, 'up');
    sh('ip', 'route', 'add', 'unreachable', '198.51.100.0/24');
    index = Number(sh('cat', `/sys/class/net/${NAME}/ifindex`).trim());
    kernel = new NetlinkKernel();
  });
  afterAll(() => {
    kernel.close();
    sh('ip', 'link', 'del', NAME);
    sh('ip', 'route', 'del', 'unreachable', '198.51.100.0/24');
  });

  it('reads dynamic, permanent, secondary and deprecated as `ip addr` shows them', async () => {
    const flags = await kernel.addressFlags();
    const shown = sh('ip', '-4', 'addr', 'show', 'dev', NAME);
    expect(shown).toMatch(/10\.66\.160\.5\/24 .*dynamic/);
    expect(flags.get(addressKey(index, ip('10.66.160.5'))) ?? -1).toBe(0);
    expect(flags.get(addressKey(index, ip('10.66.160.9')))).toBe(IFA_F_PERMANENT | IFA_F_TEMPORARY);
    expect((flags.get(addressKey(index, ip('10.66.160.7'))) ?? 0) & IFA_F_DEPRECATED).toBe(IFA_F_DEPRECATED);
  });

  it('chooses the static secondary on that interface, as flanneld would', async () => {
    const facts = await readInterfaceFacts(kernel, undefined);
    const got = chooseExternalInterface(facts.ifaces, facts.defaultRoute, { iface: [NAME] });
    expect(formatIPv4(got.publicIP)).toBe('10.66.160.9');
  });

  it('looks a route up like `ip route get`: device, preferred source, no gateway on-link, type; unreachable is undefined', async () => {
    const src = /src (\S+)/.exec(sh('ip', 'route', 'get', '10.66.160.77'))?.[1];
    expect(await kernel.routeGet(ip('10.66.160.77'))).toEqual({ index, src: ip(src as string), gateway: undefined, type: 'unicast' });
    expect(await kernel.routeGet(ip('198.51.100.1'))).toBeUndefined();
  });

  it('reads IPv6 addresses with their flags and the IPv6 default route, as `ip -6 addr` and `ip -6 route` show them', async () => {
    // A SLAAC-like dynamic address, a static one (both nodad: no duplicate detection in a test), a deprecated one.
    sh('ip', '-6', 'addr', 'add', '2001:db8:166::5/64', 'dev', NAME, 'nodad', 'valid_lft', '600', 'preferred_lft', '600');
    sh('ip', '-6', 'addr', 'add', '2001:db8:166::9/64', 'dev', NAME, 'nodad');
    sh('ip', '-6', 'addr', 'add', '2001:db8:166::7/64', 'dev', NAME, 'nodad', 'preferred_lft', '0');
    sh('ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:166::1', 'dev', NAME);
    try {
      const shown = sh('ip', '-6', 'addr', 'show', 'dev', NAME);
      expect(shown).toMatch(/2001:db8:166::5\/64 .*dynamic/);
      const addrs = (await kernel.listAddresses6()).get(index) ?? [];
      const flags = (a: string) => addrs.find((x) => formatIPv6(x.ip) === a)?.flags ?? -1;
      expect(flags('2001:db8:166::5') & IFA_F_PERMANENT).toBe(0);
      expect(flags('2001:db8:166::9') & IFA_F_PERMANENT).toBe(IFA_F_PERMANENT);
      expect(flags('2001:db8:166::7') & IFA_F_DEPRECATED).toBe(IFA_F_DEPRECATED);
      expect(addrs.find((x) => formatIPv6(x.ip).startsWith('fe80:'))?.scope).toBe(253);
      expect(await kernel.defaultRoute6()).toBe(index);
      // Dual-stack with no iface flag needs both default routes on one interface; here IPv4 has none.
      const facts = await readInterfaceFacts(kernel, undefined, true);
      expect(facts.defaultRoute6).toBe(index);
      const got = chooseExternalInterface(facts.ifaces, facts.defaultRoute, { iface: [NAME] }, { ipv4: true, ipv6: true, defaultRoute6: facts.defaultRoute6 });
      expect([formatIPv4(got.publicIP), formatIPv6(got.publicIPv6 as bigint)]).toEqual(['10.66.160.9', '2001:db8:166::9']);
      const only6 = chooseExternalInterface(facts.ifaces, undefined, { iface: [] }, { ipv4: false, ipv6: true, defaultRoute6: facts.defaultRoute6 });
      expect([only6.iface.name, formatIPv6(only6.publicIPv6 as bigint)]).toEqual([NAME, '2001:db8:166::9']);
    } finally {
      sh('ip', '-6', 'route', 'del', 'default', 'via', '2001:db8:166::1', 'dev', NAME);
    }
  });

  it('looks an IPv6 route up like `ip -6 route get`: on-link has no gateway, a routed one names it, unreachable is undefined (DirectRouting for IPv6)', async () => {
    sh('ip', '-6', 'addr', 'add', '2001:db8:167::5/64', 'dev', NAME, 'nodad');
    sh('ip', '-6', 'route', 'add', '2001:db8:200::/64', 'via', '2001:db8:167::1', 'dev', NAME);
    sh('ip', '-6', 'route', 'add', 'unreachable', '2001:db8:300::/64');
    try {
      const onLink = await kernel.routeGet(parseIPv6('2001:db8:167::12'));
      expect(onLink).toEqual({ index, src: parseIPv6('2001:db8:167::5'), gateway: undefined, type: 'unicast' });
      expect(isDirectRoute(onLink)).toBe(true);
      const routed = await kernel.routeGet(parseIPv6('2001:db8:200::13'));
      expect(sh('ip', '-6', 'route', 'get', '2001:db8:200::13')).toContain('via 2001:db8:167::1 ');
      expect(routed).toMatchObject({ index, gateway: parseIPv6('2001:db8:167::1'), type: 'unicast' });
      expect(isDirectRoute(routed)).toBe(false);
      expect(await kernel.routeGet(parseIPv6('2001:db8:300::1'))).toBeUndefined();
      // --iface-can-reach with an IPv6 target: the routed lookup's device and preferred source.
      const facts = await readInterfaceFacts(kernel, parseIPv6('2001:db8:200::13'), true);
      const got = chooseExternalInterface(facts.ifaces, facts.defaultRoute, { iface: [], canReach: facts.canReach }, { ipv4: true, ipv6: true, defaultRoute6: facts.defaultRoute6 });
      const src6 = /src (\S+)/.exec(sh('ip', '-6', 'route', 'get', '2001:db8:200::13'))?.[1];
      expect([got.iface.name, formatIPv6(got.publicIPv6 as bigint)]).toEqual([NAME, src6]);
      expect(formatIPv4(got.publicIP)).toBe('10.66.160.9');
    } finally {
      sh('ip', '-6', 'route', 'del', 'unreachable', '2001:db8:300::/64');
      sh('ip', '-6', 'route', 'del', '2001:db8:200::/64', 'via', '2001:db8:167::1', 'dev', NAME);
      sh('ip', '-6', 'addr', 'del', '2001:db8:167::5/64', 'dev', NAME);
    }
  });
});
