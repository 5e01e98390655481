/**
 * Security end to end (issue 4, item 10) on a two-host namespace cluster:
 * - TLS: a second etcd in the infra namespace with `--client-cert-auth`, a CA,
 *   server and client certificates made here with openssl; daemons given
 *   --etcd-cafile/--etcd-certfile/--etcd-keyfile get leases and program peers.
 *   A client certificate from another CA, or a server the client's CA did not
 *   sign, gives one warning naming the endpoint; the daemon keeps retrying
 *   (the failure is transient: certificates can be fixed on the server) and
 *   touches no kernel state.
 * - Auth: a third etcd (plain http) with user root and auth enabled; the
 *   password from --etcd-password or FLANNELD_ETCD_PASSWORD works; a wrong one
 *   gives "etcd rejected the credentials for user root at <endpoint>" once, and
 *   the daemon keeps retrying. Neither password is ever in a log, in --help,
 *   or (once the command exists) in `flanneld-ts status`.
 * - Files: subnet.env 0644 (also under umask 077) in a 0755 directory, replaced
 *   by rename (new inode, no temp file left behind).
 * The scene's own etcd (port 2379) is unused; later --etcd-endpoints flags win.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdProcess, startEtcd } from '../../src/testbed/etcd-process';
import { run, runChecked } from '../../src/testbed/exec';
import { BIN, createScene, DaemonHandle, DaemonStartOptions, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const HOSTS = ['h1', 'h2'] as const;
// Distinctive strings, so a hit in a log can only be a leak.
const PASSWORD = `pw-right-${randomBytes(9).toString('hex')}`;
const WRONG_PASSWORD = `pw-wrong-${randomBytes(9).toString('hex')}`;
/** How long a daemon that cannot reach etcd must stay up and quiet (several backoff rounds: 0.2, 0.4 … 3.2 s). */
const RETRY_WATCH_MS = 6_000;

interface Pki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly rogueCaCert: string;
  readonly rogueClientCert: string;
  readonly rogueClientKey: string;
}

let scene: Scene;
let tmp: string;
let pki: Pki;
let tlsEtcd: EtcdProcess | undefined;
let authEtcd: EtcdProcess | undefined;

// ---------------------------------------------------------------- helpers

async function openssl(args: readonly string[]): Promise<void> {
  await runChecked('openssl', args);
}

/** A CA key and self-signed certificate. */
async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=flts-${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/** A leaf key and certificate signed by `ca`, with the given extensions. */
async function makeLeaf(dir: string, name: string, ca: { cert: string; key: string }, ext: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, `${ext}\n`);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extFile]);
  return { cert, key };
}

