import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DeviceState, VxlanSpec } from '../../src/kernel/kernel';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { describeEntry } from '../../src/kernel/kernel';
import { randomMac } from '../../src/net/mac';
import { deviceMismatch, ensureDeviceAddress, ensureVxlanDevice } from '../../src/kernel/vxlan-device';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { Logger } from '../../src/util/log';

const ip = parseIPv4;
const spec: VxlanSpec = { name: 'flannel.1', vni: 1, localIP: ip('10.65.154.19'), underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 };
const state: DeviceState = {
  index: 7,
  name: 'flannel.1',
  kind: 'vxlan',
  mac: '6e:d5:a3:cb:6a:6b',
  mtu: 1450,
  up: true,
  vni: 1,
  localIP: ip('10.65.154.19'),
  underlayIndex: 2,
  port: 8472,
  learning: false,
  gbp: false,
  addresses: [],
};

/** A logger whose lines land in an array. */
function capture(): { log: Logger; lines: Array<{ level: number; msg: string } & Record<string, unknown>> } {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** Fixed "random" bytes: 0x11 0x22 … so MACs are predictable. */
const bytes = (seed: number) => () => randomMac((n: number) => Uint8Array.from({ length: n }, (_, i) => (seed + i * 0x11) & 0xff));

function kernel(): MemoryKernel {
  const k = new MemoryKernel();
  k.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: spec.localIP as number, prefixLen: 24, scope: 0 }] });
  return k;
}

describe('deviceMismatch', () => {
  const cases: Array<[string, Partial<DeviceState>, string]> = [
    ['identical', {}, ''],
    ['MTU, learning and MAC are no reason', { mtu: 9000, learning: true, mac: '02:00:00:00:00:01', up: false }, ''],
    ['kind', { kind: 'veth' }, 'kind "veth" != "vxlan"'],
    ['no kind', { kind: '' }, 'kind "" != "vxlan"'],
    ['vni', { vni: 2 }, 'vni 2 != 1'],
    ['underlay', { underlayIndex: 3 }, 'underlay ifindex 3 != 2'],
    ['no underlay', { underlayIndex: undefined }, 'underlay ifindex (none) != 2'],
    ['local', { localIP: ip('10.65.154.20') }, 'local 10.65.154.20 != 10.65.154.19'],
    ['no local', { localIP: undefined }, 'local (none) != 10.65.154.19'],
    ['port', { port: 4789 }, 'dstport 4789 != 8472'],
    ['gbp', { gbp: true }, 'gbp true != false'],
    ['several', { vni: 2, port: 4789 }, 'vni 2 != 1, dstport 4789 != 8472'],
  ];
  for (const [name, change, want] of cases) {
    it(name, () => expect(deviceMismatch(spec, { ...state, ...change })).toBe(want));
  }
});

describe('ensureVxlanDevice', () => {
  it('creates a missing device with a random locally administered MAC', async () => {
    const k = kernel();
    const { log, lines } = capture();
    const { device, created } = await ensureVxlanDevice(k, spec, log, bytes(0x11));
    expect(created).toBe(true);
    expect(device).toMatchObject({ name: 'flannel.1', kind: 'vxlan', vni: 1, mtu: 1450, mac: '12:22:33:44:55:66' });
    expect(lines.map((l) => l.msg)).toEqual(['created VXLAN device']);
  });

  it('adopts a compatible device and keeps its MAC', async () => {
    const k = kernel();
    const first = await ensureVxlanDevice(k, spec, capture().log, bytes(0x11));
    const { log, lines } = capture();
    const again = await ensureVxlanDevice(k, spec, log, bytes(0x40));
    expect(again.created).toBe(false);
    expect(again.device.mac).toBe(first.device.mac);
    expect(again.device.index).toBe(first.device.index);
    expect(k.calls.filter((c) => c.method === 'deleteLink')).toEqual([]);
    expect(lines.map((l) => l.msg)).toEqual(['adopted existing VXLAN device']);
  });

  it('recreates a mismatched device with a new MAC, saying why at warn', async () => {
    const k = kernel();
    await k.createVxlan({ ...spec, vni: 2 }, '02:00:00:00:00:02');
    const { log, lines } = capture();
    const { device, created } = await ensureVxlanDevice(k, spec, log, bytes(0x11));
    expect(created).toBe(true);
    expect(device).toMatchObject({ vni: 1, mac: '12:22:33:44:55:66' });
    expect(lines[0]).toMatchObject({ level: 40, reason: 'vni 2 != 1' });
    expect(lines).toHaveLength(2);
  });

  it('replaces a non-VXLAN link of that name', async () => {
    const k = kernel();
    k.addInterface({ index: 9, name: 'flannel.1', mtu: 1500, up: true, addresses: [] });
    const { device, created } = await ensureVxlanDevice(k, spec, capture().log, bytes(0x11));
    expect(created).toBe(true);
    expect(device.kind).toBe('vxlan');
  });

  it('corrects the MTU of an adopted device', async () => {
    const k = kernel();
    await ensureVxlanDevice(k, { ...spec, mtu: 1400 }, capture().log, bytes(0x11));
    const { log, lines } = capture();
    const { device, created } = await ensureVxlanDevice(k, spec, log, bytes(0x40));
    expect(created).toBe(false);
    expect(device.mtu).toBe(1450);
    expect((await k.getDevice('flannel.1'))?.mtu).toBe(1450);
    expect(lines).toEqual([expect.objectContaining({ msg: 'corrected VXLAN device MTU', from: 1400, to: 1450 })]);
  });

  it('recreates a device that differs only in learning, keeping its MAC', async () => {
    const k = kernel();
    await k.createVxlan({ ...spec, learning: true }, '02:00:00:00:00:07');
    const { device, created } = await ensureVxlanDevice(k, spec, capture().log, bytes(0x11));
    expect(created).toBe(true);
    expect(device).toMatchObject({ learning: false, mac: '02:00:00:00:00:07' });
  });
});

