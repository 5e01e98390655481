import { describe, expect, it } from 'vitest';
import { parseNetworkConfig, subnetCapacity, subnetFitsConfig } from '../../src/config';
import { formatCidr, formatIPv4, parseCidr } from '../../src/net/ipv4';
import { configErrorOf } from '../helpers/config-error';

const vx = '"Backend":{"Type":"vxlan"}';

describe('parseNetworkConfig', () => {
  it('applies flannel defaults for a /16', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx}}`);
    expect(formatCidr(c.network)).toBe('10.7.0.0/16');
    expect(c.subnetLen).toBe(24);
    expect(formatIPv4(c.subnetMin)).toBe('10.7.1.0');
    expect(formatIPv4(c.subnetMax)).toBe('10.7.255.0');
    expect(c.backend).toEqual({ type: 'vxlan', vni: 1, port: 8472, mtu: 0, gbp: false, learning: false, directRouting: false });
    expect(subnetCapacity(c)).toBe(255);
  });
  it('reads EnableNFTables (default false, any case) and rejects a non-boolean', () => {
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx}}`).enableNFTables).toBe(false);
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx},"EnableNFTables":true}`).enableNFTables).toBe(true);
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx},"enablenftables":true}`).enableNFTables).toBe(true);
    expect(() => parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx},"EnableNFTables":"yes"}`)).toThrow('invalid network config: EnableNFTables: must be true or false, got "yes"');
  });
  it('matches field names case-insensitively and masks host bits', () => {
    const c = parseNetworkConfig('{"network":"10.7.3.9/16","subnetlen":26,"backend":{"type":"VXLAN","vni":4,"port":4789,"mtu":9000}}');
    expect(formatCidr(c.network)).toBe('10.7.0.0/16');
    expect(c.subnetLen).toBe(26);
    expect(formatIPv4(c.subnetMin)).toBe('10.7.0.64');
    expect(formatIPv4(c.subnetMax)).toBe('10.7.255.192');
    expect(c.backend.vni).toBe(4);
    expect(c.backend.port).toBe(4789);
    expect(c.backend.mtu).toBe(9000);
  });
  it('defaults SubnetLen to prefix+2 for networks smaller than /22', () => {
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/24",${vx}}`).subnetLen).toBe(26);
    expect(parseNetworkConfig(`{"Network":"10.7.0.0/22",${vx}}`).subnetLen).toBe(24);
  });
  it('takes explicit SubnetMin/SubnetMax', () => {
    const c = parseNetworkConfig(`{"Network":"10.7.0.0/16","SubnetMin":"10.7.10.0","SubnetMax":"10.7.20.0",${vx}}`);
    expect(subnetCapacity(c)).toBe(11);
    expect(subnetFitsConfig(c, parseCidr('10.7.10.0/24'))).toBe(true);
    expect(subnetFitsConfig(c, parseCidr('10.7.21.0/24'))).toBe(false);
    expect(subnetFitsConfig(c, parseCidr('10.7.10.0/25'))).toBe(false);
  });
  it('treats Port 0 as the kernel default 8472', () => {
    expect(parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","Port":0}}').backend.port).toBe(8472);
  });
  it.each([
    ['not json', '(document)'],
    ['[]', '(document)'],
    [`{${vx}}`, 'Network'],
    [`{"Network":"10.7.0.0",${vx}}`, 'Network'],
    [`{"Network":"10.7.0.0/29",${vx}}`, 'Network'],
    [`{"Network":"10.7.0.0/16","SubnetLen":31,${vx}}`, 'SubnetLen'],
    [`{"Network":"10.7.0.0/16","SubnetLen":17,${vx}}`, 'SubnetLen'],
    [`{"Network":"10.7.0.0/16","SubnetLen":"24",${vx}}`, 'SubnetLen'],
    [`{"Network":"10.7.0.0/16","SubnetMin":"10.8.0.0",${vx}}`, 'SubnetMin'],
    [`{"Network":"10.7.0.0/16","SubnetMax":"10.7.1.1",${vx}}`, 'SubnetMax'],
    [`{"Network":"10.7.0.0/16","SubnetMin":"10.7.9.0","SubnetMax":"10.7.8.0",${vx}}`, 'SubnetMin'],
    ['{"Network":"10.7.0.0/16"}', 'Backend'],
    ['{"Network":"10.7.0.0/16","Backend":{"Type":"udp"}}', 'Backend.Type'],
    ['{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","VNI":-1}}', 'Backend.VNI'],
    ['{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan","Port":70000}}', 'Backend.Port'],
    [`{"Network":"10.7.0.0/16","EnableIPv4":false,${vx}}`, 'EnableIPv4'],
  ])('rejects %s naming %s', (text, fieldName) => {
    const err = configErrorOf(text);
    expect(err.field).toBe(fieldName);
    expect(err.message).toContain(fieldName);
  });
  it('says flanneld-ts supports only vxlan', () => {
    expect(() => parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"host-gw"}}')).toThrow(/supports only "vxlan"/);
  });
});
