/**
 * The in-memory host most daemon tests start from: eth0 (index 2) holding
 * 10.65.154.11/24 and the IPv4 default route, with the IPv6 addresses and
 * default route a test asks for.
 */
import { InterfaceAddress6 } from '../../src/kernel/kernel';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { parseIPv4 } from '../../src/net/ipv4';
import { parseIPv6 } from '../../src/net/ipv6';

export interface Eth0Options {
  /** eth0's IPv6 addresses, e.g. `2001:db8::11/64` (scope global, or link for fe80::/10); none by default. */
  readonly addresses6?: readonly string[];
  /** The flags of every IPv6 address (left out by default, as the fakes' callers did). */
  readonly flags6?: number;
  /** The IPv4 default route's gateway (none by default). */
  readonly gateway?: string;
  /** Where the IPv6 default route goes: eth0 (2) unless told; `undefined` for none. With addresses6 only. */
  readonly default6?: number | undefined;
  /** The IPv6 default route's gateway. */
  readonly gateway6?: string;
}

/** `2001:db8::11/64` as an InterfaceAddress6 (fe80::/10 has link scope 253). */
export function address6(cidr: string, flags?: number): InterfaceAddress6 {
  const [ip, len] = cidr.split('/');
  const addr = parseIPv6(ip as string);
  const scope = addr >> 118n === 0x3fan ? 253 : 0;
  return { ip: addr, prefixLen: Number(len ?? 128), scope, ...(flags !== undefined && { flags }) };
}

/** A MemoryKernel with eth0 as above; add more interfaces with `addInterface`. */
export function eth0Kernel(opts: Eth0Options = {}): MemoryKernel {
  const kernel = new MemoryKernel();
  const addresses6 = opts.addresses6?.map((a) => address6(a, opts.flags6));
  kernel.addInterface({
    index: 2,
    name: 'eth0',
    mtu: 1500,
    up: true,
    addresses: [{ ip: parseIPv4('10.65.154.11'), prefixLen: 24, scope: 0 }],
    ...(addresses6 && { addresses6 }),
  });
  kernel.setDefaultRoute(2, opts.gateway === undefined ? undefined : parseIPv4(opts.gateway));
  if (addresses6) kernel.setDefaultRoute6('default6' in opts ? opts.default6 : 2, opts.gateway6 === undefined ? undefined : parseIPv6(opts.gateway6));
  return kernel;
}
