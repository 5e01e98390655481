/**
 * The systemd deployment (systemd/): the unit as systemd itself reads it
 * (`systemd-analyze verify` and `security`), the install script run into a
 * staging root, the example environment file against the real flags, and the
 * readiness protocol: READY=1 really reaches a NOTIFY_SOCKET, from
 * src/util/sd-notify.ts and from bin/flanneld-ts once its peers are programmed.
 * The notify socket is a python3 stand-in for systemd's, which also answers
 * systemd-notify's BARRIER=1 the way systemd does (by closing the passed fd).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdAgent } from '../../src/bench/etcd-agent-client';
import { parseDeviceDump, verifyDump } from '../../src/bench/kernel-view';
import { BENCH_CONFIG, leaseItem, peerRange } from '../../src/bench/peers';
import { parseCommandLine } from '../../src/cli';
import { run } from '../../src/testbed/exec';
import { createScene, PREFIX, Scene, subnetOf, waitFor, waitReady } from '../../src/testbed/scene';
import { createLogger } from '../../src/util/log';
import { notifySystemd } from '../../src/util/sd-notify';
import { inHostNamespaces } from '../helpers/host-namespaces';
import { assertPrivateNetns } from '../helpers/private-netns';

const ROOT = resolve(__dirname, '..', '..');
const UNIT = join(ROOT, 'systemd', 'flanneld-ts.service');
const ENV_EXAMPLE = join(ROOT, 'systemd', 'flanneld-ts.env.example');
const INSTALL = join(ROOT, 'systemd', 'install.sh');
const EXEC_START = '/usr/local/bin/flanneld-ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flts-systemd-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `systemd-analyze verify` output lines, minus the one about ExecStart when the program is not installed here. */
async function verify(unitPath: string): Promise<string[]> {
  const r = await run('systemd-analyze', ['verify', '--man=no', unitPath]);
  const lines = (r.stdout + r.stderr).split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.filter((l) => !(l.endsWith(`Command ${EXEC_START} is not executable: No such file or directory`) && !existsSync(EXEC_START)));
}

