/**
 * status with IPv6 (issue 12): pool and lease rows for both families, this
 * host found by its IPv6 subnet, the mixed-family warnings, IPv6 clashes, and
 * every report held to docs/status.schema.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { analyzeStatus } from '../../src/status/analyze';
import { collectFacts } from '../../src/status/collect';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { renderBrief, renderJson } from '../../src/status/render';
import { renderTable } from '../../src/status/render-table';
import { StatusReport } from '../../src/status/report';
import { renderSubnetEnv } from '../../src/subnet-file';
import { systemClock } from '../../src/util/clock';

const STATUS_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/status.schema.json'), 'utf8')) as JsonSchema;
const PFX = '/coreos.com/network/subnets/';
const FILE = '/run/flannel/subnet.env';
const DUAL = '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const V4ONLY = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';

const dual = (n: number, mac6 = `02:00:00:00:06:${n}`, ip6 = `2001:db8::${n}`): [string, string] => [
  `${PFX}10.7.${n}.0-24&fc00:0:0:${n}::-64`,
  encodeLeaseValue({ publicIP: parseIPv4(`10.65.154.${n}`), vni: 1, vtepMAC: `02:00:00:00:04:${n}`, v6: { publicIP: parseIPv6(ip6), vni: 1, vtepMAC: mac6 } }),
];
const v6only = (n: number, ip6 = `2001:db8::${n}`): [string, string] => [
  `${PFX}0.0.0.0-0&fc00:0:0:${n}::-64`,
  encodeLeaseValue({ publicIP: 0, vni: 1, vtepMAC: undefined, v6: { publicIP: parseIPv6(ip6), vni: 1, vtepMAC: `02:00:00:00:06:${n}` } }),
];
const v4only = (n: number): [string, string] => [`${PFX}10.7.${n}.0-24`, encodeLeaseValue({ publicIP: parseIPv4(`10.65.154.${n}`), vni: 1, vtepMAC: `02:00:00:00:04:${n}` })];

async function report(config: string, leases: Array<[string, string]>, file: string | undefined, filter: { subnet?: ReturnType<typeof parseCidr> } = {}): Promise<StatusReport> {
  const store = new MemoryLeaseStore();
  store.setConfig(config);
  for (const [k, v] of leases) store.putRaw(k, v, { ttlSeconds: 86_400 });
  const kernel = new MemoryKernel();
  kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.23'), prefixLen: 24, scope: 0 }], addresses6: [{ ip: parseIPv6('2001:db8::23'), prefixLen: 64, scope: 0 }] });
  kernel.setDefaultRoute(2);
  kernel.setDefaultRoute6(2);
  const readFile = async (path: string): Promise<string> => {
    if (file === undefined || path !== FILE) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return file;
  };
  const facts = await collectFacts({ store, kernel: async () => kernel, readFile, clock: systemClock }, { subnetFile: FILE, etcdBudgetMs: 1000, endpoints: ['http://etcd:2379'] });
  const r = analyzeStatus(facts, { endpoints: ['http://etcd:2379'], prefix: '/coreos.com/network', iface: [], ifaceRegex: [], renewMarginMs: 3_600_000, filter });
  expect(schemaErrors(STATUS_SCHEMA, JSON.parse(renderJson(r, true)))).toEqual([]);
  return r;
}

const kinds = (r: StatusReport, kind: string) => r.problems.filter((p) => p.kind === kind);

describe('status, dual-stack', () => {
  const file = renderSubnetEnv({ network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.23.0/24'), ipv6: { network: parseCidr6('fc00::/48'), subnet: parseCidr6('fc00:0:0:23::/64') }, mtu: 1450, ipMasq: false });

  it('shows both pools, both halves of each lease and this host by both subnets', async () => {
    const r = await report(DUAL, [dual(23), dual(40), v4only(41)], file);
    expect(r.config).toMatchObject({ enableIPv4: true, enableIPv6: true, network: '10.7.0.0/16', ipv6: { network: 'fc00::/48', subnetLen: 64, subnetMin: 'fc00:0:0:1::', subnetMax: 'fc00:0:0:ffff::' } });
    expect(r.pool).toMatchObject({ capacity: 255, used: 3, leased: 3, ipv6: { capacity: 65535, used: 2, free: 65533 } });
    expect(r.leases.map((l) => [l.subnet, l.subnet6, l.publicIP, l.publicIPv6, l.vtepMAC6, l.own])).toEqual([
      ['10.7.23.0/24', 'fc00:0:0:23::/64', '10.65.154.23', '2001:db8::23', '02:00:00:00:06:23', true],
      ['10.7.40.0/24', 'fc00:0:0:40::/64', '10.65.154.40', '2001:db8::40', '02:00:00:00:06:40', false],
      ['10.7.41.0/24', null, '10.65.154.41', null, null, false],
    ]);
    expect(r.self).toMatchObject({ publicIP: '10.65.154.23', publicIPv6: '2001:db8::23', subnet: '10.7.23.0/24', subnet6: 'fc00:0:0:23::/64', matchedBy: 'subnet-file', subnetFile: { state: 'agrees', subnet6: 'fc00:0:0:23::/64' } });
    const table = renderTable(r, false);
    expect(table).toContain('IPv6 network');
    expect(table).toContain('10.7.40.0/24 + fc00:0:0:40::/64');
  });

  it('warns when a dual-stack config meets IPv4-only leases (IPv4-only flanneld nodes crash on & keys)', async () => {
    const r = await report(DUAL, [dual(23), v4only(41), v4only(42)], file);
    const [w] = kinds(r, 'mixed-family');
    expect(w).toMatchObject({ severity: 'warning', subnets: ['10.7.41.0/24', '10.7.42.0/24'] });
    expect(w?.message).toMatch(/2 lease\(s\) have no IPv6 half though the config enables IPv6 \(10\.7\.41\.0\/24, 10\.7\.42\.0\/24\): if flanneld runs there without EnableIPv6, it crashes/);
  });

  it('flags a subnet file whose IPv6 lines disagree with the lease', async () => {
    const bad = file.replace('FLANNEL_IPV6_SUBNET=fc00:0:0:23::1/64', 'FLANNEL_IPV6_SUBNET=fc00:0:0:99::1/64');
    const r = await report(DUAL, [dual(23)], bad);
    expect(r.self.subnetFile.state).toBe('disagrees');
    expect(r.self.subnetFile.detail).toContain("FLANNEL_IPV6_SUBNET is fc00:0:0:99::1/64, this host's IPv6 lease gives fc00:0:0:23::1/64");
  });

  it('finds IPv6 clashes: one PublicIPv6 twice, overlapping IPv6 subnets, a half outside IPv6Network', async () => {
    const r = await report(DUAL, [dual(23), dual(40, '02:00:00:00:06:99', '2001:db8::23'), [`${PFX}10.7.50.0-24&fd00::-64`, dual(50)[1]]], file);
    expect(kinds(r, 'duplicate-public-ip').map((p) => p.message)).toEqual(['PublicIPv6 2001:db8::23 holds 2 leases: fc00:0:0:23::/64, fc00:0:0:40::/64']);
    expect(kinds(r, 'outside-network').map((p) => p.message)).toEqual(['lease fd00::/64 is outside IPv6Network fc00::/48']);
    const wide = await report(DUAL, [dual(23), [`${PFX}10.7.60.0-24&fc00:0:0:20::-59`, dual(60)[1]]], file);
    expect(kinds(wide, 'overlap').map((p) => p.message)).toEqual(['leases fc00:0:0:20::/59 and fc00:0:0:23::/64 overlap']);
  });

  it('keeps the --subnet filter working with IPv6 subnets in problems', async () => {
    const r = await report(DUAL, [dual(23), dual(40, '02:00:00:00:06:99', '2001:db8::23')], file, { subnet: parseCidr('10.7.40.0/24') });
    expect(r.leases.map((l) => l.subnet)).toEqual(['10.7.40.0/24']);
  });
});

describe('status, IPv6-only', () => {
  const file = renderSubnetEnv({ network: undefined, subnet: undefined, ipv6: { network: parseCidr6('fc00::/48'), subnet: parseCidr6('fc00:0:0:23::/64') }, mtu: 1450, ipMasq: false });

  it('rows have no IPv4 subnet or PublicIP; 0.0.0.0 twice is no clash; this host is found by FLANNEL_IPV6_SUBNET', async () => {
    const r = await report(V6ONLY, [v6only(23), v6only(40)], file);
    expect(r.config).toMatchObject({ enableIPv4: false, network: null, subnetLen: null, ipv6: { network: 'fc00::/48' } });
    expect(r.pool).toMatchObject({ capacity: 0, used: 0, usedPercent: 0, ipv6: { used: 2 } });
    expect(r.leases.map((l) => [l.subnet, l.subnet6, l.publicIP, l.publicIPv6])).toEqual([
      [null, 'fc00:0:0:23::/64', null, '2001:db8::23'],
      [null, 'fc00:0:0:40::/64', null, '2001:db8::40'],
    ]);
    expect(kinds(r, 'duplicate-public-ip')).toEqual([]);
    expect(kinds(r, 'overlap')).toEqual([]);
    expect(kinds(r, 'outside-network')).toEqual([]);
    expect(r.self).toMatchObject({ publicIP: null, publicIPv6: '2001:db8::23', subnet: null, subnet6: 'fc00:0:0:23::/64', matchedBy: 'subnet-file', subnetFile: { state: 'agrees' } });
    // (The kernel check of flannel-v6.1 is not this test's business: judge the brief line of the pool and self parts.)
    expect(renderBrief({ ...r, healthy: true, problems: [] }, false)).toMatch(/ in fc00::\/48 .*this host fc00:0:0:23::\/64/);
  });
});

describe('status, IPv4-only config with dual-stack keys', () => {
  it('warns that IPv4-only flanneld nodes crash on them, and checks only their IPv4 half', async () => {
    const file = renderSubnetEnv({ network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.23.0/24'), mtu: 1450, ipMasq: false });
    const r = await report(V4ONLY, [v4only(23), dual(40)], file);
    expect(kinds(r, 'mixed-family').map((p) => p.message)).toEqual([
      '1 lease(s) have an IPv6 half though the config does not enable IPv6 (10.7.40.0/24): IPv4-only flanneld nodes crash on such keys (contract §11); only their IPv4 half is programmed',
    ]);
    expect(r.pool?.ipv6).toBeNull();
    expect(r.leases.find((l) => l.subnet === '10.7.40.0/24')?.state).toBe('valid');
  });
});

describe('status, Backend keys flanneld does not read', () => {
  it('names them in one warning', async () => {
    const r = await report('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","MacPrefix":"0E-2A","Vni":1}}', [v4only(23)], undefined);
    expect(kinds(r, 'config').map((p) => [p.severity, p.message])).toEqual([['warning', "Backend key(s) MacPrefix are ignored: flanneld's Linux VXLAN backend does not read them"]]);
  });
});
