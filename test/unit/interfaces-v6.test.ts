import { describe, expect, it } from 'vitest';
import { IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_TEMPORARY, StackOptions, chooseExternalInterface, orderAddresses, readInterfaceFacts } from '../../src/kernel/interfaces';
import { InterfaceInfo } from '../../src/kernel/kernel';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { parseIPv4 } from '../../src/net/ipv4';
import { formatIPv6, parseIPv6 } from '../../src/net/ipv6';
import { HostError } from '../../src/util/errors';

const ip6 = parseIPv6;
const iface = (index: number, name: string, v4: string[], v6: Array<[string, number?]>): InterfaceInfo => ({
  index,
  name,
  mtu: 1500,
  up: true,
  addresses: v4.map((a) => ({ ip: parseIPv4(a), prefixLen: 24, scope: 0 })),
  addresses6: v6.map(([a, flags]) => ({ ip: ip6(a), prefixLen: 64, scope: a.startsWith('fe80') ? 253 : 0, ...(flags === undefined ? {} : { flags }) })),
});

const lo = iface(1, 'lo', ['127.0.0.1'], [['::1']]);
const eth0 = iface(2, 'eth0', ['10.65.154.19'], [['fe80::1'], ['2001:db8::10'], ['2001:db8::99']]);
const eth1 = iface(3, 'eth1', ['192.168.7.2'], [['fd00:7::2']]);
const v4only = iface(4, 'eth2', ['192.168.8.2'], [['fe80::8']]);
const all = [lo, eth0, eth1, v4only];
const DUAL = (def6: number | 'multipath' | undefined = 2): StackOptions => ({ ipv4: true, ipv6: true, defaultRoute6: def6 });
const V6 = (def6: number | 'multipath' | undefined = 2): StackOptions => ({ ipv4: false, ipv6: true, defaultRoute6: def6 });
const pick = (r: { iface: InterfaceInfo; publicIP: number; publicIPv6?: bigint | undefined }) => [r.iface.name, r.publicIP, r.publicIPv6 === undefined ? undefined : formatIPv6(r.publicIPv6)];

describe('IPv6 address order (contract §14)', () => {
  it('global before link-local, static before SLAAC/dynamic, non-temporary before temporary; no deprecated, loopback or multicast', () => {
    const addrs = [
      { ip: ip6('fe80::1'), flags: IFA_F_PERMANENT },
      { ip: ip6('2001:db8::a'), flags: 0 },
      { ip: ip6('2001:db8::b'), flags: IFA_F_TEMPORARY },
      { ip: ip6('2001:db8::c'), flags: IFA_F_PERMANENT },
      { ip: ip6('2001:db8::d'), flags: IFA_F_PERMANENT | IFA_F_DEPRECATED },
      { ip: ip6('::1'), flags: IFA_F_PERMANENT },
      { ip: ip6('ff02::1'), flags: IFA_F_PERMANENT },
      { ip: ip6('fd00::1'), flags: IFA_F_PERMANENT },
    ];
    expect(orderAddresses(addrs).map((a) => formatIPv6(a.ip))).toEqual(['2001:db8::c', 'fd00::1', '2001:db8::a', '2001:db8::b', 'fe80::1']);
  });
});