/** [Section] → key → values (a key may repeat, e.g. After=). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = new Map();
      sections.set(sec[1] as string, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`unit line outside a section or without "=": ${line}`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

describe('systemd/flanneld-ts.service', () => {
  const unit = parseUnit(readFileSync(UNIT, 'utf8'));
  const service = unit.get('Service') as Map<string, string[]>;
  const one = (key: string): string | undefined => service.get(key)?.at(-1);

  it('passes systemd-analyze verify with nothing to say', async () => {
    expect(await verify(UNIT)).toEqual([]);
  });

  it('is really checked: a misspelt key and a bad value are reported', async () => {
    const bad = join(tempDir(), 'flanneld-ts.service');
    writeFileSync(bad, readFileSync(UNIT, 'utf8').replace(/^ProtectSystem=strict$/m, 'ProtectSytem=strict').replace(/^Restart=always$/m, 'Restart=sometimes'));
    const out = (await verify(bad)).join('\n');
    expect(out).toContain("Unknown key 'ProtectSytem'");
    expect(out).toContain('Failed to parse service restart specifier, ignoring: sometimes');
  });

  it('is hardened: systemd-analyze security rates its exposure at most 3.5 of 10', async () => {
    const r = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT]);
    const m = /Overall exposure level for flanneld-ts\.service: (\d+\.\d)/.exec(r.stdout + r.stderr);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(Number(m?.[1])).toBeLessThanOrEqual(3.5);
  });

  it('waits for the network and for a local etcd without requiring one', () => {
    const u = unit.get('Unit') as Map<string, string[]>;
    const words = (k: string): string[] => (u.get(k) ?? []).flatMap((v) => v.split(/\s+/));
    expect(words('After')).toEqual(expect.arrayContaining(['network-online.target', 'etcd.service']));
    expect(words('Wants')).toContain('network-online.target');
    expect([...words('Requires'), ...words('Wants'), ...words('BindsTo')]).not.toContain('etcd.service');
    expect(Number(u.get('StartLimitBurst')?.[0])).toBeGreaterThan(1);
  });

  it('signals readiness with Type=notify, accepting it from systemd-notify (a child process)', () => {
    expect(one('Type')).toBe('notify');
    expect(one('NotifyAccess')).toBe('all');
    expect(one('ExecStart')).toBe(EXEC_START);
    expect(service.get('EnvironmentFile')).toEqual(['-/etc/default/flanneld-ts']);
  });

  it('restarts always, with a pause, but not on a usage error', () => {
    expect(one('Restart')).toBe('always');
    expect(Number.parseFloat(one('RestartSec') ?? '0')).toBeGreaterThan(0);
    expect(one('RestartPreventExitStatus')).toBe('2');
  });

  it('keeps only CAP_NET_ADMIN and CAP_NET_RAW, and a read-only system but for /run/flannel, the xtables lock and accept_ra', () => {
    expect(one('CapabilityBoundingSet')?.split(/\s+/).sort()).toEqual(['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('ProtectHome')).toBe('yes');
    expect(one('ReadWritePaths')?.split(/\s+/)).toEqual(expect.arrayContaining(['/run/flannel', '-/run/xtables.lock', '-/proc/sys/net/ipv6/conf']));
    expect(one('RuntimeDirectory')).toBe('flannel');
    expect(one('RuntimeDirectoryPreserve')).toBe('yes'); // subnet.env survives a restart
    expect(one('RestrictAddressFamilies')?.split(/\s+/)).toEqual(expect.arrayContaining(['AF_NETLINK', 'AF_UNIX', 'AF_INET']));
    expect(service.has('PrivateNetwork')).toBe(false);
    expect(service.has('MemoryDenyWriteExecute')).toBe(false); // V8's JIT
  });
});

describe('systemd/flanneld-ts.env.example', () => {
  const text = readFileSync(ENV_EXAMPLE, 'utf8');
  const assignments = [...text.matchAll(/^#?(FLANNELD_[A-Z0-9_]+)=(.*)$/gm)].map((m) => ({ key: m[1] as string, value: m[2] as string, active: !(m[0] as string).startsWith('#') }));

  it('names only real flags', async () => {
    const help = await run(process.execPath, [join(ROOT, 'bin', 'flanneld-ts'), '--help']);
    const flags = new Set([...help.stdout.matchAll(/^\s+--([a-z0-9-]+)/gm)].map((m) => m[1]));
    expect(assignments.length).toBeGreaterThan(10);
    const unknown = assignments.map((a) => a.key).filter((k) => !flags.has(k.slice('FLANNELD_'.length).toLowerCase().replace(/_/g, '-')));
    expect(unknown, `no such flag for ${unknown.join(', ')}`).toEqual([]);
  });

  it('parses: the active settings are a valid command line', () => {
    const env = Object.fromEntries(assignments.filter((a) => a.active).map((a) => [a.key, a.value]));
    expect(Object.keys(env)).toEqual(['FLANNELD_ETCD_ENDPOINTS']);
    const cmd = parseCommandLine([], env);
    expect(cmd.command).toBe('run');
  });
});

describe('systemd/install.sh into a staging root', () => {
  let dest: string;
  let firstRun: { code: number; out: string };
  // npm ci --omit=dev needs the registry (or a complete cache): run where the machine's network is.
  const install = (): Promise<{ code: number; stdout: string; stderr: string }> => {
    const argv = [...inHostNamespaces(['net']), 'bash', INSTALL];
    return run(argv[0] as string, argv.slice(1), { env: { DESTDIR: dest }, timeoutMs: 170_000 });
  };

  beforeAll(async () => {
    dest = tempDir();
    const r = await install();
    firstRun = { code: r.code, out: r.stdout + r.stderr };
  }, 180_000);

  it('installs the program with production dependencies only, a wrapper, the unit and the example settings', async () => {
    expect(firstRun.code, firstRun.out).toBe(0);
    const opt = join(dest, 'opt', 'flanneld-ts');
    const modules = readdirSync(join(opt, 'node_modules'));
    expect(modules).toEqual(expect.arrayContaining(['etcd3', 'netlink', 'pino', 'yargs']));
    for (const dev of ['typescript', 'vitest', 'kubernetes-models']) expect(modules).not.toContain(dev);
    const version = await run(process.execPath, [join(opt, 'bin', 'flanneld-ts'), '--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const wrapper = readFileSync(join(dest, 'usr', 'local', 'bin', 'flanneld-ts'), 'utf8');
    expect(wrapper).toMatch(/^#!\/bin\/sh\n/);
    // The node found at install time goes first on PATH; the program's shebang (with its Node flags) runs it.
    expect(wrapper).toMatch(/\nPATH=\/\S+:\$PATH exec \/opt\/flanneld-ts\/bin\/flanneld-ts "\$@"\n$/);
    expect(statSync(join(dest, 'usr', 'local', 'bin', 'flanneld-ts')).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(dest, 'etc', 'systemd', 'system', 'flanneld-ts.service'), 'utf8')).toBe(readFileSync(UNIT, 'utf8'));
    expect(readFileSync(join(dest, 'etc', 'default', 'flanneld-ts'), 'utf8')).toBe(readFileSync(ENV_EXAMPLE, 'utf8'));
    expect(statSync(join(dest, 'etc', 'default', 'flanneld-ts')).mode & 0o777).toBe(0o600);
  });

  it('refuses a Node.js older than 24, the supported runtime, and installs nothing', async () => {
    const bin = tempDir();
    const target = tempDir();
    // A stand-in for an end-of-life node first on PATH.
    writeFileSync(join(bin, 'node'), '#!/bin/sh\ncase "$1" in --version) echo v20.20.2 ;; *) printf 20 ;; esac\n', { mode: 0o755 });
    const r = await run('bash', [INSTALL], { env: { DESTDIR: target, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^install: flanneld-ts runs on Node\.js 24 \(the supported runtime\); \S+ is v20\.20\.2: install Node\.js 24\n$/);
    expect(readdirSync(target)).toEqual([]);
  });

  it('is idempotent and keeps settings the operator changed', async () => {
    const settings = join(dest, 'etc', 'default', 'flanneld-ts');
    writeFileSync(settings, 'FLANNELD_ETCD_ENDPOINTS=http://10.0.0.5:2379\n');
    const again = await install();
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(readFileSync(settings, 'utf8')).toBe('FLANNELD_ETCD_ENDPOINTS=http://10.0.0.5:2379\n');
    expect(readdirSync(join(dest, 'opt'))).toEqual(['flanneld-ts']); // no staging leftovers
    const version = await run(process.execPath, [join(dest, 'opt', 'flanneld-ts', 'bin', 'flanneld-ts'), '--version']);
    expect(version.code).toBe(0);
  }, 180_000);
});

/** A stand-in for systemd's notify socket: prints one JSON line per datagram and closes passed fds (BARRIER=1). */
const NOTIFY_LISTENER = `
import array, json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(12))
    fds, pid = [], None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            fds.extend(a)
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    for fd in fds:
        os.close(fd)  # what systemd does with a barrier fd: the sender then sees POLLHUP and returns
    print(json.dumps({"message": msg.decode(), "fds": len(fds), "pid": pid}), flush=True)
`;

