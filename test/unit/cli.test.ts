import { describe, expect, it } from 'vitest';
import { envName, parseCommandLine } from '../../src/cli';
import { formatIPv4 } from '../../src/net/ipv4';
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
    [['--etcd-endpoints', 'localhost:2379'], /--etcd-endpoints/],
    [['--etcd-keyfile', 'k'], /--etcd-certfile/],
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
  it('rejects a bad boolean in the environment naming the variable', () => {
    expect(() => parseCommandLine([], { FLANNELD_IP_MASQ: 'maybe' })).toThrow(/FLANNELD_IP_MASQ/);
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
