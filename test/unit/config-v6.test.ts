import { describe, expect, it } from 'vitest';
import { parseNetworkConfig, subnet6Capacity, subnet6FitsConfig, subnetCapacity, subnetFitsConfig } from '../../src/config';
import { formatCidr, parseCidr } from '../../src/net/ipv4';
import { formatCidr6, formatIPv6, parseCidr6 } from '../../src/net/ipv6';
import { configErrorOf } from '../helpers/config-error';

const vx = '"Backend":{"Type":"vxlan"}';

describe('IPv6 network config (contract §11)', () => {
  it('is IPv4-only by default', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx}}`);
    expect([c.enableIPv4, c.enableIPv6, c.ipv6]).toEqual([true, false, undefined]);
  });
  it('applies flannel defaults for a dual-stack /48', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48",${vx}}`);
    expect(c.enableIPv4 && c.enableIPv6).toBe(true);
    expect(formatCidr(c.network)).toBe('10.7.0.0/16');
    const p = c.ipv6!;
    expect(formatCidr6(p.network)).toBe('fc00::/48');
    expect(p.subnetLen).toBe(64);
    expect(formatIPv6(p.subnetMin)).toBe('fc00:0:0:1::');
    expect(formatIPv6(p.subnetMax)).toBe('fc00:0:0:ffff::');
    expect(subnet6Capacity(p)).toBe(65535n);
    expect(subnet6FitsConfig(c, parseCidr6('fc00:0:0:5::/64'))).toBe(true);
    expect(subnet6FitsConfig(c, parseCidr6('fc00::/64'))).toBe(false);
    expect(subnet6FitsConfig(c, parseCidr6('fc00:0:0:5::/80'))).toBe(false);
  });
  it('masks host bits, matches names case-insensitively, defaults the length to prefix+2 past /62', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16","enableipv6":true,"ipv6network":"fc00::1:5/112",${vx}}`);
    const p = c.ipv6!;
    expect(formatCidr6(p.network)).toBe('fc00::1:0/112');
    expect(p.subnetLen).toBe(114);
    expect(formatIPv6(p.subnetMin)).toBe('fc00::1:4000');
    expect(formatIPv6(p.subnetMax)).toBe('fc00::1:c000');
  });
  it('takes explicit IPv6SubnetLen/Min/Max', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":80,"IPv6SubnetMin":"fc00:0:0:1::","IPv6SubnetMax":"fc00:0:0:1:2::",${vx}}`);
    expect(c.ipv6!.subnetLen).toBe(80);
    expect(subnet6Capacity(c.ipv6!)).toBe(3n);
  });
  it('IPv6-only: the IPv4 pool is flannel\'s zero value and never fits', () => {
    const c = parseNetworkConfig(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48",${vx}}`);
    expect(c.enableIPv4).toBe(false);
    expect(formatCidr(c.network)).toBe('0.0.0.0/0');
    expect([c.subnetLen, c.subnetMin, c.subnetMax]).toEqual([0, 0, 0]);
    expect(subnetCapacity(c)).toBe(0);
    expect(subnetFitsConfig(c, parseCidr('10.7.5.0/24'))).toBe(false);
    expect(subnetFitsConfig(c, parseCidr('0.0.0.0/0'))).toBe(false);
  });
  it('IPv6-only ignores the IPv4 keys entirely (flannel reads them only with EnableIPv4)', () => {
    const c = parseNetworkConfig(`{"EnableIPv4":false,"Network":"bogus","EnableIPv6":true,"IPv6Network":"fc00::/48",${vx}}`);
    expect(formatCidr(c.network)).toBe('0.0.0.0/0');
  });
  it.each([
    [`{"EnableIPv4":false,"EnableIPv6":false,${vx}}`, 'EnableIPv4'],
    [`{"EnableIPv4":false,${vx}}`, 'EnableIPv4'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":"yes",${vx}}`, 'EnableIPv6'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,${vx}}`, 'IPv6Network'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"10.0.0.0/8",${vx}}`, 'IPv6Network'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/125",${vx}}`, 'IPv6Network'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127,${vx}}`, 'IPv6SubnetLen'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":49,${vx}}`, 'IPv6SubnetLen'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc01::",${vx}}`, 'IPv6SubnetMin'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fc00:0:0:1::1",${vx}}`, 'IPv6SubnetMax'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00:0:0:9::","IPv6SubnetMax":"fc00:0:0:8::",${vx}}`, 'IPv6SubnetMin'],
    [`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":5,${vx}}`, 'IPv6SubnetMin'],
  ])('rejects %s naming %s', (text, field) => {
    expect(configErrorOf(text).field).toBe(field);
  });
});

describe('a wide IPv6Network', () => {
  it('needs --allow-wide-network below /8, as Network does', () => {
    const text = `{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"::/0",${vx}}`;
    expect(() => parseNetworkConfig(text)).toThrow(/IPv6Network: ::\/0 is wider than \/8; start flanneld-ts with --allow-wide-network/);
    expect(formatCidr6(parseNetworkConfig(text, { allowWideNetwork: true }).ipv6!.network)).toBe('::/0');
  });
});

describe('Backend keys (issue 12 item 3)', () => {
  it('lists the keys no Linux flanneld reads, in the config\'s spelling', () => {
    const c = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","vni":2,"MacPrefix":"0E-2A","Name":"x","Foo":1,"directrouting":true}}');
    expect(c.ignoredBackendKeys).toEqual(['MacPrefix', 'Name', 'Foo']);
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx}}`).ignoredBackendKeys).toEqual([]);
  });
});
