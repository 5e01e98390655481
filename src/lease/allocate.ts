/**
 * Choosing a free subnet (contract §3, step 3): walk SubnetMin..SubnetMax,
 * collect up to 100 subnets that overlap no existing lease, pick one at random.
 */
import { NetworkConfig } from '../config';
import { Cidr, blockSize, cidrOverlaps, makeCidr } from '../net/ipv4';

/** flannel looks at no more than this many free candidates before picking one. */
export const MAX_CANDIDATES = 100;

/**
 * Returns a free subnet, or undefined when the range is full.
 * `taken` are the subnets of every existing key (valid or not: an unparsable value
 * still holds its key). `rand` returns a number in [0, 1).
 */
export function allocateSubnet(config: NetworkConfig, taken: readonly Cidr[], rand: () => number): Cidr | undefined {
  const step = blockSize(config.subnetLen);
  const candidates: Cidr[] = [];
  // Sorted, so the walk skips past taken blocks without an O(N*M) scan.
  const sorted = [...taken].sort((a, b) => a.ip - b.ip);
  let t = 0;
  for (let ip = config.subnetMin; ip <= config.subnetMax && candidates.length < MAX_CANDIDATES; ip += step) {
    const candidate = makeCidr(ip, config.subnetLen);
    // Blocks skipped here end before `ip`; as `ip` only grows they can never overlap again.
    while (t < sorted.length && lastOf(sorted[t] as Cidr) < ip) t++;
    let free = true;
    for (let i = t; i < sorted.length && (sorted[i] as Cidr).ip <= ip + step - 1; i++) {
      if (cidrOverlaps(candidate, sorted[i] as Cidr)) {
        free = false;
        break;
      }
    }
    if (free) candidates.push(candidate);
  }
  if (candidates.length === 0) return undefined;
  return candidates[Math.floor(rand() * candidates.length)];
}

function lastOf(c: Cidr): number {
  return c.ip + blockSize(c.prefixLen) - 1;
}