describe('ensureDeviceAddress', () => {
  const network = parseCidr('10.7.0.0/16');
  const address = parseCidr('10.7.5.0/32');

  async function setup(addresses: string[], up: boolean): Promise<{ k: MemoryKernel; device: DeviceState }> {
    const k = kernel();
    const d = await k.createVxlan(spec, '02:00:00:00:00:01');
    for (const a of addresses) {
      const [text, len] = a.split('/');
      await k.addAddress(d.index, { ip: ip(text as string), prefixLen: Number(len) });
    }
    if (up) await k.setLink(d.index, { up: true });
    return { k, device: (await k.getDevice(spec.name)) as DeviceState };
  }

  it('adds the /32, brings the link up, one log line each', async () => {
    const { k, device } = await setup([], false);
    const { log, lines } = capture();
    await ensureDeviceAddress(k, device, address, network, log);
    expect(await k.getDevice(spec.name)).toMatchObject({ up: true, addresses: [address] });
    expect(lines.map((l) => l.msg)).toEqual(['added address to VXLAN device', 'brought VXLAN device up']);
  });

  it('removes stray addresses inside the network and keeps those outside', async () => {
    const { k, device } = await setup(['10.7.9.0/32', '10.7.5.0/24', '192.168.1.5/24'], true);
    const { log, lines } = capture();
    await ensureDeviceAddress(k, device, address, network, log);
    const after = await k.getDevice(spec.name);
    expect(after?.addresses).toEqual([{ ip: ip('192.168.1.5'), prefixLen: 24 }, address]);
    expect(lines.filter((l) => l.msg === 'removed stale address from VXLAN device').map((l) => l.address)).toEqual(['10.7.9.0/32', '10.7.5.0/24']);
  });

  it('changes nothing when all is in place', async () => {
    const { k, device } = await setup(['10.7.5.0/32'], true);
    const before = k.calls.length;
    const { log, lines } = capture();
    await ensureDeviceAddress(k, device, address, network, log);
    expect(k.calls.length).toBe(before);
    expect(lines).toEqual([]);
  });
});

describe('describeEntry', () => {
  it('reads like iproute2 objects', () => {
    expect(describeEntry({ kind: 'route', dst: parseCidr('10.7.12.0/24'), gateway: ip('10.7.12.0'), onlink: true })).toBe('route 10.7.12.0/24 via 10.7.12.0 onlink');
    expect(describeEntry({ kind: 'neighbor', ip: ip('10.7.12.0'), mac: '02:00:00:00:00:01', permanent: true })).toBe('neighbor 10.7.12.0 lladdr 02:00:00:00:00:01');
    expect(describeEntry({ kind: 'fdb', mac: '02:00:00:00:00:01', dst: ip('10.65.154.20'), permanent: true })).toBe('fdb 02:00:00:00:00:01 dst 10.65.154.20');
  });
});
