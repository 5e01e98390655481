import { describe, expect, it } from 'vitest';
import { chooseExternalInterface } from '../../src/kernel/interfaces';
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
    { name: '--public-ip owned by nobody: default route, the IP kept', def: 3, iface: [], publicIP: '203.0.113.5', want: ['eth1', '203.0.113.5'] },
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
    expect(() => chooseExternalInterface(all, 4, { iface: [] })).toThrow(new HostError('failed to find a global IPv4 address on interface "eth2"'));
    expect(() => chooseExternalInterface(all, 2, { iface: ['lo'] })).toThrow(/interface "lo"/);
  });
});
