/**
 * Command line and FLANNELD_* environment (contract §9). Parsing is pure: it
 * returns options or throws UsageError; main.ts turns that into exit code 2.
 */
import yargs from 'yargs';
import { FlagKind, normalizeGoFlags, parseGoBool } from './go-flags';
import { Cidr, makeCidr, parseCidr, parseIPv4, tryParseIPv4 } from './net/ipv4';
import { tryParseIPv6 } from './net/ipv6';
import { IpAddr } from './net/family';
import { UsageError } from './util/errors';

export const VERSION = '0.1.0';

export interface EtcdOptions {
  readonly endpoints: string[];
  readonly prefix: string;
  readonly keyFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly caFile?: string | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** `--etcd-password-file`: read once by main (etcd-credentials.ts), never logged. */
  readonly passwordFile?: string | undefined;
}

export interface DaemonOptions {
  readonly etcd: EtcdOptions;
  readonly iface: string[];
  readonly ifaceRegex: string[];
  /** `--iface-can-reach`: the interface (and source address) the kernel would use to reach this address, IPv4 or IPv6. */
  readonly ifaceCanReach: IpAddr | undefined;
  readonly publicIP: number | undefined;
  /** `--public-ipv6`: the lease's PublicIPv6 and flannel-v6's local when the config enables IPv6 (contract §11). */
  readonly publicIPv6: bigint | undefined;
  readonly subnetFile: string;
  readonly renewMarginMinutes: number;
  /** Mean period of writing our unchanged lease value again, so flanneld peers relearn us (jittered ±25 %). */
  readonly reputIntervalMs: number;
  readonly ipMasq: boolean;
  readonly ipMasqFullyRandom: boolean;
  readonly iptablesForwardRules: boolean;
  readonly iptablesResyncMs: number;
  /** --ip-blackhole-route: keep `blackhole <own subnet>` in the main table (contract §16). */
  readonly ipBlackholeRoute: boolean;
  readonly healthzIP: string;
  /** 0 = no health server. */
  readonly healthzPort: number;
  /** Hidden: TTL of our etcd lease in seconds (flannel: 24 h). Shorter only for tests. */
  readonly leaseTTLSeconds: number;
  /** Hidden: period of the full kernel reconcile in ms. */
  readonly resyncMs: number;
  readonly logLevel: string;
  /** `--allow-wide-network`: accept a Network prefix shorter than /8. */
  readonly allowWideNetwork: boolean;
}

/** `flanneld-ts status`: what to read, how to show it, and what to keep. */
export interface StatusOptions {
  readonly etcd: EtcdOptions;
  readonly iface: string[];
  readonly ifaceRegex: string[];
  readonly subnetFile: string;
  readonly renewMarginMinutes: number;
  readonly format: 'table' | 'json' | 'brief';
  readonly watch: boolean;
  /** undefined = colour on a terminal only. */
  readonly color: boolean | undefined;
  readonly kernelCheck: boolean;
  readonly filter: { readonly subnet: Cidr | undefined; readonly publicIP: number | undefined };
  readonly allowWideNetwork: boolean;
}

/** Problems that flanneld logs and starts anyway (an invalid FLANNELD_* value, a key file without a cert): logged once the logger exists. */
export type Warnings = readonly string[];

/** `flanneld-ts trace DST [--from SRC]`: the path of one packet, hop by hop. */
export interface TraceOptions {
  readonly etcd: EtcdOptions;
  readonly iface: string[];
  readonly ifaceRegex: string[];
  readonly subnetFile: string;
  readonly renewMarginMinutes: number;
  /** The destination pod IP, IPv4 or IPv6: its family is the trace's. */
  readonly dst: IpAddr;
  /** undefined: this host is the source; else a pod IP of DST's family. */
  readonly src: IpAddr | undefined;
  readonly format: 'text' | 'json';
  readonly color: boolean | undefined;
  /** ICMP echoes sent end to end (0 with --no-probe). */
  readonly count: number;
  readonly capture: boolean;
  /** On the destination node: capture the probes coming in and wait for `count` of them. */
  readonly listen: boolean;
  /** --listen gives up waiting after this many seconds. */
  readonly timeoutSeconds: number;
}

