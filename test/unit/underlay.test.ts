import { describe, expect, it } from 'vitest';
import { HostNetwork, HostRoute } from '../../src/kernel/kernel';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { Cidr6, parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { networkProblem, underlayProblem } from '../../src/overlay/underlay';

const route = (dst: string, devices: number[], extra: Partial<HostRoute> = {}): HostRoute => ({ dst: parseCidr(dst), table: 254, protocol: 3, scope: 0, type: 1, devices, ...extra });
const eth0 = { index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }] };
const docker0 = { index: 3, name: 'docker0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('172.17.0.1'), prefixLen: 16, scope: 0 }] };
const flannel = { index: 9, name: 'flannel.1', mtu: 1450, up: true, addresses: [{ ip: parseIPv4('10.7.5.0'), prefixLen: 32, scope: 0 }] };
const host: HostNetwork = {
  interfaces: [eth0, docker0, flannel],
  routes: [
    route('0.0.0.0/0', [2], { gateway: parseIPv4('10.65.154.1') }),
    route('10.65.154.0/24', [2], { protocol: 2, scope: 253 }),
    route('172.17.0.0/16', [3], { protocol: 2, scope: 253 }),
    route('192.168.50.0/24', [2], { gateway: parseIPv4('10.65.154.254') }),
    route('10.0.0.0/8', [], { type: 6 }),
    route('10.7.12.0/24', [9], { gateway: parseIPv4('10.7.12.0') }),
    route('10.7.5.0/32', [9], { table: 255, type: 2, protocol: 2 }),
    route('10.66.0.0/16', [2], { table: 100 }),
  ],
};
const ctx = { host, overlayIndex: 9, network: parseCidr('10.0.0.0/8'), etcdAddresses: [parseIPv4('10.99.0.2')] };

describe('underlayProblem', () => {
  it.each([
    ['10.7.20.0/24'],
    ['10.7.12.0/24'], // our own route on flannel.1
    ['10.65.155.0/24'], // next to the underlay, not on it
    ['10.99.1.0/24'],
  ])('accepts %s (default route, a blackhole for the whole network and our routes do not count)', (subnet) => {
    expect(underlayProblem(parseCidr(subnet), ctx)).toBeUndefined();
  });
  it.each([
    ['10.65.154.0/24', 'contains address 10.65.154.11 of eth0'],
    ['10.65.154.0/26', 'contains address 10.65.154.11 of eth0'],
    ['10.65.154.128/25', 'overlaps connected route 10.65.154.0/24 dev eth0'],
    ['10.65.0.0/16', 'contains address 10.65.154.11'],
    ['172.17.5.0/24', 'overlaps connected route 172.17.0.0/16 dev docker0'],
    ['192.168.50.0/24', 'overlaps route 192.168.50.0/24 dev eth0, which flanneld-ts did not make'],
    ['192.168.50.128/25', 'overlaps route 192.168.50.0/24 dev eth0'],
    ['10.99.0.0/24', 'contains etcd endpoint 10.99.0.2'],
    ['10.66.3.0/24', 'overlaps route 10.66.0.0/16 dev eth0 table 100'],
  ])('refuses %s (%s)', (subnet, why) => {
    expect(underlayProblem(parseCidr(subnet), ctx)).toContain(why);
  });
  it('refuses a subnet holding the gateway of a route on another device', () => {
    const gw = { ...ctx, host: { ...host, routes: [route('0.0.0.0/0', [2], { gateway: parseIPv4('10.50.0.1') })] } };
    expect(underlayProblem(parseCidr('10.50.0.0/24'), gw)).toContain('contains gateway 10.50.0.1');
  });
  it('a route of another device that covers only part of the Network counts', () => {
    const narrow = { ...ctx, network: parseCidr('10.0.0.0/8'), host: { ...host, routes: [route('10.7.0.0/16', [2])] } };
    expect(underlayProblem(parseCidr('10.7.3.0/24'), narrow)).toContain('overlaps route 10.7.0.0/16 dev eth0');
  });
});

describe('networkProblem', () => {
  const facts = { publicIP: parseIPv4('10.65.154.11'), iface: { name: 'eth0', addresses: [{ ip: parseIPv4('10.65.154.11') }, { ip: parseIPv4('192.168.9.9') }] }, etcdAddresses: [parseIPv4('10.99.0.2')] };
  it('accepts a Network apart from the underlay', () => {
    expect(networkProblem(parseCidr('10.7.0.0/16'), facts)).toBeUndefined();
  });
  it.each([
    ['10.0.0.0/8', "contains this node's public IP 10.65.154.11"],
    ['192.168.0.0/16', 'contains 192.168.9.9, an address of the external interface eth0'],
    ['10.99.0.0/16', 'contains etcd endpoint 10.99.0.2'],
  ])('refuses %s (%s)', (net, why) => {
    expect(networkProblem(parseCidr(net), facts)).toBe(`Network ${net} ${why}`);
  });
});

describe('networkProblem for IPv6Network', () => {
  const facts6 = {
    publicIP: parseIPv6('2001:db8:154::11'),
    iface: { name: 'eth0', addresses: [{ ip: parseIPv4('10.65.154.11') }], addresses6: [{ ip: parseIPv6('2001:db8:154::11') }, { ip: parseIPv6('fd00:9::9') }] },
    etcdAddresses: [parseIPv4('10.99.0.2')],
  };
  it('accepts an IPv6Network apart from the underlay; IPv4 addresses never fall inside it', () => {
    expect(networkProblem(parseCidr6('fc00::/48'), facts6)).toBeUndefined();
    expect(networkProblem(parseCidr6('::/0'), { ...facts6, publicIP: parseIPv6('2001:db8:154::11'), iface: { ...facts6.iface, addresses6: [] } })).toBe("IPv6Network ::/0 contains this node's public IP 2001:db8:154::11");
  });
  it.each([
    ['2001:db8::/32', "contains this node's public IP 2001:db8:154::11"],
    ['fd00::/16', 'contains fd00:9::9, an address of the external interface eth0'],
  ])('refuses %s (%s)', (net, why) => {
    expect(networkProblem(parseCidr6(net), facts6)).toBe(`IPv6Network ${net} ${why}`);
  });
});

describe('underlayProblem for IPv6 peer subnets (flannel-v6.<VNI>)', () => {
  const r6 = (dst: string, devices: number[], extra: Partial<HostRoute<Cidr6>> = {}): HostRoute<Cidr6> => ({ dst: parseCidr6(dst), table: 254, protocol: 3, scope: 0, type: 1, devices, ...extra });
  const eth0v6 = { ...eth0, addresses6: [{ ip: parseIPv6('2001:db8:154::11'), prefixLen: 64, scope: 0 }, { ip: parseIPv6('fe80::1'), prefixLen: 64, scope: 253 }] };
  const flannel6 = { index: 10, name: 'flannel-v6.1', mtu: 1430, up: true, addresses: [], addresses6: [{ ip: parseIPv6('fc00:0:0:5::'), prefixLen: 128, scope: 0 }] };
  const host6: HostNetwork = {
    interfaces: [eth0v6, flannel6],
    routes: [],
    routes6: [
      r6('::/0', [2], { gateway: parseIPv6('2001:db8:154::1') }),
      r6('2001:db8:154::/64', [2], { protocol: 2 }),
      r6('fe80::/64', [2], { protocol: 2 }),
      r6('fc00:0:0:c::/64', [10], { gateway: parseIPv6('fc00:0:0:c::') }),
      r6('fc00:0:0:99::/64', [2], { gateway: parseIPv6('2001:db8:154::254') }),
    ],
  };
  const ctx6 = { host: host6, overlayIndex: 10, network: parseCidr6('fc00::/48'), etcdAddresses: [parseIPv4('10.99.0.2')] };

  it('passes a free subnet and our own route on flannel-v6.1; refuses one over a route or address of the host', () => {
    expect(underlayProblem(parseCidr6('fc00:0:0:20::/64'), ctx6)).toBeUndefined();
    expect(underlayProblem(parseCidr6('fc00:0:0:c::/64'), ctx6)).toBeUndefined();
    expect(underlayProblem(parseCidr6('fc00:0:0:99::/64'), ctx6)).toBe('subnet fc00:0:0:99::/64 overlaps route fc00:0:0:99::/64 dev eth0, which flanneld-ts did not make');
    const wide = { ...ctx6, network: parseCidr6('2001:db8::/32') };
    expect(underlayProblem(parseCidr6('2001:db8:154::/64'), wide)).toBe('subnet 2001:db8:154::/64 contains address 2001:db8:154::11 of eth0 on this host');
    // An IPv4 subnet is none of the IPv6 check's business, and the other way round.
    expect(underlayProblem(parseCidr('10.65.154.0/24'), ctx6)).toBeUndefined();
    // The IPv4 etcd endpoint of ctx6 is no IPv6 subnet's business either.
    expect(underlayProblem(parseCidr6('::a63:0/112'), ctx6)).toBeUndefined();
    expect(underlayProblem(parseCidr6('fc00:0:0:99::/64'), ctx)).toBeUndefined();
  });

  it('refuses an IPv6 subnet that contains an IPv6 etcd endpoint, as the IPv4 case; the IPv4 check ignores it', () => {
    const both = { ...ctx6, etcdAddresses: [parseIPv4('10.99.0.2'), parseIPv6('fc00:0:0:e7::2')] };
    expect(underlayProblem(parseCidr6('fc00:0:0:e7::/64'), both)).toBe('subnet fc00:0:0:e7::/64 contains etcd endpoint fc00:0:0:e7::2');
    expect(underlayProblem(parseCidr6('fc00:0:0:e8::/64'), both)).toBeUndefined();
    // Without the IPv6 endpoint the same subnet passes: the refusal is the endpoint's.
    expect(underlayProblem(parseCidr6('fc00:0:0:e7::/64'), ctx6)).toBeUndefined();
    expect(underlayProblem(parseCidr('10.99.0.0/24'), { ...ctx, etcdAddresses: both.etcdAddresses })).toBe('subnet 10.99.0.0/24 contains etcd endpoint 10.99.0.2');
  });
});
