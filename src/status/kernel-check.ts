/**
 * The kernel check for this host, with the daemon's own functions: desiredState
 * says what the leases call for, planChanges compares it with what flannel.<VNI>
 * holds (drift is a non-empty plan), deviceMismatch says whether the daemon
 * would keep the device. Pure. One family per call: flannel.<VNI> with the
 * leases' IPv4 halves, or flannel-v6.<VNI> with their IPv6 halves (contract §11).
 */
import { NetworkConfig } from '../config';
import { DeviceState, Entry, HostRoute, InterfaceInfo, VxlanSpec, describeEntry, isEntryOfFamily } from '../kernel/kernel';
import { deviceMismatch } from '../kernel/vxlan-device';
import { Lease } from '../lease/lease';
import { cidrContains, formatCidr, makeCidr } from '../net/ipv4';
import { AddressFamily, AnyCidr, IPV4, IpAddr, formatAnyCidr, formatIp } from '../net/family';
import { Cidr6 } from '../net/ipv6';
import { familyPool, halfSubnetText, leaseHalf } from '../overlay/desired';
import { desiredState } from '../overlay/desired-book';
import { underlayChecker } from '../overlay/underlay';
import { PlannedOperation, planChanges } from '../overlay/plan';
import { DeviceCheck, DeviceReport, KernelReport, PeerRow, Problem, StaleEntry } from './report';

export interface KernelCheckFacts {
  readonly config: NetworkConfig;
  readonly device: DeviceState | undefined;
  readonly entries: readonly Entry[];
  readonly interfaces: readonly InterfaceInfo[];
  /** This node's lease; undefined when it holds none (then every lease is a peer). */
  readonly own: Lease | undefined;
  /** This host's public IP of `family` (PublicIPv6 for IPv6). */
  readonly publicIP: IpAddr | undefined;
  /** Default IPv4. */
  readonly family?: AddressFamily;
  readonly iface: InterfaceInfo | undefined;
  readonly leases: readonly Lease[];
  /** The host's routes (every table) and the etcd endpoints' addresses: peers over the underlay are refused as the daemon refuses them. */
  readonly routes?: readonly HostRoute[];
  /** The host's IPv6 routes, for the IPv6 check. */
  readonly routes6?: readonly HostRoute<Cidr6>[];
  readonly etcdAddresses?: readonly IpAddr[];
  /** DirectRouting: the PublicIPs this host reaches directly; undefined when the config does not ask for it. */
  readonly direct?: ReadonlySet<IpAddr> | undefined;
}

function entryKey(e: Entry): string {
  if (e.kind === 'route') return `route ${formatAnyCidr(e.dst)}`;
  return e.kind === 'neighbor' ? `neighbor ${e.ip}` : `fdb ${e.mac}`;
}

function check(name: DeviceCheck['name'], have: string | null, want: string | null): DeviceCheck {
  const state = want === null ? 'unknown' : have === want ? 'ok' : have === null ? 'missing' : `wrong ${have}`;
  return { name, state, have, want };
}

