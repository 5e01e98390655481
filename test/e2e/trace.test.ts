/**
 * `flanneld-ts trace` for real: two namespace hosts with a real etcd, the
 * daemons, and pods wired by the CNI bridge plugin. trace runs inside h1's
 * namespace as the daemon does. A healthy pair first (every hop ok, and the
 * objects it names equal what iproute2 reports), then each fault injected in
 * turn and undone: exit 1 with the right hop and cause.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { TraceReport } from '../../src/trace/report';
import { addPod, Pod } from '../../src/testbed/netns-cluster';
import { BIN, createScene, DaemonHandle, Scene, waitReady } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';

const TRACE_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/trace.schema.json'), 'utf8')) as JsonSchema;
const CONFIG = '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';

let scene: Scene;
const daemons = new Map<string, DaemonHandle>();
const pods = new Map<string, Pod>();

const ns = (h: string): string => scene.cluster.member(h).netns;

async function sh(host: string, cmd: string, args: string[]): Promise<string> {
  const r = await scene.cluster.exec(ns(host), cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${host}: ${r.stderr}`);
  return r.stdout;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** bin/flanneld-ts trace inside h1 (like the daemon), against the scene's etcd and h1's subnet file. */
async function trace(args: readonly string[]): Promise<Run> {
  const file = (daemons.get('h1') as DaemonHandle).subnetFile;
  return scene.cluster.exec(ns('h1'), process.execPath, [BIN, 'trace', '--etcd-endpoints', scene.endpoint, '--subnet-file', file, ...args], { timeoutMs: 60_000 });
}

async function traceJson(args: readonly string[] = []): Promise<TraceReport & { run: Run }> {
  const p1 = pods.get('h1') as Pod;
  const p2 = pods.get('h2') as Pod;
  const run = await trace([args[0] ?? p2.ip, '--from', p1.ip, '--json', '--count', '2', ...args.slice(1)]);
  let report: TraceReport;
  try {
    report = JSON.parse(run.stdout) as TraceReport;
  } catch {
    throw new Error(`trace printed no JSON (exit ${run.code}): ${run.stdout}${run.stderr}`);
  }
  expect(schemaErrors(TRACE_SCHEMA, report)).toEqual([]);
  expect(run.code).toBe(report.exitCode);
  return { ...report, run };
}

/**
 * bin/flanneld-ts trace --listen inside h2, the node of the destination pod, in
 * the background: `listening` resolves once it says every capture point listens.
 */
function listen(args: readonly string[]): { listening: Promise<void>; done: Promise<Run> } {
  const file = (daemons.get('h2') as DaemonHandle).subnetFile;
  const argv = [BIN, 'trace', (pods.get('h2') as Pod).ip, '--listen', '--from', (pods.get('h1') as Pod).ip, '--etcd-endpoints', scene.endpoint, '--subnet-file', file, ...args];
  const child = scene.cluster.spawn(ns('h2'), process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const done = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  const listening = new Promise<void>((resolve, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (/^listening on /m.test(stderr)) resolve();
    });
    void done.then((r) => reject(new Error(`trace --listen ended before listening (exit ${r.code}): ${r.stderr}${r.stdout}`)));
  });
  return { listening, done };
}

