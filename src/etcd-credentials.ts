/**
 * etcd credentials beyond the flags: the password from `--etcd-password-file`
 * (read once, never logged; a flag's value shows in `ps` for every user) and a
 * warning when credentials would travel over plain http://.
 */
import { readFileSync } from 'node:fs';
import { EtcdOptions } from './cli';
import { UsageError } from './util/errors';

/** The etcd password: `--etcd-password`, else the first line of `--etcd-password-file` (a trailing newline is not part of it). */
export function etcdPassword(etcd: EtcdOptions, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | undefined {
  if (etcd.passwordFile === undefined) return etcd.password;
  let text: string;
  try {
    text = read(etcd.passwordFile);
  } catch (err) {
    throw new UsageError(`failed to read --etcd-password-file ${etcd.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '' || /[\r\n]/.test(password)) throw new UsageError(`--etcd-password-file ${etcd.passwordFile}: want the password alone on one line`);
  return password;
}

/** One line when a password or client key would be used with an http:// endpoint, else undefined. */
export function plaintextCredentialsWarning(etcd: EtcdOptions): string | undefined {
  const plain = etcd.endpoints.filter((e) => e.startsWith('http://'));
  if (plain.length === 0) return undefined;
  const what = [etcd.password !== undefined || etcd.passwordFile !== undefined ? 'an etcd password' : '', etcd.keyFile !== undefined ? 'a TLS client key' : ''].filter((w) => w !== '').join(' and ');
  if (what === '') return undefined;
  return `${what} will be used with plain http:// etcd endpoint${plain.length > 1 ? 's' : ''} ${plain.join(',')}: anyone on the path can read it; use https://`;
}
