/**
 * `flanneld-ts status` for real: EtcdLeaseStore's expiry reads against a
 * loopback etcd, then bin/flanneld-ts status run inside the hosts of a three-node
 * namespace cluster (real etcd, real daemons, real netlink), through a healthy
 * state, faults made by hand, and an etcd that is gone.
 */
import { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdLeaseStore } from '../../src/lease/etcd-store';
import { encodeLeaseValue } from '../../src/lease/codec';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { StatusReport } from '../../src/status/report';
import { EtcdProcess, startEtcd } from '../../src/testbed/etcd-process';
import { BIN, DaemonHandle, PREFIX, Scene, createScene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { silentLogger } from '../../src/util/log';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

assertPrivateNetns();

const STATUS_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/status.schema.json'), 'utf8')) as JsonSchema;
const HOSTS = ['h1', 'h2', 'h3'] as const;
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

describe('EtcdLeaseStore.leaseExpiries against a real etcd', () => {
  let etcd: EtcdProcess;
  let store: EtcdLeaseStore;
  beforeAll(async () => {
    etcd = await startEtcd();
    store = new EtcdLeaseStore({ endpoints: [etcd.endpoint], prefix: '/expiry/coreos.com/network', log: silentLogger() });
  });
  afterAll(async () => {
    await store?.close();
    await etcd?.cleanup();
  });

  it('reads each lease\'s expiry and leaves out leases etcd no longer has', async () => {
    const value = encodeLeaseValue({ publicIP: parseIPv4('10.65.0.5'), vni: 1, vtepMAC: '6e:d5:a3:cb:6a:6b' });
    const before = Date.now();
    const a = await store.create(parseCidr('10.7.5.0/24'), value, 3600);
    const b = await store.create(parseCidr('10.7.6.0/24'), value, 600);
    if (!a || !b) throw new Error('create failed');
    await store.revoke(b.etcdLease);
    const expiries = await store.leaseExpiries([a.etcdLease, b.etcdLease, a.etcdLease, '12345']);
    expect([...expiries.keys()]).toEqual([a.etcdLease]);
    // etcd reports whole seconds left: the expiry is within a second and a half of the grant's.
    expect(expiries.get(a.etcdLease)).toBeGreaterThanOrEqual(before + 3_598_000);
    expect(expiries.get(a.etcdLease)).toBeLessThanOrEqual(Date.now() + 3_600_000);
    expect(await store.leaseExpiries([])).toEqual(new Map());
  });
});

describe('flanneld-ts status on a three-host namespace cluster', () => {
  let scene: Scene;
  const daemons = new Map<string, DaemonHandle>();
  const subnets = new Map<string, string>();
  const macs = new Map<string, string>();

  interface Run {
    code: number;
    stdout: string;
    stderr: string;
    ms: number;
  }

  /** bin/flanneld-ts status inside `host` (a cluster host or "infra"), pointed at the scene's etcd and the host's subnet file. */
  async function status(host: string, args: readonly string[] = [], as: readonly string[] = []): Promise<Run> {
    const ns = host === 'infra' ? scene.cluster.infraNetns : scene.cluster.member(host).netns;
    const file = daemons.get(host)?.subnetFile ?? '/nonexistent/subnet.env';
    const argv = [process.execPath, BIN, 'status', '--etcd-endpoints', scene.endpoint, '--subnet-file', file, ...args];
    const [cmd, ...rest] = [...as, ...argv];
    const started = Date.now();
    const r = await scene.cluster.exec(ns, cmd as string, rest);
    return { ...r, ms: Date.now() - started };
  }

  /**
   * A status run with Node's start-up taken out: on a busy 2-core machine, starting node and loading
   * dist/ alone has taken seconds, which is no time status spends on etcd. Start-up is measured right
   * before and right after as `flanneld-ts --version` (the same modules loaded, no etcd), and the
   * longer of the two is subtracted. A hang or an unbounded etcd deadline still shows in full.
   */
  async function bounded(run: () => Promise<Run>): Promise<Run & { startupMs: number; ownMs: number }> {
    const startup = async (): Promise<number> => {
      const started = Date.now();
      const v = await scene.cluster.exec(scene.cluster.member('h2').netns, process.execPath, [BIN, '--version']);
      if (v.code !== 0) throw new Error(`flanneld-ts --version exited ${v.code}: ${v.stderr}`);
      return Date.now() - started;
    };
    const before = await startup();
    const r = await run();
    const startupMs = Math.max(before, await startup());
    return { ...r, startupMs, ownMs: r.ms - startupMs };
  }

  async function statusJson(host: string, args: readonly string[] = []): Promise<StatusReport> {
    const r = await status(host, ['--json', ...args]);
    const doc = JSON.parse(r.stdout) as StatusReport;
    expect(schemaErrors(STATUS_SCHEMA, doc)).toEqual([]);
    expect(r.code).toBe(doc.exitCode);
    return doc;
  }


  beforeAll(async () => {
    scene = await createScene({ hosts: [...HOSTS] });
    await scene.putConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
    for (const h of HOSTS) daemons.set(h, scene.startDaemon(h));
    await Promise.all([...daemons.values()].map((d) => waitReady(d)));
    for (const h of HOSTS) {
      subnets.set(h, subnetOf(readFileSync((daemons.get(h) as DaemonHandle).subnetFile, 'utf8')));
      macs.set(h, /link\/ether ([0-9a-f:]+)/.exec((await scene.kernel(h)).link)?.[1] as string);
    }
  }, 90_000);

  sceneLifecycle(() => scene);

  it('reports a healthy cluster: every peer ok, the own lease marked, exit 0', async () => {
    const r = await status('h1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s1 = subnets.get('h1') as string;
    expect(r.stdout).toMatch(new RegExp(`\\n\\*  ${s1.replace(/\./g, '\\.')} +10\\.65\\.154\\.11  ${macs.get('h1')}  vxlan    23h59m\\n`));
    for (const h of ['h2', 'h3']) {
      expect(r.stdout).toMatch(new RegExp(`\\n  ${(subnets.get(h) as string).replace(/\./g, '\\.')} +10\\.65\\.154\\.1[23]  ok     ok         ok\\n`));
    }
    expect(r.stdout).toContain('Kernel  flannel.1: ok (vxlan id 1 local 10.65.154.11 dev eth0 dstport 8472 nolearning, mtu 1450');
    expect(r.stdout.trimEnd().split('\n').pop()).toBe(`OK: 3 leases in 10.7.0.0/16 (1.2% used), this host ${s1}, 2 peers ok`);
    expect(r.stdout).not.toContain('\u001b[');
    const brief = await status('h1', ['--brief']);
    expect([brief.code, brief.stdout]).toEqual([0, `OK: 3 leases in 10.7.0.0/16 (1.2% used), this host ${s1}, 2 peers ok\n`]);
  });

  it('prints --json that matches docs/status.schema.json', async () => {
    const doc = await statusJson('h2');
    expect(doc).toMatchObject({ healthy: true, exitCode: 0, etcd: { endpoints: [scene.endpoint] }, self: { subnet: subnets.get('h2'), matchedBy: 'subnet-file', publicIP: '10.65.154.12', interface: 'eth0' } });
    expect(doc.kernel.peers.map((p) => [p.route, p.neighbor, p.fdb])).toEqual([['ok', 'ok', 'ok'], ['ok', 'ok', 'ok']]);
    expect(doc.kernel.device?.checks.every((c) => c.state === 'ok')).toBe(true);
    expect(doc.leases.every((l) => l.expiresInSeconds !== null && l.expiresInSeconds > 86_000)).toBe(true);
  });

  it('works without root: netlink reads need no privilege, so the kernel is still checked', async () => {
    const r = await status('h1', ['--json'], NOBODY);
    const doc = JSON.parse(r.stdout) as StatusReport;
    expect(schemaErrors(STATUS_SCHEMA, doc)).toEqual([]);
    expect(doc.kernel.state).toBe('checked');
    expect(doc.kernel.peers.every((p) => p.fdb === 'ok')).toBe(true);
    // The scene keeps subnet files in a root-only directory: nobody finds its lease by the public IP instead.
    expect(doc.self).toMatchObject({ subnet: subnets.get('h1'), matchedBy: 'public-ip', subnetFile: { state: 'unreadable', detail: 'EACCES' } });
    expect(r.code).toBe(0);
  });

  it('from a machine that is not a node (etcd\'s own host): the kernel check says it was skipped and why', async () => {
    const r = await status('infra');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Kernel  skipped: not a flannel node: no flannel.1 device and no lease for this host's public IP 10.65.154.2\n");
    expect(r.stdout).not.toMatch(/^\*/m);
    const off = await status('h1', ['--no-kernel-check', '--brief']);
    expect([off.code, off.stdout]).toEqual([0, `OK: 3 leases in 10.7.0.0/16 (1.2% used), this host ${subnets.get('h1')}, kernel check skipped\n`]);
  });

  it('reports a peer\'s FDB entry deleted by hand as missing, exit 1', async () => {
    // With the daemon running the entry would be back within milliseconds; SIGTERM leaves the kernel state as it is.
    expect(await (daemons.get('h1') as DaemonHandle).stop('SIGTERM')).toBe(0);
    const h1 = scene.cluster.member('h1').netns;
    const del = await scene.cluster.exec(h1, 'bridge', ['fdb', 'del', macs.get('h2') as string, 'dev', 'flannel.1', 'dst', '10.65.154.12']);
    expect(del.code).toBe(0);
    const r = await status('h1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`\\n  ${(subnets.get('h2') as string).replace(/\./g, '\\.')} +10\\.65\\.154\\.12  ok     ok         missing\\n`));
    expect(r.stdout).toContain(`  error  peer ${subnets.get('h2')} (10.65.154.12): fdb missing\n`);
    const doc = await statusJson('h1');
    expect(doc.kernel.peers.find((p) => p.publicIP === '10.65.154.12')?.fdb).toBe('missing');
    // Filters: h3 alone is healthy, h2 alone is not.
    expect((await status('h1', ['--brief', '--public-ip', '10.65.154.13'])).code).toBe(0);
    expect((await status('h1', ['--brief', '--subnet', subnets.get('h2') as string])).code).toBe(1);
  });

  it('reports an extra route on flannel.1 as stale', async () => {
    const add = await scene.cluster.exec(scene.cluster.member('h1').netns, 'ip', ['route', 'add', '10.9.9.0/24', 'dev', 'flannel.1']);
    expect(add.code).toBe(0);
    const r = await status('h1');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\n  stale +route 10\.9\.9\.0\/24 via 0\.0\.0\.0\n/);
    const doc = await statusJson('h1');
    expect(doc.kernel.stale).toEqual([{ kind: 'route', entry: 'route 10.9.9.0/24 via 0.0.0.0', subnet: '10.9.9.0/24', publicIP: null }]);
  });

  it('shows a garbage lease value as INVALID with the reason, exit 1, every peer still ok', async () => {
    await scene.etcdctl(['put', `${PREFIX}/subnets/10.7.250.0-24`, 'this is not json']);
    try {
      const r = await status('h2');
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/\n   10\.7\.250\.0\/24 +INVALID +value is not JSON\n/);
      expect(r.stdout).toContain('  error  lease 10.7.250.0/24 is invalid: value is not JSON\n');
      const doc = await statusJson('h2');
      expect(doc.leases.find((l) => l.subnet === '10.7.250.0/24')).toMatchObject({ state: 'invalid', reason: 'value is not JSON' });
      expect(doc.kernel.peers.every((p) => p.fdb === 'ok' && p.route === 'ok' && p.neighbor === 'ok')).toBe(true);
    } finally {
      await scene.etcdctl(['del', `${PREFIX}/subnets/10.7.250.0-24`]);
    }
  });

  it('--watch prints a new line on every etcd change and exits with the last code on SIGINT', async () => {
    const h2 = daemons.get('h2') as DaemonHandle;
    const argv = [BIN, 'status', '--watch', '--brief', '--etcd-endpoints', scene.endpoint, '--subnet-file', h2.subnetFile];
    const child: ChildProcess = scene.cluster.spawn(scene.cluster.member('h2').netns, process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      await waitFor('the first line', () => out.split('\n').length > 1, 10_000);
      expect(out).toMatch(/^\S+Z OK: 3 leases/);
      await scene.etcdctl(['put', `${PREFIX}/subnets/10.7.251.0-24`, '{"PublicIP":"nope"}']);
      await waitFor('a line for the change', () => /\n\S+Z UNHEALTHY: 1 error: lease 10\.7\.251\.0\/24 is invalid: PublicIP "nope" is not an IPv4 address\n/.test(out), 10_000);
    } finally {
      child.kill('SIGINT');
      await scene.etcdctl(['del', `${PREFIX}/subnets/10.7.251.0-24`]);
    }
    expect(await exited).toBe(1);
  });

  it('exits 3 within 5 s of its own, naming the endpoint and the error, when etcd is stopped or silent', async () => {
    await scene.etcd.stop();
    const r = await bounded(() => status('h2'));
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^flanneld-ts status: etcd unreachable: failed to .* at ${scene.endpoint.replace(/\./g, '\\.')}: .*ECONNREFUSED.*\\n$`));
    expect(r.ownMs, `status took ${r.ms} ms, of which start-up ${r.startupMs} ms`).toBeLessThan(5_000);
    // An address nobody answers on the underlay: no refusal, only silence, still bounded.
    const silent = await bounded(() => status('h2', ['--etcd-endpoints', 'http://10.65.154.99:2379']));
    expect(silent.code).toBe(3);
    expect(silent.stderr).toMatch(/^flanneld-ts status: etcd unreachable: failed to .* at http:\/\/10\.65\.154\.99:2379: .*\n$/);
    expect(silent.ownMs, `status took ${silent.ms} ms, of which start-up ${silent.startupMs} ms`).toBeLessThan(5_000);
    console.log(`status with etcd stopped: ${r.ms} ms (start-up ${r.startupMs} ms); silent: ${silent.ms} ms (start-up ${silent.startupMs} ms)`);
  });
});
