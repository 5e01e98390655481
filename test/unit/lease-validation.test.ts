import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { publicIPProblem, vtepMacProblem } from '../../src/net/address-kind';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { vxlanLease } from '../helpers/vxlan-lease';
import { peerSkipReason } from '../../src/overlay/desired';
import { desiredState } from '../../src/overlay/desired-book';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: parseIPv4('10.65.154.11'), vtepMAC: '02:00:00:00:00:05' };

describe('PublicIP must be a unicast host address', () => {
  it.each([
    ['0.0.0.0', '"this network"'],
    ['0.255.255.255', '"this network"'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.255', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'broadcast'],
    ['169.254.0.1', 'link-local'],
    ['169.254.255.255', 'link-local'],
  ])('refuses %s (%s)', (ip, what) => {
    expect(publicIPProblem(parseIPv4(ip))).toContain(what);
    expect(peerSkipReason(self, vxlanLease('10.7.20.0/24', ip, '02:00:00:00:00:20'), config)).toContain(what);
  });
  it.each(['1.0.0.0', '126.255.255.255', '128.0.0.0', '169.253.255.255', '169.255.0.0', '223.255.255.255', '10.65.154.12'])('accepts %s', (ip) => {
    expect(publicIPProblem(parseIPv4(ip))).toBeUndefined();
    expect(peerSkipReason(self, vxlanLease('10.7.20.0/24', ip, '02:00:00:00:00:20'), config)).toBeUndefined();
  });
  it('accepts a link-local peer only when this node is link-local too', () => {
    const linkLocalSelf = { ...self, publicIP: parseIPv4('169.254.3.1') };
    expect(peerSkipReason(linkLocalSelf, vxlanLease('10.7.20.0/24', '169.254.3.2', '02:00:00:00:00:20'), config)).toBeUndefined();
  });
});

describe('VtepMAC must be unicast and non-zero', () => {
  it.each(['02:00:00:00:00:01', '00:00:00:00:00:01', 'fe:ff:ff:ff:ff:ff', '6e:d5:a3:cb:6a:6b'])('accepts %s', (mac) => {
    expect(vtepMacProblem(mac)).toBeUndefined();
  });
  it.each([
    ['00:00:00:00:00:00', 'all zero'],
    ['01:00:5e:00:00:01', 'multicast'],
    ['03:00:00:00:00:01', 'multicast'],
    ['ff:ff:ff:ff:ff:ff', 'broadcast'],
  ])('refuses %s (%s)', (mac, what) => {
    expect(vtepMacProblem(mac)).toContain(what);
    expect(peerSkipReason(self, vxlanLease('10.7.20.0/24', '10.65.154.20', mac), config)).toContain(what);
  });
  it("refuses a peer carrying this node's own VtepMAC", () => {
    expect(peerSkipReason(self, vxlanLease('10.7.20.0/24', '10.65.154.20', '02:00:00:00:00:05'), config)).toBe("VtepMAC 02:00:00:00:00:05 is this node's own");
  });
});

describe('MAC ownership', () => {
  const established = vxlanLease('10.7.40.0/24', '10.65.154.40', '02:00:00:00:00:40', { createRevision: '10' });
  const newcomer = vxlanLease('10.7.3.0/24', '10.65.154.66', '02:00:00:00:00:40', { createRevision: '200' });

  it('keeps the MAC with the lease etcd created first, even when the newcomer has the lower subnet', () => {
    const d = desiredState(self, [newcomer, established], config);
    expect([...d.peers.keys()]).toEqual(['10.7.40.0/24']);
    expect(d.skipped).toEqual([{ subnet: '10.7.3.0/24', reason: 'VtepMAC 02:00:00:00:00:40 is already used by 10.7.40.0/24, which etcd created earlier' }]);
  });
  it('compares create revisions as numbers, not text', () => {
    const a = { ...established, createRevision: '9' };
    const b = { ...newcomer, createRevision: '10' };
    expect([...desiredState(self, [b, a], config).peers.keys()]).toEqual(['10.7.40.0/24']);
  });
  it('a lease refused for another reason does not take the MAC from a valid one', () => {
    const bad = { ...established, publicIP: parseIPv4('127.0.0.1') };
    const d = desiredState(self, [bad, newcomer], config);
    expect([...d.peers.keys()]).toEqual(['10.7.3.0/24']);
    expect(d.skipped.map((s) => s.subnet)).toEqual(['10.7.40.0/24']);
  });
});
