/** The reconciler's passes against MemoryKernel: when it reads the kernel, and how bursts coalesce. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { Entry, Kernel } from '../../src/kernel/kernel';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { Lease } from '../../src/lease/lease';
import { parseCidr, parseIPv4 } from '../../src/net/ipv4';
import { desiredState } from '../../src/overlay/desired-book';
import { KernelIndex } from '../../src/overlay/kernel-index';
import * as plan from '../../src/overlay/plan';
import { PassResult, Reconciler } from '../../src/overlay/reconciler';
import { waitFor } from '../../src/testbed/scene';
import { systemClock } from '../../src/util/clock';
import { createLogger, Logger, silentLogger } from '../../src/util/log';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
const self = { subnet: parseCidr('10.7.5.0/24'), publicIP: parseIPv4('10.65.154.11') };
const lease = (n: number): Lease => ({ subnet: parseCidr(`10.7.${n}.0/24`), publicIP: parseIPv4(`10.65.155.${n}`), backendType: 'vxlan', vni: 1, vtepMAC: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}` });

// Counts whole-state plans (every peer against the listing), passing through.
const fullPlans = vi.hoisted(() => ({ count: 0 }));
vi.mock('../../src/overlay/plan', async (importOriginal) => {
  const real = await importOriginal<typeof plan>();
  return { ...real, planChanges: (...args: Parameters<typeof real.planChanges>) => (fullPlans.count++, real.planChanges(...args)) };
});

const stops: AbortController[] = [];
afterEach(() => stops.splice(0).forEach((c) => c.abort()));

async function setup(opts: { verifyMs?: number; coalesceMs?: number; periodMs?: number; log?: Logger; onOverflow?: () => void } = {}) {
  const mem = new MemoryKernel();
  mem.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [] });
  const dev = await mem.createVxlan({ name: 'flannel.1', vni: 1, localIP: self.publicIP, underlayIndex: 2, port: 8472, learning: false, gbp: false, mtu: 1450 }, '02:00:00:00:00:05');
  await mem.setLink(dev.index, { up: true });
  let lists = 0;
  let hostReads = 0;
  // Counts the listings: the expensive read this design avoids on lease-only passes.
  const kernel: Kernel = new Proxy(mem, {
    get(target, prop, receiver) {
      if (prop === 'listEntries') return (i: number, canonical?: (e: Entry) => Entry) => (lists++, target.listEntries(i, canonical));
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
    periodMs: opts.periodMs ?? 60_000,
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

  it('plans nothing when a listing finds the device as it left it, and everything when an entry differs; one index throughout', async () => {
    const t = await setup();
    t.join(10);
    t.join(11);
    await waitFor('peers', async () => (await t.entries()).length === 6, 2000, 5);
    const of = vi.spyOn(KernelIndex, 'of');
    const plans = fullPlans.count;
    try {
      let lists = t.lists();
      t.mem.loseNotifications();
      await waitFor('listed again', () => t.lists() > lists && t.passes.length > 0, 2000, 5);
      await waitFor('pass done', () => t.r.synced, 2000, 5);
      expect(of).not.toHaveBeenCalled();
      expect(fullPlans.count).toBe(plans);
      expect(t.passes.at(-1)?.planned).toBe(0);
      // An entry someone else removed: the index takes the listing in place, a whole plan, the repair.
      lists = t.lists();
      t.mem.removeEntry(t.dev.index, { kind: 'neighbor', ip: parseIPv4('10.7.11.0'), mac: '02:00:00:00:00:0b', permanent: true });
      await waitFor('repaired', async () => t.lists() > lists && (await t.entries()).length === 6, 2000, 5);
      expect(of).not.toHaveBeenCalled();
      expect(fullPlans.count).toBe(plans + 1);
      expect(t.passes.at(-1)?.repairs).toBe(1);
    } finally {
      of.mockRestore();
    }
  });

  it('plans every peer on the periodic pass even when the listing matches what it knows', async () => {
    const t = await setup({ periodMs: 100 });
    t.join(10);
    await waitFor('peer', async () => (await t.entries()).length === 3, 2000, 5);
    const plans = fullPlans.count;
    const lists = t.lists();
    await waitFor('two periodic passes', () => t.lists() >= lists + 2, 2000, 5);
    expect(fullPlans.count).toBeGreaterThanOrEqual(plans + 2);
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
