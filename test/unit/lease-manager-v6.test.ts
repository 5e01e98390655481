import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { allocateSubnet, allocateSubnet6 } from '../../src/lease/allocate';
import { subnetsPrefix } from '../../src/lease/codec';
import { AcquireOptions, acquireLease, isOwnRecord, ownLeaseValue } from '../../src/lease/lease-manager';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { formatCidr, makeCidr, parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { formatCidr6, parseCidr6, parseIPv6 } from '../../src/net/ipv6';
import { OutOfSubnetsError } from '../../src/util/errors';
import { silentLogger } from '../../src/util/log';

const PFX = '/coreos.com/network';
const DIR = subnetsPrefix(PFX);
const vx = '"Backend":{"Type":"vxlan"}';
const dual = parseNetworkConfig(`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48",${vx}}`);
const v6only = parseNetworkConfig(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48",${vx}}`);
const v4only = parseNetworkConfig(`{"Network":"10.7.0.0/16",${vx}}`);
const MAC4 = '6e:d5:a3:cb:6a:6b';
const MAC6 = 'a2:15:7c:0e:91:3d';

function opts(store: MemoryLeaseStore, over: Partial<AcquireOptions> & { ip6?: string; prev6?: string } = {}): AcquireOptions {
  const { ip6 = '2001:db8::10', prev6, ...rest } = over;
  return {
    store,
    config: dual,
    publicIP: parseIPv4('192.168.1.10'),
    vtepMAC: MAC4,
    previous: undefined,
    v6: { publicIP: parseIPv6(ip6), vtepMAC: MAC6, previous: prev6 === undefined ? undefined : parseCidr6(prev6) },
    ttlSeconds: 60,
    rand: () => 0,
    log: silentLogger(),
    ...rest,
  };
}

describe('acquireLease, dual-stack', () => {
  it('creates one & key holding flanneld\'s dual-stack value', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const own = await acquireLease(opts(store));
    expect(formatCidr(own.subnet)).toBe('10.7.1.0/24');
    expect(own.subnet6 && formatCidr6(own.subnet6)).toBe('fc00:0:0:1::/64');
    expect((await store.list()).records.map((r) => r.key)).toEqual([`${DIR}10.7.1.0-24&fc00:0:0:1::-64`]);
    expect(own.value).toBe(
      '{"PublicIP":"192.168.1.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"6e:d5:a3:cb:6a:6b"},"BackendV6Data":{"VNI":1,"VtepMAC":"a2:15:7c:0e:91:3d"}}',
    );
    expect(isOwnRecord(await store.get(own), own.value)).toBe(true);
  });
  it('counts the IPv4 part of & keys as taken, and checks each family only against its own', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    store.putRaw(`${DIR}10.7.1.0-24&fc00:0:0:9::-64`, ownLeaseValue({ ...opts(store, { ip6: '2001:db8::99' }), publicIP: parseIPv4('192.168.1.99') }));
    store.putRaw(`${DIR}10.7.9.0-24`, ownLeaseValue({ config: v4only, publicIP: parseIPv4('192.168.1.98'), vtepMAC: MAC4 }));
    const own = await acquireLease(opts(store));
    expect(formatCidr(own.subnet)).toBe('10.7.2.0/24');
    expect(own.subnet6 && formatCidr6(own.subnet6)).toBe('fc00:0:0:1::/64');
  });
  it('reuses its lease by PublicIP and the previous IPv6 subnet when free', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const first = await acquireLease(opts(store, { prev6: 'fc00:0:0:42::/64' }));
    expect(first.subnet6 && formatCidr6(first.subnet6)).toBe('fc00:0:0:42::/64');
    const again = await acquireLease(opts(store));
    expect(again.subnet6 && formatCidr6(again.subnet6)).toBe('fc00:0:0:42::/64');
    expect((await store.list()).records).toHaveLength(1);
  });
  it('drops its IPv4-only lease when IPv6 is turned on, but keeps the IPv4 subnet (flanneld draws a new one)', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    await acquireLease({ ...opts(store), config: v4only, previous: parseCidr('10.7.77.0/24') });
    const own = await acquireLease(opts(store));
    expect(formatCidr(own.subnet)).toBe('10.7.77.0/24');
    expect((await store.list()).records.map((r) => r.key)).toEqual([`${DIR}10.7.77.0-24&fc00:0:0:1::-64`]);
  });
  it('an & create loses to a bare IPv4 key of the same subnet written meanwhile', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    store.putRaw(`${DIR}10.7.5.0-24`, ownLeaseValue({ config: v4only, publicIP: parseIPv4('192.168.1.98'), vtepMAC: MAC4 }));
    expect(await store.create({ subnet: parseCidr('10.7.5.0/24'), subnet6: parseCidr6('fc00:0:0:5::/64') }, 'x', 60)).toBeUndefined();
  });
  it('says out of subnets naming the full family', async () => {
    const tiny = parseNetworkConfig(`{"Network":"10.7.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00:0:0:1::","IPv6SubnetMax":"fc00:0:0:1::",${vx}}`);
    const store = new MemoryLeaseStore({ prefix: PFX });
    store.putRaw(`${DIR}10.7.3.0-24&fc00:0:0:1::-64`, ownLeaseValue({ ...opts(store, { ip6: '2001:db8::99' }), publicIP: parseIPv4('192.168.1.99') }));
    await expect(acquireLease({ ...opts(store), config: tiny })).rejects.toThrow(OutOfSubnetsError);
    await expect(acquireLease({ ...opts(store), config: tiny })).rejects.toThrow(/fc00::\/48/);
  });
});

