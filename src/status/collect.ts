/**
 * The imperative half of `status`: read what etcd, the subnet file and this
 * host's kernel hold, through read-only views of the `LeaseStore` and `Kernel`
 * seams (so status cannot write by construction). No judgement here; analyze.ts
 * decides what the facts mean.
 */
import { DirectDecisions } from '../overlay/direct-routing';
import { parseNetworkConfig } from '../config';
import { DefaultRoute } from '../kernel/interfaces';
import { DeviceState, Entry, HostRoute, InterfaceInfo, Kernel } from '../kernel/kernel';
import { LeaseRecord } from '../lease/lease';
import { LeaseStore } from '../lease/store';
import { Clock } from '../util/clock';
import { StoreUnavailableError, errorMessage } from '../util/errors';
import { Cidr6 } from '../net/ipv6';
import type { IpAddr } from '../net/family';

/** The reads status makes of the lease store. */
export type StatusStore = Pick<LeaseStore, 'getConfig' | 'list' | 'leaseExpiries' | 'watch'>;

/** The reads status makes of the kernel. */
export type KernelReader = Pick<Kernel, 'listInterfaces' | 'defaultRouteInterface' | 'getDevice' | 'listEntries' | 'readHostNetwork' | 'listAddresses6' | 'defaultRoute6' | 'routeGet'>;

export interface StoreFacts {
  readonly configText: string | undefined;
  readonly records: readonly LeaseRecord[];
  readonly revision: bigint;
  /** etcd lease ID → expiry (Unix ms); undefined when the store cannot tell. */
  readonly expiries: ReadonlyMap<string, number> | undefined;
}

export type KernelFacts =
  | { readonly kind: 'unavailable'; readonly reason: string }
  | {
      readonly kind: 'read';
      readonly interfaces: readonly InterfaceInfo[];
      readonly defaultIndex: number | undefined;
      /** The IPv6 default route's interface, read (with each interface's `addresses6`) only when the config enables IPv6. */
      readonly defaultIndex6?: DefaultRoute;
      /** The overlay device `flannel.<VNI>` (undefined when absent or when the VNI is unknown). */
      readonly device: DeviceState | undefined;
      readonly entries: readonly Entry[];
      /** `flannel-v6.<VNI>` and its entries, read only when the config enables IPv6. */
      readonly device6?: DeviceState | undefined;
      readonly entries6?: readonly Entry[];
      /** Every IPv4 route of the host, for the underlay checks the daemon makes. */
      readonly routes: readonly HostRoute[];
      /** DirectRouting: the peers' PublicIPs this host reaches directly (the daemon's rule, direct-routing.ts). */
      readonly direct?: ReadonlySet<IpAddr>;
      /** Every IPv6 route of the host, read only when the config enables IPv6. */
      readonly routes6?: readonly HostRoute<Cidr6>[];
    };

export type SubnetFileFacts = { readonly path: string } & ({ readonly text: string } | { readonly error: string });

export interface StatusFacts {
  /** Unix ms the facts were read at. */
  readonly now: number;
  readonly store: StoreFacts;
  /** undefined when the kernel check is turned off. */
  readonly kernel: KernelFacts | undefined;
  readonly subnetFile: SubnetFileFacts;
}

export interface CollectDeps {
  readonly store: StatusStore;
  /** Opens (or returns the already open) kernel reader; rejects when the kernel cannot be read here. */
  readonly kernel: (() => Promise<KernelReader>) | undefined;
  readonly readFile: (path: string) => Promise<string>;
  readonly clock: Clock;
}

export interface CollectOptions {
  readonly subnetFile: string;
  /** All etcd reads together must answer within this; then status gives up (exit 3). */
  readonly etcdBudgetMs: number;
  /** For messages: the endpoints the store talks to. */
  readonly endpoints: readonly string[];
  readonly allowWideNetwork?: boolean;
}

/** The config, one range read of the leases, and the expiry of each etcd lease. */
export async function collectStoreFacts(store: StatusStore): Promise<StoreFacts> {
  const [configText, snapshot] = await Promise.all([store.getConfig(), store.list()]);
  const ids = snapshot.records.flatMap((r) => (r.kind === 'lease' && r.lease.etcdLease !== undefined ? [r.lease.etcdLease] : []));
  const expiries = store.leaseExpiries ? await store.leaseExpiries(ids) : undefined;
  return { configText, records: snapshot.records, revision: snapshot.revision, expiries };
}