/** One check per property the contract (§4) fixes, plus what deviceMismatch() thinks of it. */
export function checkDevice(facts: KernelCheckFacts, name: string): DeviceReport {
  const { config, device: d, iface, publicIP, own } = facts;
  const family = facts.family ?? IPV4;
  const v6 = family.family === 6;
  const ownHalf = own && leaseHalf(own, family);
  const pool = familyPool(config, family);
  if (!d) return { name, present: false, checks: [check('exists', null, 'vxlan')], replaceReason: null };
  if (d.kind !== 'vxlan') return { name, present: true, checks: [check('exists', d.kind || 'non-vxlan link', 'vxlan')], replaceReason: `kind ${JSON.stringify(d.kind)} != "vxlan"` };
  const b = config.backend;
  const underlayMTU = b.mtu || iface?.mtu;
  const ifName = (index: number | undefined): string | null => (index === undefined ? null : facts.interfaces.find((i) => i.index === index)?.name ?? `ifindex ${index}`);
  // IPv4: addresses inside Network; IPv6: every non-link-local one (the daemon removes all others, as flanneld does).
  const inNetwork = v6
    ? (d.addresses6 ?? []).filter((a) => a.ip >> 118n !== 0x3fan).map(formatAnyCidr)
    : d.addresses.filter((a) => pool !== undefined && !(typeof pool.network.ip === 'bigint') && cidrContains(pool.network as { ip: number; prefixLen: number }, a.ip)).map(formatCidr);
  // The kernel clamps VXLAN over IPv6 to the underlay's MTU - 70 (see daemon.ts).
  const wantMTU = underlayMTU === undefined ? undefined : v6 && iface ? Math.min(underlayMTU - 50, iface.mtu - 70) : underlayMTU - 50;
  const checks = [
    check('exists', 'vxlan', 'vxlan'),
    check('vni', String(d.vni ?? '(none)'), String(b.vni)),
    check('port', String(d.port ?? '(none)'), String(b.port)),
    check('learning', d.learning ? 'on' : 'off', b.learning ? 'on' : 'off'),
    check('local', d.localIP === undefined ? null : formatIp(d.localIP), publicIP === undefined ? null : formatIp(publicIP)),
    check('underlay', ifName(d.underlayIndex), iface?.name ?? null),
    check('mtu', String(d.mtu), wantMTU === undefined ? null : String(wantMTU)),
    check('address', inNetwork.length === 0 ? null : inNetwork.join(' '), ownHalf ? formatAnyCidr(family.hostCidr(ownHalf.subnet.ip) as AnyCidr) : null),
    check('up', d.up ? 'up' : 'down', 'up'),
  ];
  let replaceReason: string | null = null;
  if (publicIP !== undefined && iface) {
    const spec: VxlanSpec = { name, vni: b.vni, localIP: publicIP, underlayIndex: iface.index, port: b.port, learning: b.learning, gbp: b.gbp, mtu: wantMTU ?? iface.mtu - 50 };
    replaceReason = deviceMismatch(spec, d);
  }
  return { name, present: true, checks, replaceReason };
}

function peerProblem(row: PeerRow): Problem | undefined {
  const bad = (['neighbor', 'fdb', 'route'] as const).filter((k) => row[k] !== null && row[k] !== 'ok').map((k) => `${k} ${row[k]}`);
  if (bad.length === 0) return undefined;
  return { severity: 'error', kind: 'drift', subnets: [row.subnet], publicIPs: [row.publicIP], message: `peer ${row.subnet} (${row.publicIP}): ${bad.join(', ')}` };
}

function staleEntry({ entry: e }: PlannedOperation): StaleEntry {
  const subnet: AnyCidr | undefined = e.kind === 'route' ? e.dst : e.kind === 'neighbor' ? (typeof e.ip === 'bigint' ? { ip: e.ip, prefixLen: 128 } : makeCidr(e.ip, 32)) : undefined;
  return { kind: e.kind, entry: describeEntry(e), subnet: subnet ? formatAnyCidr(subnet) : null, publicIP: e.kind === 'fdb' ? formatIp(e.dst) : null };
}

function staleProblem(s: StaleEntry, device: string): Problem {
  const message = `stale ${s.entry} on ${device}: no lease explains it`;
  return { severity: 'error', kind: 'stale', subnets: s.subnet ? [s.subnet] : [], publicIPs: s.publicIP ? [s.publicIP] : [], message };
}

