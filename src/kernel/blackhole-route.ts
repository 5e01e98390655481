/**
 * --ip-blackhole-route (contract §16): `blackhole <own subnet>` in the main
 * table, so traffic for pods of this node that do not exist is dropped here
 * instead of following the default route out (flannel added the flag for Canal,
 * where no bridge route covers the subnet). Added when missing every
 * --iptables-resync seconds, never removed, as flanneld does.
 *
 * Only that exact route is ours: the check looks for a blackhole with exactly
 * this prefix, and the add is `ip route add` (never replace), which the kernel
 * refuses when another route holds the same prefix and metric, so no one
 * else's route is ever changed. iproute2 rather than netlink: one `ip` fork per
 * resync period only when the flag is on, and src/kernel/netlink-kernel.ts is
 * being split (no second netlink path beside it). IPv6 (`ip -6`): the own IPv6
 * subnet gets its blackhole the same way (flannel: main.go).
 */
import { AnyCidr, formatAnyCidr, isCidr6 } from '../net/family';
import { run } from '../testbed/exec';
import { Clock } from '../util/clock';
import { KernelError, errorMessage } from '../util/errors';
import { Logger } from '../util/log';
import { firstLine } from '../firewall/firewall';

export type BlackholeResult = 'present' | 'added' | 'taken';

export interface BlackholeRoutes {
  /** Adds `blackhole <subnet>` to the main table unless it is there; 'taken' when another route holds that prefix. */
  ensure(subnet: AnyCidr): Promise<BlackholeResult>;
}

/** True when `ip -j route show table main exact <subnet>` lists a blackhole route. */
export function hasBlackhole(json: string): boolean {
  const routes: unknown = JSON.parse(json.trim() === '' ? '[]' : json);
  return Array.isArray(routes) && routes.some((r) => typeof r === 'object' && r !== null && (r as { type?: unknown }).type === 'blackhole');
}

export class IprouteBlackholeRoutes implements BlackholeRoutes {
  async ensure(subnet: AnyCidr): Promise<BlackholeResult> {
    const dst = formatAnyCidr(subnet);
    const family = isCidr6(subnet) ? ['-6'] : [];
    const shown = await ip([...family, '-j', 'route', 'show', 'table', 'main', 'exact', dst]);
    if (shown.code !== 0) throw new KernelError(`failed to list routes for ${dst} (ip route show): ${firstLine(shown.stderr)}`, undefined, true);
    if (hasBlackhole(shown.stdout)) return 'present';
    const added = await ip([...family, 'route', 'add', 'blackhole', dst, 'table', 'main']);
    if (added.code === 0) return 'added';
    if (/File exists/.test(added.stderr)) return 'taken';
    throw new KernelError(`failed to add route blackhole ${dst} (ip route add): ${firstLine(added.stderr)}`, undefined, true);
  }
}

async function ip(args: readonly string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    return await run('ip', args);
  } catch (err) {
    throw new KernelError(`failed to run ip (iproute2): ${errorMessage(err)}`, undefined, false, { cause: err });
  }
}

/** Every `periodMs`, starting one period in (as flanneld), until `signal` aborts; each change or problem logged once. */
export async function keepBlackholeRoute(routes: BlackholeRoutes, subnet: () => AnyCidr, periodMs: number, clock: Clock, log: Logger, signal: AbortSignal): Promise<void> {
  let last = '';
  while (!signal.aborted) {
    await clock.sleep(periodMs, signal).catch(() => undefined);
    if (signal.aborted) return;
    const dst = formatAnyCidr(subnet());
    let state: string;
    try {
      const result = await routes.ensure(subnet());
      state = `${result} ${dst}`;
      if (result === 'added') log.info({ route: `blackhole ${dst}` }, `added route blackhole ${dst}`);
      else if (result === 'taken' && state !== last) log.warn({ route: `blackhole ${dst}` }, `not adding route blackhole ${dst}: another route holds ${dst} in the main table (left alone)`);
    } catch (err) {
      state = `error ${errorMessage(err)}`;
      if (state !== last) log.warn({ err: errorMessage(err) }, errorMessage(err));
    }
    last = state;
  }
}