export type Command =
  | { readonly command: 'run'; readonly options: DaemonOptions; readonly warnings: Warnings }
  | { readonly command: 'status'; readonly options: StatusOptions; readonly warnings: Warnings }
  | { readonly command: 'trace'; readonly options: TraceOptions; readonly warnings: Warnings }
  | { readonly command: 'help' | 'version'; readonly text: string };

const ETCD_FLAGS = {
  'etcd-endpoints': { type: 'string', default: 'http://127.0.0.1:4001,http://127.0.0.1:2379', describe: 'Comma-separated etcd endpoints' },
  'etcd-prefix': { type: 'string', default: '/coreos.com/network', describe: 'etcd prefix of the network config and leases' },
  'etcd-keyfile': { type: 'string', describe: 'TLS client key for etcd' },
  'etcd-certfile': { type: 'string', describe: 'TLS client certificate for etcd' },
  'etcd-cafile': { type: 'string', describe: 'CA bundle that signed the etcd server certificate' },
  'etcd-username': { type: 'string', describe: 'etcd username' },
  'etcd-password': { type: 'string', describe: 'etcd password (never logged; visible in ps: prefer --etcd-password-file or FLANNELD_ETCD_PASSWORD)' },
  'etcd-password-file': { type: 'string', describe: 'File holding the etcd password (read once, never logged)' },
} as const;

const RUN_FLAGS = {
  iface: { type: 'string', array: true, default: [] as string[], describe: 'Interface (name or IP) for inter-host traffic; repeatable, first match wins' },
  'iface-regex': { type: 'string', array: true, default: [] as string[], describe: 'Regex on interface names, tried after --iface; repeatable' },
  'public-ip': { type: 'string', describe: 'IP other nodes reach this one at (default: the interface address)' },
  'subnet-file': { type: 'string', default: '/run/flannel/subnet.env', describe: 'File the CNI plugin reads the subnet from' },
  'subnet-lease-renew-margin': { type: 'number', default: 60, describe: 'Renew the lease this many minutes before it expires (1-1439)' },
  'subnet-lease-reput-interval': { type: 'number', default: 3600, describe: 'Write the unchanged lease value again about every this many seconds (±25 %), so flanneld peers that dropped their peers relearn this node (1-82800)' },
  'ip-masq': { type: 'boolean', default: false, describe: 'Masquerade traffic leaving the overlay network' },
  'ip-masq-fully-random-disable': { type: 'boolean', default: false, describe: 'Leave --random-fully off the MASQUERADE rules' },
  'iptables-forward-rules': { type: 'boolean', default: true, describe: 'Add FORWARD accept rules for the network (--no-iptables-forward-rules to skip)' },
  'iptables-resync': { type: 'number', default: 5, describe: 'Seconds between checks that the iptables (or nftables) rules and the blackhole route are still there' },
  'ip-blackhole-route': { type: 'boolean', default: false, describe: 'Keep a blackhole route for this node\'s subnet in the main table (for setups without a bridge route, e.g. Canal)' },
  'healthz-ip': { type: 'string', default: '0.0.0.0', describe: 'Address of the /healthz, /readyz and /metrics server' },
  'healthz-port': { type: 'number', default: 0, describe: 'Port of the /healthz, /readyz and /metrics server (0 = off)' },
  'log-level': { type: 'string', defaultDescription: 'info', describe: 'trace, debug, info, warn, error (wins over -v)' },
  'iface-can-reach': { type: 'string', describe: 'Use the interface (and source address) the kernel routes this IPv4 or IPv6 address through; tried after --iface and --iface-regex' },
  'public-ipv6': { type: 'string', describe: 'IPv6 address other nodes reach this one at, when the network config enables IPv6 (default: the interface\'s IPv6 address)' },
  'allow-wide-network': { type: 'boolean', default: false, describe: 'Accept a Network prefix shorter than /8 in the network config' },
  'subnet-lease-ttl': { type: 'number', default: 86_400, hidden: true, describe: 'etcd lease TTL in seconds (tests)' },
  'kernel-resync': { type: 'number', default: 300, hidden: true, describe: 'Seconds between full kernel reconciles (kernel notifications trigger one at once)' },
} as const;

/**
 * flanneld's own logging flags (klog) and its Kubernetes-mode options: accepted
 * so existing unit files and manifests start unchanged (README, "Migrating from flanneld").
 */