/** Per peer: route, neighbour and FDB `ok`, `missing` or what is wrong; stale entries; the device's checks. */
export function checkKernel(facts: KernelCheckFacts): { report: KernelReport; problems: Problem[] } {
  const family = facts.family ?? IPV4;
  const name = `${family.family === 6 ? 'flannel-v6' : 'flannel'}.${facts.config.backend.vni}`;
  const ownHalf = facts.own && leaseHalf(facts.own, family);
  // A self no lease matches when this host holds none: every lease is then a peer.
  const self = { subnet: ownHalf?.subnet ?? { ip: -1, prefixLen: -1 }, publicIP: facts.publicIP ?? -1, vtepMAC: ownHalf?.vtepMAC };
  const pool = familyPool(facts.config, family);
  const host = { interfaces: facts.interfaces, routes: facts.routes ?? [], routes6: facts.routes6 ?? [] };
  const underlay = pool ? underlayChecker({ host, overlayIndex: facts.device?.index, network: pool.network, etcdAddresses: facts.etcdAddresses ?? [] }) : () => undefined;
  const dangerous = new Set<string>();
  const direct = facts.direct;
  const desired = desiredState(self, facts.leases, facts.config, (lease) => {
    const half = leaseHalf(lease, family);
    const why = half && underlay(half.subnet, half.publicIP);
    if (why !== undefined && half) dangerous.add(formatAnyCidr(half.subnet));
    return why;
  }, family, direct && ((half) => (half.publicIP !== undefined && direct.has(half.publicIP) ? 'direct' : 'vxlan')));
  const plan = planChanges(desired, facts.device ? facts.entries.filter((e) => isEntryOfFamily(e, family.family)) : []);
  const fixes = new Map(plan.filter((op) => op.op === 'replace').map((op) => [entryKey(op.entry), op.reason]));
  const byName = new Map(facts.leases.map((l) => [halfSubnetText(l, family), l]));
  const rows: Array<PeerRow & { ip: IpAddr }> = [];
  const halfIP = (lease: Lease): string => {
    const ip = leaseHalf(lease, family)?.publicIP;
    return ip === undefined ? '' : formatIp(ip);
  };
  for (const [subnet, peer] of desired.peers) {
    const state = (e: Entry | undefined): string | null => (e === undefined ? null : fixes.get(entryKey(e)) ?? 'ok');
    const lease = byName.get(subnet) as Lease;
    // A direct peer has no neighbour or FDB entry to check: null, as for a peer that is not programmed.
    rows.push({ subnet, ip: peer.subnet.ip, publicIP: halfIP(lease), vtepMAC: leaseHalf(lease, family)?.vtepMAC ?? null, programmed: true, skipReason: null, mode: peer.mode, route: state(peer.route), neighbor: state(peer.neighbor), fdb: state(peer.fdb) });
  }
  for (const s of desired.skipped) {
    const lease = byName.get(s.subnet) as Lease;
    const half = leaseHalf(lease, family);
    rows.push({ subnet: s.subnet, ip: half?.subnet.ip ?? 0, publicIP: halfIP(lease), vtepMAC: half?.vtepMAC ?? null, programmed: false, skipReason: s.reason, mode: null, route: null, neighbor: null, fdb: null });
  }
  const peers = rows.sort((a, b) => (a.ip === b.ip ? 0 : a.ip < b.ip ? -1 : 1)).map(({ ip: _ip, ...row }) => row);
  const stale = plan.filter((op) => op.op === 'delete').map(staleEntry);
  const device = checkDevice(facts, name);
  const problems: Problem[] = [];
  const badChecks = device.checks.filter((c) => c.state !== 'ok' && c.state !== 'unknown');
  if (badChecks.length > 0) {
    const what = device.present ? badChecks.map((c) => `${c.name} ${c.state}${c.want !== null && c.state.startsWith('wrong') ? ` (want ${c.want})` : ''}`).join(', ') : 'does not exist';
    problems.push({ severity: 'error', kind: 'device', subnets: [], publicIPs: [], message: `${name} ${device.present ? `is wrong: ${what}` : what}` });
  }
  if (!facts.own) {
    const who = facts.publicIP === undefined ? 'this host' : `this host (${formatIp(facts.publicIP)})`;
    problems.push({ severity: 'error', kind: 'own-lease', subnets: [], publicIPs: [], message: `${name} exists but ${who} holds no lease` });
  }
  for (const row of peers) {
    const p = peerProblem(row);
    if (p) problems.push(p);
    if (dangerous.has(row.subnet)) problems.push({ severity: 'error', kind: 'underlay', subnets: [row.subnet], publicIPs: [row.publicIP], message: `peers on this host do not program lease ${row.subnet}: ${row.skipReason}` });
  }
  problems.push(...stale.map((s) => staleProblem(s, name)));
  return { report: { state: 'checked', skipReason: null, device, peers, stale }, problems };
}
