/** `npm run demo` end to end: the article's two-host scene must come up, ping, print the path and tear down. */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../src/testbed/exec';
import { listNetns } from '../../src/testbed/netns';
import { assertPrivateNetns } from '../helpers/private-netns';

const DEMO = resolve(__dirname, '..', '..', 'dist', 'demo', 'demo.js');

describe('npm run demo', () => {
  it('pings nginx1 -> nginx2 across the overlay, shows route, neighbour, FDB and leases, and leaves nothing behind', async () => {
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
    expect(listNetns().filter((n) => !before.has(n))).toEqual([]);
  }, 120_000);
});