const FLANNELD_COMPAT_FLAGS = {
  v: { type: 'number', describe: 'flanneld log verbosity: 0 = info, 1-4 = debug, 5+ = trace (--log-level wins)' },
  vmodule: { type: 'string', describe: 'flanneld per-file verbosity (pattern=N,...): accepted, no effect' },
  log_backtrace_at: { type: 'string', describe: 'flanneld (klog) file:line backtrace: accepted, no effect' },
  'kube-subnet-mgr': { type: 'boolean', default: false, describe: 'flanneld Kubernetes mode: not supported (flanneld-ts uses etcd); refused when true' },
  'kube-api-url': { type: 'string', describe: 'flanneld Kubernetes mode only: accepted, no effect' },
  'kube-annotation-prefix': { type: 'string', describe: 'flanneld Kubernetes mode only: accepted, no effect' },
  'kubeconfig-file': { type: 'string', describe: 'flanneld Kubernetes mode only: accepted, no effect' },
  'net-config-path': { type: 'string', describe: 'flanneld Kubernetes mode only: accepted, no effect' },
  'set-node-network-unavailable': { type: 'boolean', describe: 'flanneld Kubernetes mode only: accepted, no effect' },
} as const;

// What status shares with the daemon (and so, like the daemon, takes from FLANNELD_*): how to find this host's lease.
const STATUS_FLAGS = {
  iface: { ...RUN_FLAGS.iface, describe: 'Interface (name or IP) the daemon uses; tells this host\'s public IP. Repeatable' },
  'iface-regex': RUN_FLAGS['iface-regex'],
  'subnet-file': { ...RUN_FLAGS['subnet-file'], describe: 'The subnet file the daemon writes; names this host\'s lease' },
  'subnet-lease-renew-margin': { ...RUN_FLAGS['subnet-lease-renew-margin'], describe: 'Warn about leases expiring within this many minutes (1-1439)' },
  'allow-wide-network': { ...RUN_FLAGS['allow-wide-network'], describe: 'Judge a Network prefix shorter than /8 as the daemon started with this flag does' },
} as const;

// The view of one invocation; never from the environment (a FLANNELD_PUBLIC_IP meant for the daemon must not filter status).
const STATUS_VIEW_FLAGS = {
  json: { type: 'boolean', default: false, describe: 'Print the report as JSON (schema: docs/status.schema.json)' },
  brief: { type: 'boolean', default: false, describe: 'Print one line (OK or UNHEALTHY), for probes' },
  watch: { type: 'boolean', default: false, describe: 'Refresh on every etcd change (and kernel change) until interrupted' },
  color: { type: 'boolean', describe: 'Colour the table (default: only on a terminal); --no-color to turn it off' },
  subnet: { type: 'string', describe: 'Only what overlaps this subnet or address (e.g. 10.7.5.0/24, 10.7.5.23)' },
  'public-ip': { type: 'string', describe: 'Only what concerns the node with this public IP' },
  'kernel-check': { type: 'boolean', default: true, describe: 'Check this host\'s kernel state (--no-kernel-check for etcd only)' },
} as const;

// The view of one trace; never from the environment.
const TRACE_VIEW_FLAGS = {
  from: { type: 'string', describe: 'Source pod IP (default: this host)' },
  json: { type: 'boolean', default: false, describe: 'Print the report as JSON (schema: docs/trace.schema.json)' },
  color: { type: 'boolean', describe: 'Colour the text (default: only on a terminal); --no-color to turn it off' },
  probe: { type: 'boolean', default: true, describe: 'Send ICMP echoes from the source end to end (--no-probe: only read state)' },
  count: { type: 'number', default: 3, describe: 'How many ICMP echoes to send (1-100)' },
  capture: { type: 'boolean', default: false, describe: "Capture the probes at each local hop with tcpdump and say where they stop" },
  listen: { type: 'boolean', default: false, describe: 'On the node of pod DST: capture the probes coming in (eth0 → flannel.1 → cni0 → veth) until --count requests and replies crossed every hop' },
  timeout: { type: 'number', describe: 'With --listen: give up waiting after this many seconds (1-3600, default 30)' },
} as const;

