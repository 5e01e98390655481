/**
 * The daemon's lease side with IPv6 enabled, against the in-memory fakes: the
 * `&` key it writes, subnet.env with both families, losing and re-acquiring the
 * dual-stack key, IPv6-only keys, the interface rules and ignored Backend keys.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';
import { waitFor } from '../../src/testbed/scene';
import { address6, eth0Kernel } from '../helpers/eth0-kernel';
import { startMemoryDaemon } from '../helpers/memory-daemon';
import { HostError } from '../../src/util/errors';

const PFX = '/coreos.com/network/subnets/';
const DUAL = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan","MacPrefix":"0E-2A"}}';
const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function start(config: string, opts: { args?: string[]; subnetFile?: (dir: string) => string; default6?: number } = {}) {
  const kernel = eth0Kernel({ addresses6: ['fe80::11/64', '2001:db8::11/64'], default6: opts.default6 ?? 2 });
  kernel.addInterface({ index: 3, name: 'eth1', mtu: 1500, up: true, addresses: [], addresses6: [address6('2001:db8:1::11/64')] });
  const h = startMemoryDaemon({ config, kernel, prefix: 'flts-daemon6-', args: ['--iptables-forward-rules=false', ...(opts.args ?? [])], ...(opts.subnetFile && { subnetFile: opts.subnetFile }) });
  cleanups.push(() => h.close());
  const keys = async () => (await h.store.list()).records.map((r) => r.key);
  return { ...h, keys };
}

const ready = (h: { daemon: Daemon }) => waitFor('daemon ready', () => h.daemon.status().phase === 'ready', 5000, 10);

describe('Daemon lease side with IPv6', () => {
  it('dual-stack: one & key with both halves, subnet.env with both families, a warning for MacPrefix', async () => {
    const h = start(DUAL);
    await ready(h);
    const [key] = await h.keys();
    expect(key).toMatch(/^\/coreos\.com\/network\/subnets\/10\.7\.\d+\.0-24&fc00:0:0:[0-9a-f]+::-64$/);
    const rec = (await h.store.list()).records[0];
    expect(rec?.kind === 'lease' && [rec.lease.publicIP, rec.lease.v6?.publicIP]).toEqual([parseIPv4('10.65.154.11'), parseIPv6('2001:db8::11')]);
    const [, v4, v6] = /10\.7\.(\d+)\.0-24&fc00:0:0:([0-9a-f]+)::-64/.exec(key!)!;
    expect(readFileSync(h.subnetFile, 'utf8')).toBe(`FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.${v4}.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:${v6}::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`);
    expect(h.logs.join('')).toMatch(/ignoring Backend key\(s\) MacPrefix: flanneld's Linux VXLAN backend does not read them/);
  });

  it('dual-stack: an operator deleting the & key makes it re-acquire the same two subnets', async () => {
    const h = start(DUAL);
    await ready(h);
    const [key] = await h.keys();
    h.store.deleteRaw(key!);
    await waitFor('re-acquired', async () => (await h.keys()).join() === key, 5000, 20);
    expect(h.logs.join('')).toMatch(/was deleted from etcd; re-acquiring/);
    expect(h.logs.join('')).not.toMatch(/SUBNET CHANGED/);
  });

  it('dual-stack: reuses the previous subnets of subnet.env', async () => {
    const h = start(DUAL, { subnetFile: (dir) => { const f = join(dir, 'subnet.env'); writeFileSync(f, 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.42.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n'); return f; } });
    await ready(h);
    expect(await h.keys()).toEqual([`${PFX}10.7.42.0-24&fc00:0:0:42::-64`]);
  });

  it('IPv6-only: key 0.0.0.0-0&…, PublicIP 0.0.0.0, subnet.env without the IPv4 keys, --public-ipv6 picks eth1', async () => {
    const h = start(V6ONLY, { args: ['--public-ipv6', '2001:db8:1::11'] });
    await ready(h);
    const [key] = await h.keys();
    expect(key).toMatch(/^\/coreos\.com\/network\/subnets\/0\.0\.0\.0-0&fc00:0:0:[0-9a-f]+::-64$/);
    const rec = (await h.store.list()).records[0];
    expect(rec?.kind === 'lease' && [rec.lease.hasIPv4, rec.lease.publicIP, rec.lease.v6?.publicIP]).toEqual([false, 0, parseIPv6('2001:db8:1::11')]);
    expect(readFileSync(h.subnetFile, 'utf8')).toMatch(/^FLANNEL_IPV6_NETWORK=fc00::\/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$/);
    expect(h.logs.join('')).toMatch(/using interface eth1 with public IPv6 2001:db8:1::11"/);
  });

  it('dual-stack without --iface: IPv4 and IPv6 default routes on different interfaces is fatal', async () => {
    const h = start(DUAL, { default6: 3 });
    const err = await h.done;
    expect(err).toBeInstanceOf(HostError);
    expect(String(err)).toMatch(/IPv4 default route uses "eth0" but the IPv6 one "eth1"/);
  });

  it('an IPv6Network holding the public IPv6 is an invalid config: logged naming the field, waited out', async () => {
    const h = start('{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/32","Backend":{"Type":"vxlan"}}');
    await waitFor('config refused', () => (h.logs.join('').includes("IPv6Network: IPv6Network 2001:db8::/32 contains this node's public IP 2001:db8::11") ? true : undefined), 5000, 20);
    expect(h.daemon.status().phase).toBe('starting');
    expect(await h.keys()).toEqual([]);
  });
});
