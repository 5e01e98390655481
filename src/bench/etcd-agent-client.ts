/**
 * The bench's side of etcd-agent.ts: starts the agent in the cluster's infra
 * namespace and turns its JSON-line protocol into promises.
 */
import { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Cluster } from '../testbed/netns-cluster';

interface Reply {
  id: number;
  ok: boolean;
  error?: string;
  sentNs?: string;
  doneNs?: string;
  text?: string;
}

/** When a write was sent and when etcd acknowledged it, in monotonic ms. */
export interface WriteTimes {
  readonly sentMs: number;
  readonly doneMs: number;
}

const CALL_TIMEOUT_MS = 60_000;

export class EtcdAgent {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private stderr = '';
  private exitCode: number | null | undefined;

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply);
      else p.reject(new Error(`etcd agent: ${reply.error ?? 'failed'}`));
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    child.once('exit', (code) => {
      this.exitCode = code;
      for (const p of this.pending.values()) p.reject(new Error(`etcd agent exited (${code}): ${this.stderr.trim()}`));
      this.pending.clear();
    });
  }

  /**
   * Starts the agent in `netns` against `endpoint` and waits until it has talked to etcd once.
   * `script`: the compiled etcd-agent.js (tests running from src/ pass the one in dist/).
   */
  static async start(cluster: Cluster, netns: string, endpoint: string, script = join(__dirname, 'etcd-agent.js')): Promise<EtcdAgent> {
    const child = cluster.spawn(netns, process.execPath, [script, endpoint], { stdio: ['pipe', 'pipe', 'pipe'] });
    const agent = new EtcdAgent(child);
    await agent.call({ op: 'ping' });
    return agent;
  }

  /** Writes the leases (etcd transactions of up to 128 puts, all sent at once). */
  async put(items: ReadonlyArray<readonly [string, string]>): Promise<WriteTimes> {
    return times(await this.call({ op: 'put', items }));
  }

  async del(keys: readonly string[]): Promise<WriteTimes> {
    return times(await this.call({ op: 'del', keys }));
  }

  /** etcd's Prometheus exposition text. */
  async metrics(): Promise<string> {
    return (await this.call({ op: 'metrics' })).text ?? '';
  }

  /** GETs a URL from the agent's namespace (e.g. a daemon's /metrics on the underlay). */
  async fetch(url: string): Promise<string> {
    return (await this.call({ op: 'fetch', url })).text ?? '';
  }

  /** Closes stdin: the agent closes its etcd client and exits. */
  close(): void {
    this.child.stdin?.end();
  }

  private call(req: Record<string, unknown>): Promise<Reply> {
    if (this.exitCode !== undefined) return Promise.reject(new Error(`etcd agent exited (${this.exitCode}): ${this.stderr.trim()}`));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`etcd agent did not answer ${String(req.op)} within ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin?.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }
}

function times(r: Reply): WriteTimes {
  return { sentMs: Number(BigInt(r.sentNs ?? '0')) / 1e6, doneMs: Number(BigInt(r.doneNs ?? '0')) / 1e6 };
}
