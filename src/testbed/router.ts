/**
 * A second underlay subnet behind a router namespace, for DirectRouting tests:
 * `routeHostAway` takes a cluster host off the shared segment and puts it on its
 * own subnet, reached through the router `<prefix>-rt`:
 *
 *   h1, h2, infra ── br0 (10.65.154.0/24) ── rt ── h3 (10.65.200.0/24)
 *                                   .1 ul0    ul1 .1       .13
 *
 * Every other member of the segment gets `10.65.200.0/24 via 10.65.154.1`, the
 * moved host `default via 10.65.200.1`. The router namespace has the cluster's
 * prefix, so `cluster.destroy()` deletes it with the rest.
 */
import { Cluster } from './netns-cluster';
import { netnsArgv, runChecked } from './exec';

export interface RoutedHost {
  readonly routerNetns: string;
  /** The router's address on the shared segment. */
  readonly routerIP: string;
  /** The moved host's new address (its public IP from now on). */
  readonly hostIP: string;
  readonly subnet: string;
}

export async function routeHostAway(cluster: Cluster, name: string, net = { subnet: '10.65.200.0/24', routerIP: '10.65.154.1', gateway: '10.65.200.1', hostIP: '10.65.200.13' }): Promise<RoutedHost> {
  const host = cluster.member(name);
  const rt = `${cluster.prefix}-rt`;
  const len = net.subnet.split('/')[1] as string;
  const segLen = cluster.underlayCidr.split('/')[1] as string;
  const sh = (ns: string, script: string) => runChecked('ip', netnsArgv(ns, 'sh', ['-c', script]));
  await runChecked('ip', ['netns', 'add', rt]);
  await runChecked('ip', ['-n', rt, 'link', 'set', 'lo', 'up']);
  // A router that forwards and, as one port serves both directions for hairpinned traffic, sends no redirects.
  await sh(rt, 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects; echo 0 > /proc/sys/net/ipv4/conf/default/send_redirects');
  await runChecked('ip', ['link', 'add', 'v-rt', 'netns', cluster.underlayNetns, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', rt]);
  await runChecked('ip', ['-n', cluster.underlayNetns, 'link', 'set', 'v-rt', 'master', 'br0', 'up']);
  await runChecked('ip', ['-n', rt, 'addr', 'add', `${net.routerIP}/${segLen}`, 'dev', 'ul0']);
  await runChecked('ip', ['-n', rt, 'link', 'set', 'ul0', 'up']);
  // The host leaves the bridge (deleting its eth0 deletes the bridge port too) and gets a link to the router.
  await runChecked('ip', ['-n', host.netns, 'link', 'del', 'eth0']);
  await runChecked('ip', ['link', 'add', 'ul1', 'netns', rt, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.netns]);
  await runChecked('ip', ['-n', rt, 'addr', 'add', `${net.gateway}/${len}`, 'dev', 'ul1']);
  await runChecked('ip', ['-n', rt, 'link', 'set', 'ul1', 'up']);
  await runChecked('ip', ['-n', host.netns, 'addr', 'add', `${net.hostIP}/${len}`, 'dev', 'eth0']);
  await runChecked('ip', ['-n', host.netns, 'link', 'set', 'eth0', 'up']);
  await runChecked('ip', ['-n', host.netns, 'route', 'add', 'default', 'via', net.gateway]);
  const others = [{ netns: cluster.infraNetns }, ...cluster.extras, ...cluster.hosts.filter((h) => h.name !== name)];
  for (const m of others) await runChecked('ip', ['-n', m.netns, 'route', 'add', net.subnet, 'via', net.routerIP]);
  return { routerNetns: rt, routerIP: net.routerIP, hostIP: net.hostIP, subnet: net.subnet };
}
