/**
 * The status command on the memory fakes, seen from a host that is no node
 * (eth0 192.168.1.5/24, no subnet.env), so only etcd is judged: a store with a
 * /16 VXLAN config and one healthy lease (10.7.40.0/24), output kept in memory.
 */
import { StatusOptions, parseCommandLine } from '../../src/cli';
import { MemoryKernel } from '../../src/kernel/memory-kernel';
import { encodeLeaseValue } from '../../src/lease/codec';
import { MemoryLeaseStore } from '../../src/lease/memory-store';
import { parseIPv4 } from '../../src/net/ipv4';
import { StatusDeps } from '../../src/status/command';
import { systemClock } from '../../src/util/clock';

const PFX = '/coreos.com/network/subnets/';

export interface StatusFixture {
  readonly store: MemoryLeaseStore;
  readonly kernel: MemoryKernel;
  /** What status wrote to stdout and stderr. */
  readonly out: string[];
  readonly err: string[];
  readonly deps: StatusDeps;
}

/** `flanneld-ts status <args>` with a subnet file that does not exist. */
export function statusOptions(args: readonly string[]): StatusOptions {
  const c = parseCommandLine(['status', '--subnet-file', '/nonexistent/subnet.env', ...args], {});
  if (c.command !== 'status') throw new Error(`expected status, got ${c.command}`);
  return c.options;
}

/** The fakes and deps above; `over` replaces any of the deps. */
export function statusFixture(over: Partial<StatusDeps> = {}): StatusFixture {
  const store = new MemoryLeaseStore();
  store.setConfig('{"Network":"10.7.0.0/16","Backend":{"Type":"vxlan"}}');
  store.putRaw(`${PFX}10.7.40.0-24`, encodeLeaseValue({ publicIP: parseIPv4('10.65.154.12'), vni: 1, vtepMAC: '02:00:00:00:00:40' }), { ttlSeconds: 86_400 });
  const kernel = new MemoryKernel();
  kernel.addInterface({ index: 2, name: 'eth0', mtu: 1500, up: true, addresses: [{ ip: parseIPv4('192.168.1.5'), prefixLen: 24, scope: 0 }] });
  kernel.setDefaultRoute(2);
  const out: string[] = [];
  const err: string[] = [];
  const deps: StatusDeps = {
    store,
    kernel: async () => kernel,
    readFile: async (path) => Promise.reject(Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })),
    clock: systemClock,
    rand: () => 0.5,
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    isTTY: false,
    env: {},
    ...over,
  };
  return { store, kernel, out, err, deps };
}
