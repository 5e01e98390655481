/**
 * The first step of start-up (contract §10): the network config from etcd,
 * checked against this host, and the external interface chosen for it. An
 * absent or invalid config is waited for, one error line per distinct problem,
 * checking every second, as flanneld does.
 */
import { NetworkConfig, VXLAN_OVERHEAD, parseNetworkConfig } from './config';
import { ExternalInterface, ExternalInterfaceOptions, chooseExternalInterface, readInterfaceFacts } from './kernel/interfaces';
import { Kernel } from './kernel/kernel';
import { configKey } from './lease/codec';
import { LeaseStore } from './lease/store';
import { IpAddr } from './net/family';
import { networkProblem } from './overlay/underlay';
import { Clock } from './util/clock';
import { ConfigError } from './util/errors';
import { Logger } from './util/log';
import { retryTransient } from './util/retry';

const CONFIG_POLL_MS = 1000;

export interface HostConfigDeps {
  readonly store: LeaseStore;
  readonly kernel: Kernel;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly log: Logger;
  /** Addresses of the etcd endpoints: no Network may contain one. */
  readonly etcdAddresses: readonly IpAddr[];
}

export interface HostConfigOptions {
  /** --etcd-prefix */
  readonly prefix: string;
  readonly allowWideNetwork: boolean;
  readonly ifaceCanReach: IpAddr | undefined;
  /** --iface, --iface-regex, --public-ip, --public-ipv6. */
  readonly choice: Omit<ExternalInterfaceOptions, 'canReach'>;
}

export interface HostConfig {
  readonly config: NetworkConfig;
  readonly ext: ExternalInterface;
}

/**
 * The config, checked against this host too: a Network containing the public
 * IP, an address of the external interface or an etcd endpoint would route the
 * underlay into the overlay, so it is treated like an invalid config.
 */
export async function checkedHostConfig(text: string, deps: HostConfigDeps, opts: HostConfigOptions): Promise<HostConfig> {
  const config = parseNetworkConfig(text, { allowWideNetwork: opts.allowWideNetwork });
  const host = await readInterfaceFacts(deps.kernel, opts.ifaceCanReach, config.enableIPv6);
  const ext = chooseExternalInterface(host.ifaces, host.defaultRoute, { ...opts.choice, canReach: host.canReach }, { ipv4: config.enableIPv4, ipv6: config.enableIPv6, defaultRoute6: host.defaultRoute6 });
  // An IPv6-only config has no IPv4 pool (its network is 0.0.0.0/0, flannel's zero value).
  const { etcdAddresses } = deps;
  const problem = config.enableIPv4 ? networkProblem(config.network, { publicIP: ext.publicIP, iface: ext.iface, etcdAddresses }) : undefined;
  if (problem !== undefined) throw new ConfigError('Network', problem);
  const problem6 = config.ipv6 && ext.publicIPv6 !== undefined ? networkProblem(config.ipv6.network, { publicIP: ext.publicIPv6, iface: ext.iface, etcdAddresses }) : undefined;
  if (problem6 !== undefined) throw new ConfigError('IPv6Network', problem6);
  if (config.backend.mtu === 0 && ext.iface.mtu - VXLAN_OVERHEAD < 68) {
    throw new ConfigError('Backend.MTU', `the MTU of ${ext.iface.name} (${ext.iface.mtu}) leaves less than 68 for flannel.${config.backend.vni}; set Backend.MTU`);
  }
  return { config, ext };
}

/** Reads the config until it is there and valid for this host; transient etcd errors are retried, others reject. */
export async function waitForHostConfig(deps: HostConfigDeps, opts: HostConfigOptions, signal: AbortSignal): Promise<HostConfig> {
  const { store, clock, rand, log } = deps;
  const key = configKey(opts.prefix);
  let lastProblem = '';
  for (;;) {
    const text = await retryTransient(() => store.getConfig(), { what: `read network config ${key}`, log, clock, rand, signal });
    let problem: string;
    if (text === undefined) {
      problem = `network config ${key} not found in etcd; waiting for it (checking every second)`;
    } else {
      try {
        const checked = await checkedHostConfig(text, deps, opts);
        if (lastProblem !== '') log.info({ key }, `network config ${key} is now valid`);
        return checked;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problem = `${err.message} (at ${key}); waiting for a corrected config`;
      }
    }
    if (problem !== lastProblem) log.error({ key }, problem);
    lastProblem = problem;
    await clock.sleep(CONFIG_POLL_MS, signal);
  }
}
