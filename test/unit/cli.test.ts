import { describe, expect, it } from 'vitest';
import { envName, parseCommandLine } from '../../src/cli';
import { formatCidr, formatIPv4 } from '../../src/net/ipv4';
import { UsageError } from '../../src/util/errors';

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const c = parseCommandLine(args, env);
  if (c.command !== 'run') throw new Error(`expected run, got ${c.command}`);
  return c.options;
};

describe('command line', () => {
  it('has flanneld defaults', () => {
    const o = run([]);
    expect(o.etcd.endpoints).toEqual(['http://127.0.0.1:4001', 'http://127.0.0.1:2379']);
    expect(o.etcd.prefix).toBe('/coreos.com/network');
    expect(o.subnetFile).toBe('/run/flannel/subnet.env');
    expect(o.renewMarginMinutes).toBe(60);
    expect(o.ipMasq).toBe(false);
    expect(o.leaseTTLSeconds).toBe(86_400);
    expect(run(['run']).subnetFile).toBe('/run/flannel/subnet.env');
  });
  it('takes repeatable --iface and every flag', () => {
    const o = run(['--iface', 'eth0', '--iface=10.0.0.1', '--public-ip', '10.65.154.19', '--etcd-endpoints', 'https://a:2379,https://b:2379', '--etcd-prefix', '/x/', '--ip-masq', '--subnet-lease-renew-margin', '5', '--etcd-keyfile', 'k', '--etcd-certfile', 'c', '--etcd-cafile', 'ca', '--etcd-username', 'u', '--etcd-password', 'p']);
    expect(o.iface).toEqual(['eth0', '10.0.0.1']);
    expect(formatIPv4(o.publicIP as number)).toBe('10.65.154.19');
    expect(o.etcd).toEqual({ endpoints: ['https://a:2379', 'https://b:2379'], prefix: '/x/', keyFile: 'k', certFile: 'c', caFile: 'ca', username: 'u', password: 'p' });
    expect(o.ipMasq).toBe(true);
    expect(o.renewMarginMinutes).toBe(5);
  });
  it('lets a repeated scalar flag take the last value', () => {
    expect(run(['--etcd-prefix', '/a', '--etcd-prefix', '/b']).etcd.prefix).toBe('/b');
  });
  it('reads FLANNELD_* variables; the command line wins', () => {
    const env = { FLANNELD_ETCD_PREFIX: '/env', FLANNELD_IFACE: 'eth1,eth2', FLANNELD_IP_MASQ: 'true', FLANNELD_SUBNET_LEASE_RENEW_MARGIN: '30' };
    const o = run([], env);
    expect([o.etcd.prefix, o.iface, o.ipMasq, o.renewMarginMinutes]).toEqual(['/env', ['eth1', 'eth2'], true, 30]);
    expect(run(['--etcd-prefix', '/cli'], env).etcd.prefix).toBe('/cli');
    expect(envName('etcd-endpoints')).toBe('FLANNELD_ETCD_ENDPOINTS');
  });
  it.each([
    [['--bogus'], /Unknown argument: bogus/],
    [['--subnet-lease-renew-margin', '0'], /--subnet-lease-renew-margin/],
    [['--subnet-lease-renew-margin', '1440'], /--subnet-lease-renew-margin/],
    [['--public-ip', 'x'], /--public-ip/],
    [['--etcd-endpoints', 'ftp://localhost:2379'], /--etcd-endpoints/],
    [['--public-ipv6', '10.0.0.1'], /--public-ipv6/],
    [['--iface-can-reach', 'eth0'], /--iface-can-reach/],
    [['--kube-subnet-mgr'], /--kube-subnet-mgr: the Kubernetes subnet manager is not supported/],
    [['--iface-regex', '('], /--iface-regex/],
  ])('rejects %j with one clear line', (args, message) => {
    let err: unknown;
    try {
      parseCommandLine(args, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });
  it('keeps the default for an invalid FLANNELD_* value with a warning naming it, as flanneld does', () => {
    const c = parseCommandLine([], { FLANNELD_IP_MASQ: 'maybe', FLANNELD_IPTABLES_RESYNC: 'often' });
    expect(c.command === 'run' && [c.options.ipMasq, c.options.iptablesResyncMs]).toEqual([false, 5000]);
    expect(c.command === 'run' && c.warnings.join('\n')).toMatch(/FLANNELD_IP_MASQ="maybe".*\n.*FLANNELD_IPTABLES_RESYNC="often"/);
  });
  it('ignores empty FLANNELD_* variables, as flanneld does', () => {
    const c = parseCommandLine([], { FLANNELD_IP_MASQ: '', FLANNELD_ETCD_PREFIX: '', FLANNELD_HEALTHZ_PORT: '' });
    expect(c.command === 'run' && [c.options.ipMasq, c.options.etcd.prefix, c.options.healthzPort, c.warnings]).toEqual([false, '/coreos.com/network', 0, []]);
  });
  it('accepts endpoints without a scheme: TLS only with a key and a certificate', () => {
    expect(run(['--etcd-endpoints', '10.0.0.2:2379,etcd:2379']).etcd.endpoints).toEqual(['http://10.0.0.2:2379', 'http://etcd:2379']);
    expect(run(['--etcd-endpoints', '10.0.0.2:2379', '--etcd-keyfile', 'k', '--etcd-certfile', 'c']).etcd.endpoints).toEqual(['https://10.0.0.2:2379']);
    expect(run(['--etcd-endpoints', '10.0.0.2:2379', '--etcd-cafile', 'ca']).etcd.endpoints).toEqual(['http://10.0.0.2:2379']);
  });
  it('warns and goes on without TLS for a key file without a cert file, as flanneld does', () => {
    const c = parseCommandLine(['--etcd-keyfile', 'k', '--etcd-cafile', 'ca'], {});
    if (c.command !== 'run') throw new Error('not run');
    expect([c.options.etcd.keyFile, c.options.etcd.certFile, c.options.etcd.caFile]).toEqual([undefined, undefined, undefined]);
    expect(c.warnings).toEqual([expect.stringMatching(/^--etcd-keyfile given without --etcd-certfile: .*without TLS/)]);
  });
  it('maps -v to a log level unless --log-level is given', () => {
    expect([run([]).logLevel, run(['-v=0']).logLevel, run(['-v', '2']).logLevel, run(['--v=5']).logLevel]).toEqual(['info', 'info', 'debug', 'trace']);
    expect(run(['-v=2', '--log-level', 'warn']).logLevel).toBe('warn');
    expect(run([], { FLANNELD_V: '3' }).logLevel).toBe('debug');
  });
  it('takes --iface-can-reach and --public-ipv6', () => {
    const o = run(['--iface-can-reach', '10.65.154.1', '--public-ipv6', 'FC00::5']);
    expect([formatIPv4(o.ifaceCanReach as number), o.publicIPv6]).toEqual(['10.65.154.1', 0xfc00n << 112n | 5n]);
  });
  it('takes an IPv6 --iface-can-reach (flanneld accepts either family) and names the flag for neither', () => {
    expect(run(['--iface-can-reach', 'FD00:7::77']).ifaceCanReach).toBe(0xfd00n << 112n | 7n << 96n | 0x77n);
    expect(run([], { FLANNELD_IFACE_CAN_REACH: '2001:db8::1' }).ifaceCanReach).toBe(0x20010db8n << 96n | 1n);
    expect(() => run(['--iface-can-reach', 'fd00::7::1'])).toThrow('--iface-can-reach: "fd00::7::1" is not an IPv4 or IPv6 address');
  });
  it('prints complete help and the version', () => {
    const help = parseCommandLine(['--help'], {});
    expect(help.command).toBe('help');
    for (const flag of ['--etcd-endpoints', '--etcd-prefix', '--etcd-keyfile', '--etcd-certfile', '--etcd-cafile', '--etcd-username', '--etcd-password', '--iface', '--iface-regex', '--public-ip', '--subnet-file', '--subnet-lease-renew-margin', '--ip-masq']) {
      expect(help.command === 'help' && help.text).toContain(flag);
    }
    expect(parseCommandLine(['--version'], {}).command).toBe('version');
  });
});

const status = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const c = parseCommandLine(['status', ...args], env);
  if (c.command !== 'status') throw new Error(`expected status, got ${c.command}`);
  return c.options;
};

describe('command line: status', () => {
  it('has defaults that read the daemon\'s etcd and subnet file and print the table', () => {
    const o = status([]);
    expect(o.etcd.endpoints).toEqual(['http://127.0.0.1:4001', 'http://127.0.0.1:2379']);
    expect([o.subnetFile, o.renewMarginMinutes, o.format, o.watch, o.color, o.kernelCheck]).toEqual(['/run/flannel/subnet.env', 60, 'table', false, undefined, true]);
    expect(o.filter).toEqual({ subnet: undefined, publicIP: undefined });
  });
  it('takes the output, filter and kernel flags', () => {
    const o = status(['--json', '--watch', '--no-color', '--subnet', '10.7.5.0/24', '--public-ip', '10.65.154.12', '--no-kernel-check', '--iface', 'eth1']);
    expect([o.format, o.watch, o.color, o.kernelCheck, o.iface]).toEqual(['json', true, false, false, ['eth1']]);
    expect(o.filter.subnet && formatCidr(o.filter.subnet)).toBe('10.7.5.0/24');
    expect(formatIPv4(o.filter.publicIP as number)).toBe('10.65.154.12');
    expect(status(['--brief', '--color']).format).toBe('brief');
    expect(status(['--color']).color).toBe(true);
    const pod = status(['--subnet', '10.7.5.23']).filter.subnet;
    expect(pod && formatCidr(pod)).toBe('10.7.5.23/32');
  });
  it('shares the etcd and host flags with the daemon through FLANNELD_*, but never the filters', () => {
    const env = { FLANNELD_ETCD_ENDPOINTS: 'https://e:2379', FLANNELD_SUBNET_FILE: '/x/subnet.env', FLANNELD_IFACE: 'eth9', FLANNELD_PUBLIC_IP: '10.65.154.11' };
    const o = status([], env);
    expect([o.etcd.endpoints, o.subnetFile, o.iface, o.filter.publicIP]).toEqual([['https://e:2379'], '/x/subnet.env', ['eth9'], undefined]);
    expect(status(['--etcd-endpoints', 'http://cli:2379'], env).etcd.endpoints).toEqual(['http://cli:2379']);
  });
  it.each([
    [['--json', '--brief'], /--json and --brief/],
    [['--subnet', '10.7.5.0/33'], /--subnet: "10\.7\.5\.0\/33"/],
    [['--subnet', 'pod'], /--subnet/],
    [['--public-ip', '10.65.154'], /--public-ip: "10\.65\.154"/],
    [['--subnet-lease-renew-margin', '0'], /--subnet-lease-renew-margin/],
    [['--ip-masq'], /Unknown argument: ip-masq/],
  ])('rejects status %j with one clear line', (args, message) => {
    expect(() => parseCommandLine(['status', ...args], {})).toThrow(UsageError);
    expect(() => parseCommandLine(['status', ...args], {})).toThrow(message);
  });
  it('documents status in the help', () => {
    const top = parseCommandLine(['--help'], {});
    expect(top.command === 'help' && top.text).toContain('status');
    const help = parseCommandLine(['status', '--help'], {});
    for (const flag of ['--json', '--brief', '--watch', '--no-color', '--subnet', '--public-ip', '--subnet-file', '--etcd-endpoints']) {
      expect(help.command === 'help' && help.text).toContain(flag);
    }
  });
});
