import { describe, expect, it } from 'vitest';
import { IFA_F_DEPRECATED, IFA_F_PERMANENT, IFA_F_TEMPORARY, chooseExternalInterface, orderAddresses, readInterfaceFacts } from '../../src/kernel/interfaces';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { formatIPv4 } from '../../src/net/ipv4';
import { InterfaceInfo } from '../../src/kernel/kernel';
import { parseIPv4 } from '../../src/net/ipv4';
import { HostError } from '../../src/util/errors';

const ip = parseIPv4;
const iface = (index: number, name: string, addrs: Array<[string, number, number?]>): InterfaceInfo => ({
  index,
  name,
  mtu: 1500,
  up: true,
  addresses: addrs.map(([a, prefixLen, scope]) => ({ ip: ip(a), prefixLen, scope: scope ?? 0 })),
});

const lo = iface(1, 'lo', [['127.0.0.1', 8, 254]]);
const eth0 = iface(2, 'eth0', [['169.254.9.9', 16, 253], ['10.65.154.19', 24], ['10.65.154.99', 24]]);
const eth1 = iface(3, 'eth1', [['192.168.7.2', 24]]);
const bare = iface(4, 'eth2', []);
const all = [lo, eth0, eth1, bare];

describe('chooseExternalInterface', () => {
  const cases: Array<{ name: string; def: number | undefined; iface: string[]; publicIP?: string; want: [string, string] }> = [
    { name: 'default-route interface, first global address', def: 2, iface: [], want: ['eth0', '10.65.154.19'] },
    { name: '--iface by name', def: 2, iface: ['eth1'], want: ['eth1', '192.168.7.2'] },
    { name: '--iface by address: that address is the public IP', def: 2, iface: ['10.65.154.99'], want: ['eth0', '10.65.154.99'] },
    { name: 'first matching --iface wins', def: 2, iface: ['eth9', '192.168.7.2', 'eth0'], want: ['eth1', '192.168.7.2'] },
    { name: '--public-ip picks its owner', def: 2, iface: [], publicIP: '192.168.7.2', want: ['eth1', '192.168.7.2'] },
    { name: '--public-ip overrides the address of --iface', def: 2, iface: ['eth1'], publicIP: '203.0.113.5', want: ['eth1', '203.0.113.5'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = chooseExternalInterface(all, c.def, { iface: c.iface, publicIP: c.publicIP === undefined ? undefined : ip(c.publicIP) });
      expect([got.iface.name, got.publicIP]).toEqual([c.want[0], ip(c.want[1])]);
    });
  }

  it('names the missing --iface', () => {
    expect(() => chooseExternalInterface(all, 2, { iface: ['eth9'] })).toThrow(new HostError('failed to find interface "eth9" (--iface): no such interface or address'));
    expect(() => chooseExternalInterface(all, 2, { iface: ['eth9', '10.9.9.9'] })).toThrow(/"eth9" \(--iface\), "10.9.9.9" \(--iface\)/);
  });

  it('tries --iface-regex after --iface, only on interfaces with a global address', () => {
    expect(chooseExternalInterface(all, 2, { iface: [], ifaceRegex: ['^eth[12]$'] }).iface.name).toBe('eth1');
    expect(chooseExternalInterface(all, 3, { iface: ['eth0'], ifaceRegex: ['^eth1$'] }).iface.name).toBe('eth0');
    expect(chooseExternalInterface(all, 3, { iface: ['eth9'], ifaceRegex: ['^eth0$'] }).iface.name).toBe('eth0');
    expect(() => chooseExternalInterface(all, 2, { iface: [], ifaceRegex: ['^eth2$'] })).toThrow('failed to find interface /^eth2$/ (--iface-regex): no such interface or address');
  });

  it('fails without a default route', () => {
    expect(() => chooseExternalInterface(all, undefined, { iface: [] })).toThrow(HostError);
    expect(() => chooseExternalInterface(all, undefined, { iface: [] })).toThrow(/no IPv4 default route/);
  });

  it('fails when the default-route interface is unknown', () => {
    expect(() => chooseExternalInterface(all, 42, { iface: [] })).toThrow(/index 42/);
  });

  it('fails when the chosen interface has no global IPv4 address', () => {
    expect(() => chooseExternalInterface(all, 4, { iface: [] })).toThrow(new HostError('failed to find a usable IPv4 address on interface "eth2"'));
    expect(() => chooseExternalInterface(all, 2, { iface: ['lo'] })).toThrow(/interface "lo"/);
  });
});

// flanneld's order (contract §14): global before link-local, permanent before dynamic, non-temporary before temporary, else kernel order.
const DYN = 0; // a DHCP address: no IFA_F_PERMANENT
const PERM = IFA_F_PERMANENT;
const flagged = (index: number, name: string, addrs: Array<[string, number]>): InterfaceInfo => ({
  index,
  name,
  mtu: 1500,
  up: true,
  addresses: addrs.map(([a, flags]) => ({ ip: ip(a), prefixLen: 24, scope: a.startsWith('169.254.') ? 253 : 0, flags })),
});

