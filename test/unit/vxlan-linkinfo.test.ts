import { describe, expect, it } from 'vitest';
import { decodeLinkInfo, encodeVxlanLinkInfo, parseAttributes } from '../../src/kernel/vxlan-linkinfo';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';

const base = { vni: 1, underlayIndex: 3, localIP: parseIPv4('10.65.154.19'), port: 8472, learning: false, gbp: false };

// What the kernel returned for `ip link add fl1 type vxlan id 1 local 10.65.154.19 dev vA dstport 8472 nolearning gbp`
// (ifindex 3), captured with the netlink package's getLink: all the attributes the kernel dumps, nested flag bits included.
const KERNEL_DUMP =
  '0a00010076786c616e000000dc00020008000100010000000800030003000000080004000a419a13050005000000000005001c0000000000050006000000000005001d000000000008001a00000000000800200000000000050007000000000005000b000000000005000c000000000005000d000000000005000e00000000000500190000000000080008002c010000080009000000000006000f00211800000500120001000000050013000000000005001400000000000500150000000000050016000000000005001f000100000008000a0000000000040017000c00210077000000000000ff';

describe('encodeVxlanLinkInfo', () => {
  it('encodes kind and the VXLAN attributes byte for byte', () => {
    const hex = encodeVxlanLinkInfo(base).toString('hex');
    expect(hex).toBe(
      [
        '0a000100', '76786c616e000000', // IFLA_INFO_KIND "vxlan\0" padded
        '2c000200', // IFLA_INFO_DATA, 44 bytes
        '08000100', '01000000', // ID 1 (host order)
        '08000300', '03000000', // LINK 3
        '08000400', '0a419a13', // LOCAL 10.65.154.19
        '05000700', '00000000', // LEARNING 0, padded
        '06000f00', '21180000', // PORT 8472 big-endian, padded
      ].join(''),
    );
  });

  it('adds GBP as a zero-length flag and learning as 1', () => {
    const buf = encodeVxlanLinkInfo({ ...base, gbp: true, learning: true });
    const data = parseAttributes(buf).find((a) => a.type === 2)?.payload;
    const attrs = parseAttributes(data ?? Buffer.alloc(0));
    expect(attrs.find((a) => a.type === 23)?.payload.length).toBe(0);
    expect(attrs.find((a) => a.type === 7)?.payload[0]).toBe(1);
  });

  it('round-trips through the decoder', () => {
    for (const spec of [base, { ...base, vni: 16777215, port: 4789, learning: true, gbp: true, underlayIndex: 70000 }]) {
      expect(decodeLinkInfo(encodeVxlanLinkInfo(spec))).toEqual({ kind: 'vxlan', vxlan: spec });
    }
  });
});

describe('decodeLinkInfo', () => {
  it('reads what the kernel dumps for a VXLAN link', () => {
    expect(decodeLinkInfo(Buffer.from(KERNEL_DUMP, 'hex'))).toEqual({
      kind: 'vxlan',
      vxlan: { vni: 1, underlayIndex: 3, localIP: parseIPv4('10.65.154.19'), port: 8472, learning: false, gbp: true },
    });
  });

  it('reports the kind of other links without VXLAN fields', () => {
    expect(decodeLinkInfo(Buffer.from('090001007665746800000000', 'hex'))).toEqual({ kind: 'veth' });
    expect(decodeLinkInfo(undefined)).toEqual({ kind: '' });
    expect(decodeLinkInfo(Buffer.alloc(0))).toEqual({ kind: '' });
  });

  it('masks the nested flag in attribute types', () => {
    // IFLA_INFO_DATA sent with NLA_F_NESTED (0x8000), holding ID 7.
    const nested = Buffer.from('0a00010076786c616e0000000c000280' + '0800010007000000', 'hex');
    expect(decodeLinkInfo(nested)).toEqual({ kind: 'vxlan', vxlan: { vni: 7, gbp: false } });
  });

  it('treats an unset local (0.0.0.0) as absent', () => {
    const info = decodeLinkInfo(encodeVxlanLinkInfo({ ...base, localIP: 0 }));
    expect(info.vxlan?.localIP).toBeUndefined();
  });

  it('an IPv6 local goes in IFLA_VXLAN_LOCAL6 (17, 16 bytes), as `ip link add flannel-v6.1 type vxlan … local 2001:db8::1` sends it', () => {
    const info = { ...base, localIP: parseIPv6('2001:db8::1') };
    const data = parseAttributes(parseAttributes(encodeVxlanLinkInfo(info))[1]!.payload);
    // iproute2 6.1 (strace): [LINK 3][ID][LOCAL6 14 00 11 00 20 01 0d b8 … 01][LEARNING 0][PORT 21 18]; the kernel does not care about order.
    expect(data.find((a) => a.type === 17)?.payload.toString('hex')).toBe('20010db8000000000000000000000001');
    expect(data.some((a) => a.type === 4)).toBe(false);
    expect(decodeLinkInfo(encodeVxlanLinkInfo(info)).vxlan).toEqual(info);
    // What the kernel dumps for that link: LOCAL6 present, LOCAL absent.
    const dumped = Buffer.from('0a00010076786c616e0000003800020008000100010000000800030003000000140011002001' + '0db8000000000000000000000001' + '05000700000000000600' + '0f0021180000', 'hex');
    expect(decodeLinkInfo(dumped).vxlan).toEqual(info);
  });

  it('treats an unset IPv6 local (::) as absent', () => {
    const info = { ...base, localIP: 0n };
    expect(decodeLinkInfo(encodeVxlanLinkInfo(info)).vxlan?.localIP).toBeUndefined();
  });

  it('throws RangeError on a truncated attribute', () => {
    expect(() => decodeLinkInfo(Buffer.from('0a000100767878', 'hex'))).toThrow(RangeError);
    expect(() => decodeLinkInfo(Buffer.from('02000100', 'hex'))).toThrow(RangeError);
  });
});
