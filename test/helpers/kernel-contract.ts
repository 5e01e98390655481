/**
 * The `Kernel` contract: one suite run against `MemoryKernel` (unit) and
 * `NetlinkKernel` in a private network namespace (integration), so the fake
 * cannot drift from the real thing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChangeCause, DeviceState, Entry, FdbEntry, Kernel, NeighborEntry, Operation, RTPROT_FLANNELD_TS, RouteEntry, VxlanSpec } from '../../src/kernel/kernel';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { formatIp } from '../../src/net/family';
import { parseIPv6 } from '../../src/net/ipv6';
import { KernelError } from '../../src/util/errors';

export interface KernelFixture {
  readonly kernel: Kernel;
  /** An up interface holding `localIP`, carrying the IPv4 default route. */
  readonly underlayIndex: number;
  readonly localIP: number;
  /** Makes `op` on the device behind the kernel object's back: iproute2 for the real one. */
  changeOutside(device: DeviceState, op: Operation): Promise<void>;
  cleanup(): Promise<void>;
}

const ip = parseIPv4;

/** The three entries of one peer (contract §5), for subnet 10.7.<n>.0/24. */
export function peerEntries(n: number, mac: string, publicIP: string): [NeighborEntry, FdbEntry, RouteEntry] {
  const gw = ip(`10.7.${n}.0`);
  return [
    { kind: 'neighbor', ip: gw, mac, permanent: true },
    { kind: 'fdb', mac, dst: ip(publicIP), permanent: true },
    { kind: 'route', dst: parseCidr(`10.7.${n}.0/24`), gateway: gw, onlink: true },
  ];
}

export const replace = (entry: Entry): Operation => ({ op: 'replace', entry });
export const remove = (entry: Entry): Operation => ({ op: 'delete', entry });

function entryKey(e: Entry): string {
  if (e.kind === 'route') return `route ${formatIp(e.dst.ip)}/${e.dst.prefixLen}`;
  return e.kind === 'neighbor' ? `neighbor ${formatIp(e.ip)}` : `fdb ${e.mac}`;
}

/** Entries in a stable order, for comparisons that do not care about listing order. */
export function sortEntries(entries: readonly Entry[]): Entry[] {
  return [...entries].sort((a, b) => entryKey(a).localeCompare(entryKey(b)));
}

/** Resolves once `check` holds, polling every 20 ms; rejects with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function waitForChange(kernel: Kernel, cause: () => Promise<void>, timeoutMs = 3_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = (): void => undefined;
    const timer = setTimeout(() => {
      off();
      reject(new Error('watch reported no change'));
    }, timeoutMs);
    off = kernel.watch(() => {
      clearTimeout(timer);
      off();
      resolve();
    });
    cause().catch(reject);
  });
}

/** The three IPv6 entries of one peer (contract §11), for subnet fc00:0:0:<n>::/64. */
export function peerEntries6(n: number, mac: string, publicIPv6: string): [NeighborEntry, FdbEntry, RouteEntry] {
  const gw = parseIPv6(`fc00:0:0:${n.toString(16)}::`);
  return [
    { kind: 'neighbor', ip: gw, mac, permanent: true },
    { kind: 'fdb', mac, dst: parseIPv6(publicIPv6), permanent: true },
    { kind: 'route', dst: { ip: gw, prefixLen: 64 }, gateway: gw, onlink: true },
  ];
}