async function makePki(dir: string, serverIP: string): Promise<Pki> {
  const ca = await makeCa(dir, 'ca');
  const rogueCa = await makeCa(dir, 'rogue-ca');
  const server = await makeLeaf(dir, 'server', ca, `subjectAltName=IP:${serverIP}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature`);
  const client = await makeLeaf(dir, 'client', ca, 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature');
  const rogue = await makeLeaf(dir, 'rogue-client', rogueCa, 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature');
  return {
    dir,
    caCert: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    rogueCaCert: rogueCa.cert,
    rogueClientCert: rogue.cert,
    rogueClientKey: rogue.key,
  };
}

/**
 * etcdctl in the infra namespace. `auth` holds the flags that carry secrets or
 * key paths; a failure message names only the command, never those flags.
 */
async function etcdctl(etcd: EtcdProcess, auth: readonly string[], args: readonly string[]): Promise<string> {
  const r = await scene.cluster.exec(scene.cluster.infraNetns, 'etcdctl', ['--endpoints', etcd.endpoint, ...auth, ...args], { env: { ETCDCTL_API: '3' } });
  if (r.code !== 0) throw new Error(`etcdctl ${args[0] ?? ''} at ${etcd.endpoint} failed (exit ${r.code}): ${r.stderr.trim().split(PASSWORD).join('[password]')}`);
  return r.stdout;
}

function tlsCtlFlags(): string[] {
  return ['--cacert', pki.caCert, '--cert', pki.clientCert, '--key', pki.clientKey];
}

/** `subnet.env` for a host in one phase: its own directory, made by the daemon. */
function subnetFileFor(phase: string, host: string): string {
  return join(scene.workDir, phase, host, 'subnet.env');
}

/** scene.startDaemon against one of this file's etcds (later flags win), with its own subnet file. */
function startDaemon(host: string, endpoint: string, subnetFile: string, args: readonly string[], opts: DaemonStartOptions = {}): DaemonHandle {
  return scene.startDaemon(host, ['--etcd-endpoints', endpoint, ...args], { ...opts, subnetFile });
}

function alive(d: DaemonHandle): boolean {
  return d.process.exitCode === null && d.process.signalCode === null;
}

/** The log lines whose message contains `text`. */
function linesWith(d: DaemonHandle, text: string): string[] {
  return d.log().split('\n').filter((l) => l.includes(text));
}

/** The parsed start-up line ("starting flanneld-ts") with its options. */
function startupOptions(d: DaemonHandle): { etcd: Record<string, unknown> } {
  const line = d.log().split('\n').find((l) => l.includes('"msg":"starting flanneld-ts"'));
  if (!line) throw new Error(`no start-up line in ${d.logFile}:\n${d.log()}`);
  return (JSON.parse(line) as { options: { etcd: Record<string, unknown> } }).options;
}

async function hasFlannelDevice(host: string): Promise<boolean> {
  const r = await scene.cluster.exec(scene.cluster.member(host).netns, 'ip', ['link', 'show', 'flannel.1']);
  return r.code === 0;
}

/** Stops every daemon of earlier tests and deletes flannel.1, so each test starts from bare hosts even after a failure. */
async function bareHosts(): Promise<void> {
  await scene.stopDaemons('SIGKILL');
  for (const h of HOSTS) await scene.cluster.exec(scene.cluster.member(h).netns, 'ip', ['link', 'del', 'flannel.1']);
}

/** Both daemons ready: one lease per host in etcd, and each host routes the other's subnet through flannel.1. */
async function expectOverlay(byHost: ReadonlyMap<string, DaemonHandle>, leases: string): Promise<void> {
  const subnets = new Map<string, string>();
  for (const [h, d] of byHost) subnets.set(h, subnetOf(readFileSync(d.subnetFile, 'utf8')));
  expect(new Set(subnets.values()).size).toBe(HOSTS.length);
  for (const [i, h] of HOSTS.entries()) {
    const key = `${PREFIX}/subnets/${(subnets.get(h) as string).replace('/', '-')}`;
    expect(leases).toContain(key);
    expect(leases).toContain(`"PublicIP":"10.65.154.${11 + i}"`);
  }
  for (const h of HOSTS) {
    for (const p of HOSTS.filter((x) => x !== h)) {
      const s = subnets.get(p) as string;
      await waitFor(`${h} to route ${p}'s subnet ${s}`, async () => (await scene.kernel(h)).routes.includes(`${s} via ${s.split('/')[0]} onlink`), 10_000);
    }
  }
}


// ---------------------------------------------------------------- set-up

beforeAll(async () => {
  assertPrivateNetns();
  tmp = mkdtempSync(join(tmpdir(), 'flts-pki-'));
  scene = await createScene({ hosts: [...HOSTS] });
  pki = await makePki(tmp, scene.cluster.infraIP);

  tlsEtcd = await startEtcd({
    host: scene.cluster.infraIP,
    netns: scene.cluster.infraNetns,
    tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert },
  });
  await etcdctl(tlsEtcd, tlsCtlFlags(), ['put', `${PREFIX}/config`, CONFIG]);

  authEtcd = await startEtcd({ host: scene.cluster.infraIP, netns: scene.cluster.infraNetns });
  await etcdctl(authEtcd, [], ['put', `${PREFIX}/config`, CONFIG]);
  await etcdctl(authEtcd, [], ['user', 'add', `root:${PASSWORD}`]);
  await etcdctl(authEtcd, [], ['role', 'add', 'root']);
  await etcdctl(authEtcd, [], ['user', 'grant-role', 'root', 'root']);
  await etcdctl(authEtcd, [], ['auth', 'enable']);
}, 90_000);

sceneLifecycle(() => scene);
afterAll(async () => {
  await tlsEtcd?.cleanup().catch(() => undefined);
  await authEtcd?.cleanup().catch(() => undefined);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

// ---------------------------------------------------------------- TLS

describe('etcd over TLS with client certificates', () => {
  it('etcd really demands a client certificate from our CA', async () => {
    const etcd = tlsEtcd as EtcdProcess;
    expect(etcd.endpoint).toMatch(/^https:\/\/10\.65\.154\.2:\d+$/);
    expect(await etcdctl(etcd, tlsCtlFlags(), ['get', '--print-value-only', `${PREFIX}/config`])).toBe(`${CONFIG}\n`);
    await expect(etcdctl(etcd, ['--cacert', pki.caCert, '--cert', pki.rogueClientCert, '--key', pki.rogueClientKey, '--command-timeout=3s'], ['get', `${PREFIX}/config`])).rejects.toThrow();
  }, 30_000);

  it('a client certificate from another CA, or an untrusted server, gives one warning naming the endpoint; the daemon keeps retrying and touches nothing', async () => {
    const etcd = tlsEtcd as EtcdProcess;
    await bareHosts();
    const rogueClient = startDaemon('h1', etcd.endpoint, subnetFileFor('tls-bad', 'h1'), ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.rogueClientCert, '--etcd-keyfile', pki.rogueClientKey]);
    const untrustedServer = startDaemon('h2', etcd.endpoint, subnetFileFor('tls-bad', 'h2'), ['--etcd-cafile', pki.rogueCaCert, '--etcd-certfile', pki.clientCert, '--etcd-keyfile', pki.clientKey]);
    const problem = `failed to read network config ${PREFIX}/config`;
    for (const d of [rogueClient, untrustedServer]) {
      await waitFor(`${d.host.name} to report that it cannot read the config`, () => {
        if (!alive(d)) throw new Error(`daemon on ${d.host.name} exited:\n${d.log()}`);
        return linesWith(d, problem).length > 0;
      }, 20_000);
    }
    await new Promise((r) => setTimeout(r, RETRY_WATCH_MS));
    for (const d of [rogueClient, untrustedServer]) {
      const lines = linesWith(d, problem);
      // Logged once for the whole outage, not once per retry; one JSON line that names the endpoint.
      expect(lines, d.log()).toHaveLength(1);
      const entry = JSON.parse(lines[0] as string) as { level: number; msg: string };
      expect(entry.level).toBe(40);
      expect(entry.msg).toContain(`at ${etcd.endpoint}`);
      expect(entry.msg).toMatch(d === rogueClient ? /bad certificate/ : /unable to verify the first certificate/);
      // One line also for a human reading `journalctl`: no newline from the TLS library inside the message (soft: the rest still runs).
      expect.soft(entry.msg).not.toContain('\n');
      expect(alive(d)).toBe(true);
      expect(d.log()).not.toMatch(/"msg":"ready: /);
      expect(await hasFlannelDevice(d.host.name)).toBe(false);
      expect(existsSync(d.subnetFile)).toBe(false);
    }
    expect(await etcdctl(etcd, tlsCtlFlags(), ['get', '--prefix', '--keys-only', `${PREFIX}/subnets`])).toBe('');
    // SIGTERM while retrying is a clean stop.
    expect(await rogueClient.stop('SIGTERM')).toBe(0);
    expect(await untrustedServer.stop('SIGTERM')).toBe(0);
  }, 60_000);

  it('daemons with the right certificates get leases and program each other; subnet.env is 0644 in a 0755 directory, replaced atomically', async () => {
    const etcd = tlsEtcd as EtcdProcess;
    await bareHosts();
    // h2 has a subnet.env from an earlier run: 0600, another MTU. It is read (the subnet is reused), then replaced.
    const stale = subnetFileFor('tls', 'h2');
    mkdirSync(dirname(stale), { recursive: true, mode: 0o755 });
    writeFileSync(stale, 'FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.77.1/24\nFLANNEL_MTU=9000\nFLANNEL_IPMASQ=false\n', { mode: 0o600 });
    const staleInode = statSync(stale).ino;
    const tlsArgs = ['--etcd-cafile', pki.caCert, '--etcd-certfile', pki.clientCert, '--etcd-keyfile', pki.clientKey];
    const byHost = new Map<string, DaemonHandle>();
    // h2 first: a node reusing its previous subnet has no claim on it until it writes its lease, and h1
    // (which picks at random among the first 100 free subnets) could otherwise take 10.7.77.0 first.
    for (const h of ['h2', 'h1']) {
      byHost.set(h, startDaemon(h, etcd.endpoint, subnetFileFor('tls', h), tlsArgs));
      await waitReady(byHost.get(h) as DaemonHandle);
    }

    const leases = await etcdctl(etcd, tlsCtlFlags(), ['get', '--prefix', `${PREFIX}/subnets`]);
    await expectOverlay(byHost, leases);

    for (const d of byHost.values()) {
      expect(statSync(d.subnetFile).mode & 0o777).toBe(0o644);
      expect(statSync(dirname(d.subnetFile)).mode & 0o777).toBe(0o755);
      // Written through a temp file and rename: nothing else is left in the directory.
      expect(readdirSync(dirname(d.subnetFile))).toEqual(['subnet.env']);
      expect(readFileSync(d.subnetFile, 'utf8')).toMatch(/^FLANNEL_NETWORK=10\.7\.0\.0\/16\nFLANNEL_SUBNET=10\.7\.\d+\.1\/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$/);
      // The start-up line shows the TLS file paths, never what is in them.
      expect(startupOptions(d).etcd).toMatchObject({ caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey });
      expect(d.log()).not.toContain('PRIVATE KEY');
      const keyBody = readFileSync(pki.clientKey, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join('');
      expect(d.log()).not.toContain(keyBody.slice(0, 40));
    }
    const h2File = (byHost.get('h2') as DaemonHandle).subnetFile;
    expect(subnetOf(readFileSync(h2File, 'utf8'))).toBe('10.7.77.0/24');
    expect(statSync(h2File).ino).not.toBe(staleInode);

    for (const d of byHost.values()) expect(await d.stop('SIGTERM')).toBe(0);
  }, 60_000);
});

// ---------------------------------------------------------------- username / password

describe('etcd with username and password', () => {
  it('etcd really has auth enabled', async () => {
    const etcd = authEtcd as EtcdProcess;
    await expect(etcdctl(etcd, [], ['get', `${PREFIX}/config`])).rejects.toThrow(/user name is empty|permission denied/);
    expect(await etcdctl(etcd, ['--user', `root:${PASSWORD}`], ['get', '--print-value-only', `${PREFIX}/config`])).toBe(`${CONFIG}\n`);
  }, 30_000);

  it('a wrong password (flag or FLANNELD_ETCD_PASSWORD) gives "etcd rejected the credentials for user root at <endpoint>" once, keeps retrying, and is never logged', async () => {
    const etcd = authEtcd as EtcdProcess;
    await bareHosts();
    const byFlag = startDaemon('h1', etcd.endpoint, subnetFileFor('auth-bad', 'h1'), ['--etcd-username', 'root', '--etcd-password', WRONG_PASSWORD]);
    const byEnv = startDaemon('h2', etcd.endpoint, subnetFileFor('auth-bad', 'h2'), ['--etcd-username', 'root'], { env: { FLANNELD_ETCD_PASSWORD: WRONG_PASSWORD } });
    const problem = `etcd rejected the credentials for user root at ${etcd.endpoint}`;
    for (const d of [byFlag, byEnv]) {
      await waitFor(`${d.host.name} to report rejected credentials`, () => {
        if (!alive(d)) throw new Error(`daemon on ${d.host.name} exited:\n${d.log()}`);
        return linesWith(d, problem).length > 0;
      }, 20_000);
    }
    await new Promise((r) => setTimeout(r, RETRY_WATCH_MS));
    for (const d of [byFlag, byEnv]) {
      expect(linesWith(d, problem), d.log()).toHaveLength(1);
      expect(alive(d)).toBe(true);
      expect(await hasFlannelDevice(d.host.name)).toBe(false);
      expect(existsSync(d.subnetFile)).toBe(false);
      expect(startupOptions(d).etcd).toMatchObject({ username: 'root', password: '[redacted]' });
      expect(d.log()).not.toContain(WRONG_PASSWORD);
    }
    expect(await byFlag.stop('SIGTERM')).toBe(0);
    expect(await byEnv.stop('SIGTERM')).toBe(0);
    for (const d of [byFlag, byEnv]) expect(d.log()).not.toContain(WRONG_PASSWORD);
  }, 60_000);

  it('the right password (flag on h1, FLANNELD_ETCD_PASSWORD under umask 077 on h2) works and is never logged', async () => {
    const etcd = authEtcd as EtcdProcess;
    await bareHosts();
    const byHost = new Map<string, DaemonHandle>();
    byHost.set('h1', startDaemon('h1', etcd.endpoint, subnetFileFor('auth', 'h1'), ['--etcd-username', 'root', '--etcd-password', PASSWORD]));
    byHost.set('h2', startDaemon('h2', etcd.endpoint, subnetFileFor('auth', 'h2'), ['--etcd-username', 'root'], { env: { FLANNELD_ETCD_PASSWORD: PASSWORD }, umask: '077' }));
    await Promise.all([...byHost.values()].map((d) => waitReady(d)));

    const leases = await etcdctl(etcd, ['--user', `root:${PASSWORD}`], ['get', '--prefix', `${PREFIX}/subnets`]);
    await expectOverlay(byHost, leases);

    for (const d of byHost.values()) {
      expect(startupOptions(d).etcd).toMatchObject({ username: 'root', password: '[redacted]' });
      expect(d.log()).not.toContain(PASSWORD);
      // The file mode does not depend on the daemon's umask.
      expect(statSync(d.subnetFile).mode & 0o777).toBe(0o644);
      expect(readdirSync(dirname(d.subnetFile))).toEqual(['subnet.env']);
    }
    for (const d of byHost.values()) expect(await d.stop('SIGTERM')).toBe(0);
    // Including whatever the daemons logged on the way out.
    for (const d of byHost.values()) expect(d.log()).not.toContain(PASSWORD);
  }, 60_000);

  it('`flanneld-ts status` never shows the password (right or wrong, flag or environment, text or JSON)', async () => {
    const etcd = authEtcd as EtcdProcess;
    const ns = scene.cluster.member('h1').netns;
    const status = (args: readonly string[], env?: NodeJS.ProcessEnv) =>
      scene.cluster.exec(ns, process.execPath, [BIN, 'status', '--etcd-endpoints', etcd.endpoint, '--etcd-username', 'root', '--iface', 'eth0', ...args], env ? { env } : {});
    const right = [
      await status(['--etcd-password', PASSWORD]),
      await status(['--etcd-password', PASSWORD, '--json']),
      await status([], { FLANNELD_ETCD_PASSWORD: PASSWORD }),
      await status(['--json'], { FLANNELD_ETCD_PASSWORD: PASSWORD }),
    ];
    const wrong = [await status(['--etcd-password', WRONG_PASSWORD]), await status(['--json'], { FLANNELD_ETCD_PASSWORD: WRONG_PASSWORD })];
    for (const r of right) {
      const out = r.stdout + r.stderr;
      // It did read etcd (0 healthy, 1 problems; not 2 usage, not 3 unreachable).
      expect([0, 1], out).toContain(r.code);
      expect(out, out).not.toContain(PASSWORD);
    }
    for (const r of wrong) {
      const out = r.stdout + r.stderr;
      expect(r.code, out).toBe(3);
      expect(out).toContain(`etcd rejected the credentials for user root at ${etcd.endpoint}`);
      expect(out, out).not.toContain(WRONG_PASSWORD);
    }
  }, 60_000);

  it('--help never shows the password, from the flag or from FLANNELD_ETCD_PASSWORD', async () => {
    const byFlag = await run(process.execPath, [BIN, '--etcd-password', PASSWORD, '--help']);
    expect(byFlag.code).toBe(0);
    expect(byFlag.stdout).toContain('--etcd-endpoints');
    expect(byFlag.stdout + byFlag.stderr).not.toContain(PASSWORD);
    const byEnv = await run(process.execPath, [BIN, '--help'], { env: { FLANNELD_ETCD_PASSWORD: PASSWORD } });
    expect(byEnv.code).toBe(0);
    expect(byEnv.stdout).toContain('--etcd-password');
    expect(byEnv.stdout + byEnv.stderr).not.toContain(PASSWORD);
  }, 30_000);

  it('`flanneld-ts status --help` never shows the password from FLANNELD_ETCD_PASSWORD', async () => {
    const r = await run(process.execPath, [BIN, 'status', '--help'], { env: { FLANNELD_ETCD_PASSWORD: PASSWORD } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--etcd-password');
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  }, 30_000);
});
