/** bin/flanneld-ts as an operator runs it: exit codes and one-line errors. */
import { spawn, spawnSync } from 'node:child_process';
import { createServer, Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BIN } from '../../src/testbed/scene';

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(BIN, args, { encoding: 'utf8', env: { PATH: process.env.PATH, ...env }, timeout: 10_000 });

describe('bin/flanneld-ts', () => {
  it('prints help and version with exit 0', () => {
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--etcd-endpoints');
    expect(help.stdout).toContain('FLANNELD_');
    const version = run(['--version']);
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
  it.each([
    [['--bogus'], 'Unknown argument: bogus'],
    [['--subnet-lease-renew-margin', '0'], '--subnet-lease-renew-margin'],
    [['--public-ip', 'nope'], '--public-ip'],
  ])('rejects %j with exit 2 and one line naming the flag', (args, text) => {
    const r = run(args);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toContain(text);
    expect(lines[0]).toMatch(/^flanneld-ts: /);
  });
  it('exits 2 naming an unknown Go-style flag', () => {
    const r = run(['-etcd-endpoints=http://127.0.0.1:1', '-no-such-flag=1']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')[0]).toBe('flanneld-ts: Unknown argument: no-such-flag');
  });
  it('exits 2 with one clear line when a TLS file is missing', () => {
    const r = run(['--etcd-cafile', '/nonexistent/ca.pem', '--etcd-endpoints', 'https://127.0.0.1:1']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--etcd-cafile /nonexistent/ca.pem');
  });
  it('starts from a Go-style flanneld command line and FLANNELD_* file, warning about an invalid variable', async () => {
    const held: Socket[] = [];
    const server = createServer((sock) => void held.push(sock));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      // As in a flanneld.service: single dashes, a scheme-less endpoint, -v, -vmodule, a separate value.
      const args = [`-etcd-endpoints=127.0.0.1:${port}`, '-etcd-prefix=/kube-centos/network/', '-iface', 'eth0', '-ip-masq', '-v=2', '-vmodule=main=3', '-subnet-file=/nonexistent-dir/subnet.env'];
      const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, FLANNELD_IPTABLES_RESYNC: 'often', FLANNELD_PUBLIC_IP: '' } });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const deadline = Date.now() + 8000;
      while (!out.includes('starting flanneld-ts') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(0);
      const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const warn = lines.find((l) => String(l.msg).includes('FLANNELD_IPTABLES_RESYNC'));
      expect(warn?.level).toBe(40);
      const start = lines.find((l) => l.msg === 'starting flanneld-ts') as { options: Record<string, unknown> & { etcd: Record<string, unknown> } } | undefined;
      expect(start?.options.etcd.endpoints).toEqual([`http://127.0.0.1:${port}`]);
      expect(start?.options.etcd.prefix).toBe('/kube-centos/network/');
      expect([start?.options.iface, start?.options.ipMasq, start?.options.logLevel, start?.options.iptablesResyncMs]).toEqual([['eth0'], true, 'debug', 5000]);
    } finally {
      held.forEach((s) => s.destroy());
      server.close();
    }
  });
  it('stops within 2 s on SIGTERM even while an etcd call hangs, exit 0', async () => {
    // An "etcd" that accepts connections and never answers.
    const held: Socket[] = [];
    const server = createServer((sock) => void held.push(sock));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const child = spawn(BIN, ['--etcd-endpoints', `http://127.0.0.1:${port}`, '--subnet-file', '/nonexistent-dir/subnet.env'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      // Its signal handlers are in place once it logs that it is starting (a loaded machine
      // may take seconds to get there); then its first etcd call is under way.
      const deadline = Date.now() + 30_000;
      while (!stderr.includes('"msg":"starting flanneld-ts"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toContain('"msg":"starting flanneld-ts"');
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(code).toBe(0);
      expect(stderr).not.toMatch(/"level":60/);
    } finally {
      held.forEach((s) => s.destroy());
      server.close();
    }
  }, 60_000);
});