/** Interfaces, default route, the overlay device and its entries (`ip addr`, `ip route`, `ip -d link`, `ip neigh`, `bridge fdb`). */
export async function collectKernelFacts(open: () => Promise<KernelReader>, deviceName: string | undefined, ipv6 = false, directLookups?: readonly IpAddr[]): Promise<KernelFacts> {
  try {
    const kernel = await open();
    const [listed, defaultIndex, device, addrs6, defaultIndex6] = await Promise.all([
      kernel.listInterfaces(),
      kernel.defaultRouteInterface(),
      deviceName === undefined ? Promise.resolve(undefined) : kernel.getDevice(deviceName),
      ipv6 ? kernel.listAddresses6() : undefined,
      ipv6 ? kernel.defaultRoute6() : undefined,
    ]);
    const interfaces = addrs6 ? listed.map((i) => ({ ...i, addresses6: addrs6.get(i.index) ?? [] })) : listed;
    const entries = device ? await kernel.listEntries(device.index) : [];
    // flannel-v6.<VNI> beside flannel.<VNI> (contract §11).
    const device6 = ipv6 && deviceName !== undefined ? await kernel.getDevice(deviceName.replace(/^flannel\./, 'flannel-v6.')) : undefined;
    const entries6 = device6 ? await kernel.listEntries(device6.index) : [];
    const { routes, routes6 } = await kernel.readHostNetwork();
    const facts = { kind: 'read', interfaces, defaultIndex, device, entries, routes, ...(ipv6 && { defaultIndex6, device6, entries6, routes6: routes6 ?? [] }) } as const;
    if (directLookups === undefined) return facts;
    const decisions = new DirectDecisions((ip) => kernel.routeGet(ip));
    await decisions.decide(directLookups);
    return { ...facts, direct: new Set(directLookups.filter((ip) => decisions.isDirect(ip) === true)) };
  } catch (err) {
    return { kind: 'unavailable', reason: `failed to read kernel state: ${errorMessage(err)}` };
  }
}

/** The subnet file's text, or why it could not be read (ENOENT, EACCES, …). */
export async function readSubnetFile(path: string, readFile: (path: string) => Promise<string>): Promise<SubnetFileFacts> {
  try {
    return { path, text: await readFile(path) };
  } catch (err) {
    return { path, error: (err as NodeJS.ErrnoException).code ?? errorMessage(err) };
  }
}

/**
 * Everything status looks at. The etcd reads run under one deadline: a call
 * that hangs (a host that drops packets) must end in exit 3, not a hang.
 * Rejects with StoreUnavailableError naming the endpoints.
 */
export async function collectFacts(deps: CollectDeps, opts: CollectOptions): Promise<StatusFacts> {
  const store = await withDeadline(collectStoreFacts(deps.store), opts.etcdBudgetMs, deps.clock, () => {
    const seconds = (opts.etcdBudgetMs / 1000).toFixed(1);
    return new StoreUnavailableError(`failed to read leases at ${opts.endpoints.join(',')}: no answer within ${seconds} s`);
  });
  let vni: number | undefined;
  let ipv6 = false;
  let directLookups: IpAddr[] | undefined;
  try {
    const config = store.configText === undefined ? undefined : parseNetworkConfig(store.configText, { allowWideNetwork: opts.allowWideNetwork === true });
    vni = config?.backend.vni;
    ipv6 = config?.enableIPv6 === true;
    // DirectRouting decides per peer and family: PublicIP for IPv4, PublicIPv6 for IPv6 (contract §12).
    if (config?.backend.directRouting) directLookups = [...new Set(store.records.flatMap((r) => (r.kind === 'lease' ? [...(config.enableIPv4 && r.lease.hasIPv4 !== false ? [r.lease.publicIP] : []), ...(ipv6 && r.lease.v6?.publicIP !== undefined ? [r.lease.v6.publicIP] : [])] : [])))];
  } catch {
    // analyze.ts reports the bad config; without a VNI there is no device name to look up.
  }
  const [kernel, subnetFile] = await Promise.all([
    deps.kernel ? collectKernelFacts(deps.kernel, vni === undefined ? undefined : `flannel.${vni}`, ipv6, directLookups) : Promise.resolve(undefined),
    readSubnetFile(opts.subnetFile, deps.readFile),
  ]);
  return { now: deps.clock.now(), store, kernel, subnetFile };
}

/** Resolves or rejects like `work`, unless `ms` pass first: then rejects with `onTimeout()`. */
export async function withDeadline<T>(work: Promise<T>, ms: number, clock: Clock, onTimeout: () => Error): Promise<T> {
  const timer = new AbortController();
  // The losing promise must not reject unobserved once the race is decided.
  work.catch(() => undefined);
  const deadline = new Promise<never>((_, reject) => {
    clock.sleep(ms, timer.signal).then(() => reject(onTimeout()), () => undefined);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    timer.abort();
  }
}
