import { describe, expect, it } from 'vitest';
import { decodeHostRoute, decodeHostRoute6 } from '../../src/kernel/host-routes';
import { parseIPv6 } from '../../src/net/ipv6';

// struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags } + attributes.
function rtmsg(fields: { family?: number; dstLen: number; table: number; protocol: number; scope: number; type: number }, attrs: Buffer[]): Buffer {
  const h = Buffer.alloc(12);
  h.set([fields.family ?? 2, fields.dstLen, 0, 0, fields.table, fields.protocol, fields.scope, fields.type]);
  return Buffer.concat([h, ...attrs]);
}
function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const ip = (a: number, b: number, c: number, d: number): Buffer => Buffer.from([a, b, c, d]);

describe('decodeHostRoute', () => {
  it('reads dst, table (RTA_TABLE wins over the header), protocol, scope, type, device and gateway', () => {
    const r = decodeHostRoute(rtmsg({ dstLen: 24, table: 252, protocol: 4, scope: 0, type: 1 }, [attr(15, u32(1000)), attr(1, ip(10, 7, 77, 0)), attr(5, ip(10, 65, 154, 1)), attr(4, u32(2))]));
    expect(r).toEqual({ dst: { ip: 0x0a074d00, prefixLen: 24 }, table: 1000, protocol: 4, scope: 0, type: 1, devices: [2], gateway: 0x0a419a01 });
  });
  it('takes every device of a multipath route and none of a blackhole', () => {
    const nexthop = (ifindex: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(8, 0);
      b.writeInt32LE(ifindex, 4);
      return b;
    };
    const multi = decodeHostRoute(rtmsg({ dstLen: 16, table: 254, protocol: 3, scope: 0, type: 1 }, [attr(1, ip(192, 168, 0, 0)), attr(9, Buffer.concat([nexthop(3), nexthop(5)]))]));
    expect(multi?.devices).toEqual([3, 5]);
    const hole = decodeHostRoute(rtmsg({ dstLen: 8, table: 254, protocol: 4, scope: 0, type: 6 }, [attr(1, ip(10, 0, 0, 0))]));
    expect(hole).toMatchObject({ dst: { ip: 0x0a000000, prefixLen: 8 }, type: 6, devices: [] });
  });
  it('leaves out a route whose every device is the excepted one, and keeps the others', () => {
    const nexthop = (ifindex: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(8, 0);
      b.writeInt32LE(ifindex, 4);
      return b;
    };
    const ours = rtmsg({ dstLen: 24, table: 254, protocol: 3, scope: 0, type: 1 }, [attr(1, ip(10, 7, 12, 0)), attr(5, ip(10, 7, 12, 0)), attr(4, u32(7))]);
    expect(decodeHostRoute(ours, 7)).toBeUndefined();
    expect(decodeHostRoute(ours, 2)?.devices).toEqual([7]);
    expect(decodeHostRoute(ours)?.devices).toEqual([7]);
    const split = rtmsg({ dstLen: 16, table: 254, protocol: 3, scope: 0, type: 1 }, [attr(1, ip(192, 168, 0, 0)), attr(9, Buffer.concat([nexthop(7), nexthop(2)]))]);
    expect(decodeHostRoute(split, 7)?.devices).toEqual([7, 2]);
    const hole = rtmsg({ dstLen: 8, table: 254, protocol: 4, scope: 0, type: 6 }, [attr(1, ip(10, 0, 0, 0))]);
    expect(decodeHostRoute(hole, 7)?.devices).toEqual([]);
  });
  it('ignores other families and short messages; a default route has dst 0/0', () => {
    expect(decodeHostRoute(rtmsg({ family: 10, dstLen: 64, table: 254, protocol: 2, scope: 0, type: 1 }, []))).toBeUndefined();
    expect(decodeHostRoute(Buffer.alloc(8))).toBeUndefined();
    expect(decodeHostRoute(rtmsg({ dstLen: 0, table: 254, protocol: 3, scope: 0, type: 1 }, [attr(4, u32(2))]))?.dst).toEqual({ ip: 0, prefixLen: 0 });
  });
});

describe('decodeHostRoute6', () => {
  const v6 = (text: string): Buffer => Buffer.from(text, 'hex');
  it('reads an IPv6 route with 16-byte RTA_DST and RTA_GATEWAY; each decoder leaves the other family alone', () => {
    // `2001:db8:77::/48 via 2001:db8:154::1 dev eth0 table main`: rtmsg AF_INET6 /48, RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF.
    const data = rtmsg({ family: 10, dstLen: 48, table: 254, protocol: 3, scope: 0, type: 1 }, [
      attr(15, u32(254)),
      attr(1, v6('20010db8007700000000000000000000')),
      attr(5, v6('20010db8015400000000000000000001')),
      attr(4, u32(2)),
    ]);
    expect(decodeHostRoute6(data)).toEqual({ dst: { ip: parseIPv6('2001:db8:77::'), prefixLen: 48 }, table: 254, protocol: 3, scope: 0, type: 1, devices: [2], gateway: parseIPv6('2001:db8:154::1') });
    expect(decodeHostRoute(data)).toBeUndefined();
    expect(decodeHostRoute6(rtmsg({ dstLen: 24, table: 254, protocol: 3, scope: 0, type: 1 }, [attr(1, ip(10, 7, 0, 0))]))).toBeUndefined();
  });
});
