/**
 * The `Capture` seam of `trace --capture`: record packets at several interfaces
 * at once while probes run, then hand back one pcap file per point.
 * `TcpdumpCapture` runs the system's `tcpdump -w` (one process per interface,
 * each with its own BPF filter); `ReplayCapture` hands back pcap files it was
 * given, so hop verdicts are tested without packets.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

/** Where to capture: an interface of this namespace and a tcpdump filter. */
export interface CapturePoint {
  /** Key of the result (the hop's name, e.g. "veth"). */
  readonly name: string;
  readonly iface: string;
  readonly filter: string;
}

export interface CaptureSession {
  /** The pcap bytes written so far per point name; capture goes on (`trace --listen` polls this). */
  snapshot(): Promise<Map<string, Buffer>>;
  /** Stops every capture; the pcap bytes per point name. */
  stop(): Promise<Map<string, Buffer>>;
}

export interface Capture {
  /** Starts capturing at every point; resolves once all are listening. Rejects with CaptureUnavailableError. */
  start(points: readonly CapturePoint[]): Promise<CaptureSession>;
}

/** Capture cannot run here: no tcpdump, no privileges, no such interface. */
export class CaptureUnavailableError extends Error {}

// Enough for outer Ethernet + IPv4 + UDP + VXLAN + inner Ethernet + IPv4 + ICMP headers (92 bytes).
const SNAPLEN = 200;
const READY_MS = 10_000;

/** The system's tcpdump: `tcpdump -i <iface> -n -U -s 200 -w <file> <filter>` per point. */
export class TcpdumpCapture implements Capture {
  constructor(private readonly binary = 'tcpdump') {}

  async start(points: readonly CapturePoint[]): Promise<CaptureSession> {
    const dir = await mkdtemp(join(tmpdir(), 'flts-capture-'));
    const children = points.map((p) => {
      const file = join(dir, `${p.name}.pcap`);
      // --immediate-mode: each packet reaches tcpdump at once; otherwise it sits in a ring block until
      // the block's timeout (1 s), and the packets of a block not yet handed over when SIGINT comes are lost.
      // -Z: stay the user we are (Debian's tcpdump otherwise becomes user tcpdump, which cannot write into our 0700 directory).
      const args = ['-i', p.iface, '-n', '--immediate-mode', '-U', '-s', String(SNAPLEN), '-Z', userInfo().username, '-w', file, p.filter];
      const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      const ready = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new CaptureUnavailableError(`tcpdump on ${p.iface} did not start listening within ${READY_MS / 1000} s`)), READY_MS);
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d;
          if (/listening on /.test(stderr)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          reject(new CaptureUnavailableError(err.code === 'ENOENT' ? `${this.binary} is not installed (apt-get install tcpdump)` : `failed to start ${this.binary}: ${err.message}`));
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new CaptureUnavailableError(`tcpdump on ${p.iface} exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}`));
        });
      });
      const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
      return { point: p, file, child, ready, exited };
    });
    const stopAll = async (): Promise<void> => {
      for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGINT');
      await Promise.all(children.map((c) => Promise.race([c.exited, new Promise<void>((r) => setTimeout(r, 3000).unref())])));
    };
    try {
      await Promise.all(children.map((c) => c.ready));
    } catch (err) {
      await stopAll();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const read = async (): Promise<Map<string, Buffer>> => {
      const out = new Map<string, Buffer>();
      for (const c of children) out.set(c.point.name, await readFile(c.file).catch(() => Buffer.alloc(0)));
      return out;
    };
    return {
      // -U flushes each packet to the file as it is captured, so the file can be read while tcpdump runs.
      snapshot: read,
      async stop() {
        await stopAll();
        const out = await read();
        await rm(dir, { recursive: true, force: true });
        return out;
      },
    };
  }
}

/** A fake that replays pcap files: `stop()` returns the bytes given for each point asked for. */
export class ReplayCapture implements Capture {
  readonly started: CapturePoint[][] = [];

  constructor(private readonly files: ReadonlyMap<string, Buffer>) {}

  async start(points: readonly CapturePoint[]): Promise<CaptureSession> {
    this.started.push([...points]);
    const files = this.files;
    const given = async (): Promise<Map<string, Buffer>> => new Map(points.flatMap((p) => (files.has(p.name) ? [[p.name, files.get(p.name) as Buffer] as const] : [])));
    return { snapshot: given, stop: given };
  }
}
