/**
 * `--healthz-ip/--healthz-port`: /healthz (the process is alive and its loops
 * run), /readyz (lease held, subnet.env written, kernel in sync with the leases;
 * 503 with the reason otherwise) and /metrics (Prometheus text).
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { DaemonStatus } from './daemon';
import { HostError, errorMessage } from './util/errors';

export interface HealthSources {
  status(): DaemonStatus;
  metrics(): Promise<string>;
  metricsContentType: string;
}

/** Why the daemon is not ready, or undefined when it is. */
export function notReadyReason(st: DaemonStatus): string | undefined {
  if (st.phase !== 'ready') return st.phase === 'stopped' ? 'stopping' : 'starting: lease, device, subnet file or first sync not done yet';
  if (!st.leaseHeld) return 'lease lost; re-acquiring';
  if (!st.kernelInSync) return 'kernel entries differ from the leases; reconciling';
  return undefined;
}

function handle(src: HealthSources, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  const send = (code: number, type: string, body: string): void => {
    res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
  if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
  if (path === '/readyz') {
    const st = src.status();
    const reason = notReadyReason(st);
    return send(reason ? 503 : 200, 'application/json', `${JSON.stringify({ ready: !reason, ...(reason && { reason }), ...st })}\n`);
  }
  if (path === '/metrics') {
    src.metrics().then((text) => send(200, src.metricsContentType, text), (err) => send(500, 'text/plain', `${errorMessage(err)}\n`));
    return;
  }
  send(404, 'text/plain', 'not found: try /healthz, /readyz or /metrics\n');
}

/** Starts listening; rejects with a HostError naming the address when it cannot bind. */
export function startHealthServer(ip: string, port: number, src: HealthSources): Promise<Server> {
  const server = createServer((req, res) => handle(src, req, res));
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new HostError(`failed to listen on ${ip}:${port} (--healthz-ip/--healthz-port): ${errorMessage(err)}`, { cause: err })));
    server.listen(port, ip, () => resolve(server));
  });
}