describe('flanneld address order and choice', () => {
  it.each([
    ['a static secondary beats a DHCP primary', [['10.0.0.5', DYN], ['10.0.0.9', PERM | IFA_F_TEMPORARY]], ['10.0.0.9', '10.0.0.5']],
    ['global before link-local', [['169.254.3.3', PERM], ['10.0.0.5', DYN]], ['10.0.0.5', '169.254.3.3']],
    ['non-temporary before temporary', [['10.0.0.5', PERM | IFA_F_TEMPORARY], ['10.0.0.6', PERM]], ['10.0.0.6', '10.0.0.5']],
    ['otherwise kernel order', [['10.0.0.7', PERM], ['10.0.0.5', PERM], ['10.0.0.6', PERM]], ['10.0.0.7', '10.0.0.5', '10.0.0.6']],
    ['deprecated, loopback, multicast and broadcast are dropped', [['10.0.0.5', PERM | IFA_F_DEPRECATED], ['127.0.0.2', PERM], ['224.0.0.9', PERM], ['255.255.255.255', PERM], ['10.0.0.6', DYN]], ['10.0.0.6']],
  ] as Array<[string, Array<[string, number]>, string[]]>)('%s', (_name, addrs, want) => {
    expect(orderAddresses(flagged(2, 'eth0', addrs).addresses).map((a) => formatIPv4(a.ip))).toEqual(want);
  });

  const eth0 = flagged(2, 'eth0', [['10.65.0.5', DYN], ['10.65.0.9', PERM]]);
  const eth1 = flagged(3, 'eth1', [['192.168.110.4', PERM]]);
  const net10 = flagged(4, 'net10', [['172.16.0.4', PERM]]);
  const hosts = [net10, eth1, eth0];
  const choose = (opts: Parameters<typeof chooseExternalInterface>[2], def: Parameters<typeof chooseExternalInterface>[1] = 2) => {
    const got = chooseExternalInterface(hosts, def, opts);
    return [got.iface.name, formatIPv4(got.publicIP)];
  };

  it('takes the best address of the default-route interface and of a named --iface', () => {
    expect(choose({ iface: [] })).toEqual(['eth0', '10.65.0.9']);
    expect(choose({ iface: ['eth0'] })).toEqual(['eth0', '10.65.0.9']);
  });
  it('pins the address given as --iface=<IP>', () => {
    expect(choose({ iface: ['10.65.0.5'] })).toEqual(['eth0', '10.65.0.5']);
  });
  it('matches --iface-regex on addresses (unanchored, interfaces in ifindex order) before names', () => {
    expect(choose({ iface: [], ifaceRegex: ['10\\.'] })).toEqual(['eth0', '10.65.0.9']);
    expect(choose({ iface: [], ifaceRegex: ['110'] })).toEqual(['eth1', '192.168.110.4']);
    // eth0's name matches, but net10's address matches in pass 1, which beats any name.
    expect(choose({ iface: [], ifaceRegex: ['eth|172\\.16'] })).toEqual(['net10', '172.16.0.4']);
    expect(choose({ iface: [], ifaceRegex: ['^net1'] })).toEqual(['net10', '172.16.0.4']);
  });
  it('uses the route to --iface-can-reach: its device and preferred source', () => {
    expect(choose({ iface: [], canReach: { ip: ip('8.8.8.8'), route: { index: 3, src: ip('192.168.110.4') } } })).toEqual(['eth1', '192.168.110.4']);
    expect(choose({ iface: [], canReach: { ip: ip('8.8.8.8'), route: { index: 2, src: undefined } } })).toEqual(['eth0', '10.65.0.9']);
  });
  it('exits (HostError) when an iface flag matches nothing: no default-route fallback', () => {
    expect(() => choose({ iface: ['eth9'], ifaceRegex: ['^wlan'], canReach: { ip: ip('8.8.8.8'), route: undefined } })).toThrow(
      new HostError('failed to find interface "eth9" (--iface), /^wlan/ (--iface-regex), 8.8.8.8 (--iface-can-reach: no route): no such interface or address'),
    );
  });
  it('takes the owner of a local --public-ip, refuses a non-local one without an iface flag, keeps any with one', () => {
    expect(choose({ iface: [], publicIP: ip('10.65.0.5') })).toEqual(['eth0', '10.65.0.5']);
    expect(() => choose({ iface: [], publicIP: ip('203.0.113.5') })).toThrow(new HostError('failed to find the interface of --public-ip 203.0.113.5: no interface has this address (use --iface as well)'));
    expect(choose({ iface: ['eth1'], publicIP: ip('203.0.113.5') })).toEqual(['eth1', '203.0.113.5']);
  });
  it('refuses a multipath default route', () => {
    expect(() => choose({ iface: [] }, 'multipath')).toThrow(/multipath/);
  });
  it('reads flags, the default route and the route lookup through the Kernel', async () => {
    const k = new MemoryKernel();
    k.addInterface(eth0);
    k.addInterface(eth1);
    k.setDefaultRoute('multipath');
    const facts = await readInterfaceFacts(k, ip('192.168.110.77'));
    expect(facts.defaultRoute).toBe('multipath');
    expect(facts.canReach).toEqual({ ip: ip('192.168.110.77'), route: { index: 3, src: ip('192.168.110.4'), gateway: undefined, type: 'unicast' } });
    expect(facts.ifaces.find((i) => i.name === 'eth0')?.addresses.map((a) => a.flags)).toEqual([DYN, PERM]);
  });
});
