/**
 * The kernel watch's pure parts: `ip -o monitor` lines (printed by iproute2 6.1
 * for our own operations and for iproute2's, kernel 6.18), the own/external
 * filter, and the /proc/net/netlink readiness check.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChangeFilter, GRACE_MS, operationLineKeys } from '../../src/kernel/change-filter';
import { findOnPath, listensIn } from '../../src/kernel/kernel-watch';
import { isOverflowLine, parseMonitorLine, routeLineKey } from '../../src/kernel/monitor-lines';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { peerEntries, remove, replace } from '../helpers/kernel-contract';

const MAC = '6e:d5:a3:cb:6a:6b';
const [neighbor, fdb, route] = peerEntries(12, MAC, '10.65.154.20');
const host = { kind: 'route', dst: parseCidr('10.9.9.9/32'), gateway: 0, onlink: false } as const;

// Captured while applying [neighbor, fdb, route, host], then deleting them in reverse.
const OWN_LINES = [
  '[NEIGH]10.7.12.0 dev flannel.1 lladdr 6e:d5:a3:cb:6a:6b PERMANENT ',
  '[NEIGH]10.65.154.20 dev flannel.1 lladdr 6e:d5:a3:cb:6a:6b PERMANENT ',
  '[ROUTE]10.7.12.0/24 via 10.7.12.0 dev flannel.1 onlink ',
  '[ROUTE]10.9.9.9 dev flannel.1 ',
  '[ROUTE]Deleted 10.9.9.9 dev flannel.1 ',
  '[ROUTE]Deleted 10.7.12.0/24 via 10.7.12.0 dev flannel.1 onlink ',
  '[NEIGH]Deleted 10.65.154.20 dev flannel.1 lladdr 6e:d5:a3:cb:6a:6b PERMANENT ',
  '[NEIGH]10.7.12.0 dev flannel.1 FAILED ',
  '[NEIGH]Deleted 10.7.12.0 dev flannel.1 FAILED ',
];

describe('parseMonitorLine', () => {
  it('reads route and neighbour lines as device + what happened', () => {
    expect(OWN_LINES.map(parseMonitorLine)).toEqual([
      { kind: 'entry', dev: 'flannel.1', key: 'new nd 10.7.12.0 6e:d5:a3:cb:6a:6b' },
      { kind: 'entry', dev: 'flannel.1', key: 'new nd 10.65.154.20 6e:d5:a3:cb:6a:6b' },
      { kind: 'entry', dev: 'flannel.1', key: 'new route 10.7.12.0/24 via 10.7.12.0' },
      { kind: 'entry', dev: 'flannel.1', key: 'new route 10.9.9.9 via -' },
      { kind: 'entry', dev: 'flannel.1', key: 'del route 10.9.9.9' },
      { kind: 'entry', dev: 'flannel.1', key: 'del route 10.7.12.0/24' },
      { kind: 'entry', dev: 'flannel.1', key: 'del nd 10.65.154.20' },
      { kind: 'entry', dev: 'flannel.1', key: 'new nd 10.7.12.0 -' },
      { kind: 'entry', dev: 'flannel.1', key: 'del nd 10.7.12.0' },
    ]);
  });

  it('reads link and IPv4 address lines as device changes', () => {
    expect(parseMonitorLine('[LINK]4: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc noqueue state UNKNOWN group default \\    link/ether 02:42:0a:07:05:00 brd ff:ff:ff:ff:ff:ff')).toEqual({ kind: 'device', index: 4, dev: 'flannel.1' });
    expect(parseMonitorLine('[LINK]Deleted 7: veth1@if6: <BROADCAST,MULTICAST> mtu 1500')).toEqual({ kind: 'device', index: 7, dev: 'veth1' });
    expect(parseMonitorLine('[ADDR]4: flannel.1    inet 10.7.5.0/32 scope global flannel.1\\       valid_lft forever preferred_lft forever')).toEqual({ kind: 'device', index: 4, dev: 'flannel.1' });
  });

  it('reads IPv6 route and neighbour lines of flannel-v6.<VNI> the same way (a /128 without its length)', () => {
    expect(parseMonitorLine('[ROUTE]fc00:0:0:c::/64 via fc00:0:0:c:: dev flannel-v6.1 metric 1024 onlink pref medium')).toEqual({ kind: 'entry', dev: 'flannel-v6.1', key: 'new route fc00:0:0:c::/64 via fc00:0:0:c::' });
    expect(parseMonitorLine('[ROUTE]Deleted fc00::9 dev flannel-v6.1 metric 1024 pref medium')).toEqual({ kind: 'entry', dev: 'flannel-v6.1', key: 'del route fc00::9' });
    expect(routeLineKey(true, 'fc00::9/128')).toBe('del route fc00::9');
    expect(parseMonitorLine('[NEIGH]fc00:0:0:c:: dev flannel-v6.1 lladdr a2:15:7c:0e:91:3d PERMANENT')).toEqual({ kind: 'entry', dev: 'flannel-v6.1', key: 'new nd fc00:0:0:c:: a2:15:7c:0e:91:3d' });
    // Another device's neighbour is parsed; the filter drops it once a device is managed.
    expect(parseMonitorLine('[NEIGH]fe80::1 dev eth0 lladdr 02:00:00:00:00:01 REACHABLE')).toEqual({ kind: 'entry', dev: 'eth0', key: 'new nd fe80::1 02:00:00:00:00:01' });
  });

  it('ignores what the daemon does not manage: IPv6 addresses, other tables, proto kernel, other labels', () => {
    for (const line of [
      '[ROUTE]local 10.7.5.0 dev flannel.1 table local proto kernel scope host src 10.7.5.0 ',
      '[ROUTE]10.7.5.0/24 dev flannel.1 proto kernel scope link src 10.7.5.0 ',
      '[ROUTE]10.1.0.0/24 via 10.7.1.0 dev flannel.1 table 100 onlink ',
      '[ROUTE]fe80::/64 dev flannel.1 proto kernel metric 256 pref medium',
      '[ADDR]4: flannel.1    inet6 fe80::42:aff:fe07:500/64 scope link \\       valid_lft forever preferred_lft forever',
      '[NSID]nsid 0 (iproute2 netns name: x)',
      'garbage',
    ]) {
      expect(parseMonitorLine(line), line).toBeUndefined();
    }
    expect(parseMonitorLine('[ROUTE]default via 10.65.154.1 dev eth0 ')).toEqual({ kind: 'entry', dev: 'eth0', key: 'new route 0.0.0.0/0 via 10.65.154.1' });
  });

  it('recognises iproute2\'s overflow report', () => {
    expect(isOverflowLine('netlink receive error No buffer space available (105)')).toBe(true);
    expect(isOverflowLine('Error: Peer netns reference is invalid.')).toBe(false);
  });
});

describe('ChangeFilter', () => {
  it('our apply\'s lines are ours, during it and for GRACE_MS after it', () => {
    const filter = new ChangeFilter();
    filter.manage(4, 'flannel.1');
    const ops = [neighbor, fdb, route, host].map(replace);
    const dels = [host, route, fdb, neighbor].map(remove);
    const keys = filter.expect('flannel.1', [...ops, ...dels], 1000);
    const changes = OWN_LINES.map((l) => parseMonitorLine(l)!);
    expect(changes.map((c) => filter.classify(c, 1500))).toEqual(changes.map(() => 'own'));
    filter.done(keys, 2000);
    expect(changes.map((c) => filter.classify(c, 2000 + GRACE_MS))).toEqual(changes.map(() => 'own'));
    expect(changes.map((c) => filter.classify(c, 2001 + GRACE_MS))).toEqual(changes.map(() => 'external'));
  });

  it('an outside change made while we apply is external: another entry, a delete of what we add, another gateway or MAC', () => {
    const filter = new ChangeFilter();
    filter.manage(4, 'flannel.1');
    filter.expect('flannel.1', [neighbor, fdb, route].map(replace), 0);
    for (const line of [
      '[ROUTE]10.99.0.0/24 via 10.99.0.0 dev flannel.1 onlink ',
      '[ROUTE]Deleted 10.7.12.0/24 via 10.7.12.0 dev flannel.1 onlink ',
      '[ROUTE]10.7.12.0/24 via 10.7.99.0 dev flannel.1 onlink ',
      '[NEIGH]10.7.12.0 dev flannel.1 lladdr 02:00:00:00:00:99 PERMANENT ',
      '[LINK]4: flannel.1: <BROADCAST,MULTICAST> mtu 1450',
    ]) {
      expect(filter.classify(parseMonitorLine(line)!, 10), line).toBe('external');
    }
  });

  it('route and neighbour lines of other devices are ignored once a device is managed; links never are', () => {
    const filter = new ChangeFilter();
    const storm = parseMonitorLine('[ROUTE]10.200.1.0/24 dev eth0 scope link ')!;
    expect(filter.classify(storm, 0)).toBe('external');
    filter.manage(4, 'flannel.1');
    expect(filter.classify(storm, 0)).toBe('ignore');
    expect(filter.classify(parseMonitorLine('[LINK]2: eth0: <BROADCAST,MULTICAST> mtu 1500')!, 0)).toBe('external');
    filter.forget(4);
    expect(filter.classify(storm, 0)).toBe('external');
  });

  it('link and address lines of a device we change are ours', () => {
    const filter = new ChangeFilter();
    const keys = filter.expect('flannel.1', undefined, 0);
    expect(filter.classify(parseMonitorLine('[ADDR]4: flannel.1    inet 10.7.5.0/32 scope global flannel.1')!, 5)).toBe('own');
    filter.done(keys, 10);
    expect(filter.classify(parseMonitorLine('[LINK]4: flannel.1: <UP> mtu 1450')!, 11 + GRACE_MS)).toBe('external');
  });

  it('operationLineKeys: a neighbour delete expects its FAILED line too', () => {
    expect(operationLineKeys(remove(neighbor))).toEqual(['del nd 10.7.12.0', 'new nd 10.7.12.0 -']);
    expect(operationLineKeys(replace({ ...route, dst: parseCidr('10.7.12.7/32'), gateway: parseIPv4('10.7.12.0') }))).toEqual(['new route 10.7.12.7 via 10.7.12.0']);
  });
});

describe('listensIn', () => {
  const proc = [
    'sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode',
    '0000000000000000 0   4242       00000000 0        0        0     2        0        100',
    '0000000000000000 0   4343       00000551 0        0        0     2        0        101',
    '0000000000000000 9   4444       00000001 0        0        0     2        0        102',
  ].join('\n');

  it('is true for the pid\'s rtnetlink socket once it has joined a group', () => {
    expect(listensIn(proc, 4343)).toBe(true);
    expect(listensIn(proc, 4242)).toBe(false);
    // Another protocol (9: audit) does not count.
    expect(listensIn(proc, 4444)).toBe(false);
    expect(listensIn(proc, 1)).toBe(false);
  });
});

describe('findOnPath (where the watch looks for setpriv)', () => {
  it('returns the first executable of that name, skipping empty entries, missing directories and non-executable files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flts-path-'));
    try {
      for (const d of ['a', 'b', 'c']) mkdirSync(join(dir, d));
      writeFileSync(join(dir, 'a', 'setpriv'), 'not executable', { mode: 0o644 });
      writeFileSync(join(dir, 'b', 'setpriv'), '#!/bin/sh\n', { mode: 0o755 });
      writeFileSync(join(dir, 'c', 'setpriv'), '#!/bin/sh\n', { mode: 0o755 });
      const path = ['', join(dir, 'missing'), join(dir, 'a'), join(dir, 'b'), join(dir, 'c')].join(':');
      // As root, X_OK needs an execute bit somewhere: a 0644 file is not executable even for root.
      expect(findOnPath('setpriv', path)).toBe(join(dir, 'b', 'setpriv'));
      expect(findOnPath('setpriv', join(dir, 'a'))).toBeUndefined();
      expect(findOnPath('setpriv', '')).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