type FlagSpec = { readonly type: 'string' | 'number' | 'boolean'; readonly array?: boolean; readonly default?: unknown; readonly defaultDescription?: string; readonly describe: string; readonly hidden?: boolean };

/** `--etcd-endpoints` → `FLANNELD_ETCD_ENDPOINTS` */
export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Every flag can come from FLANNELD_<FLAG>; the command line wins, so the
 * environment only replaces the default. As in flanneld, an empty variable is
 * ignored, and a value that does not parse (a boolean that is not a Go boolean,
 * a number that is not one) keeps the default with a warning.
 */
function withEnvDefaults(flags: Record<string, FlagSpec>, env: NodeJS.ProcessEnv, warnings: string[]): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const [name, spec] of Object.entries(flags)) {
    const raw = env[envName(name)];
    if (raw === undefined || raw === '') {
      out[name] = spec;
      continue;
    }
    let value: unknown = raw;
    if (spec.type === 'boolean') {
      value = parseGoBool(raw);
    } else if (spec.type === 'number') {
      value = raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : undefined;
    } else if (spec.array) {
      value = splitList(raw);
    }
    if (value === undefined) {
      warnings.push(`ignoring ${envName(name)}=${JSON.stringify(raw)}: not a valid ${spec.type}; keeping the default`);
      out[name] = spec;
      continue;
    }
    // A secret from the environment must not be echoed by --help as the default.
    out[name] = SECRET_FLAGS.has(name) ? { ...spec, default: value, defaultDescription: `(from ${envName(name)})` } : { ...spec, default: value };
  }
  return out;
}

const SECRET_FLAGS = new Set(['etcd-password']);

function splitList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * An endpoint without a scheme gets one as flanneld's etcd client decides:
 * TLS only when a key and a certificate are given (contract §15).
 */
function withScheme(endpoint: string, tls: boolean): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `${tls ? 'https' : 'http'}://${endpoint}`;
}

export function etcdOptionsFrom(argv: Record<string, unknown>, warnings: string[] = []): EtcdOptions {
  const str = (k: string): string | undefined => {
    const v = argv[k];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  let keyFile = str('etcd-keyfile');
  let certFile = str('etcd-certfile');
  let caFile = str('etcd-cafile');
  if ((keyFile === undefined) !== (certFile === undefined)) {
    // flanneld builds no TLS config then: it warns and connects without certificates.
    warnings.push(`--etcd-${keyFile === undefined ? 'certfile' : 'keyfile'} given without --etcd-${keyFile === undefined ? 'keyfile' : 'certfile'}: no client certificate; connecting to etcd without TLS as flanneld does (insecure)`);
    keyFile = undefined;
    certFile = undefined;
    caFile = undefined;
  }
  const endpoints = splitList(String(argv['etcd-endpoints'])).map((e) => withScheme(e, keyFile !== undefined));
  if (endpoints.length === 0) throw new UsageError('--etcd-endpoints: no endpoint given');
  for (const e of endpoints) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(e)) throw new UsageError(`--etcd-endpoints: ${JSON.stringify(e)} is not an http(s)://host:port URL or host:port`);
  }
  const password = str('etcd-password');
  const passwordFile = str('etcd-password-file');
  if (password !== undefined && passwordFile !== undefined) throw new UsageError('--etcd-password and --etcd-password-file: give one, not both');
  return { endpoints, prefix: String(argv['etcd-prefix']), keyFile, certFile, caFile, username: str('etcd-username'), password, passwordFile };
}

function renewMarginFrom(argv: Record<string, unknown>): number {
  const margin = Number(argv['subnet-lease-renew-margin']);
  if (!Number.isInteger(margin) || margin < 1 || margin > 1439) {
    throw new UsageError(`--subnet-lease-renew-margin: ${argv['subnet-lease-renew-margin']} is not a whole number of minutes from 1 to 1439`);
  }
  return margin;
}

function ifaceRegexFrom(argv: Record<string, unknown>): string[] {
  const ifaceRegex = (argv['iface-regex'] as string[]).flatMap(splitList);
  for (const r of ifaceRegex) {
    try {
      new RegExp(r);
    } catch {
      throw new UsageError(`--iface-regex: ${JSON.stringify(r)} is not a valid regular expression`);
    }
  }
  return ifaceRegex;
}

