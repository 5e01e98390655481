/**
 * --ip-masq end to end (contract §8): two hosts running the daemon with
 * --ip-masq, a pod on each wired by the real CNI plugins, and an "outside"
 * namespace on the underlay that is no overlay member (it has no route to
 * 10.7.0.0/16). UDP listeners record each datagram's source address: a pod's
 * traffic to the outside must arrive from its host's underlay address, and its
 * traffic to a pod on the other host from the pod's own address. The rule text is
 * checked against the contract verbatim (not against src/iptables.ts), and rules
 * deleted or altered by hand must come back within the resync period.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';
import { MasqScene, startMasqScene } from '../helpers/masq-scene';

const NETWORK = '10.7.0.0/16';
const CONFIG = `{"Network":"${NETWORK}","Backend":{"Type":"vxlan"}}`;

/** The scene (helpers/masq-scene.ts), set by beforeAll. */
let m: MasqScene;

/** `iptables -t <table> -S` in the host's namespace, as lines. */
async function listing(table: 'nat' | 'filter'): Promise<string[]> {
  const r = await m.scene.cluster.exec(m.host.netns, 'iptables', ['-w', '5', '-t', table, '-S']);
  if (r.code !== 0) throw new Error(`iptables -t ${table} -S failed: ${r.stderr}`);
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

async function iptables(args: readonly string[]): Promise<void> {
  const r = await m.scene.cluster.exec(m.host.netns, 'iptables', ['-w', '5', ...args]);
  if (r.code !== 0) throw new Error(`iptables ${args.join(' ')} failed: ${r.stderr}`);
}

/** Contract §8, with CN = the network and PN = this host's subnet; a fresh namespace holds nothing else. */
function contractNat(pn: string, cn = NETWORK): string[] {
  const c = '-m comment --comment "flanneld masq"';
  return [
    '-P PREROUTING ACCEPT',
    '-P INPUT ACCEPT',
    '-P OUTPUT ACCEPT',
    '-P POSTROUTING ACCEPT',
    '-N FLANNEL-POSTRTG',
    `-A POSTROUTING ${c} -j FLANNEL-POSTRTG`,
    `-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${pn} -d ${cn} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${cn} -d ${pn} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG ! -s ${cn} -d ${pn} ${c} -j RETURN`,
    `-A FLANNEL-POSTRTG -s ${cn} ! -d 224.0.0.0/4 ${c} -j MASQUERADE --random-fully`,
    `-A FLANNEL-POSTRTG ! -s ${cn} -d ${cn} ${c} -j MASQUERADE --random-fully`,
  ];
}

function contractFilter(cn = NETWORK): string[] {
  const c = '-m comment --comment "flanneld forward"';
  return ['-P INPUT ACCEPT', '-P FORWARD ACCEPT', '-P OUTPUT ACCEPT', '-N FLANNEL-FWD', `-A FORWARD ${c} -j FLANNEL-FWD`, `-A FLANNEL-FWD -s ${cn} ${c} -j ACCEPT`, `-A FLANNEL-FWD -d ${cn} ${c} -j ACCEPT`];
}

const sourceSeenOutside = (): Promise<string> => m.outsideListener.sourceFrom(m.pod.netns, m.outside.ip);

/** How often the daemon has logged writing `table/chain`. */
const installs = (chain: string): number => m.daemon.log().split('\n').filter((l) => l.includes(`"msg":"installed iptables rules ${chain}"`)).length;

beforeAll(async () => {
  assertPrivateNetns();
  m = await startMasqScene(CONFIG, async (scene, host) => {
    // What a flanneld run with EnableNFTables leaves behind: iptables mode deletes it at start (contract §16).
    const seeded = await scene.cluster.exec(host.netns, 'nft', ['-f', '-'], { input: 'add table ip flannel-ipv4\nadd table ip6 flannel-ipv6\nadd table ip flts-other\n' });
    if (seeded.code !== 0) throw new Error(`seeding nft tables failed: ${seeded.stderr}`);
  });
}, 90_000);

sceneLifecycle(() => m?.scene, async () => {
  const tables = await Promise.all((['nat', 'filter'] as const).map(async (t) => `iptables -t ${t} -S:\n${(await listing(t)).join('\n')}`));
  return tables.join('\n');
});


describe('--ip-masq on a namespace host', () => {
  it('says so in subnet.env, so the CNI bridge plugin leaves masquerading to flanneld', async () => {
    expect(readFileSync(m.daemon.subnetFile, 'utf8')).toContain('FLANNEL_IPMASQ=true\n');
  });

  it('installs exactly the contract §8 rules: nat FLANNEL-POSTRTG and filter FLANNEL-FWD', async () => {
    expect(await listing('nat')).toEqual(contractNat(m.subnet));
    expect(await listing('filter')).toEqual(contractFilter());
  });

  it('deletes the nftables tables of an earlier EnableNFTables run, and only those', async () => {
    const r = await m.scene.cluster.exec(m.host.netns, 'nft', ['list', 'tables']);
    expect(r.code, r.stderr).toBe(0);
    const tables = r.stdout.trim().split('\n');
    expect(tables).toContain('table ip flts-other');
    expect(tables.filter((t) => t.includes('flannel'))).toEqual([]);
  });

  it('makes a pod\'s traffic to an address outside the overlay arrive from the host\'s address', async () => {
    expect(m.pod.config.ipMasq).toBe(false); // the CNI bridge plugin adds no masquerade of its own
    expect(await sourceSeenOutside()).toBe(m.host.ip);
    // Replies come back too, though "out" has no route to the pod network: they go to the host's address.
    const r = await m.pod.ping(m.outside.ip, { count: 2, timeoutSec: 5 });
    expect(r.ok, r.output).toBe(true);
  });

  it('keeps the pod\'s own address on traffic to a pod on another host', async () => {
    expect(await m.peerListener.sourceFrom(m.pod.netns, m.peerPod.ip)).toBe(m.pod.ip);
  });

  it('restores the whole rule set within the resync period after it is deleted by hand', async () => {
    const writes = { nat: installs('nat/FLANNEL-POSTRTG'), filter: installs('filter/FLANNEL-FWD') };
    // One transaction: done as six commands, the daemon's 1 s resync could put the jump back between
    // the -D and the -X, and the -X would then fail with "chain busy".
    const removal = [
      '*nat',
      '-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-F FLANNEL-POSTRTG',
      '-X FLANNEL-POSTRTG',
      'COMMIT',
      '*filter',
      '-D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      '-F FLANNEL-FWD',
      '-X FLANNEL-FWD',
      'COMMIT',
      '',
    ].join('\n');
    const r = await m.scene.cluster.exec(m.host.netns, 'iptables-restore', ['-w', '5', '--noflush'], { input: removal });
    expect(r.code, r.stderr).toBe(0);
    // (No look at the empty tables here: the daemon may already be putting the rules back.)
    const t0 = Date.now();
    await waitFor('the nat and filter rules to come back', async () => JSON.stringify(await listing('nat')) === JSON.stringify(contractNat(m.subnet)) && JSON.stringify(await listing('filter')) === JSON.stringify(contractFilter()), 5000, 50);
    expect(Date.now() - t0).toBeLessThan(3000); // --iptables-resync 1
    // Restored by the daemon, each chain rewritten once more.
    expect(installs('nat/FLANNEL-POSTRTG')).toBe(writes.nat + 1);
    expect(installs('filter/FLANNEL-FWD')).toBe(writes.filter + 1);
    expect(await sourceSeenOutside()).toBe(m.host.ip);
  });

  it('repairs a chain whose rules were changed by hand, without duplicating the jump', async () => {
    const writes = { nat: installs('nat/FLANNEL-POSTRTG'), filter: installs('filter/FLANNEL-FWD') };
    await iptables(['-t', 'nat', '-D', 'FLANNEL-POSTRTG', '-s', NETWORK, '!', '-d', '224.0.0.0/4', '-m', 'comment', '--comment', 'flanneld masq', '-j', 'MASQUERADE', '--random-fully']);
    await iptables(['-A', 'FLANNEL-FWD', '-s', '192.0.2.0/24', '-j', 'ACCEPT']);
    await waitFor('the chains to be rewritten', async () => installs('nat/FLANNEL-POSTRTG') > writes.nat && installs('filter/FLANNEL-FWD') > writes.filter, 5000, 50);
    expect(await listing('nat')).toEqual(contractNat(m.subnet));
    expect(await listing('filter')).toEqual(contractFilter());
  });

  it('leaves the rules in place on SIGTERM; without them the pod\'s own address shows', async () => {
    expect(await m.daemon.stop('SIGTERM')).toBe(0);
    expect(await listing('nat')).toEqual(contractNat(m.subnet));
    expect(await listing('filter')).toEqual(contractFilter());
    // The control: with the jump gone (and no daemon to restore it) the source is the pod's.
    await iptables(['-t', 'nat', '-D', 'POSTROUTING', '-m', 'comment', '--comment', 'flanneld masq', '-j', 'FLANNEL-POSTRTG']);
    expect(await sourceSeenOutside()).toBe(m.pod.ip);
  });
});
