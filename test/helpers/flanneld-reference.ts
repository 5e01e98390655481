/**
 * A reference flanneld node made by hand (contract §1, §4, §5, §13), for the
 * mixed-cluster e2e: its lease written by etcdctl in flanneld's byte format,
 * flannel.1 and its peer entries made by iproute2, and a watcher that reacts as
 * flanneld's does: it learns peers from the initial list and from PUT events
 * only, and an event it cannot decode (a key that is not `<ip>-<len>`, a value
 * that is not a lease) removes every peer's entries until their next PUT.
 */
import { ChildProcess } from 'node:child_process';
import { Scene } from '../../src/testbed/scene';
import { PREFIX } from '../../src/testbed/scene';

interface Peer {
  readonly publicIP: string;
  readonly mac: string;
}

/** flanneld's key and value checks, as far as the wipe goes (contract §13). */
function decode(keyName: string, value: string | undefined): { subnet: string; peer?: Peer } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)-(\d|[12]\d|3[01])$/.exec(keyName);
  if (!m) return undefined;
  const subnet = `${m[1]}/${m[2]}`;
  if (value === undefined) return { subnet };
  try {
    const v = JSON.parse(value) as { PublicIP?: unknown; BackendType?: unknown; BackendData?: { VtepMAC?: unknown } };
    if (typeof v.PublicIP !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(v.PublicIP)) return undefined;
    if (v.BackendType !== 'vxlan' || typeof v.BackendData?.VtepMAC !== 'string') return undefined;
    return { subnet, peer: { publicIP: v.PublicIP, mac: v.BackendData.VtepMAC } };
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

  constructor(private readonly scene: Scene, host: string, readonly subnet: string, readonly mac: string) {
    const m = scene.cluster.member(host);
    this.netns = m.netns;
    this.ip = m.ip;
  }

  get keyName(): string {
    return this.subnet.replace('/', '-');
  }

  /** flannel.1 and the lease, as flanneld makes them (device first: the lease carries its MAC). */
  async setUp(): Promise<void> {
    const net = this.subnet.split('/')[0] as string;
    await this.ip_(['link', 'add', 'flannel.1', 'address', this.mac, 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', this.ip, 'dev', 'eth0', 'dstport', '8472', 'nolearning']);
    await this.ip_(['addr', 'add', `${net}/32`, 'dev', 'flannel.1']);
    await this.ip_(['link', 'set', 'flannel.1', 'up']);
    const grant = await this.scene.etcdctl(['lease', 'grant', '86400']);
    const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
    if (!id) throw new Error(`etcdctl lease grant: ${grant}`);
    const value = `{"PublicIP":"${this.ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${this.mac}"}}`;
    await this.scene.etcdctl(['put', `--lease=${id}`, `${PREFIX}/subnets/${this.keyName}`, value]);
  }

  /** flanneld's start: list, program every peer, then watch from the next revision. */
  async startWatcher(): Promise<void> {
    const list = JSON.parse(await this.scene.etcdctl(['get', '--prefix', `${PREFIX}/subnets`, '-w', 'json'])) as { header: { revision: number }; kvs?: Array<{ key: string; value: string }> };
    for (const kv of list.kvs ?? []) {
      const name = Buffer.from(kv.key, 'base64').toString().slice(`${PREFIX}/subnets/`.length);
      const d = decode(name, Buffer.from(kv.value, 'base64').toString());
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
      this.peers.delete(subnet);
    }
  }

  private async onResponse(line: string): Promise<void> {
    const res = JSON.parse(line) as { Events?: Array<{ type?: number | string; kv: { key: string; value?: string } }> };
    const events = res.Events ?? [];
    const decoded = events.map((ev) => {
      const name = Buffer.from(ev.kv.key, 'base64').toString().slice(`${PREFIX}/subnets/`.length);
      const del = ev.type === 1 || ev.type === 'DELETE';
      return { del, d: decode(name, del ? undefined : Buffer.from(ev.kv.value ?? '', 'base64').toString()) };
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
    this.peers.set(subnet, peer);
  }

  private async unprogram(subnet: string): Promise<void> {
    const peer = this.peers.get(subnet);
    if (!peer) return;
    const gw = subnet.split('/')[0] as string;
    await this.run('ip', ['route', 'del', subnet, 'via', gw, 'dev', 'flannel.1', 'onlink']);
    await this.run('ip', ['neigh', 'del', gw, 'dev', 'flannel.1']);
    await this.run('bridge', ['fdb', 'del', peer.mac, 'dev', 'flannel.1', 'dst', peer.publicIP, 'self']);
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
