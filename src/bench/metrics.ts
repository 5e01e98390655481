/**
 * etcd's Prometheus counters of gRPC traffic, for "etcd requests per minute".
 * `grpc_server_msg_received_total` counts every message a client sent: one per
 * unary call, one per keep-alive or watch-create message on a stream; so its
 * delta over an idle window is exactly the load the daemon puts on etcd.
 */

/** Requests by "<service>/<method>", e.g. "etcdserverpb.Lease/LeaseKeepAlive". */
export type RequestCounts = ReadonlyMap<string, number>;

const LINE = /^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$/;

function label(labels: string, name: string): string {
  return new RegExp(`(?:^|,)${name}="([^"]*)"`).exec(labels)?.[1] ?? '';
}

/** The per-method values of counter `metric` in an exposition text. */
export function parseGrpcCounter(text: string, metric = 'grpc_server_msg_received_total'): RequestCounts {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m || m[1] !== metric) continue;
    const key = `${label(m[2] as string, 'grpc_service')}/${label(m[2] as string, 'grpc_method')}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[3]));
  }
  return out;
}

/** after − before, per method, keeping only methods that moved. */
export function diffCounts(before: RequestCounts, after: RequestCounts): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d !== 0) out.set(k, d);
  }
  return out;
}

export function total(counts: RequestCounts): number {
  let sum = 0;
  for (const v of counts.values()) sum += v;
  return sum;
}

/** Lease keep-alives are the one periodic request the issue allows. */
export function isKeepAlive(method: string): boolean {
  return method.endsWith('/LeaseKeepAlive');
}
