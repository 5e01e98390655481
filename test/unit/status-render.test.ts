/** Rendering a status report: the aligned table, colour only when asked, the brief line, JSON. */
import { describe, expect, it } from 'vitest';
import { alignRows, formatDuration, renderBrief, renderJson } from '../../src/status/render';
import { renderTable } from '../../src/status/render-table';
import { DeviceCheck, LeaseRow, PeerRow, Problem, StatusReport } from '../../src/status/report';

const ANSI = /\u001b\[[0-9;]*m/g;

const lease = (n: number, ip: string, over: Partial<LeaseRow> = {}): LeaseRow => ({
  key: `/coreos.com/network/subnets/10.7.${n}.0-24`,
  subnet: `10.7.${n}.0/24`,
  subnet6: null,
  state: 'valid',
  own: false,
  publicIP: ip,
  vtepMAC: `02:00:00:00:00:${n}`,
  publicIPv6: null,
  vtepMAC6: null,
  backendType: 'vxlan',
  vni: 1,
  etcdLease: '7587880000000000001',
  reservation: false,
  expiresAt: '2025-06-02T11:12:00.000Z',
  expiresInSeconds: 83_520,
  reason: null,
  ...over,
});
const ok = (name: DeviceCheck['name'], have: string): DeviceCheck => ({ name, state: 'ok', have, want: have });
const peer = (n: number, ip: string, over: Partial<PeerRow> = {}): PeerRow => ({ subnet: `10.7.${n}.0/24`, publicIP: ip, vtepMAC: `02:00:00:00:00:${n}`, programmed: true, skipReason: null, mode: 'vxlan', route: 'ok', neighbor: 'ok', fdb: 'ok', ...over });

function report(over: Partial<StatusReport> = {}): StatusReport {
  return {
    schemaVersion: 2,
    generatedAt: '2025-06-01T12:00:00.000Z',
    healthy: true,
    exitCode: 0,
    etcd: { endpoints: ['http://10.65.154.2:2379'], prefix: '/coreos.com/network', revision: '42' },
    filter: { subnet: null, publicIP: null },
    config: { enableIPv4: true, enableIPv6: false, ipv6: null, network: '10.7.0.0/16', subnetLen: 24, subnetMin: '10.7.1.0', subnetMax: '10.7.255.0', backend: { type: 'vxlan', vni: 1, port: 8472, mtu: 0 } },
    pool: { capacity: 255, leased: 2, reserved: 1, invalid: 0, ignored: 0, used: 3, free: 252, usedPercent: 1.2, ipv6: null },
    self: { publicIP: '10.65.154.11', publicIPv6: null, interface: 'eth0', subnet: '10.7.23.0/24', subnet6: null, matchedBy: 'subnet-file', subnetFile: { path: '/run/flannel/subnet.env', state: 'agrees', subnet: '10.7.23.0/24', subnet6: null, detail: null }, note: null },
    leases: [lease(23, '10.65.154.11', { own: true }), lease(40, '10.65.154.12'), lease(41, '10.65.154.13', { etcdLease: null, reservation: true, expiresAt: null, expiresInSeconds: null })],
    kernel: {
      state: 'checked',
      skipReason: null,
      device: { name: 'flannel.1', present: true, replaceReason: '', checks: [ok('exists', 'vxlan'), ok('vni', '1'), ok('port', '8472'), ok('learning', 'off'), ok('local', '10.65.154.11'), ok('underlay', 'eth0'), ok('mtu', '1450'), ok('address', '10.7.23.0/32'), ok('up', 'up')] },
      peers: [peer(40, '10.65.154.12'), peer(41, '10.65.154.13')],
      stale: [],
    },
    problems: [],
    ...over,
  };
}

const problem = (message: string, severity: Problem['severity'] = 'error'): Problem => ({ severity, kind: 'drift', subnets: [], publicIPs: [], message });

describe('formatDuration', () => {
  it.each([
    [83_520, '23h12m'],
    [3_600, '1h00m'],
    [300, '5m00s'],
    [42, '42s'],
    [0, '0s'],
    [-5, '0s'],
    [200_000, '2d07h'],
  ])('%i s reads %s', (s, text) => expect(formatDuration(s)).toBe(text));
});

describe('alignRows', () => {
  it('aligns on the plain text, so colour does not move columns; a spanning last cell does not widen its column', () => {
    const rows = [
      { cells: [{ text: 'a' }, { text: 'ok', style: 'ok' as const }, { text: 'x' }] },
      { cells: [{ text: 'long' }, { text: 'missing', style: 'bad' as const }, { text: 'y' }] },
      { cells: [{ text: 'b' }, { text: 'a very long spanning reason' }], span: true },
    ];
    const plain = alignRows(rows, false);
    expect(plain).toEqual(['a     ok       x', 'long  missing  y', 'b     a very long spanning reason']);
    const colored = alignRows(rows, true);
    expect(colored[0]).toBe('a     \u001b[32mok\u001b[0m       x');
    expect(colored.map((l) => l.replace(ANSI, ''))).toEqual(plain);
  });
});

describe('renderTable', () => {
  it('prints the pool view, the lease table with the own-lease marker, the kernel check and the verdict', () => {
    expect(renderTable(report(), false)).toBe(
      [
        'Network      10.7.0.0/16, /24 subnets 10.7.1.0..10.7.255.0, vxlan VNI 1 port 8472',
        'Pool         2 leased, 1 reserved, 0 invalid: 3 of 255 subnets used (1.2%), 252 free',
        'etcd         http://10.65.154.2:2379 /coreos.com/network at revision 42',
        'This host    10.65.154.11 on eth0, lease 10.7.23.0/24 (matched by subnet file)',
        'Subnet file  /run/flannel/subnet.env: agrees',
        '',
        '   SUBNET        PUBLIC IP     VTEP MAC           BACKEND  EXPIRES',
        '*  10.7.23.0/24  10.65.154.11  02:00:00:00:00:23  vxlan    23h12m',
        '   10.7.40.0/24  10.65.154.12  02:00:00:00:00:40  vxlan    23h12m',
        '   10.7.41.0/24  10.65.154.13  02:00:00:00:00:41  vxlan    never',
        '* this host',
        '',
        'Kernel  flannel.1: ok (vxlan id 1 local 10.65.154.11 dev eth0 dstport 8472 nolearning, mtu 1450, address 10.7.23.0/32, up)',
        '',
        '  PEER          PUBLIC IP     ROUTE  NEIGHBOUR  FDB',
        '  10.7.40.0/24  10.65.154.12  ok     ok         ok',
        '  10.7.41.0/24  10.65.154.13  ok     ok         ok',
        '',
        'OK: 3 leases in 10.7.0.0/16 (1.2% used), this host 10.7.23.0/24, 2 peers ok',
        '',
      ].join('\n'),
    );
  });

  it('adds a MODE column once a peer is direct; a direct peer has no neighbour or FDB to check', () => {
    const base = report();
    const kernel = { ...base.kernel, peers: [peer(40, '10.65.154.12', { mode: 'direct', neighbor: null, fdb: null }), peer(41, '10.65.154.13')] };
    const lines = renderTable(report({ kernel }), false).split('\n');
    const at = lines.findIndex((l) => l.includes('PEER'));
    expect(lines.slice(at, at + 3)).toEqual([
      '  PEER          PUBLIC IP     MODE    ROUTE  NEIGHBOUR  FDB',
      '  10.7.40.0/24  10.65.154.12  direct  ok     -          -',
      '  10.7.41.0/24  10.65.154.13  vxlan   ok     ok         ok',
    ]);
  });

  it('shows INVALID rows with their reason, drift, stale entries, unprogrammed peers, device faults and the problems', () => {
    const r = report({
      healthy: false,
      exitCode: 1,
      leases: [...report().leases, lease(250, '', { state: 'invalid', reason: 'value is not JSON', publicIP: null, vtepMAC: null, backendType: null, vni: null, etcdLease: null, expiresAt: null, expiresInSeconds: null })],
      kernel: {
        ...report().kernel,
        device: { ...report().kernel.device!, checks: [...report().kernel.device!.checks.slice(0, 6), { name: 'mtu', state: 'wrong 1400', have: '1400', want: '1450' }, ok('address', '10.7.23.0/32'), ok('up', 'up')] },
        peers: [peer(40, '10.65.154.12', { fdb: 'missing' }), peer(41, '10.65.154.13', { programmed: false, skipReason: 'backend type "udp" is not vxlan', route: null, neighbor: null, fdb: null })],
        stale: [{ kind: 'route', entry: 'route 10.9.9.0/24 via 0.0.0.0', subnet: '10.9.9.0/24', publicIP: null }],
      },
      problems: [problem('lease 10.7.250.0/24 is invalid: value is not JSON'), problem('peer 10.7.40.0/24 (10.65.154.12): fdb missing'), problem('stale route 10.9.9.0/24 via 0.0.0.0 on flannel.1: no lease explains it'), problem('lease 10.7.61.0/24 expires in 2400 s', 'warning')],
    });
    const text = renderTable(r, false);
    expect(text).toContain('   10.7.250.0/24  INVALID       value is not JSON\n');
    expect(text).toContain('Kernel  flannel.1: 1 wrong (vxlan id 1 local 10.65.154.11 dev eth0 dstport 8472 nolearning, mtu 1400, address 10.7.23.0/32, up)\n          mtu  wrong 1400 (want 1450)\n');
    expect(text).toContain('  10.7.40.0/24  10.65.154.12  ok     ok         missing\n');
    expect(text).toContain('  10.7.41.0/24  10.65.154.13  not programmed: backend type "udp" is not vxlan\n');
    expect(text).toContain('  stale         route 10.9.9.0/24 via 0.0.0.0\n');
    expect(text).toContain('Problems\n  error    lease 10.7.250.0/24 is invalid: value is not JSON\n');
    expect(text).toContain('  warning  lease 10.7.61.0/24 expires in 2400 s\n');
    expect(text.trimEnd().split('\n').pop()).toBe(renderBrief(r));
    expect(text).not.toMatch(ANSI);
  });

  it('colours only when asked, and the coloured text reads the same', () => {
    const r = report({ healthy: false, exitCode: 1, kernel: { ...report().kernel, peers: [peer(40, '10.65.154.12', { fdb: 'missing' })] }, problems: [problem('peer 10.7.40.0/24 (10.65.154.12): fdb missing')] });
    const colored = renderTable(r, true);
    expect(colored).toContain('\u001b[31mmissing\u001b[0m');
    expect(colored).toContain('\u001b[32mok\u001b[0m');
    expect(colored).toContain('\u001b[31mUNHEALTHY\u001b[0m');
    expect(colored.replace(ANSI, '')).toBe(renderTable(r, false));
  });

  it('says why the kernel check was skipped', () => {
    const r = report({ kernel: { state: 'skipped', skipReason: 'failed to read kernel state: EPERM', device: null, peers: [], stale: [] } });
    expect(renderTable(r, false)).toContain('\nKernel  skipped: failed to read kernel state: EPERM\n');
    expect(renderBrief(r)).toBe('OK: 3 leases in 10.7.0.0/16 (1.2% used), this host 10.7.23.0/24, kernel check skipped');
  });
});

describe('renderBrief', () => {
  it('is one line naming the first errors and how many more', () => {
    const r = report({ healthy: false, exitCode: 1, problems: [problem('a'), problem('b'), problem('c'), problem('w', 'warning')] });
    expect(renderBrief(r)).toBe('UNHEALTHY: 3 errors, 1 warning: a; b; +1 more');
  });

  it('counts warnings on a healthy report and names the filters', () => {
    const r = report({ problems: [problem('w', 'warning')], leases: [lease(40, '10.65.154.12')], filter: { subnet: '10.7.40.0/24', publicIP: '10.65.154.12' } });
    expect(renderBrief(r)).toBe('OK: 1 lease in 10.7.0.0/16 (1.2% used), this host 10.7.23.0/24, 2 peers ok, 1 warning (filtered: subnet 10.7.40.0/24, public IP 10.65.154.12)');
    expect(renderBrief(r)).not.toContain('\n');
  });
});

describe('renderJson', () => {
  it('indents for a person and writes one line per document for --watch', () => {
    const r = report();
    expect(JSON.parse(renderJson(r, false))).toEqual(r);
    expect(renderJson(r, false)).toContain('\n  "schemaVersion": 2,\n');
    expect(renderJson(r, true)).not.toContain('\n');
  });
});
