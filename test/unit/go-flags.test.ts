/**
 * Go flag-package spellings (contract §15): the pure normaliser, and a table of
 * real flanneld command lines (unit files, start scripts, sysconfig options
 * found in public repositories) each parsed to the same options as its
 * double-dash spelling.
 */
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli';
import { FlagKind, normalizeGoFlags, parseGoBool } from '../../src/go-flags';
import { UsageError } from '../../src/util/errors';

const KINDS = new Map<string, FlagKind>([['ip-masq', 'boolean'], ['iface', 'value'], ['etcd-endpoints', 'value'], ['v', 'value']]);

const options = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const c = parseCommandLine(args, env);
  if (c.command !== 'run') throw new Error(`expected run, got ${c.command}`);
  return c.options;
};

const usageError = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).not.toContain('\n');
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
};

describe('normalizeGoFlags', () => {
  it.each([
    [['-iface', 'eth0'], ['--iface=eth0']],
    [['-iface=eth0'], ['--iface=eth0']],
    [['--iface', 'eth0'], ['--iface=eth0']],
    [['--iface=eth0'], ['--iface=eth0']],
    [['-iface', '-weird-name'], ['--iface=-weird-name']],
    [['-ip-masq'], ['--ip-masq']],
    [['-ip-masq=false'], ['--ip-masq=false']],
    [['--ip-masq=F'], ['--ip-masq=false']],
    [['-ip-masq=1'], ['--ip-masq=true']],
    [['-v=2'], ['--v=2']],
    [['-v', '2'], ['--v=2']],
    [['status', '-iface', 'eth1'], ['status', '--iface=eth1']],
    [['-bogus', 'x'], ['--bogus', 'x']],
    [['--no-ip-masq'], ['--no-ip-masq']],
    [['--', '-iface'], ['--', '-iface']],
  ])('%j → %j', (input, output) => {
    expect(normalizeGoFlags(input, KINDS)).toEqual(output);
  });

  it('reads Go booleans exactly', () => {
    expect(['1', 't', 'T', 'TRUE', 'true', 'True'].map(parseGoBool)).toEqual(Array(6).fill(true));
    expect(['0', 'f', 'F', 'FALSE', 'false', 'False'].map(parseGoBool)).toEqual(Array(6).fill(false));
    expect(parseGoBool('yes')).toBeUndefined();
  });

  it('names the flag in one line for a missing value, a bad boolean, and the ambiguous "-bool false"', () => {
    expect(usageError(() => normalizeGoFlags(['-iface'], KINDS))).toBe('flag needs an argument: -iface');
    expect(usageError(() => normalizeGoFlags(['-ip-masq=yes'], KINDS))).toMatch(/-ip-masq/);
    expect(usageError(() => normalizeGoFlags(['-ip-masq', 'false', '-iface', 'eth0'], KINDS))).toMatch(/^-ip-masq false: write -ip-masq=false/);
    expect(usageError(() => normalizeGoFlags(['---iface=x'], KINDS))).toBe('bad flag syntax: ---iface=x');
  });
});