/** `-v` (klog verbosity) as a log level, unless --log-level / FLANNELD_LOG_LEVEL says otherwise. */
export function logLevelFromVerbosity(v: number): string {
  return v >= 5 ? 'trace' : v >= 1 ? 'debug' : 'info';
}

function optionalIPv4(argv: Record<string, unknown>, flag: string): number | undefined {
  const v = argv[flag];
  if (typeof v !== 'string' || v === '') return undefined;
  const ip = tryParseIPv4(v);
  if (ip === undefined) throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not an IPv4 address`);
  return ip;
}

function runOptionsFrom(argv: Record<string, unknown>, warnings: string[]): DaemonOptions {
  if (argv['kube-subnet-mgr'] === true) throw new UsageError('--kube-subnet-mgr: the Kubernetes subnet manager is not supported; flanneld-ts keeps leases in etcd (--etcd-endpoints)');
  const margin = renewMarginFrom(argv);
  const ttl = Number(argv['subnet-lease-ttl']);
  if (!Number.isInteger(ttl) || ttl < 5) throw new UsageError(`--subnet-lease-ttl: ${argv['subnet-lease-ttl']} is not a whole number of seconds >= 5`);
  const reput = Number(argv['subnet-lease-reput-interval']);
  if (!Number.isInteger(reput) || reput < 1 || reput > 82_800) throw new UsageError(`--subnet-lease-reput-interval: ${argv['subnet-lease-reput-interval']} is not a whole number of seconds from 1 to 82800 (23 h, flanneld's renewal period)`);
  const resync = Number(argv['kernel-resync']);
  if (!(resync > 0)) throw new UsageError(`--kernel-resync: ${argv['kernel-resync']} is not a positive number of seconds`);
  const publicIP = optionalIPv4(argv, 'public-ip');
  const reach = argv['iface-can-reach'];
  const ifaceCanReach = typeof reach === 'string' && reach !== '' ? (tryParseIPv4(reach) ?? tryParseIPv6(reach)) : undefined;
  if (typeof reach === 'string' && reach !== '' && ifaceCanReach === undefined) throw new UsageError(`--iface-can-reach: ${JSON.stringify(reach)} is not an IPv4 or IPv6 address`);
  const pip6 = argv['public-ipv6'];
  const publicIPv6 = typeof pip6 === 'string' && pip6 !== '' ? tryParseIPv6(pip6) : undefined;
  if (typeof pip6 === 'string' && pip6 !== '' && publicIPv6 === undefined) throw new UsageError(`--public-ipv6: ${JSON.stringify(pip6)} is not an IPv6 address`);
  const ifaceRegex = ifaceRegexFrom(argv);
  const healthzPort = Number(argv['healthz-port']);
  if (!Number.isInteger(healthzPort) || healthzPort < 0 || healthzPort > 65535) throw new UsageError(`--healthz-port: ${argv['healthz-port']} is not a port number (0 turns the server off)`);
  const healthzIP = String(argv['healthz-ip']);
  if (tryParseIPv4(healthzIP) === undefined) throw new UsageError(`--healthz-ip: ${JSON.stringify(healthzIP)} is not an IPv4 address`);
  const iptResync = Number(argv['iptables-resync']);
  if (!Number.isInteger(iptResync) || iptResync < 1) throw new UsageError(`--iptables-resync: ${argv['iptables-resync']} is not a whole number of seconds >= 1`);
  const verbosity = argv.v === undefined ? undefined : Number(argv.v);
  if (verbosity !== undefined && !Number.isInteger(verbosity)) throw new UsageError(`-v: ${argv.v} is not a whole number`);
  const level = typeof argv['log-level'] === 'string' ? argv['log-level'] : logLevelFromVerbosity(verbosity ?? 0);
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) throw new UsageError(`--log-level: unknown level ${JSON.stringify(level)}`);
  return {
    etcd: etcdOptionsFrom(argv, warnings),
    iface: (argv.iface as string[]).flatMap(splitList),
    ifaceRegex,
    ifaceCanReach,
    publicIP,
    publicIPv6,
    subnetFile: String(argv['subnet-file']),
    renewMarginMinutes: margin,
    reputIntervalMs: reput * 1000,
    ipMasq: argv['ip-masq'] === true,
    ipMasqFullyRandom: argv['ip-masq-fully-random-disable'] !== true,
    iptablesForwardRules: argv['iptables-forward-rules'] !== false,
    iptablesResyncMs: iptResync * 1000,
    ipBlackholeRoute: argv['ip-blackhole-route'] === true,
    healthzIP,
    healthzPort,
    leaseTTLSeconds: ttl,
    resyncMs: resync * 1000,
    logLevel: level,
    allowWideNetwork: argv['allow-wide-network'] === true,
  };
}