interface Datagram {
  readonly message: string;
  readonly fds: number;
  readonly pid: number | null;
}

async function startNotifySocket(): Promise<{ path: string; received: Datagram[]; child: ChildProcess }> {
  const path = join(tempDir(), 'notify.sock');
  const child = spawn('python3', ['-c', NOTIFY_LISTENER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const received: Datagram[] = [];
  let listening = false;
  let buf = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as Datagram & { listening?: boolean };
      buf = buf.slice(nl + 1);
      if (line.listening) listening = true;
      else received.push(line);
    }
  });
  await waitFor('the python3 notify socket', () => listening, 10_000);
  return { path, received, child };
}

/** The KEY=value lines of one notify message. */
function fields(message: string): Record<string, string> {
  return Object.fromEntries(message.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('readiness over NOTIFY_SOCKET', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill();
  });

  it('src/util/sd-notify.ts delivers READY=1, MAINPID and STATUS, and waits for systemd to take them', async () => {
    const sock = await startNotifySocket();
    children.push(sock.child);
    const logged: string[] = [];
    const log = createLogger('warn', new Writable({ write: (chunk, _enc, cb) => (logged.push(String(chunk)), cb()) }));
    const t0 = Date.now();
    await notifySystemd({ ready: true, status: 'subnet 10.7.5.0/24, 2 peers programmed' }, log, { ...process.env, NOTIFY_SOCKET: sock.path });
    const took = Date.now() - t0;
    expect(logged).toEqual([]); // systemd-notify succeeded
    const ready = sock.received.find((d) => fields(d.message).READY === '1');
    expect(ready, JSON.stringify(sock.received)).toBeDefined();
    expect(fields(ready?.message ?? '')).toEqual({ READY: '1', STATUS: 'subnet 10.7.5.0/24, 2 peers programmed', MAINPID: String(process.pid) });
    // systemd-notify (systemd >= 246) waits until the manager has read the message (BARRIER=1 + an fd):
    // so the sender is still alive while systemd attributes the message to the unit.
    const barrier = sock.received.find((d) => fields(d.message).BARRIER === '1');
    expect(barrier?.fds).toBe(1);
    expect(took).toBeLessThan(3000);
  });

  it('comes from systemd-notify\'s own pid under the unit\'s capabilities: hence NotifyAccess=all', async () => {
    // Without CAP_SYS_ADMIN systemd-notify cannot send the daemon's pid as its credentials
    // (it falls back to its own), so systemd accepts the message only with NotifyAccess=all.
    const sock = await startNotifySocket();
    children.push(sock.child);
    const r = await run('setpriv', ['--bounding-set=-all,+net_admin,+net_raw', 'systemd-notify', `--pid=${process.pid}`, '--ready'], { env: { NOTIFY_SOCKET: sock.path } });
    expect(r.code, r.stderr).toBe(0);
    const ready = sock.received.find((d) => fields(d.message).READY === '1');
    expect(fields(ready?.message ?? '').MAINPID).toBe(String(process.pid));
    expect(ready?.pid).not.toBe(process.pid);
  });

  it('sends nothing without NOTIFY_SOCKET', async () => {
    const sock = await startNotifySocket();
    children.push(sock.child);
    const env = { ...process.env };
    delete env.NOTIFY_SOCKET;
    await notifySystemd({ ready: true }, createLogger('silent'), env);
    await new Promise((r) => setTimeout(r, 300));
    expect(sock.received).toEqual([]);
  });
});

