/**
 * `npm run demo` (as root): the two-host scene of the flannel VXLAN article, in
 * network namespaces on this machine. Starts a real etcd and flanneld-ts on both
 * hosts, wires nginx1 and nginx2 with the real CNI plugins, pings nginx1 → nginx2,
 * prints what each step left in the kernel and in etcd, and ends with
 * `flanneld-ts trace` from nginx1 to nginx2 run on node1. Tears it all down.
 *
 * `npm run demo -- --dual-stack`: the same with `EnableIPv6` and an IPv6
 * underlay, so each host also has flannel-v6.1 and each pod an IPv6 address;
 * the state of both devices is printed and nginx1 pings nginx2 over both.
 */
import { readFileSync } from 'node:fs';
import { addPod } from '../testbed/netns-cluster';
import { BIN, createScene, PREFIX, Scene, subnetOf, waitReady } from '../testbed/scene';

const DUAL_STACK = process.argv.includes('--dual-stack');
const CONFIG = DUAL_STACK
  ? '{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}'
  : '{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}';
const UNDERLAY6 = '2001:db8:154::/64';
const say = (text: string): void => void process.stdout.write(`${text}\n`);
const indent = (text: string): string => text.trim().split('\n').map((l) => `    ${l}`).join('\n');

async function show(scene: Scene, host: string): Promise<void> {
  const k = await scene.kernel(host);
  const link = (k.link.split('\n').find((l) => l.includes('vxlan id')) ?? '').replace(/ ageing 300 .*/, ' ageing 300');
  say(`  ${host}: ip -d link show flannel.1\n${indent(link)}`);
  say(`  ${host}: ip route show dev flannel.1\n${indent(k.routes.join('\n'))}`);
  say(`  ${host}: ip neigh show dev flannel.1\n${indent(k.neighbors.join('\n'))}`);
  say(`  ${host}: bridge fdb show dev flannel.1\n${indent(k.fdb.join('\n'))}`);
  if (!DUAL_STACK) return;
  const ns = scene.cluster.member(host).netns;
  for (const args of [['-d', 'link', 'show', 'flannel-v6.1'], ['-6', 'route', 'show', 'dev', 'flannel-v6.1'], ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1']]) {
    const out = (await scene.cluster.exec(ns, 'ip', args)).stdout;
    const text = args[0] === '-d' ? (out.split('\n').find((l) => l.includes('vxlan id')) ?? '').replace(/ ageing 300 .*/, ' ageing 300') : out;
    say(`  ${host}: ip ${args.join(' ')}\n${indent(text)}`);
  }
  say(`  ${host}: bridge fdb show dev flannel-v6.1\n${indent((await scene.cluster.exec(ns, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).stdout)}`);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('the demo creates network namespaces: run it as root (sudo npm run demo)\n');
    return 2;
  }
  say(`== flanneld-ts demo: two hosts, one VXLAN overlay${DUAL_STACK ? ' in IPv4 and IPv6' : ''}, two nginx pods ==`);
  const scene = await createScene({ hosts: ['node1', 'node2'], ...(DUAL_STACK && { underlayCidr6: UNDERLAY6 }) });
  let code = 1;
  try {
    say(`underlay 10.65.154.0/24: node1 ${scene.cluster.member('node1').ip}, node2 ${scene.cluster.member('node2').ip}, etcd ${scene.endpoint}`);
    if (DUAL_STACK) say(`underlay ${UNDERLAY6}: node1 ${scene.cluster.member('node1').ip6}, node2 ${scene.cluster.member('node2').ip6}`);
    await scene.putConfig(CONFIG);
    say(`etcdctl put ${PREFIX}/config '${CONFIG}'`);
    const daemons = ['node1', 'node2'].map((h) => scene.startDaemon(h));
    await Promise.all(daemons.map((d) => waitReady(d)));
    say('flanneld-ts is ready on both hosts');
    for (const d of daemons) say(`  ${d.host.name}: ${d.subnetFile}\n${indent(readFileSync(d.subnetFile, 'utf8'))}`);
    say(`etcdctl get --prefix ${PREFIX}/subnets\n${indent(await scene.etcdctl(['get', '--prefix', `${PREFIX}/subnets`]))}`);
    for (const d of daemons) await show(scene, d.host.name);
    const [n1, n2] = await Promise.all(
      daemons.map((d, i) => addPod(scene.cluster, d.host.name, { name: `nginx${i + 1}`, subnetEnvPath: d.subnetFile, cniDataDir: `${scene.workDir}/cni` })),
    );
    if (!n1 || !n2) throw new Error('pods were not created');
    say(`pods (CNI bridge + host-local): nginx1 ${n1.ip} on node1 (${subnetOf(readFileSync(daemons[0]!.subnetFile, 'utf8'))}), nginx2 ${n2.ip} on node2`);
    const ping = await n1.ping(n2.ip, { count: 3, timeoutSec: 10 });
    say(`nginx1$ ping -c 3 ${n2.ip}\n${indent(ping.output)}`);
    say(ping.ok ? 'OK: nginx1 reached nginx2 across the overlay' : 'FAILED: nginx1 did not reach nginx2');
    let ping6ok = true;
    if (DUAL_STACK) {
      say(`pods' IPv6 addresses: nginx1 ${n1.ip6}, nginx2 ${n2.ip6}`);
      // The first echo may wait for the pods' neighbour discovery: -w gives it time.
      const ping6 = await n1.ping(n2.ip6 as string, { count: 3, timeoutSec: 10 });
      ping6ok = ping6.ok;
      say(`nginx1$ ping -c 3 ${n2.ip6}\n${indent(ping6.output)}`);
      say(ping6.ok ? 'OK: nginx1 reached nginx2 over IPv6 (flannel-v6.1)' : 'FAILED: nginx1 did not reach nginx2 over IPv6');
    }
    // The path, hop by hop, as the tool shows it: run on node1 like the daemon.
    const args = ['trace', n2.ip, '--from', n1.ip, '--etcd-endpoints', scene.endpoint, '--subnet-file', daemons[0]!.subnetFile];
    const trace = await scene.cluster.exec(daemons[0]!.host.netns, process.execPath, [BIN, ...args], { timeoutMs: 60_000 });
    say(`node1$ flanneld-ts ${args.join(' ')}\n${indent(trace.stdout + trace.stderr)}`);
    code = ping.ok && ping6ok && trace.code === 0 ? 0 : 1;
    for (const d of daemons) await d.stop('SIGTERM');
  } catch (err) {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n${await scene.dump()}\n`);
  } finally {
    await scene.destroy();
    say('torn down: namespaces, etcd and temp files removed');
  }
  return code;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
