/**
 * A request layer of our own over one raw rtnetlink socket, for the two hot
 * paths: the thousands of acknowledged route, neighbour and FDB changes of an
 * apply, and the dumps of every listing pass. Links, addresses and lookups, a
 * handful per pass, stay on the `netlink` package's request layer.
 *
 * Why: the package parses every received message into objects, keeps all of a
 * dump's messages until its DONE, and arms a timer per request. At 5,000 peers
 * a listing with the host's routes cost 95 ms of CPU and grew the old
 * generation by 2.9 MB (46 ms and 2.5 MB here, README "Work per listing"),
 * garbage that stayed until the next full collection. Here a datagram
 * is walked in place: each message of a dump is handed to the caller's decoder
 * and dropped, an acknowledgement settles its request, and one timer sweeps the
 * deadlines (requests all have the same timeout, so they expire in the order
 * they were sent).
 *
 * Failures reject with a `NetlinkRequestError` whose `code` is the errno name
 * (what `netlink-errors.ts` reads). A failed receive the package reports means
 * replies may be lost, which ones unknown: every pending request fails with it
 * at once instead of waiting for its timeout, and a late reply to one is
 * ignored. (An overflow that the kernel signals through poll instead aborts
 * inside the package, README "Why the watch is a child process"; the socket
 * joins no groups, and NetlinkKernel keeps at most 64 requests in flight, whose
 * acknowledgements fit its 1 MiB receive buffer many times over.)
 */
import { RawNetlinkSocket } from 'netlink';
import { getSystemErrorName } from 'node:util';

const NETLINK_ROUTE = 0;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLMSG_HDRLEN = 16;
const SWEEP_MS = 500;

/** A request the kernel refused, or one that was never answered; `code` is the errno name. */
export class NetlinkRequestError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'NetlinkRequestError';
  }
}

interface Pending {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  readonly deadline: number;
  /** For a dump: each message of the reply but DONE, with its body. */
  readonly onMessage?: (type: number, body: Buffer) => void;
}

/** What the transport uses of the package's raw socket; tests pass a fake. */
export interface RawSocket {
  on(event: 'message' | 'truncatedMessage', listener: (datagram: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error & { code?: string }) => void): unknown;
  send(msg: Uint8Array[], options: { port: number }, callback: (error?: Error & { code: string }) => void): void;
  ref(): void;
  unref(): void;
  close(): void;
}

export interface RtnlTransportOptions {
  readonly recvBufferSize: number;
  readonly timeoutMs: number;
  /** The socket to use instead of a new NETLINK_ROUTE one (tests). */
  readonly socket?: RawSocket;
}

export class RtnlTransport {
  private readonly raw: RawSocket;
  private readonly pending = new Map<number, Pending>();
  private readonly timeoutMs: number;
  private seq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: RtnlTransportOptions) {
    this.timeoutMs = options.timeoutMs;
    this.raw = options.socket ?? new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: options.recvBufferSize, sendBufferSize: 0 });
    this.raw.on('message', (datagram: Buffer) => this.receive(datagram));
    // Message peeking sizes every read to its datagram; a truncated one cannot be walked.
    this.raw.on('truncatedMessage', () => this.failAll(new NetlinkRequestError('reply truncated', 'EMSGSIZE')));
    // An unheard 'error' event would throw inside the package's native callback and abort the process.
    this.raw.on('error', (err: Error & { code?: string }) => this.failAll(new NetlinkRequestError(`receive failed: ${err.code ?? err.message}`, err.code ?? 'EIO')));
    this.raw.unref();
  }

  /** Sends one change (NLM_F_REQUEST | NLM_F_ACK | `flags`); resolves on the kernel's zero acknowledgement. */
  request(type: number, flags: number, body: Buffer): Promise<void> {
    return this.start(type, flags | NLM_F_ACK, body, undefined);
  }

  /** Sends a dump request (`flags` should hold NLM_F_DUMP) and hands `onMessage` each message of the reply until DONE. */
  dump(type: number, flags: number, body: Buffer, onMessage: (type: number, body: Buffer) => void): Promise<void> {
    return this.start(type, flags, body, onMessage);
  }

  /** Fails what is pending and closes the socket. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new NetlinkRequestError('netlink socket closed', 'ECANCELED'));
    this.raw.close();
  }

  /** Requests waiting for their reply (for tests). */
  get inFlight(): number {
    return this.pending.size;
  }

  private start(type: number, flags: number, body: Buffer, onMessage: Pending['onMessage']): Promise<void> {
    if (this.closed) return Promise.reject(new NetlinkRequestError('netlink socket closed', 'ECANCELED'));
    this.seq = (this.seq % 0xffffffff) + 1;
    const seq = this.seq;
    const header = Buffer.allocUnsafe(NLMSG_HDRLEN);
    header.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
    header.writeUInt16LE(type, 4);
    header.writeUInt16LE(flags | NLM_F_REQUEST, 6);
    header.writeUInt32LE(seq, 8);
    // Port 0: the kernel answers the sending socket whatever the header says.
    header.writeUInt32LE(0, 12);
    return new Promise<void>((resolve, reject) => {
      if (this.pending.size === 0) this.raw.ref();
      this.pending.set(seq, { resolve, reject, deadline: Date.now() + this.timeoutMs, onMessage });
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
      this.raw.send([header, body], { port: 0 }, (error) => {
        if (error) this.settle(seq, new NetlinkRequestError(`send failed: ${error.code}`, error.code));
      });
    });
  }

  private receive(datagram: Buffer): void {
    for (let at = 0; at + NLMSG_HDRLEN <= datagram.length; ) {
      const len = datagram.readUInt32LE(at);
      if (len < NLMSG_HDRLEN || at + len > datagram.length) break;
      const type = datagram.readUInt16LE(at + 4);
      const seq = datagram.readUInt32LE(at + 8);
      const p = this.pending.get(seq);
      if (p) {
        if (type === NLMSG_ERROR || type === NLMSG_DONE) {
          // struct nlmsgerr starts with a negative errno (0: an acknowledgement); a DONE may carry one too.
          const errno = len >= NLMSG_HDRLEN + 4 ? -datagram.readInt32LE(at + NLMSG_HDRLEN) : 0;
          this.settle(seq, errno > 0 ? errnoError(errno) : undefined);
        } else if (p.onMessage) {
          try {
            p.onMessage(type, datagram.subarray(at + NLMSG_HDRLEN, at + len));
          } catch (err) {
            this.settle(seq, err instanceof Error ? err : new Error(String(err)));
          }
        }
      }
      at += (len + 3) & ~3;
    }
  }

  private settle(seq: number, error: Error | undefined): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    if (this.pending.size === 0) this.idle();
    if (error) p.reject(error);
    else p.resolve();
  }

  private sweep(): void {
    const now = Date.now();
    // Insertion order is deadline order: stop at the first request still in time.
    for (const [seq, p] of this.pending) {
      if (p.deadline > now) break;
      this.settle(seq, new NetlinkRequestError(`Timeout has been reached after ${this.timeoutMs} ms`, 'ETIMEDOUT'));
    }
  }

  private failAll(error: Error): void {
    for (const seq of [...this.pending.keys()]) this.settle(seq, error);
  }

  private idle(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    if (!this.closed) this.raw.unref();
  }
}

function errnoError(errno: number): NetlinkRequestError {
  let name: string;
  try {
    name = getSystemErrorName(-errno);
  } catch {
    name = `errno ${errno}`;
  }
  return new NetlinkRequestError(`Request rejected: ${name}`, name);
}
