import { afterEach, describe, expect, it, vi } from 'vitest';
import { NetlinkRequestError, RawSocket, RtnlTransport } from '../../src/kernel/rtnl-transport';
import { errnoName } from '../../src/kernel/netlink-errors';

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const NLM_F_DUMP = 0x300;

// A raw socket that records what is sent and lets the test deliver datagrams.
class FakeSocket implements RawSocket {
  readonly sent: Buffer[] = [];
  readonly listeners = new Map<string, (x: never) => void>();
  refs = 0;
  closed = false;
  sendError: (Error & { code: string }) | undefined;
  on(event: string, listener: (x: never) => void): this {
    this.listeners.set(event, listener);
    return this;
  }
  send(msg: Uint8Array[], _options: { port: number }, callback: (error?: Error & { code: string }) => void): void {
    this.sent.push(Buffer.concat(msg));
    const error = this.sendError;
    queueMicrotask(() => callback(error));
  }
  ref(): void {
    this.refs = 1;
  }
  unref(): void {
    this.refs = 0;
  }
  close(): void {
    this.closed = true;
  }
  deliver(event: 'message' | 'truncatedMessage' | 'error', arg: unknown): void {
    (this.listeners.get(event) as (x: unknown) => void)(arg);
  }
  /** Sequence number of the n-th request sent. */
  seqOf(n: number): number {
    return (this.sent[n] as Buffer).readUInt32LE(8);
  }
}

function message(type: number, seq: number, body: Buffer): Buffer {
  const len = 16 + body.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(type === NLMSG_DONE ? 2 : 0, 6);
  out.writeUInt32LE(seq, 8);
  body.copy(out, 16);
  return out;
}

// struct nlmsgerr: a negative errno, then the header of the request it answers.
function ack(seq: number, errno = 0): Buffer {
  const body = Buffer.alloc(20);
  body.writeInt32LE(-errno, 0);
  return message(NLMSG_ERROR, seq, body);
}

function done(seq: number, errno = 0): Buffer {
  const body = Buffer.alloc(4);
  body.writeInt32LE(-errno, 0);
  return message(NLMSG_DONE, seq, body);
}