/**
 * Readiness judged at the instant it is claimed: a stand-in notify socket that, on READY=1,
 * and a /readyz poller that, on its first 200, each freeze the daemon (SIGSTOP), snapshot
 * flannel.1 (`ip -j route`, `ip -j neigh`, `bridge -j fdb`) and subnet.env, then let it go
 * (SIGCONT). Run inside the host's namespace; the daemon's pid arrives on stdin.
 */
const READINESS_SNAPSHOTTER = `
import json, os, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request
sock_path, url, subnet_file = sys.argv[1:4]
pid_ready = threading.Event()
pid = [0]
lock = threading.Lock()
def out(obj):
    with lock:
        print(json.dumps(obj), flush=True)
def snapshot(trigger, extra):
    os.kill(pid[0], signal.SIGSTOP)
    try:
        run = lambda *a: subprocess.run(list(a), capture_output=True, text=True).stdout
        snap = {"trigger": trigger, "routes": run("ip", "-j", "route", "show", "dev", "flannel.1"),
                "neighbors": run("ip", "-j", "neigh", "show", "dev", "flannel.1"),
                "fdb": run("bridge", "-j", "fdb", "show", "dev", "flannel.1"),
                "subnetEnv": open(subnet_file).read() if os.path.exists(subnet_file) else None}
    finally:
        os.kill(pid[0], signal.SIGCONT)
    snap.update(extra)
    out(snap)
def notify():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    out({"listening": True})
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        text = msg.decode()
        if "READY=1" in text.split("\\n"):
            pid_ready.wait()
            snapshot("READY=1", {"message": text})
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for i in range(0, len(data) - len(data) % 4, 4):
                    os.close(int.from_bytes(data[i:i + 4], sys.byteorder))
def readyz():
    pid_ready.wait()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    snapshot("readyz", {"body": r.read().decode()})
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.005)
threading.Thread(target=notify, daemon=True).start()
threading.Thread(target=readyz, daemon=True).start()
pid[0] = int(sys.stdin.readline())
pid_ready.set()
threading.Event().wait()
`;

