/** The bench's command line. Pure: returns options or throws `UsageError`. */
import { UsageError } from '../util/errors';
import { MAX_PEERS } from './peers';

export interface BenchOptions {
  readonly sizes: number[];
  readonly out: string;
  readonly joins: number;
  /** Idle window with the shipped defaults, per size; undefined = idleSecondsFor(size). */
  readonly idleSeconds: number | undefined;
  readonly limitRuns: number;
  /** Exit 3 when a target is missed (CI gates); by default a miss is reported, not fatal. */
  readonly failOnMiss: boolean;
  /** Extra flags for every daemon the bench starts, to measure other settings than the shipped defaults. */
  readonly daemonArgs: string[];
}

export const USAGE = `usage: npm run bench -- [options]   (as root)

  --sizes 100,1000,5000   peer counts to measure (default 100,1000,5000)
  --out FILE              JSON results file (default bench-results.json)
  --joins N               single joins to time per size (default 50)
  --idle-seconds S        idle window per size (default 30 s up to 1,000 peers, 60 s above)
  --limit-runs N          ip -batch runs per size; the median counts (default 3)
  --fail-on-miss          exit 3 when a target is missed
  --daemon-args "FLAGS"   extra flanneld-ts flags for every daemon started (default none: the shipped defaults)
`;

/** The default idle window: at least 30 s, where one 10 ms CPU tick is 0.033 % of a core, and 60 s at 5,000 peers. */
export function idleSecondsFor(peers: number): number {
  return peers <= 1000 ? 30 : 60;
}

/** The daemon's default --kernel-resync, in seconds. */
const DEFAULT_RESYNC_S = 10;

/** The period of the full reconcile pass the daemon runs with `args` (the last --kernel-resync wins, as in the CLI). */
export function resyncSeconds(args: readonly string[]): number {
  let seconds = DEFAULT_RESYNC_S;
  args.forEach((a, i) => {
    const value = a === '--kernel-resync' ? args[i + 1] : a.startsWith('--kernel-resync=') ? a.slice('--kernel-resync='.length) : undefined;
    if (value !== undefined && Number(value) > 0) seconds = Number(value);
  });
  return seconds;
}

function positiveInt(flag: string, text: string | undefined, max: number): number {
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`${flag}: ${JSON.stringify(text ?? '')} is not a whole number from 1 to ${max}`);
  }
  return n;
}

export function parseBenchArgs(args: readonly string[]): BenchOptions | 'help' {
  let sizes = [100, 1000, 5000];
  let out = 'bench-results.json';
  let joins = 50;
  let idleSeconds: number | undefined;
  let limitRuns = 3;
  let failOnMiss = false;
  let daemonArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string | undefined => (eq > 0 ? arg.slice(eq + 1) : args[++i]);
    switch (flag) {
      case '--help':
      case '-h':
        return 'help';
      case '--sizes': {
        const text = value() ?? '';
        sizes = text.split(',').map((s) => positiveInt('--sizes', s.trim(), MAX_PEERS));
        if (new Set(sizes).size !== sizes.length) throw new UsageError(`--sizes: ${text} repeats a size`);
        break;
      }
      case '--out':
        out = value() ?? '';
        if (out === '') throw new UsageError('--out: no file name given');
        break;
      case '--joins':
        joins = positiveInt('--joins', value(), 1000);
        break;
      case '--idle-seconds':
        idleSeconds = positiveInt('--idle-seconds', value(), 3600);
        break;
      case '--limit-runs':
        limitRuns = positiveInt('--limit-runs', value(), 20);
        break;
      case '--fail-on-miss':
        failOnMiss = true;
        break;
      case '--daemon-args':
        daemonArgs = (value() ?? '').split(/\s+/).filter((a) => a !== '');
        break;
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return { sizes, out, joins, idleSeconds, limitRuns, failOnMiss, daemonArgs };
}