async function listenJson(run: Promise<Run>): Promise<TraceReport & { run: Run }> {
  const r = await run;
  let report: TraceReport;
  try {
    report = JSON.parse(r.stdout) as TraceReport;
  } catch {
    throw new Error(`trace --listen printed no JSON (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
  expect(schemaErrors(TRACE_SCHEMA, report)).toEqual([]);
  expect(r.code).toBe(report.exitCode);
  return { ...report, run: r };
}

async function restartDaemon(host: string): Promise<void> {
  const d = scene.startDaemon(host);
  daemons.set(host, d);
  await waitReady(d);
}

const linkJson = async (host: string, dev: string, podNs?: string): Promise<{ ifindex: number; address: string; mtu: number; link_index?: number }> => {
  const out = podNs ? (await scene.cluster.exec(podNs, 'ip', ['-j', 'link', 'show', dev])).stdout : await sh(host, 'ip', ['-j', 'link', 'show', dev]);
  return (JSON.parse(out) as Array<{ ifindex: number; address: string; mtu: number; link_index?: number }>)[0] as { ifindex: number; address: string; mtu: number };
};

beforeAll(async () => {
  assertPrivateNetns();
  scene = await createScene({ hosts: ['h1', 'h2'] });
  await scene.putConfig(CONFIG);
  for (const h of ['h1', 'h2']) daemons.set(h, scene.startDaemon(h));
  await Promise.all([...daemons.values()].map((d) => waitReady(d)));
  for (const h of ['h1', 'h2']) pods.set(h, await addPod(scene.cluster, h, { name: 'pod', subnetEnvPath: (daemons.get(h) as DaemonHandle).subnetFile, cniDataDir: `${scene.workDir}/cni` }));
}, 90_000);

sceneLifecycle(() => scene);

describe('trace between two pods on a healthy overlay', () => {
  it('every hop is ok, and the objects it names are the ones iproute2 reports', async () => {
    const r = await traceJson();
    expect(r.problems).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.hops.map((h) => h.kind)).toEqual(['pod', 'veth', 'bridge', 'route', 'vxlan', 'underlay', 'remote']);
    const p1 = pods.get('h1') as Pod;
    const [pod, veth, bridge, , vxlan, underlay] = r.hops;
    const eth0 = await linkJson('h1', 'eth0', p1.netns);
    expect(pod?.interface).toMatchObject({ name: 'eth0', index: eth0.ifindex, mac: eth0.address, mtu: eth0.mtu, addresses: [`${p1.ip}/24`], netns: p1.netns });
    const hostVeth = await linkJson('h1', `${veth?.interface?.name}`);
    expect(hostVeth.ifindex).toBe(eth0.link_index);
    expect(veth?.interface).toMatchObject({ index: hostVeth.ifindex, mac: hostVeth.address });
    const cni0 = await linkJson('h1', 'cni0');
    expect(bridge?.interface).toMatchObject({ name: 'cni0', index: cni0.ifindex, mac: cni0.address, addresses: [`${p1.gateway}/24`] });
    const fl1 = await linkJson('h1', 'flannel.1');
    const fl2 = await linkJson('h2', 'flannel.1');
    expect(vxlan?.interface).toMatchObject({ name: 'flannel.1', index: fl1.ifindex, mac: fl1.address, mtu: fl1.mtu });
    const h1eth0 = await linkJson('h1', 'eth0');
    expect(underlay?.interface).toMatchObject({ name: 'eth0', index: h1eth0.ifindex, mac: h1eth0.address });
    expect(r.encapsulation).toMatchObject({ outerSrc: '10.65.154.11', outerDst: '10.65.154.12', udpPort: 8472, vni: 1, innerSrcMAC: fl1.address, innerDstMAC: fl2.address, egress: 'eth0' });
    // The lookups are the kernel's: the same answers as `ip route get`.
    const viaKernel = JSON.parse(await sh('h1', 'ip', ['-j', 'route', 'get', (pods.get('h2') as Pod).ip, 'from', p1.ip, 'iif', 'cni0'])) as Array<{ gateway: string; dev: string }>;
    expect(r.hops[3]?.lookup).toContain(`via ${viaKernel[0]?.gateway} dev ${viaKernel[0]?.dev}`);
    expect(r.probe).toMatchObject({ sent: 2, received: 2 });
  });

  it('--capture: request and reply at every hop; UDP 8472, VNI 1 and the two flannel.1 MACs on eth0', async () => {
    const r = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
    expect(r.exitCode, r.verdict).toBe(0);
    expect(r.capture?.available, r.capture?.reason ?? '').toBe(true);
    expect(r.capture?.lost).toBeNull();
    expect(r.capture?.points.map((p) => [p.kind, p.requests, p.replies])).toEqual([['veth', 2, 2], ['bridge', 2, 2], ['vxlan', 2, 2], ['underlay', 2, 2]]);
    const fl1 = (await linkJson('h1', 'flannel.1')).address;
    const fl2 = (await linkJson('h2', 'flannel.1')).address;
    const eth0 = r.capture?.points[3];
    expect(eth0?.notes).toContain(`VXLAN UDP dport 8472, VNI 1, inner ${fl1} > ${fl2}`);
    expect(eth0?.notes).toContain(`VXLAN UDP dport 8472, VNI 1, inner ${fl1} < ${fl2}`);
    expect(eth0?.packets[0]).toMatch(/ 10\.65\.154\.11\.\d+ > 10\.65\.154\.12\.8472: VXLAN, flags \[I\] \(0x08\), vni 1: /);
  });

  it('--listen on the destination node sees the requests and replies of trace --capture at eth0, flannel.1, cni0 and the pod veth, VNI 1', async () => {
    const l = listen(['--count', '2', '--timeout', '60', '--json']);
    await l.listening;
    const src = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
    expect(src.capture?.lost, src.verdict).toBeNull();
    const r = await listenJson(l.done);
    expect(r.exitCode, r.verdict).toBe(0);
    expect(r.listen?.timedOut).toBe(false);
    const p2 = pods.get('h2') as Pod;
    const podEth0 = await linkJson('h2', 'eth0', p2.netns);
    const hostVeth = (JSON.parse(await sh('h2', 'ip', ['-j', 'link', 'show'])) as Array<{ ifindex: number; ifname: string }>).find((l) => l.ifindex === podEth0.link_index);
    expect(r.hops.map((h) => [h.kind, h.interface?.name])).toEqual([['underlay', 'eth0'], ['vxlan', 'flannel.1'], ['bridge', 'cni0'], ['veth', hostVeth?.ifname]]);
    for (const p of r.capture?.points ?? []) {
      expect(p.requests, p.iface).toBeGreaterThanOrEqual(2);
      expect(p.replies, p.iface).toBeGreaterThanOrEqual(2);
    }
    const fl1 = (await linkJson('h1', 'flannel.1')).address;
    const fl2 = (await linkJson('h2', 'flannel.1')).address;
    const eth0 = r.capture?.points[0];
    expect(eth0?.filter).toBe('udp and port 8472 and host 10.65.154.11');
    expect(eth0?.notes).toContain(`VXLAN UDP dport 8472, VNI 1, inner ${fl1} > ${fl2}`);
    expect(eth0?.notes).toContain(`VXLAN UDP dport 8472, VNI 1, inner ${fl1} < ${fl2}`);
    expect(eth0?.packets[0]).toMatch(/ 10\.65\.154\.11\.\d+ > 10\.65\.154\.12\.8472: VXLAN, flags \[I\] \(0x08\), vni 1: /);
  });

  it('--listen as text: a hop per capture point with its packets and the OK verdict', async () => {
    const l = listen(['--count', '1', '--timeout', '60']);
    await l.listening;
    expect((await trace([(pods.get('h2') as Pod).ip, '--from', (pods.get('h1') as Pod).ip, '--count', '1', '--capture'])).code).toBe(0);
    const r = await l.done;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^listening on eth0, flannel\.1, cni0, veth\w+ for 1 echo request to 10\.7\.\d+\.\d+ from 10\.7\.\d+\.\d+ \(timeout 60 s\): start the probes$/m);
    expect(r.stdout).toMatch(/^trace --listen: echo requests from 10\.7\.\d+\.\d+ → 10\.7\.\d+\.\d+ \(lease 10\.7\.\d+\.0\/24 of node 10\.65\.154\.12, this node\), 1 awaited, /m);
    expect(r.stdout).toMatch(/^ 2 flannel\.1 decapsulates VNI 1$/m);
    expect(r.stdout).toContain('   lost     nowhere: requests and replies seen at every hop');
    expect(r.stdout).toMatch(/^OK: 1 echo request from .* and the replies crossed every hop here \(eth0 → flannel\.1 → cni0 → veth\w+\) in /m);
  });

  it('prints the hops and an OK verdict as text', async () => {
    const r = await trace([(pods.get('h2') as Pod).ip, '--from', (pods.get('h1') as Pod).ip, '--count', '1']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ 5 flannel\.1 vxlan id 1 local 10\.65\.154\.11 dstport 8472$/m);
    expect(r.stdout).toMatch(/^OK: 10\.7\.\d+\.\d+ → 10\.7\.\d+\.\d+, 7 hops ok/m);
  });

  it('traces from the host itself when no --from is given', async () => {
    const r = await trace([(pods.get('h2') as Pod).ip, '--json', '--count', '1']);
    const report = JSON.parse(r.stdout) as TraceReport;
    expect(r.code, r.stdout).toBe(0);
    expect(report.source).toEqual({ ip: '10.65.154.11', kind: 'host', netns: null });
    expect(report.hops[0]?.kind).toBe('host');
  });
});

describe('trace names the hop and the cause of each fault', () => {
  it('an FDB entry deleted while the daemon is stopped', async () => {
    await (daemons.get('h1') as DaemonHandle).stop('SIGTERM');
    const mac2 = (await linkJson('h2', 'flannel.1')).address;
    await sh('h1', 'bridge', ['fdb', 'del', mac2, 'dev', 'flannel.1', 'dst', '10.65.154.12', 'self']);
    const r = await traceJson();
    expect(r.exitCode).toBe(1);
    expect(r.problems[0]).toMatchObject({ kind: 'vxlan', message: `FDB entry ${mac2} dst 10.65.154.12 on flannel.1: missing: the kernel does not know which host to send ${mac2}'s frames to` });
    expect(r.verdict).toMatch(/^PROBLEM at hop 5 \(vxlan\): FDB entry/);
    const c = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
    expect(c.capture?.lost).toEqual({ kind: 'vxlan', message: 'the echo requests are seen on flannel.1 but not on eth0' });
    await restartDaemon('h1');
    expect((await traceJson()).exitCode).toBe(0);
  });

  it('FORWARD policy DROP with no accept rule for the network', async () => {
    await (daemons.get('h1') as DaemonHandle).stop('SIGTERM');
    await sh('h1', 'iptables', ['-F', 'FLANNEL-FWD']);
    await sh('h1', 'iptables', ['-P', 'FORWARD', 'DROP']);
    try {
      const r = await traceJson();
      expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: `FORWARD drops the request ${(pods.get('h1') as Pod).ip} → ${(pods.get('h2') as Pod).ip}: policy DROP and no rule accepts 10.7.0.0/16` });
      expect(r.probe?.received).toBe(0);
      const c = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
      expect(c.capture?.lost).toEqual({ kind: 'route', message: 'the echo requests are seen on cni0 but not on flannel.1' });
    } finally {
      await sh('h1', 'iptables', ['-P', 'FORWARD', 'ACCEPT']);
      await restartDaemon('h1');
    }
  });

  it('a pod MTU above flannel.1\'s', async () => {
    const p1 = pods.get('h1') as Pod;
    await scene.cluster.exec(p1.netns, 'ip', ['link', 'set', 'eth0', 'mtu', '1500']);
    try {
      const r = await traceJson();
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]).toMatchObject({ step: 1, kind: 'pod', message: "pod eth0 MTU 1500 is above flannel.1's 1450: packets over 1450 bytes cannot cross the overlay" });
    } finally {
      await scene.cluster.exec(p1.netns, 'ip', ['link', 'set', 'eth0', 'mtu', '1450']);
    }
  });

  it('UDP 8472 dropped by iptables on the peer', async () => {
    await sh('h2', 'iptables', ['-I', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP']);
    try {
      const r = await traceJson();
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]?.kind).toBe('remote');
      expect(r.problems[0]?.message).toMatch(/^0\/2 echo replies .*: every hop on this host is ok, so the packets are lost at or beyond 10\.65\.154\.12 \(its firewall on UDP 8472/);
      const c = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
      expect(c.capture?.lost?.kind).toBe('remote');
      expect(c.capture?.points.map((p) => [p.kind, p.requests, p.replies])).toEqual([['veth', 2, 0], ['bridge', 2, 0], ['vxlan', 2, 0], ['underlay', 2, 0]]);
    } finally {
      await sh('h2', 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP']);
    }
  });

  it('UDP 8472 dropped by iptables INPUT on the destination: --listen there names eth0 → flannel.1', async () => {
    await sh('h2', 'iptables', ['-I', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP']);
    try {
      const l = listen(['--count', '2', '--timeout', '20', '--json']);
      await l.listening;
      expect((await traceJson()).exitCode).toBe(1);
      const r = await listenJson(l.done);
      expect(r.exitCode).toBe(1);
      expect(r.listen?.timedOut).toBe(true);
      expect(r.capture?.lost).toEqual({ kind: 'vxlan', message: 'the echo requests are seen on eth0 but not on flannel.1' });
      expect(r.problems[0]).toMatchObject({ step: 2, kind: 'vxlan', message: 'on the wire: the echo requests are seen on eth0 but not on flannel.1' });
      expect(r.capture?.points.map((p) => [p.kind, p.requests > 0, p.replies])).toEqual([['underlay', true, 0], ['vxlan', false, 0], ['bridge', false, 0], ['veth', false, 0]]);
    } finally {
      await sh('h2', 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP']);
    }
  });

  it('ip_forward off', async () => {
    await sh('h1', 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    try {
      const r = await traceJson();
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route', message: "ip_forward is off: this host drops the pod's packets instead of routing them" });
      const c = await traceJson([(pods.get('h2') as Pod).ip, '--capture']);
      expect(c.capture?.lost?.kind).toBe('route');
    } finally {
      await sh('h1', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    }
  });

  it('a destination outside every lease', async () => {
    const r = await traceJson(['10.7.250.9']);
    expect(r.problems[0]).toMatchObject({ step: 4, kind: 'route' });
    expect(r.problems[0]?.message).toMatch(/^10\.7\.250\.9 is in no lease: no node holds a subnet for it \(leases: 10\.7\.\d+\.0\/24, 10\.7\.\d+\.0\/24\)$/);
  });

  it('--listen on a node that does not run DST: exit 1, naming the node that does', async () => {
    const p2 = pods.get('h2') as Pod;
    const r = await trace([p2.ip, '--listen', '--from', (pods.get('h1') as Pod).ip, '--json', '--timeout', '5']);
    const report = JSON.parse(r.stdout) as TraceReport;
    expect(schemaErrors(TRACE_SCHEMA, report)).toEqual([]);
    expect(r.code).toBe(1);
    expect(report.problems[0]?.message).toMatch(new RegExp(`^no namespace behind this host's veths has ${p2.ip.replace(/\./g, '\\.')} .*; ${p2.ip.replace(/\./g, '\\.')} is in the lease of node 10\\.65\\.154\\.12: run --listen there$`));
    expect((await trace([p2.ip, '--listen', '--capture'])).code).toBe(2);
  });

  it('exit 3 when etcd is unreachable, exit 2 on a usage error', async () => {
    const r = await trace([(pods.get('h2') as Pod).ip, '--etcd-endpoints', 'http://10.65.154.2:1']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^flanneld-ts trace: etcd unreachable: .*10\.65\.154\.2:1/);
    const u = await trace(['not-an-ip']);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain('trace DST: "not-an-ip" is not an IPv4 or IPv6 address');
  });
});
