/** The reconciler's passes against MemoryKernel: when it reads the kernel, and how bursts coalesce. */
import { afterEach, describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { Entry, Kernel } from '../../src/kernel/kernel';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { Lease } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { desiredState } from '../../src/overlay/desired-book';
import { PassResult, Reconciler } from '../../src/overlay/reconciler';
import { waitFor } from '../../src/testbed/scene';
import { systemClock } from '../../src/util/clock';
import { createLogger, Logger, silentLogger } from '../../src/util/log';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: parseIPv4('10.65.154.11') };
const lease = (n: number): Lease => ({ subnet: parseCidr(`10.7.${n}.0/24`), publicIP: parseIPv4(`10.65.155.${n}`), backendType: 'vxlan', vni: 1, vtepMAC: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}` });

const stops: AbortController[] = [];
afterEach(() => stops.splice(0).forEach((c) => c.abort()));

async function setup(opts: { verifyMs?: number; coalesceMs?: number; log?: Logger; onOverflow?: () => void } = {}) {
  const mem = new MemoryKernel();
  mem.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [] });
  const dev = await mem.createVxlan({ name: 'flannel.1', vni: 1, localIP: self.publicIP, underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 }, '02:00:00:00:00:05');
  await mem.setLink(dev.index, { up: true });
  let lists = 0;
  let hostReads = 0;
  // Counts the listings: the expensive read this design avoids on lease-only passes.
  const kernel: Kernel = new Proxy(mem, {
    get(target, prop, receiver) {
      if (prop === 'listEntries') return (i: number) => (lists++, target.listEntries(i));
      if (prop === 'readHostNetwork') return () => (hostReads++, target.readHostNetwork());
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const leases: Lease[] = [];
  let generation = 0;
  const passes: PassResult[] = [];
  const r = new Reconciler({
    kernel,
    desired: () => desiredState(self, leases, config),
    generation: () => generation,
    ensureDevice: async () => dev,
    log: opts.log ?? silentLogger(),
    ...(opts.onOverflow && { onOverflow: opts.onOverflow }),
    clock: systemClock,
    rand: () => 0.5,
    periodMs: 60_000,
    coalesceMs: opts.coalesceMs ?? 2,
    verifyMs: opts.verifyMs ?? 60_000,
    onPass: (p) => passes.push(p),
  });
  const ctl = new AbortController();
  stops.push(ctl);
  void r.run(ctl.signal);
  await r.waitSynced(ctl.signal);
  const join = (n: number): void => {
    leases.push(lease(n));
    generation++;
    r.markDirty();
  };
  return { mem, dev, r, join, passes, lists: () => lists, hostReads: () => hostReads, entries: async (): Promise<Entry[]> => mem.listEntries(dev.index) };
}

describe('Reconciler', () => {
  it('plans lease-only passes against the kept entries, without listing the kernel again', async () => {
    const t = await setup();
    const before = t.lists();
    for (let n = 10; n < 15; n++) {
      t.join(n);
      await waitFor(`peer ${n}`, async () => (await t.entries()).length === 3 * (n - 9), 2000, 5);
    }
    expect(t.lists()).toBe(before);
  });

  it('lists the kernel again after someone else changes it, and repairs it', async () => {
    const t = await setup();
    t.join(10);
    await waitFor('peer', async () => (await t.entries()).length === 3, 2000, 5);
    const before = t.lists();
    t.mem.removeEntry(t.dev.index, { kind: 'route', dst: parseCidr('10.7.10.0/24'), gateway: parseIPv4('10.7.10.0'), onlink: true });
    await waitFor('repaired', async () => (await t.entries()).length === 3, 2000, 5);
    expect(t.lists()).toBe(before + 1);
    expect(t.passes.at(-1)?.repairs).toBe(1);
  });

  it('after lost notifications (overflow): counts each, logs once per episode, lists and repairs', async () => {
    const lines: string[] = [];
    let overflows = 0;
    const t = await setup({ log: createLogger('info', { write: (l: string) => void lines.push(l) }), onOverflow: () => overflows++ });
    t.join(10);
    await waitFor('peer', async () => (await t.entries()).length === 3, 2000, 5);
    const before = t.lists();
    // Nothing else happens: only the overflow says the kernel may have changed.
    t.mem.loseNotifications();
    t.mem.loseNotifications();
    await waitFor('listed again', () => t.lists() > before, 2000, 5);
    expect(overflows).toBe(2);
    expect(lines.filter((l) => l.includes('kernel notifications were lost'))).toHaveLength(1);
  });

  it('verifies its own changes with one listing after a quiet period', async () => {
    const t = await setup({ verifyMs: 50 });
    const before = t.lists();
    t.join(10);
    t.join(11);
    await waitFor('peers', async () => (await t.entries()).length === 6, 2000, 5);
    await waitFor('one verification listing', () => t.lists() === before + 1, 2000, 5);
    await new Promise((r) => setTimeout(r, 150));
    expect(t.lists()).toBe(before + 1);
  });

  it('reads the host network once per listing pass, the verification of its own changes included', async () => {
    const t = await setup({ verifyMs: 50 });
    expect(t.hostReads()).toBe(t.lists()); // start-up
    t.join(10);
    await waitFor('peer', async () => (await t.entries()).length === 3, 2000, 5);
    const lists = t.lists();
    await waitFor('verification listing', () => t.lists() === lists + 1, 2000, 5);
    expect(t.hostReads()).toBe(t.lists());
  });

  it('lists the kernel again after a failed operation', async () => {
    const t = await setup();
    t.mem.failNext((c) => c.method === 'apply', new Error('EBUSY'));
    const before = t.lists();
    t.join(10);
    await waitFor('peer despite one failure', async () => (await t.entries()).length === 3, 3000, 5);
    expect(t.lists()).toBeGreaterThan(before);
  });

  it('turns a burst of lease events into one pass', async () => {
    const t = await setup({ coalesceMs: 20 });
    const before = t.passes.length;
    for (let n = 10; n < 40; n++) {
      t.join(n);
      await new Promise((r) => setTimeout(r, 2));
    }
    await waitFor('all peers', async () => (await t.entries()).length === 90, 3000, 5);
    expect(t.passes.length - before).toBeLessThanOrEqual(2);
  });
});
