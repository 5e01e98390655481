import { describe, expect, it } from 'vitest';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { parseIPv4 } from '../../src/net/ipv4';
import { KernelError } from '../../src/util/errors';
import { kernelContract, peerEntries, replace } from '../helpers/kernel-contract';

const localIP = parseIPv4('10.65.154.19');

function memoryKernel(): MemoryKernel {
  const kernel = new MemoryKernel();
  kernel.addInterface({ index: 1, name: 'lo', mtu: 65536, up: true, addresses: [{ ip: parseIPv4('127.0.0.1'), prefixLen: 8, scope: 254 }] });
  kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: localIP, prefixLen: 24, scope: 0 }] });
  kernel.setDefaultRoute(2, parseIPv4('10.65.154.1'));
  return kernel;
}

kernelContract('MemoryKernel', async () => {
  const kernel = memoryKernel();
  return {
    kernel,
    underlayIndex: 2,
    localIP,
    changeOutside: async (device, { op, entry }) => (op === 'replace' ? kernel.putEntry(device.index, entry) : kernel.removeEntry(device.index, entry)),
    cleanup: async () => undefined,
  };
});

describe('MemoryKernel test conveniences', () => {
  const spec = { name: 'flannel.1', vni: 1, localIP, underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 };

  it('failNext fails the next matching call once, and records calls', async () => {
    const kernel = memoryKernel();
    const d = await kernel.createVxlan(spec, '02:00:00:00:00:01');
    await kernel.setLink(d.index, { up: true });
    const boom = new KernelError('failed to replace fdb: EBUSY', 'EBUSY', true);
    kernel.failNext((c) => c.method === 'apply' && c.operation.entry.kind === 'fdb', boom);
    const ops = peerEntries(12, '02:00:0a:07:0c:00', '10.65.154.20').map(replace);
    const first = await kernel.apply(d.index, ops);
    expect(first.map((r) => r.error)).toEqual([undefined, boom, undefined]);
    const second = await kernel.apply(d.index, ops);
    expect(second.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    expect(kernel.calls.filter((c) => c.method === 'apply')).toHaveLength(6);
  });

  it('putEntry and removeEntry change state behind the caller and fire watch', async () => {
    const kernel = memoryKernel();
    const d = await kernel.createVxlan(spec, '02:00:00:00:00:01');
    const [n, fdb] = peerEntries(12, '02:00:0a:07:0c:00', '10.65.154.20');
    let changes = 0;
    kernel.watch(() => changes++);
    kernel.putEntry(d.index, n);
    kernel.putEntry(d.index, fdb);
    kernel.removeEntry(d.index, n);
    await Promise.resolve();
    expect(await kernel.listEntries(d.index)).toEqual([fdb]);
    expect(changes).toBe(3);
  });

  it('a failed createVxlan leaves no device', async () => {
    const kernel = memoryKernel();
    kernel.failNext((c) => c.method === 'createVxlan', new KernelError('failed to create: EPERM', 'EPERM', false));
    await expect(kernel.createVxlan(spec, '02:00:00:00:00:01')).rejects.toThrow('EPERM');
    expect(await kernel.getDevice('flannel.1')).toBeUndefined();
  });
});