export function kernelContract(name: string, setup: () => Promise<KernelFixture>): void {
  describe(`Kernel contract: ${name}`, () => {
    let f: KernelFixture;
    let created: number[] = [];
    let seq = 0;

    beforeAll(async () => {
      f = await setup();
    });
    afterAll(async () => {
      await f.cleanup();
    });
    afterEach(async () => {
      for (const index of created) await f.kernel.deleteLink(index);
      created = [];
    });

    /** A spec with a device name and VNI no other test uses (the kernel refuses two devices with one VNI). */
    function spec(overrides: Partial<VxlanSpec> = {}): VxlanSpec {
      seq++;
      const vni = 100 + seq;
      return { name: `kct${vni}`, vni, localIP: f.localIP, underlayIndex: f.underlayIndex, port: 8472, learning: false, gbp: false, mtu: 1450, ...overrides };
    }

    async function device(overrides: Partial<VxlanSpec> = {}, up = true): Promise<DeviceState> {
      const d = await f.kernel.createVxlan(spec(overrides), `02:aa:bb:cc:00:${(seq % 256).toString(16).padStart(2, '0')}`);
      created.push(d.index);
      if (up) await f.kernel.setLink(d.index, { up: true });
      return d;
    }

    async function applyOk(index: number, ops: Operation[]): Promise<void> {
      const results = await f.kernel.apply(index, ops);
      expect(results.map((r) => r.operation)).toEqual(ops);
      expect(results.map((r) => r.error?.message)).toEqual(ops.map(() => undefined));
    }

    it('createVxlan makes a device that getDevice reports field by field', async () => {
      const s = spec();
      const d = await f.kernel.createVxlan(s, '02:11:22:33:44:55');
      created.push(d.index);
      expect(await f.kernel.getDevice(s.name)).toEqual({
        index: d.index,
        name: s.name,
        kind: 'vxlan',
        mac: '02:11:22:33:44:55',
        mtu: 1450,
        up: false,
        vni: s.vni,
        localIP: f.localIP,
        underlayIndex: f.underlayIndex,
        port: 8472,
        learning: false,
        gbp: false,
        addresses: [],
        addresses6: [],
      });
      expect(d.index).toBeGreaterThan(0);
    });

    it('IPv6 (contract §11): a flannel-v6 device with an IPv6 local, its /128, and a peer\'s neighbour, FDB (16-byte dst) and onlink route', async () => {
      const d = await device({ localIP: parseIPv6('2001:db8::1') });
      expect(await f.kernel.getDevice(d.name)).toMatchObject({ kind: 'vxlan', localIP: parseIPv6('2001:db8::1'), underlayIndex: f.underlayIndex });
      const own = { ip: parseIPv6('fc00:0:0:5::'), prefixLen: 128 };
      await f.kernel.addAddress(d.index, own);
      expect((await f.kernel.getDevice(d.name))?.addresses6).toContainEqual(own);
      const a = peerEntries6(12, '02:00:0a:07:0c:06', '2001:db8::20');
      const b = peerEntries6(13, '02:00:0a:07:0d:06', '2001:db8::21');
      await applyOk(d.index, [...a, ...b].map(replace));
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([...a, ...b]));
      const moved: Entry = { ...a[1], dst: parseIPv6('2001:db8::99') };
      await applyOk(d.index, [replace(moved)]);
      await applyOk(d.index, [...b].reverse().map(remove));
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([a[0], moved, a[2]]));
      await f.kernel.deleteAddress(d.index, own);
      expect((await f.kernel.getDevice(d.name))?.addresses6).not.toContainEqual(own);
    });

    it('createVxlan honours learning, GBP and port', async () => {
      const d = await device({ learning: true, gbp: true, port: 4789 }, false);
      expect(await f.kernel.getDevice(d.name)).toMatchObject({ learning: true, gbp: true, port: 4789 });
    });

    it('createVxlan fails when the name exists, leaving the device alone', async () => {
      const d = await device();
      const again = f.kernel.createVxlan({ ...spec(), name: d.name }, '02:00:00:00:00:99');
      await expect(again).rejects.toBeInstanceOf(KernelError);
      await expect(again).rejects.toMatchObject({ errno: 'EEXIST' });
      expect((await f.kernel.getDevice(d.name))?.mac).toBe(d.mac);
    });

    it('getDevice of a missing name is undefined', async () => {
      expect(await f.kernel.getDevice('kct-none')).toBeUndefined();
    });

    it('lists the underlay with its address and finds the default route on it', async () => {
      const underlay = (await f.kernel.listInterfaces()).find((i) => i.index === f.underlayIndex);
      expect(underlay?.up).toBe(true);
      expect(underlay?.addresses).toContainEqual({ ip: f.localIP, prefixLen: 24, scope: 0 });
      expect(await f.kernel.defaultRouteInterface()).toBe(f.underlayIndex);
    });

    it('readHostNetwork reports the connected route, the default route and our routes with their devices', async () => {
      const d = await device();
      const [n, fdb, route] = peerEntries(31, '02:00:0a:07:1f:00', '10.65.154.31');
      await applyOk(d.index, [replace(n), replace(fdb), replace(route)]);
      const host = await f.kernel.readHostNetwork();
      expect(host.interfaces.find((i) => i.index === f.underlayIndex)?.addresses).toContainEqual({ ip: f.localIP, prefixLen: 24, scope: 0 });
      const main = host.routes.filter((r) => r.table === 254);
      const connected = main.find((r) => r.dst.prefixLen === 24 && r.devices.includes(f.underlayIndex) && r.protocol === 2);
      expect(connected).toMatchObject({ dst: { ip: (f.localIP & 0xffffff00) >>> 0, prefixLen: 24 }, scope: 253, type: 1 });
      expect(main.some((r) => r.dst.prefixLen === 0 && r.devices.includes(f.underlayIndex))).toBe(true);
      expect(main.find((r) => r.devices.includes(d.index))).toMatchObject({ dst: route.dst, gateway: route.gateway, protocol: 3, type: 1 });
    });

    it('replaces, lists and deletes route, neighbour and FDB entries', async () => {
      const d = await device();
      const a = peerEntries(12, '02:00:0a:07:0c:00', '10.65.154.20');
      const b = peerEntries(13, '02:00:0a:07:0d:00', '10.65.154.21');
      await applyOk(d.index, [...a, ...b].map(replace));
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([...a, ...b]));
      await applyOk(d.index, [...a].reverse().map(remove));
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries(b));
    });

    it('direct routes (proto 152, no device): listed with the device\'s entries, one slot per destination with the onlink route, deleted only as ours', async () => {
      const d = await device();
      const [n, fdb, onlink] = peerEntries(40, '02:00:0a:07:28:00', '10.65.154.40');
      const direct: RouteEntry = { kind: 'route', dst: onlink.dst, gateway: ip('10.65.154.40'), onlink: false, direct: true };
      await applyOk(d.index, [n, fdb, onlink].map(replace));
      // The direct route takes the onlink route's place (same destination, table and metric).
      await applyOk(d.index, [replace(direct)]);
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb, direct]));
      const host = await f.kernel.readHostNetwork();
      expect(host.routes.filter((r) => r.protocol === RTPROT_FLANNELD_TS)).toEqual([expect.objectContaining({ dst: direct.dst, gateway: direct.gateway, table: 254, devices: [f.underlayIndex] })]);
      // A delete names the gateway and our protocol: another gateway's delete leaves it.
      await applyOk(d.index, [remove({ ...direct, gateway: ip('10.65.154.41') })]);
      expect(await f.kernel.listEntries(d.index)).toContainEqual(direct);
      await applyOk(d.index, [replace(onlink)]);
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb, onlink]));
      await applyOk(d.index, [replace(direct), remove(direct)]);
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb]));
      // The lookup DirectRouting decides by: no gateway on the underlay's subnet, the default route's gateway elsewhere.
      expect(await f.kernel.routeGet(ip('10.65.154.40'))).toMatchObject({ index: f.underlayIndex, gateway: undefined, type: 'unicast' });
      expect(await f.kernel.routeGet(ip('192.0.2.1'))).toMatchObject({ index: f.underlayIndex, gateway: ip('10.65.154.1') });
    });

    it('IPv6 direct routes (proto 152, no device): one slot per destination with flannel-v6\'s onlink route, deleted only as ours; the IPv6 lookup', async () => {
      const d = await device({ localIP: parseIPv6('2001:db8::1') });
      // As the daemon leaves flannel-v6: its own subnet's /128 on it.
      await f.kernel.addAddress(d.index, { ip: parseIPv6('fc00:0:0:5::'), prefixLen: 128 });
      const segment = { ip: parseIPv6('2001:db8:40::1'), prefixLen: 64 };
      await f.kernel.addAddress(f.underlayIndex, segment);
      const [n, fdb, onlink] = peerEntries6(0x40, '02:00:0a:07:28:06', '2001:db8:40::40');
      const direct: RouteEntry = { kind: 'route', dst: onlink.dst, gateway: parseIPv6('2001:db8:40::40'), onlink: false, direct: true };
      try {
        await applyOk(d.index, [n, fdb, onlink].map(replace));
        await applyOk(d.index, [replace(direct)]);
        expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb, direct]));
        const host = await f.kernel.readHostNetwork();
        expect((host.routes6 ?? []).filter((r) => r.protocol === RTPROT_FLANNELD_TS)).toEqual([expect.objectContaining({ dst: direct.dst, gateway: direct.gateway, table: 254, devices: [f.underlayIndex] })]);
        await applyOk(d.index, [remove({ ...direct, gateway: parseIPv6('2001:db8:40::41') })]);
        expect(await f.kernel.listEntries(d.index)).toContainEqual(direct);
        // Unlike IPv4, the onlink route cannot replace the direct one: its gateway lies in the direct route's subnet.
        const [refused] = await f.kernel.apply(d.index, [replace(onlink)]);
        expect((refused?.error as KernelError | undefined)?.errno).toBe('EINVAL');
        await applyOk(d.index, [remove(direct), replace(onlink)]);
        expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb, onlink]));
        await applyOk(d.index, [replace(direct), remove(direct)]);
        expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb]));
        // What DirectRouting decides an IPv6 half by: on the segment, no gateway.
        expect(await f.kernel.routeGet(parseIPv6('2001:db8:40::40'))).toMatchObject({ index: f.underlayIndex, gateway: undefined, type: 'unicast' });
      } finally {
        // A direct route belongs to no device of the test: it must not outlive it.
        await f.kernel.apply(d.index, [remove(direct)]);
        await f.kernel.deleteAddress(f.underlayIndex, segment);
      }
    });

    it('replace is idempotent', async () => {
      const d = await device();
      const ops = peerEntries(14, '02:00:0a:07:0e:00', '10.65.154.22').map(replace);
      await applyOk(d.index, ops);
      await applyOk(d.index, ops);
      expect(await f.kernel.listEntries(d.index)).toHaveLength(3);
    });

    it('replace overwrites by key: FDB dst by MAC, neighbour MAC by IP, route gateway by dst', async () => {
      const d = await device();
      const [n, fdb, r] = peerEntries(15, '02:00:0a:07:0f:00', '10.65.154.23');
      await applyOk(d.index, [n, fdb, r].map(replace));
      const changed: Entry[] = [
        { ...n, mac: '02:00:0a:07:0f:99' },
        { ...fdb, dst: ip('10.65.154.99') },
        { ...r, gateway: ip('10.7.15.1') },
      ];
      await applyOk(d.index, changed.map(replace));
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries(changed));
    });

    it('deleting missing entries succeeds', async () => {
      const d = await device();
      await applyOk(d.index, peerEntries(16, '02:00:0a:07:10:00', '10.65.154.24').reverse().map(remove));
    });

    it('lists only the entries of the device asked for', async () => {
      const d1 = await device();
      const d2 = await device();
      const a = peerEntries(17, '02:00:0a:07:11:00', '10.65.154.25');
      await applyOk(d1.index, a.map(replace));
      expect(await f.kernel.listEntries(d2.index)).toEqual([]);
      expect(sortEntries(await f.kernel.listEntries(d1.index))).toEqual(sortEntries(a));
    });

    it('apply reports per-operation errors, in order, without rejecting', async () => {
      const d = await device();
      const [n, fdb] = peerEntries(18, '02:00:0a:07:12:00', '10.65.154.26');
      // No connected route reaches 10.7.19.0 on the device: without onlink the kernel refuses.
      const unreachable: RouteEntry = { kind: 'route', dst: parseCidr('10.7.19.0/24'), gateway: ip('10.7.19.0'), onlink: false };
      const ops = [replace(n), replace(unreachable), replace(fdb)];
      const results = await f.kernel.apply(d.index, ops);
      expect(results.map((r) => r.operation)).toEqual(ops);
      expect(results[0]?.error).toBeUndefined();
      expect(results[2]?.error).toBeUndefined();
      const err = results[1]?.error;
      expect(err).toBeInstanceOf(KernelError);
      expect((err as KernelError).errno).toBe('ENETUNREACH');
      expect(err?.message).toBe(`failed to replace route 10.7.19.0/24 via 10.7.19.0 on ${d.name}: ENETUNREACH`);
      expect(sortEntries(await f.kernel.listEntries(d.index))).toEqual(sortEntries([n, fdb]));
    });

    it('routes need the device up; taking it down drops routes and neighbours, not FDB entries', async () => {
      const d = await device({}, false);
      const [n, fdb, r] = peerEntries(20, '02:00:0a:07:14:00', '10.65.154.27');
      const results = await f.kernel.apply(d.index, [n, fdb, r].map(replace));
      expect(results.map((x) => (x.error as KernelError | undefined)?.errno)).toEqual([undefined, undefined, 'ENETDOWN']);
      await f.kernel.setLink(d.index, { up: true });
      await applyOk(d.index, [r].map(replace));
      await f.kernel.setLink(d.index, { up: false });
      expect(await f.kernel.listEntries(d.index)).toEqual([fdb]);
    });

    it('addAddress replaces, deleteAddress removes, and a missing address is fine', async () => {
      const d = await device();
      const a = { ip: ip('10.7.5.0'), prefixLen: 32 };
      await f.kernel.addAddress(d.index, a);
      await f.kernel.addAddress(d.index, a);
      expect((await f.kernel.getDevice(d.name))?.addresses).toEqual([a]);
      await f.kernel.deleteAddress(d.index, a);
      await f.kernel.deleteAddress(d.index, a);
      expect((await f.kernel.getDevice(d.name))?.addresses).toEqual([]);
    });

    it('setLink changes MTU and up state', async () => {
      const d = await device({}, false);
      await f.kernel.setLink(d.index, { up: true });
      expect(await f.kernel.getDevice(d.name)).toMatchObject({ up: true, mtu: 1450 });
      await f.kernel.setLink(d.index, { mtu: 1400 });
      expect(await f.kernel.getDevice(d.name)).toMatchObject({ up: true, mtu: 1400 });
      await f.kernel.setLink(d.index, { up: false, mtu: 1380 });
      expect(await f.kernel.getDevice(d.name)).toMatchObject({ up: false, mtu: 1380 });
    });

    it('watch fires after a change, and not after unsubscribing', async () => {
      const d = await device();
      await waitForChange(f.kernel, () => f.kernel.addAddress(d.index, { ip: ip('10.7.6.0'), prefixLen: 32 }));
      await waitForChange(f.kernel, async () => {
        await f.kernel.apply(d.index, peerEntries(21, '02:00:0a:07:15:00', '10.65.154.28').map(replace));
      });
      let calls = 0;
      const off = f.kernel.watch(() => calls++);
      off();
      await f.kernel.deleteAddress(d.index, { ip: ip('10.7.6.0'), prefixLen: 32 });
      await new Promise((r) => setTimeout(r, 50));
      expect(calls).toBe(0);
    });

    it('watch reports an outside change as external and our apply as our own', async () => {
      const d = await device();
      const causes: ChangeCause[] = [];
      const off = f.kernel.watch((cause) => causes.push(cause));
      try {
        // Also waits until the watch listens: an outside change is repeated until one is heard.
        for (let n = 1; !causes.includes('external'); n++) {
          if (n > 50) throw new Error('no outside change was reported as external');
          const probe: RouteEntry = { kind: 'route', dst: parseCidr(`10.99.${n}.0/24`), gateway: ip(`10.99.${n}.0`), onlink: true };
          await f.changeOutside(d, replace(probe));
          await until('the outside route is reported', () => causes.includes('external'), 200).catch(() => undefined);
        }
        const [neighbor, fdb, route] = peerEntries(41, '02:00:0a:07:29:00', '10.65.154.41');
        causes.length = 0;
        await applyOk(d.index, [neighbor, fdb, route].map(replace));
        await until('our apply is reported', () => causes.includes('own'));
        // Our own notifications may still be on their way; none of them may count as external.
        await new Promise((r) => setTimeout(r, 300));
        expect(causes.filter((c) => c !== 'own')).toEqual([]);
        causes.length = 0;
        await f.changeOutside(d, remove(route));
        await until('an outside delete is reported as external', () => causes.includes('external'));
        expect(causes).not.toContain('own');
      } finally {
        off();
      }
    });

    it('deleteLink removes the device; deleting it again succeeds', async () => {
      const d = await device();
      await f.kernel.deleteLink(d.index);
      await f.kernel.deleteLink(d.index);
      expect(await f.kernel.getDevice(d.name)).toBeUndefined();
      created = created.filter((i) => i !== d.index);
    });
  });
}
