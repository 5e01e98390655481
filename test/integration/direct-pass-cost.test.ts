/**
 * What DirectRouting costs a reconcile pass at 5,000 peers, on the real kernel
 * (NetlinkKernel in the private namespace the suite runs in): the same
 * Reconciler the daemon runs, with and without DirectRouting, timing the cold
 * pass (programs every peer), a full listing pass with nothing to do, and, with
 * DirectRouting, a full pass right after the host's addressing changed (every
 * PublicIP looked up again). The figures are printed, not asserted (a shared,
 * busy machine); the test asserts what each pass did (entries, lookups).
 */
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { DeviceState } from '../../src/kernel/kernel';
import { NetlinkKernel } from '../../src/kernel/netlink-kernel';
import { Lease } from '../../src/lease/lease';
import { formatIPv4, parseIPv4 } from '../../src/net/ipv4';
import { IPV4 } from '../../src/net/family';
import { desiredState } from '../../src/overlay/desired-book';
import { DirectDecisions } from '../../src/overlay/direct-routing';
import { PassResult, Reconciler } from '../../src/overlay/reconciler';
import { underlayChecker } from '../../src/overlay/underlay';
import { systemClock } from '../../src/util/clock';
import { createLogger } from '../../src/util/log';
import { assertPrivateNetns } from '../helpers/private-netns';

const PEERS = 5_000;
const UNDERLAY = `dpc${process.pid % 10000}`;
const sh = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const config = (direct: boolean) => parseNetworkConfig(`{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":${direct ? 77 : 78},"DirectRouting":${direct}}}`);

/** Peers 10.<1+i/250>.<i%250>.0/24 at 10.96.<i/250>.<1+i%250>: all on the underlay's /16, so all direct when DirectRouting is on. */
const leases: Lease[] = Array.from({ length: PEERS }, (_, i) => ({
  subnet: { ip: parseIPv4(`10.${1 + Math.floor(i / 250)}.${i % 250}.0`), prefixLen: 24 },
  publicIP: parseIPv4(`10.96.${Math.floor(i / 250)}.${1 + (i % 250)}`),
  backendType: 'vxlan',
  vni: 0,
  vtepMAC: `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
}));

let kernel: NetlinkKernel;
let underlayIndex = 0;

beforeAll(() => {
  assertPrivateNetns();
  sh('link', 'add', UNDERLAY, 'type', 'veth', 'peer', 'name', `${UNDERLAY}p`);
  sh('addr', 'add', '10.96.255.254/16', 'dev', UNDERLAY);
  sh('link', 'set', UNDERLAY, 'up');
  sh('link', 'set', `${UNDERLAY}p`, 'up');
  underlayIndex = Number(execFileSync('cat', [`/sys/class/net/${UNDERLAY}/ifindex`], { encoding: 'utf8' }).trim());
  kernel = new NetlinkKernel();
});

afterAll(() => {
  kernel?.close();
  // Deleting the underlay drops the direct routes through it; the VXLAN devices go by name.
  for (const dev of [UNDERLAY, 'flannel.77', 'flannel.78']) {
    try {
      sh('link', 'del', dev);
    } catch {
      // already gone
    }
  }
});

async function run(direct: boolean): Promise<{ cold: PassResult; idle: PassResult; rehome?: PassResult; lookups: number[] }> {
  const cfg = config(direct);
  const self = { subnet: { ip: parseIPv4('10.250.0.0'), prefixLen: 24 }, publicIP: parseIPv4('10.96.255.254') };
  const peers = leases.map((l) => ({ ...l, vni: cfg.backend.vni }));
  const name = `flannel.${cfg.backend.vni}`;
  let device: DeviceState | undefined;
  const decisions = new DirectDecisions((ip) => kernel.routeGet(ip));
  let generation = 0;
  const log = createLogger('warn', new Writable({ write: (_c, _e, cb) => cb() }));
  const reconciler = new Reconciler({
    kernel,
    desired: (host) => {
      const underlay = host && underlayChecker({ host: host.network, overlayIndex: host.overlayIndex, network: cfg.network, etcdAddresses: [] });
      return desiredState(self, peers, cfg, (l) => underlay?.(l.subnet, l.publicIP), IPV4, direct ? (l) => (l.publicIP !== undefined && decisions.isDirect(l.publicIP) ? 'direct' : 'vxlan') : undefined);
    },
    prepare: direct
      ? async (host) => {
          const changed = decisions.observe(host.network, host.overlayIndex);
          const made = await decisions.decide(peers.map((l) => l.publicIP));
          if (changed || made > 0) generation++;
        }
      : undefined,
    generation: () => generation,
    ensureDevice: async () => {
      device ??= await kernel.createVxlan({ name, vni: cfg.backend.vni, localIP: self.publicIP, underlayIndex, port: 8472 + cfg.backend.vni, learning: false, gbp: false, mtu: 1450 }, '02:aa:00:00:00:01');
      await kernel.setLink(device.index, { up: true });
      return device;
    },
    log,
    clock: systemClock,
    rand: Math.random,
    periodMs: 3_600_000,
    coalesceMs: 0,
  });
  const lookups: number[] = [];
  const pass = async (): Promise<PassResult> => {
    const before = decisions.lookups;
    reconciler.markDirty(true);
    const r = await reconciler.reconcileOnce();
    lookups.push(decisions.lookups - before);
    return r;
  };
  const cold = await pass();
  const idle = await pass();
  let rehome: PassResult | undefined;
  if (direct) {
    // The host's addressing changes (a second address): every decision is made again.
    sh('addr', 'add', '192.0.2.1/32', 'dev', UNDERLAY);
    rehome = await pass();
  }
  // Leave nothing behind for the other run: remove every peer.
  peers.length = 0;
  await pass();
  return { cold, idle, rehome, lookups };
}

describe(`the cost of DirectRouting at ${PEERS} peers (printed, not asserted)`, () => {
  it('measures passes with and without DirectRouting', async () => {
    const vxlan = await run(false);
    const direct = await run(true);
    expect({ ...vxlan.cold, durationMs: 0 }).toMatchObject({ planned: 3 * PEERS, failed: 0 });
    expect(vxlan.idle.planned).toBe(0);
    expect(direct.cold.planned).toBe(PEERS);
    expect(direct.idle.planned).toBe(0);
    expect(direct.rehome?.planned).toBe(0);
    expect(direct.lookups.slice(0, 3)).toEqual([PEERS, 0, PEERS]);
    const ms = (r: PassResult | undefined): string => `${r?.durationMs ?? '-'} ms`;
    process.stdout.write(
      `DirectRouting pass cost at ${PEERS} peers (${formatIPv4(leases[0]?.publicIP ?? 0)}…):\n` +
        `  without: cold ${ms(vxlan.cold)} (${vxlan.cold.planned} ops), full idle pass ${ms(vxlan.idle)}\n` +
        `  with:    cold ${ms(direct.cold)} (${direct.cold.planned} ops, ${direct.lookups[0]} lookups), full idle pass ${ms(direct.idle)} (0 lookups), ` +
        `full pass after a host address change ${ms(direct.rehome)} (${direct.lookups[2]} lookups)\n`,
    );
  }, 240_000);
});
