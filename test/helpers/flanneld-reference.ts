/**
 * A reference flanneld node made by hand (contract §1, §4, §5, §13), for the
 * mixed-cluster e2e: its lease written by etcdctl in flanneld's byte format,
 * flannel.1 and its peer entries made by iproute2, and a watcher that reacts as
 * flanneld's does: it learns peers from the initial list and from PUT events
 * only, and an event it cannot decode (a key that is not `<ip>-<len>`, a value
 * that is not a lease) removes every peer's entries until their next PUT.
 *
 * With `v6` it is a dual-stack flanneld (contract §11): flannel-v6.1 beside
 * flannel.1, the `&` key with PublicIPv6 and BackendV6Data, and per peer with an
 * IPv6 half the IPv6 neighbour, FDB and onlink route on flannel-v6.1 as well.
 */
import { ChildProcess } from 'node:child_process';
import { Scene } from '../../src/testbed/scene';
import { PREFIX } from '../../src/testbed/scene';

interface Peer {
  readonly publicIP: string;
  readonly mac: string;
  /** The IPv6 half, programmed on flannel-v6.1 by a dual-stack reference node. */
  readonly v6?: { readonly subnet: string; readonly publicIP: string; readonly mac: string } | undefined;
}

/** The reference node's own IPv6 half: its subnet (`fc00:0:0:c8::/64`) and flannel-v6.1's MAC. */
export interface ReferenceV6 {
  readonly subnet6: string;
  readonly mac6: string;
}

/**
 * flanneld's key and value checks, as far as the wipe goes (contract §13). An
 * IPv4-only flanneld cannot take `&` keys at all; a dual-stack one reads them
 * and needs a decodable BackendV6Data (contract §11).
 */
function decode(keyName: string, value: string | undefined, dual: boolean): { subnet: string; peer?: Peer } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)-(\d|[12]\d|3[01])(?:&([0-9a-f:]+)-(\d{1,3}))?$/.exec(keyName);
  if (!m || (m[3] !== undefined && !dual)) return undefined;
  const subnet = `${m[1]}/${m[2]}`;
  const subnet6 = m[3] === undefined ? undefined : `${m[3]}/${m[4]}`;
  if (value === undefined) return { subnet };
  try {
    const v = JSON.parse(value) as { PublicIP?: unknown; PublicIPv6?: unknown; BackendType?: unknown; BackendData?: { VtepMAC?: unknown }; BackendV6Data?: { VtepMAC?: unknown } };
    if (typeof v.PublicIP !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(v.PublicIP)) return undefined;
    if (v.BackendType !== 'vxlan' || typeof v.BackendData?.VtepMAC !== 'string') return undefined;
    let v6: Peer['v6'];
    if (subnet6 !== undefined) {
      if (typeof v.PublicIPv6 !== 'string' || typeof v.BackendV6Data?.VtepMAC !== 'string') return undefined;
      v6 = { subnet: subnet6, publicIP: v.PublicIPv6, mac: v.BackendV6Data.VtepMAC };
    }
    return { subnet, peer: { publicIP: v.PublicIP, mac: v.BackendData.VtepMAC, v6 } };
  } catch {
    return undefined;
  }
}

export class ReferenceNode {
  /** Peers with entries on flannel.1, by subnet. */
  readonly peers = new Map<string, Peer>();
  wipes = 0;
  /** Subnets learnt from a PUT, with the time (ms) each was (re)learnt. */
  readonly learnt = new Map<string, number>();
  private watcher: ChildProcess | undefined;
  private buffer = '';
  private readonly netns: string;
  private readonly ip: string;
  private readonly ip6: string | undefined;

  constructor(private readonly scene: Scene, host: string, readonly subnet: string, readonly mac: string, readonly v6?: ReferenceV6) {
    const m = scene.cluster.member(host);
    this.netns = m.netns;
    this.ip = m.ip;
    this.ip6 = m.ip6;
    if (v6 && m.ip6 === undefined) throw new Error(`reference node ${host}: a dual-stack node needs an IPv6 underlay (underlayCidr6)`);
  }

