/**
 * The bench's etcd client, run as a child process inside the cluster's infra
 * namespace (the bench itself stays in the namespace it was started in, which
 * has no route to etcd). It reads one JSON request per stdin line and answers
 * one JSON line on stdout:
 *
 *   {"id":1,"op":"put","items":[["<key>","<value>"],…]}  → {"id":1,"ok":true,"sentNs":"…","doneNs":"…"}
 *   {"id":2,"op":"del","keys":["<key>",…]}                → same
 *   {"id":3,"op":"metrics"}                                → {"id":3,"ok":true,"text":"<etcd /metrics>"}
 *   {"id":5,"op":"fetch","url":"http://…"}                 → {"id":5,"ok":true,"text":"<body>"} (the daemon's /metrics)
 *   {"id":4,"op":"ping"}                                   → {"id":4,"ok":true}
 *
 * Writes go out as transactions of at most MAX_TXN_OPS operations (etcd's
 * default --max-txn-ops), all in flight at once, so "N leases written at once"
 * reaches etcd as fast as one client can send them. Timestamps are
 * CLOCK_MONOTONIC nanoseconds, comparable with the bench's own clock.
 *
 * It talks to etcd through etcd3 directly rather than the daemon's LeaseStore:
 * the store deliberately has no bulk write, and the bench must not change what
 * it measures. It exits when stdin closes.
 */
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { Etcd3, IRequestOp } from 'etcd3';

const MAX_TXN_OPS = 128;

type Request =
  | { id: number; op: 'put'; items: Array<[string, string]> }
  | { id: number; op: 'del'; keys: string[] }
  | { id: number; op: 'metrics' }
  | { id: number; op: 'fetch'; url: string }
  | { id: number; op: 'ping' };

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

async function main(endpoint: string): Promise<void> {
  const client = new Etcd3({ hosts: [endpoint] });
  const txns = (ops: IRequestOp[]): Promise<unknown> =>
    Promise.all(chunks(ops, MAX_TXN_OPS).map((success) => client.kv.txn({ compare: [], success })));
  const handle = async (req: Request): Promise<Record<string, unknown>> => {
    switch (req.op) {
      case 'put':
      case 'del': {
        const ops: IRequestOp[] =
          req.op === 'put'
            ? req.items.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(value) } }))
            : req.keys.map((key) => ({ request_delete_range: { key: Buffer.from(key) } }));
        const sentNs = process.hrtime.bigint();
        await txns(ops);
        return { sentNs: String(sentNs), doneNs: String(process.hrtime.bigint()) };
      }
      case 'metrics':
        return { text: await fetchText(`${endpoint}/metrics`) };
      case 'fetch':
        return { text: await fetchText(req.url) };
      case 'ping':
        await client.get('bench-ping').string();
        return {};
    }
  };
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let id = -1;
    try {
      const req = JSON.parse(line) as Request;
      id = req.id;
      // Answered as each finishes: the bench may have a join's put and a metrics read outstanding together.
      void handle(req).then(
        (res) => process.stdout.write(`${JSON.stringify({ id, ok: true, ...res })}\n`),
        (err: unknown) => process.stdout.write(`${JSON.stringify({ id, ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
      );
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ id, ok: false, error: `bad request: ${String(err)}` })}\n`);
    }
  }
  client.close();
}

const endpoint = process.argv[2];
if (!endpoint) {
  process.stderr.write('usage: etcd-agent.js <etcd endpoint>\n');
  process.exit(2);
}
main(endpoint).catch((err: unknown) => {
  process.stderr.write(`etcd-agent: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
