/**
 * One line of `ip -o monitor label link address route neigh` as the kernel watch
 * needs it: what kind of object changed, on which device, and a key that our
 * own operations can be matched against. Pure; tested in
 * test/unit/monitor-lines.test.ts on lines iproute2 6.1 printed.
 *
 * Lines look like (`-o` folds a message onto one line):
 *   [ROUTE]10.7.12.0/24 via 10.7.12.0 dev flannel.1 onlink
 *   [ROUTE]Deleted 10.9.9.9 dev flannel.1
 *   [ROUTE]local 10.7.5.0 dev flannel.1 table local proto kernel scope host src 10.7.5.0
 *   [NEIGH]10.7.12.0 dev flannel.1 lladdr 6e:d5:a3:cb:6a:6b PERMANENT
 *   [NEIGH]Deleted 10.7.12.0 dev flannel.1 FAILED
 *   [LINK]4: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 …
 *   [ADDR]4: flannel.1    inet 10.7.5.0/32 scope global flannel.1 …
 * An FDB entry prints as a neighbour whose address is its remote (`dst`).
 */

/** A change that may concern an overlay device's entries. */
export interface EntryChange {
  readonly kind: 'entry';
  readonly dev: string;
  /** See `routeLineKey` and `neighborLineKey`. */
  readonly key: string;
  /** A route's `proto` word as printed (`152` for our direct routes), when the line has one. */
  readonly proto?: string;
}

/** A link or IPv4 address change. */
export interface DeviceChange {
  readonly kind: 'device';
  readonly index: number;
  readonly dev: string;
}

export type MonitorChange = EntryChange | DeviceChange;

const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'anycast', 'unreachable', 'blackhole', 'prohibit', 'throw', 'nat']);

/**
 * What a route line says: `new route <dst> via <gateway or ->` or `del route <dst>`
 * (a /32 is printed without its length). The gateway is part of a new route's
 * key, so an outside change of an entry we are writing is still told apart.
 */
export function routeLineKey(deleted: boolean, cidr: string, via?: string): string {
  // A host route prints without its length: /32, or /128 for IPv6.
  const dst = cidr.endsWith('/32') ? cidr.slice(0, -3) : cidr.endsWith('/128') ? cidr.slice(0, -4) : cidr;
  return deleted ? `del route ${dst}` : `new route ${dst} via ${via ?? '-'}`;
}

/**
 * What a neighbour line says: `new nd <ip> <lladdr or ->` or `del nd <ip>`, where
 * ip is a neighbour's address or an FDB entry's remote. Deleting a neighbour
 * prints a new FAILED one (no lladdr) first, then the deletion.
 */
export function neighborLineKey(deleted: boolean, ip: string, lladdr?: string): string {
  return deleted ? `del nd ${ip}` : `new nd ${ip} ${lladdr ?? '-'}`;
}

// The word after `word` in `tokens`, or undefined.
function after(tokens: readonly string[], word: string): string | undefined {
  const i = tokens.indexOf(word);
  return i >= 0 ? tokens[i + 1] : undefined;
}

/**
 * The change a line reports, or undefined when it cannot concern the routes
 * (main table, not proto kernel), neighbours, FDB entries of either family,
 * links or IPv4 addresses the daemon manages (other tables, other labels; IPv6
 * address changes, which DAD makes on every veth, are left to the periodic pass).
 */
export function parseMonitorLine(line: string): MonitorChange | undefined {
  const close = line.indexOf(']');
  if (line[0] !== '[' || close < 0) return undefined;
  const label = line.slice(1, close);
  const tokens = line.slice(close + 1).trim().split(/\s+/);
  const deleted = tokens[0] === 'Deleted';
  if (deleted) tokens.shift();
  switch (label) {
    case 'ROUTE': {
      if (ROUTE_TYPES.has(tokens[0] ?? '')) {
        if (tokens[0] !== 'unicast') return undefined;
        tokens.shift();
      }
      const dst = tokens[0] ?? '';
      const dev = after(tokens, 'dev');
      if (dev === undefined || after(tokens, 'proto') === 'kernel') return undefined;
      const table = after(tokens, 'table');
      if (table !== undefined && table !== 'main' && table !== '254') return undefined;
      const key = routeLineKey(deleted, dst === 'default' ? '0.0.0.0/0' : dst, after(tokens, 'via'));
      const proto = after(tokens, 'proto');
      return proto === undefined ? { kind: 'entry', dev, key } : { kind: 'entry', dev, key, proto };
    }
    case 'NEIGH': {
      const ip = tokens[0] ?? '';
      const dev = after(tokens, 'dev');
      if (dev === undefined) return undefined;
      return { kind: 'entry', dev, key: neighborLineKey(deleted, ip, after(tokens, 'lladdr')) };
    }
    case 'LINK':
    case 'ADDR': {
      const index = Number.parseInt(tokens[0] ?? '', 10);
      const name = (tokens[1] ?? '').replace(/:$/, '').replace(/@.*$/, '');
      if (!Number.isInteger(index) || name === '') return undefined;
      if (label === 'ADDR' && !tokens.includes('inet')) return undefined;
      return { kind: 'device', index, dev: name };
    }
    default:
      return undefined;
  }
}

/** iproute2 reports a full receive queue as `netlink receive error No buffer space available (105)`, then goes on. */
export function isOverflowLine(line: string): boolean {
  return line.includes('(105)') || line.includes('No buffer space available');
}