interface ReadinessSnapshot {
  readonly trigger: 'READY=1' | 'readyz';
  readonly routes: string;
  readonly neighbors: string;
  readonly fdb: string;
  readonly subnetEnv: string | null;
  readonly message?: string;
  readonly body?: string;
}

describe('bin/flanneld-ts under a NOTIFY_SOCKET', () => {
  let scene: Scene | undefined;
  let agent: EtcdAgent | undefined;
  afterAll(async () => {
    agent?.close();
    await scene?.destroy();
  }, 60_000);

  it('tells READY=1 (with its own MAINPID) and answers /readyz 200 only when flannel.1 and subnet.env are complete at that instant', async () => {
    assertPrivateNetns();
    scene = await createScene({ hosts: ['h1'] });
    await scene.putConfig(BENCH_CONFIG);
    // Enough peers that programming them takes a while: an early signal would find entries missing.
    const peers = peerRange(300, undefined);
    agent = await EtcdAgent.start(scene.cluster, scene.cluster.infraNetns, scene.endpoint, join(ROOT, 'dist', 'bench', 'etcd-agent.js'));
    await agent.put(peers.map((p) => leaseItem(PREFIX, p)));
    const sockPath = join(tempDir(), 'notify.sock');
    const subnetFile = join(tempDir(), 'subnet.env');
    const port = 9181;
    const snapshotter = scene.cluster.spawn(scene.cluster.member('h1').netns, 'python3', ['-c', READINESS_SNAPSHOTTER, sockPath, `http://127.0.0.1:${port}/readyz`, subnetFile], { stdio: ['pipe', 'pipe', 'inherit'] });
    const snaps: ReadinessSnapshot[] = [];
    let listening = false;
    createInterface({ input: snapshotter.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const v = JSON.parse(line) as ReadinessSnapshot & { listening?: boolean };
      if (v.listening) listening = true;
      else snaps.push(v);
    });
    try {
      await waitFor('the snapshotting notify socket', () => listening, 10_000);
      const d = scene.startDaemon('h1', ['--healthz-ip', '127.0.0.1', '--healthz-port', String(port)], { env: { NOTIFY_SOCKET: sockPath }, subnetFile });
      snapshotter.stdin?.write(`${d.process.pid}\n`);
      await waitReady(d, 60_000);
      await waitFor('both snapshots', () => snaps.length === 2, 20_000);
      const subnet = subnetOf(readFileSync(d.subnetFile, 'utf8'));
      for (const snap of snaps) {
        const what = `at ${snap.trigger}`;
        expect(snap.subnetEnv, what).toBe(readFileSync(d.subnetFile, 'utf8'));
        const v = verifyDump(parseDeviceDump(snap.routes, snap.neighbors, snap.fdb), peers);
        expect(v.problems, what).toEqual([]);
        expect(v.routes, what).toBe(300);
      }
      const ready = snaps.find((s) => s.trigger === 'READY=1');
      const f = fields(ready?.message ?? '');
      expect(f.MAINPID).toBe(String(d.process.pid)); // `ip netns exec` execs in place: the daemon's own pid
      expect(f.STATUS).toContain(subnet);
      expect(f.STATUS).toMatch(/\b300 peers programmed/);
      const readyz = JSON.parse(snaps.find((s) => s.trigger === 'readyz')?.body ?? '{}') as { ready?: boolean; subnet?: string; peers?: number };
      expect(readyz).toMatchObject({ ready: true, subnet, peers: 300 });
    } finally {
      snapshotter.kill();
    }
  }, 120_000);
});
