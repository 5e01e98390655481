/**
 * The daemon with IPv6 against the in-memory fakes: both devices, one reconciler
 * per family, a peer's IPv6 entries following its lease (a move removes the old
 * ones), IPv6-only making only flannel-v6.1, and one firewall rule set per family.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { etcdAddresses } from '../../src/main';
import { FirewallBackends } from '../../src/firewall/firewall-keeper';
import { MemoryFirewall } from '../../src/firewall/memory-firewall';
import { encodeLeaseValue } from '../../src/lease/codec';
import { AddressFamily, IpAddr } from '../../src/net/family';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';
import { waitFor } from '../../src/testbed/scene';
import { eth0Kernel } from '../helpers/eth0-kernel';
import { startMemoryDaemon } from '../helpers/memory-daemon';

const DUAL = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const PFX = '/coreos.com/network/subnets/';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function start(config: string, args: string[] = [], etcdAddresses: readonly IpAddr[] = []) {
  const rules = new Map<number, Map<string, readonly string[]>>();
  const byFamily = (f?: AddressFamily): Map<string, readonly string[]> => {
    const key = f?.family ?? 4;
    if (!rules.has(key)) rules.set(key, new Map());
    return rules.get(key) as Map<string, readonly string[]>;
  };
  const firewalls: FirewallBackends = { iptables: async (o, _l, f) => new MemoryFirewall(o, byFamily(f)), nftables: async (o, _l, f) => new MemoryFirewall(o, new Map([...byFamily(f)])) };
  const kernel = eth0Kernel({ addresses6: ['2001:db8::11/64'] });
  const h = startMemoryDaemon({ config, kernel, firewalls, prefix: 'flts-daemon6-', ipv6ConfDevices: ['flannel.1', 'flannel-v6.1'], args: ['--ip-masq', ...args], deps: { etcdAddresses } });
  cleanups.push(() => h.close());
  return { ...h, rules };
}

const peer = (v4: string | undefined, n: number, publicIPv6: string, mac6: string): string =>
  encodeLeaseValue({ publicIP: v4 === undefined ? 0 : parseIPv4(v4), vni: 1, vtepMAC: v4 === undefined ? undefined : `02:00:00:00:04:${n.toString(16).padStart(2, '0')}`, v6: { publicIP: parseIPv6(publicIPv6), vni: 1, vtepMAC: mac6 } });

describe('Daemon, dual-stack', () => {
  it('makes flannel.1 and flannel-v6.1 with their own MACs; a peer gets entries on both; a moved IPv6 peer loses its old FDB entry', async () => {
    const h = start(DUAL);
    await waitFor('ready', () => h.daemon.status().phase === 'ready', 5000, 20);
    const v4 = await h.kernel.getDevice('flannel.1');
    const v6 = await h.kernel.getDevice('flannel-v6.1');
    expect(v4?.localIP).toBe(parseIPv4('10.65.154.11'));
    expect(v6).toMatchObject({ kind: 'vxlan', vni: 1, localIP: parseIPv6('2001:db8::11'), underlayIndex: 2, port: 8472, mtu: 1430, up: true });
    expect(v4?.mtu).toBe(1450);
    expect(v6?.addresses6?.map((a) => a.prefixLen)).toEqual([128]);
    expect(readFileSync(h.subnetFile, 'utf8')).toMatch(/^FLANNEL_NETWORK=10\.7\.0\.0\/16\nFLANNEL_SUBNET=10\.7\.\d+\.1\/24\nFLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1450\n/);

    h.store.putRaw(`${PFX}10.7.200.0-24&fc00:0:0:c8::-64`, peer('10.65.154.20', 0xc8, '2001:db8::20', '02:00:00:00:06:c8'));
    await waitFor('the peer on both devices', async () => ((await h.entries('flannel-v6.1')).length === 3 && (await h.entries('flannel.1')).length === 3) || undefined, 5000, 20);
    expect(await h.entries('flannel-v6.1')).toEqual([
      'fdb 02:00:00:00:06:c8 dst 2001:db8::20',
      'neighbor fc00:0:0:c8:: lladdr 02:00:00:00:06:c8',
      'route fc00:0:0:c8::/64 via fc00:0:0:c8:: onlink',
    ]);
    expect(await h.entries('flannel.1')).toContain('fdb 02:00:00:00:04:c8 dst 10.65.154.20');

    // The peer's PublicIPv6 changes: the FDB entry follows, nothing stale is left.
    h.store.putRaw(`${PFX}10.7.200.0-24&fc00:0:0:c8::-64`, peer('10.65.154.20', 0xc8, '2001:db8::99', '02:00:00:00:06:c8'));
    await waitFor('the FDB entry to move', async () => (await h.entries('flannel-v6.1')).includes('fdb 02:00:00:00:06:c8 dst 2001:db8::99') || undefined, 5000, 20);
    expect((await h.entries('flannel-v6.1')).filter((e) => e.startsWith('fdb'))).toEqual(['fdb 02:00:00:00:06:c8 dst 2001:db8::99']);

    // Lease gone: its entries go from both devices.
    h.store.deleteRaw(`${PFX}10.7.200.0-24&fc00:0:0:c8::-64`);
    await waitFor('the peer gone', async () => ((await h.entries('flannel-v6.1')).length === 0 && (await h.entries('flannel.1')).length === 0) || undefined, 5000, 20);

    // One masquerade set per family, with that family's network.
    expect([...(h.rules.get(6)?.values() ?? [])].flat().join('\n')).toContain('-s fc00::/48 ! -d ff00::/8');
    expect([...(h.rules.get(4)?.values() ?? [])].flat().join('\n')).toContain('-s 10.7.0.0/16 ! -d 224.0.0.0/4');
  });
});

describe('Daemon, IPv6-only', () => {
  it('makes only flannel-v6.1, writes no IPv4 lines and keeps no IPv4 firewall rules', async () => {
    const h = start(V6ONLY);
    await waitFor('ready', () => h.daemon.status().phase === 'ready', 5000, 20);
    expect(await h.kernel.getDevice('flannel.1')).toBeUndefined();
    expect(await h.kernel.getDevice('flannel-v6.1')).toBeDefined();
    expect(readFileSync(h.subnetFile, 'utf8')).toMatch(/^FLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n$/);
    expect(h.rules.get(4)?.size ?? 0).toBe(0);
    expect(h.rules.get(6)?.size).toBeGreaterThan(0);
    h.store.putRaw(`${PFX}0.0.0.0-0&fc00:0:0:c9::-64`, peer(undefined, 0xc9, '2001:db8::21', '02:00:00:00:06:c9'));
    await waitFor('the IPv6-only peer', async () => (await h.entries('flannel-v6.1')).length === 3 || undefined, 5000, 20);
  });
});

describe('Daemon, an IPv6 etcd endpoint', () => {
  it('refuses an IPv6Network holding the etcd endpoint https://[fc00:0:0:e7::2]:2379 as an invalid config, as a Network holding an IPv4 one', async () => {
    const addresses = await etcdAddresses(['https://[fc00:0:0:e7::2]:2379', 'http://10.99.0.2:2379']);
    expect(addresses).toEqual([parseIPv6('fc00:0:0:e7::2'), parseIPv4('10.99.0.2')]);
    const h = start(DUAL, [], addresses);
    await waitFor('the refusal', () => h.logs.some((l) => l.includes('IPv6Network fc00::/48 contains etcd endpoint fc00:0:0:e7::2')) || undefined, 5000, 20);
    expect(h.daemon.status().phase).not.toBe('ready');
    expect(await h.kernel.getDevice('flannel-v6.1')).toBeUndefined();
    // The same endpoint outside IPv6Network: the daemon starts.
    const ok = start(DUAL.replace('fc00::/48', 'fd07::/48'), [], addresses);
    await waitFor('ready', () => ok.daemon.status().phase === 'ready', 5000, 20);
  });
});
