/**
 * status against hostile etcd data: control characters from etcd never reach
 * the terminal raw, and every lease a node would skip is an error (exit 1).
 */
import { describe, expect, it } from 'vitest';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { encodeLeaseValue } from '../../src/lease/codec';
import { parseIPv4 } from '../../src/net/ipv4';
import { runStatus } from '../../src/status/command';
import { escapeControl } from '../../src/status/escape';
import { statusFixture, statusOptions } from '../helpers/status-fixture';

const PFX = '/coreos.com/network/subnets/';
const value = (ip: string, mac: string): string => encodeLeaseValue({ publicIP: parseIPv4(ip), vni: 1, vtepMAC: mac });
const never = new AbortController().signal;


describe('escapeControl', () => {
  it('escapes C0, DEL, C1, line separators and bidi overrides; leaves other text alone', () => {
    expect(escapeControl('a\nb\u001b[2J\u007f\u0085\u2028\u202e\u2066 ok ü 10.7.0.0/16')).toBe('a\\x0ab\\x1b[2J\\x7f\\x85\\u2028\\u202e\\u2066 ok ü 10.7.0.0/16');
  });
});

describe('status with hostile etcd text', () => {
  const hostile = () => {
    const s = statusFixture();
    s.store.putRaw(`${PFX}10.7.41.0-24`, '{"PublicIP":"10.65.154.41","BackendType":"udp\\u001b[32m\\nOK: all fine\\u202e"}');
    s.store.putRaw(`${PFX}junk\u001b[2J\nOK: forged`, 'x');
    return s;
  };
  it('--brief stays one line with no raw control character', async () => {
    const { out, deps } = hostile();
    expect(await runStatus(statusOptions(['--brief']), deps, never)).toBe(1);
    const text = out.join('');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
    expect(text).toMatch(/^UNHEALTHY: /);
  });
  it('the table shows the text escaped', async () => {
    const { out, deps } = hostile();
    expect(await runStatus(statusOptions(['--no-color']), deps, never)).toBe(1);
    const text = out.join('');
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
    expect(text).toContain('udp\\x1b[32m\\x0aOK: all fine\\u202e');
    expect(text).toContain('junk\\x1b[2J\\x0aOK: forged');
  });
  it('--json stays valid JSON and keeps the text exact', async () => {
    const { out, deps } = hostile();
    expect(await runStatus(statusOptions(['--json']), deps, never)).toBe(1);
    const doc = JSON.parse(out.join(''));
    expect(doc.leases.map((l: { key: string }) => l.key)).toContain(`${PFX}junk\u001b[2J\nOK: forged`);
  });
});

describe('status tells the truth about skipped leases', () => {
  it.each([
    ['a loopback PublicIP', value('127.0.0.1', '02:00:00:00:00:51'), 'PublicIP 127.0.0.1 is not a unicast host address'],
    ['a broadcast PublicIP', value('255.255.255.255', '02:00:00:00:00:51'), 'PublicIP 255.255.255.255 is not a unicast host address'],
    ['a multicast VtepMAC', value('10.65.154.51', '01:00:5e:00:00:01'), 'VtepMAC 01:00:5e:00:00:01 is multicast'],
    ['an all-zero VtepMAC', value('10.65.154.51', '00:00:00:00:00:00'), 'VtepMAC 00:00:00:00:00:00 is all zero'],
    ['a VtepMAC another lease has', value('10.65.154.51', '02:00:00:00:00:40'), 'VtepMAC 02:00:00:00:00:40 is in 2 leases: 10.7.40.0/24, 10.7.51.0/24 (peers program only 10.7.40.0/24, which etcd created first)'],
  ])('%s is an error and exit 1', async (_what, v, message) => {
    const { store, out, deps } = statusFixture();
    store.putRaw(`${PFX}10.7.51.0-24`, v);
    expect(await runStatus(statusOptions(['--json']), deps, never)).toBe(1);
    const doc = JSON.parse(out.join(''));
    expect(doc.problems.filter((p: { severity: string }) => p.severity === 'error').map((p: { message: string }) => p.message).join('\n')).toContain(message);
  });
  it('a peer over this host\'s underlay is an error on that host', async () => {
    const { store, out, deps } = statusFixture();
    store.putRaw(`${PFX}10.7.51.0-24`, value('10.65.154.51', '02:00:00:00:00:51'));
    const kernel = new MemoryKernel();
    kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('10.65.154.12'), prefixLen: 24, scope: 0 }] });
    kernel.setDefaultRoute(2);
    kernel.addHostRoute({ dst: { ip: parseIPv4('10.7.51.0'), prefixLen: 24 }, table: 254, protocol: 4, scope: 0, type: 1, devices: [2] });
    expect(await runStatus(statusOptions(['--json']), { ...deps, kernel: async () => kernel }, never)).toBe(1);
    const doc = JSON.parse(out.join(''));
    expect(doc.problems).toContainEqual({ severity: 'error', kind: 'underlay', subnets: ['10.7.51.0/24'], publicIPs: ['10.65.154.51'], message: 'peers on this host do not program lease 10.7.51.0/24: subnet 10.7.51.0/24 overlaps route 10.7.51.0/24 dev eth0, which flanneld-ts did not make' });
  });
});
