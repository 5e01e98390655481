import { describe, expect, it } from 'vitest';
import { MAX_LEASE_VALUE_BYTES, configKey, decodeLease, encodeLeaseValue, parseSubnetKeyName, subnetKey, subnetsPrefix } from '../../src/lease/codec';
import { formatCidr, formatIPv4, parseCidr, parseIPv4 } from '../../src/net/ipv4';

const KEY = '/coreos.com/network/subnets/10.7.5.0-24';

describe('lease keys', () => {
  it('builds flannel keys and ignores a trailing slash on the prefix', () => {
    expect(subnetKey('/coreos.com/network/', parseCidr('10.7.5.0/24'))).toBe(KEY);
    expect(configKey('/coreos.com/network')).toBe('/coreos.com/network/config');
    expect(configKey('/a/b//')).toBe('/a/b/config');
  });
  it('joins the prefix like Go path.Join: // collapses, no leading slash is added', () => {
    expect(configKey('coreos.com/network')).toBe('coreos.com/network/config');
    expect(subnetsPrefix('coreos.com//network/')).toBe('coreos.com/network/subnets/');
    expect(subnetKey('/x/../coreos.com/network', parseCidr('10.7.5.0/24'))).toBe(KEY);
    expect(configKey('')).toBe('config');
    expect(configKey('/')).toBe('/config');
  });
  it('parses key names, dual-stack too', () => {
    expect(parseSubnetKeyName('10.7.5.0-24')).toEqual({ kind: 'ok', subnet: parseCidr('10.7.5.0/24'), hasIPv4: true, subnet6: undefined });
    expect(parseSubnetKeyName('10.7.5.0-24&fc00::-64').kind).toBe('ok');
    expect(parseSubnetKeyName('10.7.5.1-24').kind).toBe('bad');
    expect(parseSubnetKeyName('garbage').kind).toBe('bad');
    expect(parseSubnetKeyName('10.7.5.0-33').kind).toBe('bad');
  });
});

describe('lease values', () => {
  it('encodes exactly what flanneld writes', () => {
    expect(encodeLeaseValue({ publicIP: parseIPv4('10.65.154.19'), vni: 1, vtepMAC: '6E:D5:A3:CB:6A:6B' })).toBe(
      '{"PublicIP":"10.65.154.19","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"6e:d5:a3:cb:6a:6b"}}',
    );
  });
  it('decodes flannel values, case-insensitive keys and dashed MACs', () => {
    const r = decodeLease(KEY, '10.7.5.0-24', '{"publicip":"10.65.154.19","backendtype":"vxlan","backenddata":{"vni":1,"vtepmac":"6E-D5-A3-CB-6A-6B"},"Extra":1}', { etcdLease: '7', modRevision: '9' });
    expect(r.kind).toBe('lease');
    if (r.kind !== 'lease') return;
    expect(formatCidr(r.lease.subnet)).toBe('10.7.5.0/24');
    expect(formatIPv4(r.lease.publicIP)).toBe('10.65.154.19');
    expect(r.lease.vtepMAC).toBe('6e:d5:a3:cb:6a:6b');
    expect(r.lease.etcdLease).toBe('7');
    expect(r.lease.modRevision).toBe('9');
  });
  it('decodes other backend types without BackendData checks', () => {
    const r = decodeLease(KEY, '10.7.5.0-24', '{"PublicIP":"10.65.154.19","BackendType":"udp"}');
    expect(r.kind === 'lease' && r.lease.backendType).toBe('udp');
  });
  it('round-trips its own encoding', () => {
    const v = encodeLeaseValue({ publicIP: parseIPv4('1.2.3.4'), vni: 3, vtepMAC: '02:00:00:00:00:01' });
    const r = decodeLease(KEY, '10.7.5.0-24', v);
    expect(r.kind === 'lease' && [r.lease.vni, r.lease.vtepMAC, r.lease.publicIP]).toEqual([3, '02:00:00:00:00:01', parseIPv4('1.2.3.4')]);
  });
  it.each([
    ['not json', 'not JSON'],
    ['[1]', 'not a JSON object'],
    ['{"PublicIP":5,"BackendType":"vxlan"}', 'PublicIP'],
    ['{"PublicIP":"fe80::1","BackendType":"vxlan"}', 'PublicIP'],
    ['{"PublicIP":"1.2.3.4","BackendType":"vxlan"}', 'BackendData'],
    ['{"PublicIP":"1.2.3.4","BackendType":"vxlan","BackendData":{"VNI":1}}', 'VtepMAC'],
    ['{"PublicIP":"1.2.3.4","BackendType":"vxlan","BackendData":{"VNI":"x","VtepMAC":"02:00:00:00:00:01"}}', 'VNI'],
    ['{"PublicIP":"1.2.3.4","BackendType":"vxlan","BackendData":{"VtepMAC":"nope"}}', 'VtepMAC'],
  ])('marks %s invalid (%s) and keeps the subnet', (value, reason) => {
    const r = decodeLease(KEY, '10.7.5.0-24', value);
    expect(r.kind).toBe('invalid');
    if (r.kind !== 'invalid') return;
    expect(r.invalid.reason).toContain(reason);
    expect(r.invalid.subnet && formatCidr(r.invalid.subnet)).toBe('10.7.5.0/24');
  });
  it('rejects oversized values without parsing them', () => {
    const r = decodeLease(KEY, '10.7.5.0-24', 'x'.repeat(MAX_LEASE_VALUE_BYTES + 1));
    expect(r.kind === 'invalid' && r.invalid.reason).toMatch(/bytes/);
  });
  it('marks a bad key invalid, and a dual-stack key whose value lacks its IPv6 half', () => {
    expect(decodeLease('/p/subnets/zzz', 'zzz', '{}').kind).toBe('invalid');
    const r = decodeLease('/p/subnets/10.7.5.0-24&fc00::-64', '10.7.5.0-24&fc00::-64', '{"PublicIP":"1.2.3.4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}');
    expect(r.kind === 'invalid' && r.invalid.reason).toBe('BackendV6Data is missing or not an object');
  });
});