describe('acquireLease, IPv6-only (flanneld\'s is broken here; contract §11)', () => {
  it('writes 0.0.0.0-0&… with PublicIP 0.0.0.0 and no BackendData', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const own = await acquireLease({ ...opts(store), config: v6only });
    expect(own.subnet).toEqual(makeCidr(0, 0));
    expect((await store.list()).records.map((r) => r.key)).toEqual([`${DIR}0.0.0.0-0&fc00:0:0:1::-64`]);
    expect(own.value).toBe('{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"a2:15:7c:0e:91:3d"}}');
  });
  it('gives a second node its own key: ours is recognised by PublicIPv6, not by PublicIP 0.0.0.0', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const a = await acquireLease({ ...opts(store), config: v6only });
    const b = await acquireLease({ ...opts(store, { ip6: '2001:db8::20' }), config: v6only });
    expect(formatCidr6(b.subnet6!)).not.toBe(formatCidr6(a.subnet6!));
    const again = await acquireLease({ ...opts(store), config: v6only });
    expect(formatCidr6(again.subnet6!)).toBe(formatCidr6(a.subnet6!));
    expect((await store.list()).records).toHaveLength(2);
  });
  it('reuses the previous IPv6 subnet from subnet.env (flanneld never does for IPv6-only)', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const own = await acquireLease({ ...opts(store, { prev6: 'fc00:0:0:33::/64' }), config: v6only });
    expect(formatCidr6(own.subnet6!)).toBe('fc00:0:0:33::/64');
  });
  it('IPv6-only leases take no IPv4 subnet from a dual-stack neighbour\'s view', () => {
    expect(allocateSubnet(v6only, [], () => 0)).toBeUndefined();
  });
});

describe('allocateSubnet6', () => {
  it('skips taken and overlapping blocks and picks among up to 100 candidates', () => {
    const pool = dual.ipv6!;
    const taken = [parseCidr6('fc00:0:0:1::/64'), parseCidr6('fc00:0:0:2::/63'), parseCidr6('fc00::/16')].slice(0, 2);
    expect(formatCidr6(allocateSubnet6(pool, taken, () => 0)!)).toBe('fc00:0:0:4::/64');
    expect(formatCidr6(allocateSubnet6(pool, taken, () => 0.999999)!)).toBe('fc00:0:0:67::/64');
    expect(allocateSubnet6(pool, [parseCidr6('fc00::/47')], () => 0)).toBeUndefined();
  });
});

describe('acquireLease, two leases with our PublicIPv6 (IPv6-only)', () => {
  it('adopts the one subnet.env names', async () => {
    const store = new MemoryLeaseStore({ prefix: PFX });
    const value = ownLeaseValue({ config: v6only, publicIP: 0, vtepMAC: MAC4, v6: { publicIP: parseIPv6('2001:db8::10'), vtepMAC: MAC6, previous: undefined } });
    store.putRaw(`${DIR}0.0.0.0-0&fc00:0:0:3::-64`, value);
    store.putRaw(`${DIR}0.0.0.0-0&fc00:0:0:7::-64`, value);
    const own = await acquireLease({ ...opts(store, { prev6: 'fc00:0:0:7::/64' }), config: v6only });
    expect(formatCidr6(own.subnet6!)).toBe('fc00:0:0:7::/64');
    const other = await acquireLease({ ...opts(store, { prev6: 'fc00:0:0:3::/64' }), config: v6only });
    expect(formatCidr6(other.subnet6!)).toBe('fc00:0:0:3::/64');
  });
});
