/**
 * A TCP proxy for fault injection (as the etcd3 client's own tests do): a node
 * reaches etcd through it, and the test cuts the link (every connection is
 * destroyed, new ones are refused) and heals it, deterministically.
 *
 * Run as a child process inside a namespace:
 *   node dist/testbed/tcp-proxy.js <listenHost> <listenPort> <targetHost> <targetPort>
 * and write `cut` / `heal` / `delay <ms>` lines to its stdin; it answers each
 * with `ok <cmd>`. `delay` holds every chunk that much longer in each direction
 * (order kept), widening the window between a client's read and its write.
 */
import { createConnection, createServer, Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { ChildProcess } from 'node:child_process';

export function runProxy(listenHost: string, listenPort: number, targetHost: string, targetPort: number): void {
  let cut = false;
  let delayMs = 0;
  const live = new Set<Socket>();
  /** Like `from.pipe(to)`, each chunk held `delayMs` first (timers of equal delay fire in order). */
  const forward = (from: Socket, to: Socket): void => {
    const later = (fn: () => void): void => void (delayMs > 0 ? setTimeout(fn, delayMs) : fn());
    from.on('data', (chunk) => later(() => to.write(chunk)));
    from.on('end', () => later(() => to.end()));
  };
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = createConnection({ host: targetHost, port: targetPort });
    for (const s of [client, upstream]) {
      live.add(s);
      s.on('close', () => live.delete(s));
      s.on('error', () => undefined);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    forward(client, upstream);
    forward(upstream, client);
  });
  server.listen(listenPort, listenHost, () => process.stdout.write('ok listening\n'));
  createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'cut') {
      cut = true;
      for (const s of live) s.destroy();
    } else if (cmd === 'heal') {
      cut = false;
    } else if (cmd.startsWith('delay ')) {
      delayMs = Number(cmd.slice('delay '.length)) || 0;
    }
    process.stdout.write(`ok ${cmd}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

/** Test-side handle: sends a command and waits for its acknowledgement. */
export function proxyControl(child: ChildProcess): { ready: Promise<void>; send(cmd: 'cut' | 'heal' | `delay ${number}`): Promise<void> } {
  const waiters: Array<{ want: string; resolve: () => void }> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const i = waiters.findIndex((w) => w.want === line.trim());
    if (i >= 0) waiters.splice(i, 1)[0]?.resolve();
  });
  const wait = (want: string): Promise<void> => new Promise((resolve) => waiters.push({ want, resolve }));
  return {
    ready: wait('ok listening'),
    send(cmd) {
      const done = wait(`ok ${cmd}`);
      child.stdin?.write(`${cmd}\n`);
      return done;
    },
  };
}

if (require.main === module) {
  const [lh, lp, th, tp] = process.argv.slice(2);
  if (!lh || !lp || !th || !tp) {
    process.stderr.write('usage: tcp-proxy <listenHost> <listenPort> <targetHost> <targetPort>\n');
    process.exit(2);
  }
  runProxy(lh, Number(lp), th, Number(tp));
}
