/** `npm run demo` end to end: the article's two-host scene must come up, ping, print the path and tear down. */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/testbed/exec';
import { listNetns } from '../../src/testbed/netns';
import { assertPrivateNetns } from '../helpers/private-netns';

const DEMO = resolve(__dirname, '..', '..', 'dist', 'demo', 'demo.js');

describe('npm run demo', () => {
  it('pings nginx1 -> nginx2 across the overlay, shows route, neighbour, FDB and leases, traces the path, and leaves nothing behind', async () => {
    assertPrivateNetns();
    const before = new Set(listNetns());
    const r = await run(process.execPath, [DEMO], { timeoutMs: 90_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('OK: nginx1 reached nginx2 across the overlay');
    expect(r.stdout).toMatch(/vxlan id 1 local 10\.65\.154\.11 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300/);
    expect(r.stdout).toMatch(/10\.7\.\d+\.0\/24 via 10\.7\.\d+\.0 onlink/);
    expect(r.stdout).toMatch(/10\.7\.\d+\.0 lladdr ([0-9a-f]{2}:){5}[0-9a-f]{2} PERMANENT/);
    expect(r.stdout).toMatch(/([0-9a-f]{2}:){5}[0-9a-f]{2} dst 10\.65\.154\.1[12] self permanent/);
    expect(r.stdout).toMatch(/\/coreos\.com\/network\/subnets\/10\.7\.\d+\.0-24\n\s+\{"PublicIP":"10\.65\.154\.1[12]","PublicIPv6":null,"BackendType":"vxlan"/);
    expect(r.stdout).toContain(' 0% packet loss');
    // It ends with flanneld-ts trace nginx1 -> nginx2, every hop ok.
    expect(r.stdout).toMatch(/node1\$ flanneld-ts trace 10\.7\.\d+\.\d+ --from 10\.7\.\d+\.\d+ --etcd-endpoints/);
    expect(r.stdout).toMatch(/^\s+1 pod 10\.7\.\d+\.\d+ eth0@if\d+ in netns flts-[0-9a-f]{4}-node1-nginx1$/m);
    expect(r.stdout).toMatch(/^\s+5 flannel\.1 vxlan id 1 local 10\.65\.154\.11 dstport 8472$/m);
    expect(r.stdout).toMatch(/^\s+VXLAN {4}outer 10\.65\.154\.11 → 10\.65\.154\.12 UDP dport 8472 VNI 1 out eth0$/m);
    expect(r.stdout).toMatch(/^\s+OK: 10\.7\.\d+\.\d+ → 10\.7\.\d+\.\d+, 7 hops ok/m);
    expect(r.stdout).not.toContain('PROBLEM');
    // Only the demo's own namespaces count: other runs on the machine may come and go meanwhile.
    const prefix = /in netns (flts-[0-9a-f]{4})-node1-nginx1/.exec(r.stdout)?.[1];
    expect(prefix, r.stdout).toBeDefined();
    expect(listNetns().filter((n) => !before.has(n) && n.startsWith(`${prefix}-`))).toEqual([]);
  }, 120_000);

  it('--dual-stack: shows flannel-v6.1 and its entries beside flannel.1 and pings nginx2 over IPv4 and IPv6', async () => {
    assertPrivateNetns();
    const r = await run(process.execPath, [DEMO, '--dual-stack'], { timeoutMs: 90_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('OK: nginx1 reached nginx2 across the overlay');
    expect(r.stdout).toContain('OK: nginx1 reached nginx2 over IPv6 (flannel-v6.1)');
    expect(r.stdout).toMatch(/vxlan id 1 local 2001:db8:154::11 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300/);
    expect(r.stdout).toMatch(/fc00:0:0:[0-9a-f]+::\/64 via fc00:0:0:[0-9a-f]+:: metric 1024 onlink/);
    expect(r.stdout).toMatch(/([0-9a-f]{2}:){5}[0-9a-f]{2} dst 2001:db8:154::1[12] self permanent/);
    expect(r.stdout).toMatch(/FLANNEL_IPV6_NETWORK=fc00::\/48\n\s+FLANNEL_IPV6_SUBNET=fc00:0:0:[0-9a-f]+::1\/64/);
    expect(r.stdout).toMatch(/subnets\/10\.7\.\d+\.0-24&fc00:0:0:[0-9a-f]+::-64\n\s+\{"PublicIP":"10\.65\.154\.1[12]","PublicIPv6":"2001:db8:154::1[12]"/);
    expect(r.stdout).not.toContain('PROBLEM');
  }, 120_000);
});
