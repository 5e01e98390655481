/**
 * Choosing a free subnet (contract §3 step 3, §11): walk SubnetMin..SubnetMax,
 * collect up to 100 subnets that overlap no existing lease, pick one at random.
 * One walk for both families: addresses are widened to bigint for it, so the
 * IPv4 pool and the IPv6 pool share the code (STYLE: one code path).
 */
import { NetworkConfig, NetworkConfigV6 } from '../config';
import { Cidr, makeCidr } from '../net/ipv4';
import { Cidr6, makeCidr6 } from '../net/ipv6';

/** flannel looks at no more than this many free candidates before picking one. */
export const MAX_CANDIDATES = 100;

/** A pool and its taken blocks, widened to bigint. */
interface Pool {
  readonly min: bigint;
  readonly max: bigint;
  readonly len: number;
  readonly bits: 32 | 128;
}

interface Block {
  readonly ip: bigint;
  readonly prefixLen: number;
}

/**
 * Returns a free IPv4 subnet, or undefined when the range is full (or the config
 * is IPv6-only). `taken` are the subnets of every existing key (valid or not: an
 * unparsable value still holds its key; the IPv4 part of `&` keys too).
 * `rand` returns a number in [0, 1).
 */
export function allocateSubnet(config: NetworkConfig, taken: readonly Cidr[], rand: () => number): Cidr | undefined {
  if (!config.enableIPv4) return undefined;
  const pool: Pool = { min: BigInt(config.subnetMin), max: BigInt(config.subnetMax), len: config.subnetLen, bits: 32 };
  const ip = allocateIn(pool, taken.map((t) => ({ ip: BigInt(t.ip), prefixLen: t.prefixLen })), rand);
  return ip === undefined ? undefined : makeCidr(Number(ip), config.subnetLen);
}

/** Returns a free IPv6 subnet of the pool, checked only against IPv6 subnets (contract §11), or undefined when full. */
export function allocateSubnet6(pool: NetworkConfigV6, taken: readonly Cidr6[], rand: () => number): Cidr6 | undefined {
  const ip = allocateIn({ min: pool.subnetMin, max: pool.subnetMax, len: pool.subnetLen, bits: 128 }, taken, rand);
  return ip === undefined ? undefined : makeCidr6(ip, pool.subnetLen);
}

function allocateIn(pool: Pool, taken: readonly Block[], rand: () => number): bigint | undefined {
  const step = 1n << BigInt(pool.bits - pool.len);
  const candidates: bigint[] = [];
  // Sorted, so the walk skips past taken blocks without an O(N*M) scan.
  const sorted = [...taken].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
  let t = 0;
  for (let ip = pool.min; ip <= pool.max && candidates.length < MAX_CANDIDATES; ip += step) {
    const last = ip + step - 1n;
    // Blocks skipped here end before `ip`; as `ip` only grows they can never overlap again.
    while (t < sorted.length && lastOf(sorted[t] as Block, pool.bits) < ip) t++;
    let free = true;
    for (let i = t; i < sorted.length && (sorted[i] as Block).ip <= last; i++) {
      // Starts at or before `last` and ends at or after `ip` (the skip above): overlaps.
      if (lastOf(sorted[i] as Block, pool.bits) >= ip) {
        free = false;
        break;
      }
    }
    if (free) candidates.push(ip);
  }
  if (candidates.length === 0) return undefined;
  return candidates[Math.floor(rand() * candidates.length)];
}

function lastOf(c: Block, bits: number): bigint {
  return c.ip + (1n << BigInt(bits - c.prefixLen)) - 1n;
}
