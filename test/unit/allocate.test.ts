import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { MAX_CANDIDATES, allocateSubnet } from '../../src/lease/allocate';
import { formatCidr, makeCidr, parseCidr } from '../../src/net/ipv4';

const config = parseNetworkConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');

describe('allocateSubnet', () => {
  it('never hands out the first subnet, and picks among free ones', () => {
    expect(formatCidr(allocateSubnet(config, [], () => 0) as never)).toBe('10.7.1.0/24');
    expect(formatCidr(allocateSubnet(config, [], () => 0.999) as never)).toBe(`10.7.${MAX_CANDIDATES}.0/24`);
  });
  it('skips taken subnets and anything overlapping a larger block', () => {
    const taken = [parseCidr('10.7.1.0/24'), parseCidr('10.7.2.0/23')];
    expect(formatCidr(allocateSubnet(config, taken, () => 0) as never)).toBe('10.7.4.0/24');
  });
  it('finds the last free subnet in a nearly full network', () => {
    const taken = [];
    for (let i = 1; i <= 255; i++) if (i !== 200) taken.push(makeCidr((10 << 24) + (7 << 16) + i * 256, 24));
    expect(formatCidr(allocateSubnet(config, taken.reverse(), Math.random) as never)).toBe('10.7.200.0/24');
  });
  it('returns undefined when full', () => {
    const small = parseNetworkConfig('{"Network":"10.7.0.0/16","SubnetMin":"10.7.3.0","SubnetMax":"10.7.4.0","Backend":{"Type":"vxlan"}}');
    expect(allocateSubnet(small, [parseCidr('10.7.3.0/24'), parseCidr('10.7.4.0/24')], () => 0)).toBeUndefined();
    expect(allocateSubnet(small, [parseCidr('10.7.0.0/16')], () => 0)).toBeUndefined();
  });
  it('distributes over the candidates with the injected rand', () => {
    const seen = new Set<string>();
    for (let i = 0; i < MAX_CANDIDATES; i++) seen.add(formatCidr(allocateSubnet(config, [], () => (i + 0.5) / MAX_CANDIDATES) as never));
    expect(seen.size).toBe(MAX_CANDIDATES);
  });
});