function setup(timeoutMs = 10_000): { fake: FakeSocket; t: RtnlTransport } {
  const fake = new FakeSocket();
  return { fake, t: new RtnlTransport({ recvBufferSize: 0, timeoutMs, socket: fake }) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('RtnlTransport', () => {
  it('sends struct nlmsghdr + body with REQUEST|ACK and the given flags, port 0, a fresh sequence each time', async () => {
    const { fake, t } = setup();
    const body = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const a = t.request(RTM_NEWROUTE, 0x500, body);
    const b = t.request(RTM_NEWROUTE, 0, body);
    const [first, second] = fake.sent as [Buffer, Buffer];
    expect(first.readUInt32LE(0)).toBe(24);
    expect(first.readUInt16LE(4)).toBe(RTM_NEWROUTE);
    expect(first.readUInt16LE(6)).toBe(0x500 | 0x1 | 0x4);
    expect(first.readUInt32LE(12)).toBe(0);
    expect(first.subarray(16)).toEqual(body);
    expect(second.readUInt32LE(8)).not.toBe(first.readUInt32LE(8));
    fake.deliver('message', Buffer.concat([ack(fake.seqOf(1)), ack(fake.seqOf(0))]));
    await expect(Promise.all([a, b])).resolves.toEqual([undefined, undefined]);
  });

  it('rejects with the errno name of a refusal, as netlink-errors reads it', async () => {
    const { fake, t } = setup();
    const p = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12));
    fake.deliver('message', ack(fake.seqOf(0), 2));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkRequestError);
    expect(errnoName(err)).toBe('ENOENT');
    expect((err as Error).message).toBe('Request rejected: ENOENT');
  });

  it('hands a dump each message as it arrives, across datagrams, and resolves on DONE', async () => {
    const { fake, t } = setup();
    const seen: Array<[number, string]> = [];
    const p = t.dump(RTM_GETROUTE, NLM_F_DUMP, Buffer.alloc(12), (type, body) => seen.push([type, body.toString('hex')]));
    const first = fake.sent[0] as Buffer;
    expect(first.readUInt16LE(6)).toBe(NLM_F_DUMP | 0x1);
    const seq = fake.seqOf(0);
    fake.deliver('message', Buffer.concat([message(RTM_NEWROUTE, seq, Buffer.from('aabbccdd', 'hex')), message(RTM_NEWROUTE, seq, Buffer.from('01', 'hex'))]));
    expect(seen).toEqual([
      [RTM_NEWROUTE, 'aabbccdd'],
      [RTM_NEWROUTE, '01'],
    ]);
    // Another request's reply in the same datagram is not this dump's.
    fake.deliver('message', Buffer.concat([message(RTM_NEWROUTE, seq + 100, Buffer.alloc(4)), message(RTM_NEWROUTE, seq, Buffer.from('02', 'hex')), done(seq)]));
    await p;
    expect(seen.map(([, b]) => b)).toEqual(['aabbccdd', '01', '02']);
    expect(t.inFlight).toBe(0);
  });

  it('fails a dump whose DONE carries an error, or whose decoder throws', async () => {
    const { fake, t } = setup();
    const a = t.dump(RTM_GETROUTE, NLM_F_DUMP, Buffer.alloc(12), () => undefined);
    fake.deliver('message', done(fake.seqOf(0), 16));
    expect(errnoName(await a.catch((e: unknown) => e))).toBe('EBUSY');
    const b = t.dump(RTM_GETROUTE, NLM_F_DUMP, Buffer.alloc(12), () => {
      throw new Error('bad message');
    });
    fake.deliver('message', Buffer.concat([message(RTM_NEWROUTE, fake.seqOf(1), Buffer.alloc(4)), done(fake.seqOf(1))]));
    await expect(b).rejects.toThrow('bad message');
  });

  it('stops walking a datagram at a malformed header', async () => {
    const { fake, t } = setup();
    const seen: number[] = [];
    const p = t.dump(RTM_GETROUTE, NLM_F_DUMP, Buffer.alloc(12), (type) => seen.push(type));
    const bad = message(RTM_NEWROUTE, fake.seqOf(0), Buffer.alloc(4));
    bad.writeUInt32LE(500, 0);
    fake.deliver('message', Buffer.concat([message(RTM_NEWROUTE, fake.seqOf(0), Buffer.alloc(4)), bad, done(fake.seqOf(0))]));
    expect(seen).toEqual([RTM_NEWROUTE]);
    expect(t.inFlight).toBe(1);
    fake.deliver('message', done(fake.seqOf(0)));
    await p;
  });

  it('fails every pending request at once on a receive error (ENOBUFS) and ignores their late replies', async () => {
    const { fake, t } = setup();
    const ps = [0, 1, 2].map(() => t.request(RTM_NEWROUTE, 0, Buffer.alloc(12)).catch((e: unknown) => errnoName(e)));
    fake.deliver('error', Object.assign(new Error('recv'), { code: 'ENOBUFS' }));
    expect(await Promise.all(ps)).toEqual(['ENOBUFS', 'ENOBUFS', 'ENOBUFS']);
    fake.deliver('message', ack(fake.seqOf(1)));
    const next = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12));
    fake.deliver('message', ack(fake.seqOf(3)));
    await expect(next).resolves.toBeUndefined();
  });

  it('fails pending requests on a truncated datagram and on a failed send', async () => {
    const { fake, t } = setup();
    const a = t.dump(RTM_GETROUTE, NLM_F_DUMP, Buffer.alloc(12), () => undefined);
    fake.deliver('truncatedMessage', Buffer.alloc(16));
    expect(errnoName(await a.catch((e: unknown) => e))).toBe('EMSGSIZE');
    fake.sendError = Object.assign(new Error('send'), { code: 'EPERM' });
    expect(errnoName(await t.request(RTM_NEWROUTE, 0, Buffer.alloc(12)).catch((e: unknown) => e))).toBe('EPERM');
  });

  it('times requests out in the order they were sent, with the code netlink-errors calls transient', async () => {
    vi.useFakeTimers();
    const { fake, t } = setup(1_000);
    const a = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12)).catch((e: unknown) => errnoName(e));
    await vi.advanceTimersByTimeAsync(600);
    const b = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12)).catch((e: unknown) => errnoName(e));
    await vi.advanceTimersByTimeAsync(600);
    expect(await a).toBe('ETIMEDOUT');
    expect(t.inFlight).toBe(1);
    fake.deliver('message', ack(fake.seqOf(1)));
    expect(await b).toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('holds the event loop only while a request is pending, and fails what is pending on close', async () => {
    const { fake, t } = setup();
    expect(fake.refs).toBe(0);
    const p = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12));
    expect(fake.refs).toBe(1);
    fake.deliver('message', ack(fake.seqOf(0)));
    await p;
    expect(fake.refs).toBe(0);
    const q = t.request(RTM_NEWROUTE, 0, Buffer.alloc(12)).catch((e: unknown) => errnoName(e));
    t.close();
    expect(await q).toBe('ECANCELED');
    expect(fake.closed).toBe(true);
    await expect(t.request(RTM_NEWROUTE, 0, Buffer.alloc(12))).rejects.toThrow('netlink socket closed');
  });
});