describe('chooseExternalInterface with IPv6 (contract §11 "Public IPv6")', () => {
  it('dual-stack: the shared default-route interface, its best address of each family', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: [] }, DUAL()))).toEqual(['eth0', parseIPv4('10.65.154.19'), '2001:db8::10']);
  });
  it('dual-stack: default routes on different interfaces are refused, naming both', () => {
    expect(() => chooseExternalInterface(all, 2, { iface: [] }, DUAL(3))).toThrow(/IPv4 default route uses "eth0" but the IPv6 one "eth1"/);
    expect(() => chooseExternalInterface(all, 2, { iface: [] }, { ipv4: true, ipv6: true, defaultRoute6: undefined })).toThrow(/no IPv6 default route/);
  });
  it('--public-ipv6 wins, parse-checked only', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: ['eth1'], publicIPv6: ip6('2001:db8:ffff::1') }, DUAL()))).toEqual(['eth1', parseIPv4('192.168.7.2'), '2001:db8:ffff::1']);
  });
  it('--iface=<IPv4> with --public-ipv6 needs the IPv6 address on that interface', () => {
    expect(() => chooseExternalInterface(all, 2, { iface: ['192.168.7.2'], publicIPv6: ip6('2001:db8::10') }, DUAL())).toThrow(/not an address of interface "eth1"/);
    expect(pick(chooseExternalInterface(all, 2, { iface: ['192.168.7.2'], publicIPv6: ip6('fd00:7::2') }, DUAL()))[2]).toBe('fd00:7::2');
  });
  it('--iface=<IPv6> pins the interface and the public IPv6', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: ['2001:db8::99'] }, V6()))).toEqual(['eth0', 0, '2001:db8::99']);
  });
  it('a link-local address is the last resort', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: ['eth2'] }, DUAL()))[2]).toBe('fe80::8');
  });
  it('--iface-regex in dual-stack needs an IPv4 and an IPv6 match on one interface', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: [], ifaceRegex: ['^(192\\.168\\.7|fd00:7)'] }, DUAL()))).toEqual(['eth1', parseIPv4('192.168.7.2'), 'fd00:7::2']);
    expect(() => chooseExternalInterface(all, 2, { iface: [], ifaceRegex: ['^192\\.168\\.8\\.2$'] }, DUAL())).toThrow(HostError);
    expect(pick(chooseExternalInterface(all, 2, { iface: [], ifaceRegex: ['::99'] }, V6()))).toEqual(['eth0', 0, '2001:db8::99']);
  });
  it('IPv6-only: the IPv6 default route, or the owner of --public-ipv6; PublicIP is 0', () => {
    expect(pick(chooseExternalInterface(all, undefined, { iface: [] }, V6(3)))).toEqual(['eth1', 0, 'fd00:7::2']);
    expect(pick(chooseExternalInterface(all, undefined, { iface: [], publicIPv6: ip6('2001:db8::99') }, V6(3)))).toEqual(['eth0', 0, '2001:db8::99']);
    expect(() => chooseExternalInterface(all, undefined, { iface: [], publicIPv6: ip6('2001:db8::5') }, V6(3))).toThrow(/--public-ipv6 2001:db8::5: no interface has this address/);
    expect(() => chooseExternalInterface(all, 2, { iface: [] }, V6('multipath'))).toThrow(/IPv6 default route is multipath/);
  });
  it('an interface without a usable IPv6 address is refused with a hint', () => {
    const noV6 = iface(5, 'eth5', ['10.9.9.9'], []);
    expect(() => chooseExternalInterface([noV6], 5, { iface: ['eth5'] }, DUAL())).toThrow(/failed to find a usable IPv6 address on interface "eth5" \(give --public-ipv6\)/);
  });
  it('IPv4-only stacks ignore IPv6 entirely', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: [] }))).toEqual(['eth0', parseIPv4('10.65.154.19'), undefined]);
  });
});

describe('readInterfaceFacts with IPv6', () => {
  it('reads IPv6 addresses and the IPv6 default route only when asked', async () => {
    const k = new MemoryKernel();
    k.addInterface(eth0);
    k.setDefaultRoute(2);
    k.setDefaultRoute6(2);
    const with6 = await readInterfaceFacts(k, undefined, true);
    expect(with6.defaultRoute6).toBe(2);
    expect(with6.ifaces[0]?.addresses6?.map((a) => formatIPv6(a.ip))).toEqual(['fe80::1', '2001:db8::10', '2001:db8::99']);
    const without = await readInterfaceFacts(k, undefined);
    expect(without.defaultRoute6).toBeUndefined();
  });
});

describe('--iface-can-reach with an IPv6 target (`ip -6 route get`)', () => {
  const route6 = (index: number, src: string | undefined) => ({ ip: ip6('fd00:7::77'), route: { index, src: src === undefined ? undefined : ip6(src) } });
  it('takes the route\'s device; its preferred source is the public IPv6, the IPv4 address the interface\'s best', () => {
    expect(pick(chooseExternalInterface(all, 2, { iface: [], canReach: route6(3, 'fd00:7::2') }, DUAL()))).toEqual(['eth1', parseIPv4('192.168.7.2'), 'fd00:7::2']);
    expect(pick(chooseExternalInterface(all, 2, { iface: [], canReach: route6(2, '2001:db8::99') }, V6()))).toEqual(['eth0', 0, '2001:db8::99']);
    // An IPv4-only stack takes only the interface from an IPv6 target.
    expect(pick(chooseExternalInterface(all, 2, { iface: [], canReach: route6(3, 'fd00:7::2') }))).toEqual(['eth1', parseIPv4('192.168.7.2'), undefined]);
    // No preferred source: the interface's best IPv6 address.
    expect(pick(chooseExternalInterface(all, 2, { iface: [], canReach: route6(2, undefined) }, DUAL()))).toEqual(['eth0', parseIPv4('10.65.154.19'), '2001:db8::10']);
  });
  it('exits (HostError) naming the IPv6 target when no route reaches it', () => {
    expect(() => chooseExternalInterface(all, 2, { iface: [], canReach: { ip: ip6('2001:db8:dead::1'), route: undefined } }, DUAL())).toThrow(
      new HostError('failed to find interface 2001:db8:dead::1 (--iface-can-reach: no route): no such interface or address with both an IPv4 and an IPv6 address'),
    );
  });
  it('reads the route to an IPv6 target through the Kernel', async () => {
    const k = new MemoryKernel();
    k.addInterface(eth0);
    k.addInterface(eth1);
    k.setDefaultRoute(2);
    const facts = await readInterfaceFacts(k, ip6('fd00:7::77'), true);
    expect(facts.canReach).toEqual({ ip: ip6('fd00:7::77'), route: { index: 3, src: ip6('fd00:7::2'), gateway: undefined, type: 'unicast' } });
  });
});