function statusOptionsFrom(argv: Record<string, unknown>, warnings: string[]): StatusOptions {
  if (argv.json === true && argv.brief === true) throw new UsageError('--json and --brief: choose one output format');
  let subnet: Cidr | undefined;
  const sub = argv.subnet;
  if (typeof sub === 'string') {
    try {
      subnet = sub.includes('/') ? parseCidr(sub) : makeCidr(parseIPv4(sub), 32);
    } catch {
      throw new UsageError(`--subnet: ${JSON.stringify(sub)} is not an IPv4 subnet (10.7.5.0/24) or address`);
    }
  }
  let publicIP: number | undefined;
  const pip = argv['public-ip'];
  if (typeof pip === 'string') {
    publicIP = tryParseIPv4(pip);
    if (publicIP === undefined) throw new UsageError(`--public-ip: ${JSON.stringify(pip)} is not an IPv4 address`);
  }
  return {
    etcd: etcdOptionsFrom(argv, warnings),
    iface: (argv.iface as string[]).flatMap(splitList),
    ifaceRegex: ifaceRegexFrom(argv),
    subnetFile: String(argv['subnet-file']),
    renewMarginMinutes: renewMarginFrom(argv),
    format: argv.json === true ? 'json' : argv.brief === true ? 'brief' : 'table',
    watch: argv.watch === true,
    color: typeof argv.color === 'boolean' ? argv.color : undefined,
    kernelCheck: argv['kernel-check'] !== false,
    filter: { subnet, publicIP },
    allowWideNetwork: argv['allow-wide-network'] === true,
  };
}

const ALL_FLAGS = { ...ETCD_FLAGS, ...RUN_FLAGS, ...FLANNELD_COMPAT_FLAGS, ...STATUS_FLAGS, ...STATUS_VIEW_FLAGS, ...TRACE_VIEW_FLAGS } as Record<string, FlagSpec>;

/** Every declared flag and whether it is a boolean: what the Go-style normaliser needs. */
function flagKinds(): Map<string, FlagKind> {
  const kinds = new Map<string, FlagKind>([['help', 'boolean'], ['h', 'boolean'], ['version', 'boolean']]);
  for (const [name, spec] of Object.entries(ALL_FLAGS)) kinds.set(name, spec.type === 'boolean' ? 'boolean' : 'value');
  return kinds;
}

function ipArg(value: unknown, what: string): IpAddr {
  const ip = typeof value === 'string' ? (tryParseIPv4(value) ?? tryParseIPv6(value)) : undefined;
  if (ip === undefined) throw new UsageError(`${what}: ${JSON.stringify(value ?? '')} is not an IPv4 or IPv6 address`);
  return ip;
}

function traceOptionsFrom(argv: Record<string, unknown>, warnings: string[]): TraceOptions {
  const dst = ipArg(argv.dst === undefined ? undefined : String(argv.dst), 'trace DST');
  const src = argv.from === undefined ? undefined : ipArg(argv.from, '--from');
  if (src !== undefined && typeof src !== typeof dst) throw new UsageError(`--from: ${String(argv.from)} and DST ${String(argv.dst)} are of different address families; a packet has one`);
  if (argv.capture === true && argv.probe === false) throw new UsageError('--capture and --no-probe: capture watches the probes, so it needs them');
  const count = Number(argv.count);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new UsageError(`--count: ${argv.count} is not a whole number from 1 to 100`);
  const listen = argv.listen === true;
  if (listen && argv.capture === true) throw new UsageError('--listen and --capture: --capture runs on the source node, --listen on the destination node');
  if (listen && argv.probe === false) throw new UsageError('--listen and --no-probe: --listen waits for the probes another node sends');
  if (!listen && argv.timeout !== undefined) throw new UsageError('--timeout: only with --listen');
  const timeout = argv.timeout === undefined ? 30 : Number(argv.timeout);
  if (!Number.isFinite(timeout) || timeout < 1 || timeout > 3600) throw new UsageError(`--timeout: ${argv.timeout} is not a number of seconds from 1 to 3600`);
  return {
    etcd: etcdOptionsFrom(argv, warnings),
    iface: (argv.iface as string[]).flatMap(splitList),
    ifaceRegex: ifaceRegexFrom(argv),
    subnetFile: String(argv['subnet-file']),
    renewMarginMinutes: renewMarginFrom(argv),
    dst,
    src,
    format: argv.json === true ? 'json' : 'text',
    color: typeof argv.color === 'boolean' ? argv.color : undefined,
    count: argv.probe === false ? 0 : count,
    capture: argv.capture === true,
    listen,
    timeoutSeconds: timeout,
  };
}

