/**
 * `"EnableNFTables": true` end to end (contract §16): two hosts running the
 * daemon with --ip-masq, a pod on each, and an "outside" namespace on the
 * underlay. The rules are flanneld's tables and chains with the iptables
 * masquerade logic (README "Firewall"), checked against `nft list ruleset`
 * verbatim (not against src/firewall/nftables.ts); masquerading is checked on
 * the wire; tables deleted or flushed by hand come back; iptables chains a
 * previous flanneld left behind are gone; flannel.1 has accept_ra=0.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/testbed/scene';
import { sceneLifecycle } from '../helpers/overlay';
import { assertPrivateNetns } from '../helpers/private-netns';
import { MasqScene, startMasqScene } from '../helpers/masq-scene';

const NETWORK = '10.7.0.0/16';
const CONFIG = `{"Network":"${NETWORK}","Backend":{"Type":"vxlan"},"EnableNFTables":true}`;

/** The scene (helpers/masq-scene.ts), set by beforeAll. */
let m: MasqScene;

async function inHost(cmd: string, args: readonly string[]): Promise<string> {
  const r = await m.scene.cluster.exec(m.host.netns, cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * The flannel-* tables of `nft list ruleset` in the host's namespace (iptables-nft may add tables of its own),
 * sorted: nft lists tables in creation order, and a table put back comes after the one that stayed.
 */
async function ourRuleset(): Promise<string> {
  return (await inHost('nft', ['list', 'ruleset'])).split(/^(?=table )/m).filter((b) => /^table ip6? flannel-/.test(b)).sort().join('');
}

/** Contract §16's tables and chains, with the iptables masquerade logic of §8 (rule 4 `!= CN … PN`, masked mark). */
function contractRuleset(pn: string, cn = NETWORK): string {
  return [
    'table ip flannel-ipv4 {',
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    `\t\tip saddr ${cn} accept`,
    `\t\tip daddr ${cn} accept`,
    '\t}',
    '',
    '\tchain postrtg {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    '\t\tmeta mark & 0x00004000 == 0x00004000 return',
    `\t\tip saddr ${pn} ip daddr ${cn} return`,
    `\t\tip saddr ${cn} ip daddr ${pn} return`,
    `\t\tip saddr != ${cn} ip daddr ${pn} return`,
    `\t\tip saddr ${cn} ip daddr != 224.0.0.0/4 masquerade fully-random`,
    `\t\tip saddr != ${cn} ip daddr ${cn} masquerade fully-random`,
    '\t}',
    '}',
    'table ip6 flannel-ipv6 {',
    '}',
    '',
  ].join('\n');
}

const installs = (): number => m.daemon.log().split('\n').filter((l) => l.includes('"msg":"installed nftables rules ip flannel-ipv4/')).length;

beforeAll(async () => {
  assertPrivateNetns();
  m = await startMasqScene(CONFIG, async (scene, host) => {
    // What a flanneld in iptables mode leaves behind: our chains and jumps in nat and filter.
    const leftover = [
      '*nat', ':FLANNEL-POSTRTG - [0:0]', '-A FLANNEL-POSTRTG -s 10.7.0.0/16 -j MASQUERADE', '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG', 'COMMIT',
      '*filter', ':FLANNEL-FWD - [0:0]', '-A FLANNEL-FWD -s 10.7.0.0/16 -j ACCEPT', '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD', 'COMMIT', '',
    ].join('\n');
    const seeded = await scene.cluster.exec(host.netns, 'iptables-restore', ['--noflush'], { input: leftover });
    if (seeded.code !== 0) throw new Error(`seeding old iptables chains failed: ${seeded.stderr}`);
  });
}, 90_000);

sceneLifecycle(() => m?.scene, async () => `nft list ruleset (h1):\n${await inHost('nft', ['list', 'ruleset'])}\niptables-save (h1):\n${await inHost('iptables-save', [])}`);

describe('EnableNFTables on a namespace host', () => {
  it('makes flanneld\'s nftables tables and chains, as nft list ruleset shows them', async () => {
    expect(await ourRuleset()).toBe(contractRuleset(m.subnet));
  });

  it('removes the FLANNEL-* iptables chains and jumps a previous run left, in nat and filter', async () => {
    expect(await inHost('iptables-save', [])).not.toMatch(/FLANNEL-|flanneld/);
  });

  it('sets accept_ra=0 on flannel.1', async () => {
    expect((await inHost('cat', ['/proc/sys/net/ipv6/conf/flannel.1/accept_ra'])).trim()).toBe('0');
  });

  it('masquerades a pod\'s traffic leaving the overlay, and keeps the pod\'s address towards another pod', async () => {
    expect(await m.outsideListener.sourceFrom(m.pod.netns, m.outside.ip)).toBe(m.host.ip);
    expect(await m.peerListener.sourceFrom(m.pod.netns, m.peerPod.ip)).toBe(m.pod.ip);
  });

  it('masquerades traffic from outside the network forwarded to another host\'s pod (the iptables rule 6 flanneld\'s nft rules never reach)', async () => {
    const r = await m.scene.cluster.exec(m.outside.netns, 'ip', ['route', 'replace', NETWORK, 'via', m.host.ip]);
    expect(r.code, r.stderr).toBe(0);
    // Through h1 and its flannel.1: the source becomes flannel.1's address, the first of h1's subnet.
    expect(await m.peerListener.sourceFrom(m.outside.netns, m.peerPod.ip)).toBe(m.subnet.replace(/\/\d+$/, ''));
  });

  it('puts back a table deleted by hand and a chain flushed by hand within the resync period', async () => {
    const before = installs();
    await inHost('nft', ['delete', 'table', 'ip', 'flannel-ipv4']);
    await waitFor('the table to come back', async () => (await ourRuleset()) === contractRuleset(m.subnet), 10_000, 50);
    await inHost('nft', ['flush', 'chain', 'ip', 'flannel-ipv4', 'postrtg']);
    await waitFor('the chain to be refilled', async () => (await ourRuleset()) === contractRuleset(m.subnet), 10_000, 50);
    expect(installs()).toBeGreaterThanOrEqual(before + 2);
    expect(await m.outsideListener.sourceFrom(m.pod.netns, m.outside.ip)).toBe(m.host.ip);
  });

  it('leaves the tables in place on SIGTERM', async () => {
    expect(await m.daemon.stop('SIGTERM')).toBe(0);
    expect(await ourRuleset()).toBe(contractRuleset(m.subnet));
  });
});
