import { describe, expect, it } from 'vitest';
import { EtcdOptions, parseCommandLine } from '../../src/cli';
import { etcdPassword, plaintextCredentialsWarning } from '../../src/etcd-credentials';
import { UsageError } from '../../src/util/errors';

const etcdOf = (args: string[], env: NodeJS.ProcessEnv = {}): EtcdOptions => {
  const cmd = parseCommandLine(args, env);
  if (cmd.command !== 'run') throw new Error('not run');
  return cmd.options.etcd;
};

describe('--etcd-password-file', () => {
  it('is read once, without its trailing newline', () => {
    const reads: string[] = [];
    const etcd = etcdOf(['--etcd-username', 'flannel', '--etcd-password-file', '/run/secrets/etcd']);
    expect(etcd.password).toBeUndefined();
    expect(etcdPassword(etcd, (p) => (reads.push(p), 's3cret-pw\n'))).toBe('s3cret-pw');
    expect(reads).toEqual(['/run/secrets/etcd']);
  });
  it('comes from FLANNELD_ETCD_PASSWORD_FILE too', () => {
    expect(etcdOf([], { FLANNELD_ETCD_PASSWORD_FILE: '/etc/pw' }).passwordFile).toBe('/etc/pw');
  });
  it('and --etcd-password exclude each other, in one line', () => {
    expect(() => etcdOf(['--etcd-password', 'x', '--etcd-password-file', '/etc/pw'])).toThrow(new UsageError('--etcd-password and --etcd-password-file: give one, not both'));
    expect(() => etcdOf(['--etcd-password-file', '/etc/pw'], { FLANNELD_ETCD_PASSWORD: 'x' })).toThrow(UsageError);
  });
  it('names the flag and the errno when unreadable, and refuses an empty or multi-line file', () => {
    const etcd = etcdOf(['--etcd-password-file', '/nope']);
    expect(() => etcdPassword(etcd, () => { throw Object.assign(new Error('x'), { code: 'ENOENT' }); })).toThrow('failed to read --etcd-password-file /nope: ENOENT');
    expect(() => etcdPassword(etcd, () => '\n')).toThrow(UsageError);
    expect(() => etcdPassword(etcd, () => 'a\nb\n')).toThrow(UsageError);
  });
});

describe('plaintext credentials warning', () => {
  it('warns once, in one line, for a password or client key over http://', () => {
    const w = plaintextCredentialsWarning(etcdOf(['--etcd-endpoints', 'http://10.0.0.1:2379', '--etcd-username', 'u', '--etcd-password-file', '/pw']));
    expect(w).toBe('an etcd password will be used with plain http:// etcd endpoint http://10.0.0.1:2379: anyone on the path can read it; use https://');
    expect(plaintextCredentialsWarning(etcdOf(['--etcd-endpoints', 'http://10.0.0.1:2379', '--etcd-keyfile', 'k', '--etcd-certfile', 'c']))).toContain('a TLS client key');
  });
  it('is silent over https:// or without credentials', () => {
    expect(plaintextCredentialsWarning(etcdOf(['--etcd-endpoints', 'https://10.0.0.1:2379', '--etcd-password', 'x']))).toBeUndefined();
    expect(plaintextCredentialsWarning(etcdOf(['--etcd-endpoints', 'http://10.0.0.1:2379']))).toBeUndefined();
  });
});