/** Parses argv (without node and script) and the environment. Throws UsageError. */
export function parseCommandLine(rawArgs: readonly string[], env: NodeJS.ProcessEnv = process.env): Command {
  const args = normalizeGoFlags(rawArgs, flagKinds());
  let output = '';
  let failure: string | undefined;
  const warnings: string[] = [];
  const parser = yargs([...args])
    .scriptName('flanneld-ts')
    .usage('$0 [run|status|trace] [options]\n\nA flannel-compatible VXLAN overlay daemon.')
    .command(['run', '$0'], 'Run the daemon (default)', (y) =>
      y.options(withEnvDefaults(ETCD_FLAGS, env, warnings)).options(withEnvDefaults(RUN_FLAGS, env, warnings)).options(withEnvDefaults(FLANNELD_COMPAT_FLAGS, env, warnings)),
    )
    .command('status', "Show leases, the overlay and this host's kernel state; changes nothing. Exit 0 healthy, 1 problems, 2 usage, 3 etcd unreachable", (y) =>
      y.options(withEnvDefaults(ETCD_FLAGS, env, warnings)).options(withEnvDefaults(STATUS_FLAGS, env, warnings)).options(STATUS_VIEW_FLAGS),
    )
    .command('trace <dst>', "Follow one packet from a pod (or this host) to a pod IP, hop by hop, and say where it dies. Exit 0 path ok, 1 problem, 2 usage, 3 etcd unreachable", (y) =>
      y.options(withEnvDefaults(ETCD_FLAGS, env, warnings)).options(withEnvDefaults(STATUS_FLAGS, env, warnings)).options(TRACE_VIEW_FLAGS).positional('dst', { type: 'string', describe: 'Destination pod IP' }),
    )
    .epilogue('Every flag can also be set as FLANNELD_<FLAG> (e.g. FLANNELD_ETCD_ENDPOINTS); the command line wins. Go-style spellings work too: -flag, -flag=value, -flag value.')
    // Flags are read by their dashed names; camelCase twins would only show up in "Unknown arguments: foo-bar, fooBar".
    .parserConfiguration({ 'camel-case-expansion': false })
    .strict()
    .version(VERSION)
    .help()
    .alias('help', 'h')
    .wrap(100)
    .exitProcess(false)
    .fail((msg, err) => {
      failure = msg || err?.message || 'invalid command line';
    });
  const argv = parser.parseSync(args, {}, (_err, _argv, out) => {
    output = out;
  }) as Record<string, unknown>;
  if (failure !== undefined) throw new UsageError(failure.split('\n')[0] as string);
  if (argv.help) return { command: 'help', text: output };
  if (argv.version) return { command: 'version', text: output || VERSION };
  // A repeated scalar flag takes the last value (as Go's flag package does); array flags still collect.
  for (const [name, spec] of Object.entries(ALL_FLAGS)) {
    const v = argv[name];
    if (!spec.array && Array.isArray(v)) argv[name] = v[v.length - 1];
  }
  if (argv._ instanceof Array && argv._[0] === 'trace') {
    const options = traceOptionsFrom(argv, warnings);
    return { command: 'trace', options, warnings };
  }
  if (argv._ instanceof Array && argv._[0] === 'status') {
    const options = statusOptionsFrom(argv, warnings);
    return { command: 'status', options, warnings };
  }
  const options = runOptionsFrom(argv, warnings);
  return { command: 'run', options, warnings };
}
