/**
 * The periodic firewall check (keepFirewall) and the nf_tables generation it
 * leans on: a period in which the generation stands still since a clean check
 * lists nothing; any move, a new target, an unreadable generation or our own
 * write makes the next period list (and repair) as before.
 */
import { describe, expect, it } from 'vitest';
import { Firewall, FirewallTarget, RulesetGeneration } from '../../src/firewall/firewall';
import { keepFirewall } from '../../src/firewall/firewall-keeper';
import { MemoryFirewall } from '../../src/firewall/memory-firewall';
import { NFT_GETGEN_TYPE, NFT_NEWGEN_TYPE, decodeNftGeneration, nftGetGenRequest } from '../../src/firewall/nft-generation';
import { parseCidr } from '../../src/net/ipv4';
import { Clock, abortError } from '../../src/util/clock';
import { createLogger } from '../../src/util/log';

const log = createLogger('silent');
const FORWARD = 'filter/FLANNEL-FWD';

/** A clock whose sleeps end only when the test lets one period pass. */
function stepClock(): { clock: Clock; period: () => Promise<void> } {
  const waiting: Array<() => void> = [];
  const idle = async (): Promise<void> => {
    for (let i = 0; waiting.length === 0; i++) {
      if (i > 1000) throw new Error('keepFirewall never slept again');
      await new Promise((r) => setImmediate(r));
    }
  };
  const clock: Clock = {
    now: () => 0,
    sleep: (_ms, signal) =>
      new Promise((resolve, reject) => {
        waiting.push(resolve);
        signal?.addEventListener('abort', () => reject(abortError()), { once: true });
      }),
  };
  return {
    clock,
    period: async () => {
      await idle();
      (waiting.shift() as () => void)();
      await idle();
    },
  };
}

/** A MemoryFirewall whose rules are "in nf_tables": every write bumps the shared generation; ensure calls are counted. */
function harness(opts: { generation?: 'readable' | 'unreadable' | 'none' } = {}) {
  const sets = new Map<string, readonly string[]>();
  const memory = new MemoryFirewall({ ipMasq: true, forwardRules: true, fullyRandom: false }, sets);
  const state = { generation: 7, ensures: 0, closed: false };
  const firewall: Firewall = {
    kind: 'memory',
    inNfTables: true,
    ensure: async (target, force) => {
      state.ensures++;
      const written = await memory.ensure(target, force);
      if (written.length > 0) state.generation++;
      return written;
    },
    check: (target) => memory.check(target),
    describe: () => memory.describe(),
    remove: () => memory.remove(),
  };
  const generation: RulesetGeneration = {
    read: async () => (opts.generation === 'unreadable' ? undefined : state.generation),
    close: () => void (state.closed = true),
  };
  /** Another tool flushes our forward chain: one nf_tables transaction. */
  const flushForward = (): void => {
    memory.tamper(FORWARD, []);
    state.generation++;
  };
  return { firewall, generation: opts.generation === 'none' ? undefined : generation, state, memory, flushForward };
}

const T: FirewallTarget = { network: parseCidr('10.7.0.0/16'), subnet: parseCidr('10.7.5.0/24') };

/** As the daemon starts: T's rules written (forced), then keepFirewall over `target`, one period at a time. */
async function start(opts: Parameters<typeof harness>[0] = {}, target: () => FirewallTarget = () => T) {
  const h = harness(opts);
  await h.firewall.ensure(T, true);
  const { clock, period } = stepClock();
  const ctl = new AbortController();
  const done = keepFirewall(h.firewall, target, 5000, clock, log, ctl.signal, h.generation);
  return { h, k: { period, stop: async () => (ctl.abort(), await done) } };
}

describe('keepFirewall with the nf_tables generation', () => {
  it('lists once, then not again while the generation stands still', async () => {
    const { h, k } = await start();
    for (let i = 0; i < 10; i++) await k.period();
    await k.stop();
    expect(h.state.ensures).toBe(2); // the forced start-up write, then the first periodic check
    expect(h.state.closed).toBe(true);
  });

  it('repairs a chain flushed by another tool in the next period, then checks its own write once more', async () => {
    const { h, k } = await start();
    await k.period();
    h.flushForward();
    expect(await h.memory.check(T)).toEqual([FORWARD]);
    await k.period();
    expect(await h.memory.check(T)).toEqual([]);
    const afterRepair = h.state.ensures;
    await k.period(); // our write moved the generation: read back once
    await k.period();
    await k.stop();
    expect(h.state.ensures).toBe(afterRepair + 1);
  });

  it('checks again when the target changes under an unchanged generation', async () => {
    let target = T;
    const { h, k } = await start({}, () => target);
    await k.period();
    target = { ...T, subnet: parseCidr('10.7.9.0/24') };
    await k.period();
    await k.stop();
    expect(await h.memory.check(target)).toEqual([]);
  });

  it('lists every period when the generation cannot be read, or is not offered (iptables-legacy)', async () => {
    for (const generation of ['unreadable', 'none'] as const) {
      const { h, k } = await start({ generation });
      for (let i = 0; i < 4; i++) await k.period();
      await k.stop();
      expect(h.state.ensures).toBe(5);
    }
  });
});

describe('NFT_MSG_GETGEN codec', () => {
  it('asks with an empty nfgenmsg under the nftables subsystem', () => {
    expect(NFT_GETGEN_TYPE).toBe(0x0a10);
    expect(NFT_NEWGEN_TYPE).toBe(0x0a0f);
    expect(nftGetGenRequest()).toEqual(Buffer.alloc(4));
  });

  it('reads NFTA_GEN_ID (big-endian) from a reply as the kernel sends it', () => {
    // nfgenmsg (res_id = low 16 bits of the id), NFTA_GEN_ID = 3, NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME "MainThread".
    const reply = Buffer.from('00000003080001000000000308000200000032f20f0003004d61696e5468726561640000', 'hex');
    expect(decodeNftGeneration(reply)).toBe(3);
    const big = Buffer.from('0000ffff08000100fffffffe', 'hex');
    expect(decodeNftGeneration(big)).toBe(0xfffffffe);
  });

  it('answers undefined for a reply without the id or with a broken attribute', () => {
    expect(decodeNftGeneration(Buffer.alloc(4))).toBeUndefined();
    expect(decodeNftGeneration(Buffer.from('000000000800020000000001', 'hex'))).toBeUndefined();
    expect(decodeNftGeneration(Buffer.from('000000001000010000000001', 'hex'))).toBeUndefined(); // length past the end
    expect(decodeNftGeneration(Buffer.from('00000000060001000000', 'hex'))).toBeUndefined(); // id of the wrong size
  });
});