  get keyName(): string {
    const v4 = this.subnet.replace('/', '-');
    return this.v6 ? `${v4}&${this.v6.subnet6.replace('/', '-')}` : v4;
  }

  /** flannel.1 and the lease, as flanneld makes them (device first: the lease carries its MAC). */
  async setUp(): Promise<void> {
    const net = this.subnet.split('/')[0] as string;
    await this.ip_(['link', 'add', 'flannel.1', 'address', this.mac, 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', this.ip, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
    await this.ip_(['addr', 'add', `${net}/32`, 'dev', 'flannel.1']);
    await this.ip_(['link', 'set', 'flannel.1', 'up']);
    if (this.v6) {
      // flannel-v6.1: the IPv4 device's VNI, port, learning and dev; local = the public IPv6; /128 of the subnet (contract §11).
      await this.ip_(['link', 'add', 'flannel-v6.1', 'address', this.v6.mac6, 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', this.ip6 as string, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
      await this.ip_(['-6', 'addr', 'add', `${this.v6.subnet6.split('/')[0]}/128`, 'dev', 'flannel-v6.1']);
      await this.ip_(['link', 'set', 'flannel-v6.1', 'up']);
    }
    const grant = await this.scene.etcdctl(['lease', 'grant', '86400']);
    const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
    if (!id) throw new Error(`etcdctl lease grant: ${grant}`);
    const pip6 = this.v6 ? `"${this.ip6}"` : 'null';
    const v6data = this.v6 ? `,"BackendV6Data":{"VNI":1,"VtepMAC":"${this.v6.mac6}"}` : '';
    const value = `{"PublicIP":"${this.ip}","PublicIPv6":${pip6},"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${this.mac}"}${v6data}}`;
    await this.scene.etcdctl(['put', `--lease=${id}`, `${PREFIX}/subnets/${this.keyName}`, value]);
  }

  /** flanneld's start: list, program every peer, then watch from the next revision. */
  async startWatcher(): Promise<void> {
    const list = JSON.parse(await this.scene.etcdctl(['get', '--prefix', `${PREFIX}/subnets`, '-w', 'json'])) as { header: { revision: number }; kvs?: Array<{ key: string; value: string }> };
    for (const kv of list.kvs ?? []) {
      const name = Buffer.from(kv.key, 'base64').toString().slice(`${PREFIX}/subnets/`.length);
      const d = decode(name, Buffer.from(kv.value, 'base64').toString(), this.v6 !== undefined);
      // The initial list skips bad keys instead of wiping.
      if (d?.peer && d.subnet !== this.subnet) await this.program(d.subnet, d.peer);
    }
    const c = this.scene.cluster;
    this.buffer = '';
    const child = c.spawn(c.infraNetns, 'etcdctl', ['--endpoints', this.scene.endpoint, 'watch', '--prefix', `--rev=${list.header.revision + 1}`, '-w', 'json', `${PREFIX}/subnets`], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    this.watcher = child;
    let chain = Promise.resolve();
    child.stdout?.on('data', (b: Buffer) => {
      this.buffer += b.toString();
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line.startsWith('{')) chain = chain.then(() => this.onResponse(line)).catch(() => undefined);
      }
    });
  }

  async stopWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    if (!w || w.exitCode !== null) return;
    const exited = new Promise((r) => w.once('exit', r));
    w.kill('SIGTERM');
    await exited;
  }

  /** What flanneld does after an undecodable event or a failed lease-TTL call: every peer's entries go. */
  async wipe(): Promise<void> {
    this.wipes++;
    for (const [subnet, peer] of [...this.peers]) {
      const gw = subnet.split('/')[0] as string;
      await this.run('ip', ['route', 'del', subnet, 'via', gw, 'dev', 'flannel.1', 'onlink']);
      await this.run('ip', ['neigh', 'del', gw, 'dev', 'flannel.1']);
      await this.run('bridge', ['fdb', 'del', peer.mac, 'dev', 'flannel.1', 'dst', peer.publicIP, 'self']);
      await this.unprogram6(peer);
      this.peers.delete(subnet);
    }
  }

  private async onResponse(line: string): Promise<void> {
    const res = JSON.parse(line) as { Events?: Array<{ type?: number | string; kv: { key: string; value?: string } }> };
    const events = res.Events ?? [];
    const decoded = events.map((ev) => {
      const name = Buffer.from(ev.kv.key, 'base64').toString().slice(`${PREFIX}/subnets/`.length);
      const del = ev.type === 1 || ev.type === 'DELETE';
      return { del, d: decode(name, del ? undefined : Buffer.from(ev.kv.value ?? '', 'base64').toString(), this.v6 !== undefined) };
    });
    // One bad event makes the whole response an empty snapshot: Reset removes every peer.
    if (decoded.some((e) => e.d === undefined)) return this.wipe();
    for (const { del, d } of decoded) {
      if (!d || d.subnet === this.subnet) continue;
      if (del) await this.unprogram(d.subnet);
      else if (d.peer) {
        await this.program(d.subnet, d.peer);
        this.learnt.set(d.subnet, Date.now());
      }
    }
  }

  /** neighbour → FDB → route, with replace (contract §5). */
  private async program(subnet: string, peer: Peer): Promise<void> {
    const gw = subnet.split('/')[0] as string;
    await this.ip_(['neigh', 'replace', gw, 'lladdr', peer.mac, 'dev', 'flannel.1', 'nud', 'permanent']);
    await this.checked('bridge', ['fdb', 'replace', peer.mac, 'dev', 'flannel.1', 'dst', peer.publicIP, 'self', 'permanent']);
    await this.ip_(['route', 'replace', subnet, 'via', gw, 'dev', 'flannel.1', 'onlink']);
    const v6 = this.v6 ? peer.v6 : undefined;
    if (v6) {
      // The same three entries on flannel-v6.1 (flannel: vxlan_network.go; contract §11).
      const gw6 = v6.subnet.split('/')[0] as string;
      await this.ip_(['-6', 'neigh', 'replace', gw6, 'lladdr', v6.mac, 'dev', 'flannel-v6.1', 'nud', 'permanent']);
      await this.checked('bridge', ['fdb', 'replace', v6.mac, 'dev', 'flannel-v6.1', 'dst', v6.publicIP, 'self', 'permanent']);
      await this.ip_(['-6', 'route', 'replace', v6.subnet, 'via', gw6, 'dev', 'flannel-v6.1', 'onlink']);
    }
    this.peers.set(subnet, peer);
  }

  private async unprogram6(peer: Peer): Promise<void> {
    if (!this.v6 || !peer.v6) return;
    const gw6 = peer.v6.subnet.split('/')[0] as string;
    await this.run('ip', ['-6', 'route', 'del', peer.v6.subnet, 'via', gw6, 'dev', 'flannel-v6.1', 'onlink']);
    await this.run('ip', ['-6', 'neigh', 'del', gw6, 'dev', 'flannel-v6.1']);
    await this.run('bridge', ['fdb', 'del', peer.v6.mac, 'dev', 'flannel-v6.1', 'dst', peer.v6.publicIP, 'self']);
  }

  private async unprogram(subnet: string): Promise<void> {
    const peer = this.peers.get(subnet);
    if (!peer) return;
    const gw = subnet.split('/')[0] as string;
    await this.run('ip', ['route', 'del', subnet, 'via', gw, 'dev', 'flannel.1', 'onlink']);
    await this.run('ip', ['neigh', 'del', gw, 'dev', 'flannel.1']);
    await this.run('bridge', ['fdb', 'del', peer.mac, 'dev', 'flannel.1', 'dst', peer.publicIP, 'self']);
    await this.unprogram6(peer);
    this.peers.delete(subnet);
  }

  private ip_(args: string[]): Promise<void> {
    return this.checked('ip', args);
  }

  private async checked(cmd: string, args: string[]): Promise<void> {
    const r = await this.scene.cluster.exec(this.netns, cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} on the reference node: ${r.stderr.trim()}`);
  }

  private async run(cmd: string, args: string[]): Promise<void> {
    await this.scene.cluster.exec(this.netns, cmd, args);
  }
}