describe('real flanneld command lines', () => {
  // Each row: where it comes from, the Go-style line, and the same options spelt the yargs way.
  it.each([
    [
      'lgphone/ansible-k8s-manager roles/flanneld/templates/flanneld.service.tpl',
      ['-etcd-cafile=/opt/k8s/cert/ca.pem', '-etcd-certfile=/opt/k8s/cert/flanneld.pem', '-etcd-keyfile=/opt/k8s/cert/flanneld-key.pem', '-etcd-endpoints=https://172.27.138.251:2379,https://172.27.137.229:2379', '-etcd-prefix=/kubernetes/network', '-iface=eth0', '-ip-masq'],
      ['--etcd-cafile', '/opt/k8s/cert/ca.pem', '--etcd-certfile', '/opt/k8s/cert/flanneld.pem', '--etcd-keyfile', '/opt/k8s/cert/flanneld-key.pem', '--etcd-endpoints', 'https://172.27.138.251:2379,https://172.27.137.229:2379', '--etcd-prefix', '/kubernetes/network', '--iface', 'eth0', '--ip-masq'],
    ],
    [
      'lijunyong/kubernetes-1.16 flanneld.md (flanneld.service)',
      ['-etcd-endpoints=http://172.20.0.113:2379,http://172.20.0.114:2379,http://172.20.0.115:2379', '-etcd-prefix=/kube-centos/network'],
      ['--etcd-endpoints', 'http://172.20.0.113:2379,http://172.20.0.114:2379,http://172.20.0.115:2379', '--etcd-prefix', '/kube-centos/network'],
    ],
    [
      'skiplee85/k8s master/flannel/start.sh',
      ['-etcd-endpoints=https://10.0.0.2:2379', '-etcd-cafile=/k/ssl/ca.pem', '-etcd-certfile=/k/ssl/kubernetes.pem', '-etcd-keyfile=/k/ssl/kubernetes-key.pem', '-ip-masq', '-subnet-file=/k/flannel/subnet.env'],
      ['--etcd-endpoints', 'https://10.0.0.2:2379', '--etcd-cafile', '/k/ssl/ca.pem', '--etcd-certfile', '/k/ssl/kubernetes.pem', '--etcd-keyfile', '/k/ssl/kubernetes-key.pem', '--ip-masq', '--subnet-file', '/k/flannel/subnet.env'],
    ],
    [
      'salt template: -ip-masq=<bool> and -iface=<name>',
      ['-etcd-endpoints=http://10.0.0.2:2379', '-iface=bond0', '-ip-masq=true', '-etcd-prefix=/cluster/network'],
      ['--etcd-endpoints', 'http://10.0.0.2:2379', '--iface', 'bond0', '--ip-masq', '--etcd-prefix', '/cluster/network'],
    ],
    [
      'Fedora/CentOS flanneld-start with FLANNEL_OPTIONS="-iface eth0 --ip-masq" (magnum heat fragment)',
      ['-etcd-endpoints=http://10.0.0.5:2379', '-etcd-prefix=/flannel/network', '-iface', 'eth0', '--ip-masq'],
      ['--etcd-endpoints', 'http://10.0.0.5:2379', '--etcd-prefix', '/flannel/network', '--iface', 'eth0', '--ip-masq'],
    ],
    [
      'hyades start script: --flag value pairs with the host IP as --iface and --public-ip',
      ['--etcd-cafile', '/c/etcd-ca.pem', '--etcd-certfile', '/c/etcd-cert.pem', '--etcd-keyfile', '/c/local-key.pem', '--etcd-endpoints', 'https://10.0.0.2:2379', '--iface', '10.0.0.7', '--ip-masq', '--public-ip', '10.0.0.7'],
      ['--etcd-cafile=/c/etcd-ca.pem', '--etcd-certfile=/c/etcd-cert.pem', '--etcd-keyfile=/c/local-key.pem', '--etcd-endpoints=https://10.0.0.2:2379', '--iface=10.0.0.7', '--ip-masq', '--public-ip=10.0.0.7'],
    ],
    [
      'flannel Documentation/configuration.md key options, Go spelling, with -v',
      ['-public-ip=10.0.0.7', '-etcd-endpoints=http://127.0.0.1:4001', '-etcd-prefix=/coreos.com/network', '-iface=eth0', '-iface-regex=^en', '-iptables-resync=5', '-subnet-file=/run/flannel/subnet.env', '-subnet-lease-renew-margin=60', '-ip-masq=false', '-v=1', '-healthz-ip=0.0.0.0', '-healthz-port=0'],
      ['--public-ip', '10.0.0.7', '--etcd-endpoints', 'http://127.0.0.1:4001', '--iface', 'eth0', '--iface-regex', '^en', '--log-level', 'debug'],
    ],
    [
      'CoreOS rkt wrapper FLANNEL_OPTS="--ip-masq=true"',
      ['--ip-masq=true'],
      ['--ip-masq'],
    ],
    [
      'klog flags flanneld exposes: -v, -vmodule, -log_backtrace_at',
      ['-v=0', '-vmodule=main=2,vxlan=3', '-log_backtrace_at=main.go:100', '-etcd-endpoints=127.0.0.1:2379'],
      ['--etcd-endpoints', 'http://127.0.0.1:2379'],
    ],
  ])('%s', (_source, goStyle, canonical) => {
    expect(options(goStyle)).toEqual(options(canonical));
  });

  it('takes flanneld\'s environment file spellings (FLANNELD_*), empty ones ignored', () => {
    const env = { FLANNELD_ETCD_ENDPOINTS: 'http://10.0.0.2:2379', FLANNELD_IFACE: 'eth1', FLANNELD_IP_MASQ: 'true', FLANNELD_PUBLIC_IP: '', FLANNELD_V: '2', FLANNELD_VMODULE: '' };
    expect(options([], env)).toEqual(options(['--etcd-endpoints', 'http://10.0.0.2:2379', '--iface', 'eth1', '--ip-masq', '--log-level', 'debug']));
  });

  it('accepts the Kubernetes-only options inert, and refuses kube mode itself', () => {
    expect(options(['-kube-api-url=https://k:6443', '-kube-annotation-prefix=flannel.alpha.coreos.com', '-kubeconfig-file=/k', '-net-config-path=/etc/kube-flannel/net-conf.json', '-set-node-network-unavailable=false'])).toEqual(options([]));
    // kube-flannel.yml: args: ["--ip-masq", "--kube-subnet-mgr"]
    expect(usageError(() => parseCommandLine(['--ip-masq', '--kube-subnet-mgr'], {}))).toMatch(/^--kube-subnet-mgr: the Kubernetes subnet manager is not supported/);
  });

  it('takes -h, -help and -version, and Go spellings after the status command', () => {
    expect([['-h'], ['-help'], ['-version'], ['status', '-json', '-iface', 'eth1']].map((a) => parseCommandLine(a, {}).command)).toEqual(['help', 'help', 'version', 'status']);
  });

  it('still exits on an unknown Go-style flag with one line naming it', () => {
    expect(usageError(() => parseCommandLine(['-etcd-endpoints=http://e:2379', '-bogus-flag=1'], {}))).toMatch(/Unknown argument: bogus-flag/);
  });

  it('works for every flag the yargs spec declares, not a fixed list', () => {
    for (const flag of ['subnet-lease-reput-interval', 'iface-can-reach', 'public-ipv6', 'healthz-port']) {
      const value = { 'subnet-lease-reput-interval': '600', 'iface-can-reach': '10.0.0.1', 'public-ipv6': 'fc00::1', 'healthz-port': '8471' }[flag] as string;
      expect(options([`-${flag}`, value])).toEqual(options([`--${flag}=${value}`]));
    }
  });
});
