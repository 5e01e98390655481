/** The bench's command line. Pure: returns options or throws `UsageError`. */
import { DaemonOptions, parseCommandLine } from '../cli';
import { UsageError } from '../util/errors';
import { MAX_PEERS } from './peers';

/** Phases that can be left out (`--phases`); the join storm always runs, as it fills the daemon. */
export const OPTIONAL_PHASES = ['joins', 'idle', 'pass', 'churn', 'cold', 'warm', 'limit'] as const;
export type Phase = (typeof OPTIONAL_PHASES)[number];

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
  /** Series of single joins run back to back; the spread of their p99 is reported and the worst judged. */
  readonly repeat: number;
  readonly churnSeconds: number;
  /** Lease writes per second during churn (a delete and a put of the same peer are two). */
  readonly churnRate: number;
  readonly phases: Phase[];
}

export const USAGE = `usage: npm run bench -- [options]   (as root)

  --sizes 100,1000,5000   peer counts to measure (default 100,1000,5000)
  --out FILE              JSON results file (default bench-results.json)
  --joins N               single joins to time per size (default 50)
  --idle-seconds S        idle window per size (default 30 s up to 1,000 peers, 60 s above)
  --limit-runs N          ip -batch runs per size; the median counts (default 3)
  --fail-on-miss          exit 3 when a target is missed
  --daemon-args "FLAGS"   extra flanneld-ts flags for every daemon started (default none: the shipped defaults)
  --repeat N              series of single joins run back to back (default 3); the worst p99 is judged
  --churn-seconds S       length of the churn phase (default 60)
  --churn-rate R          lease writes per second during churn, deletes and puts alternating (default 50)
  --phases LIST           phases to run besides the join storm, from ${OPTIONAL_PHASES.join(',')}
                          (default all); e.g. --sizes 20000 --phases churn for the memory check
`;

/** The default idle window: at least 30 s, where one 10 ms CPU tick is 0.033 % of a core, and 60 s at 5,000 peers. */
export function idleSecondsFor(peers: number): number {
  return peers <= 1000 ? 30 : 60;
}

/**
 * The options the daemon itself derives from `args` (its own parser and defaults:
 * the bench keeps no copy of them). Throws UsageError naming --daemon-args.
 */
export function daemonOptionsFor(args: readonly string[]): DaemonOptions {
  let cmd;
  try {
    cmd = parseCommandLine(['run', '--etcd-endpoints', 'http://127.0.0.1:2379', ...args], {});
  } catch (err) {
    throw new UsageError(`--daemon-args: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (cmd.command !== 'run') throw new UsageError(`--daemon-args: ${args.join(' ')} is not a set of flanneld-ts run flags`);
  return cmd.options;
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
  let repeat = 3;
  let churnSeconds = 60;
  let churnRate = 50;
  let phases: Phase[] = [...OPTIONAL_PHASES];
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
        daemonOptionsFor(daemonArgs);
        break;
      case '--repeat':
        repeat = positiveInt('--repeat', value(), 10);
        break;
      case '--churn-seconds':
        churnSeconds = positiveInt('--churn-seconds', value(), 3600);
        break;
      case '--churn-rate':
        churnRate = positiveInt('--churn-rate', value(), 1000);
        break;
      case '--phases': {
        const text = value() ?? '';
        const names = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
        const unknown = names.filter((x) => !(OPTIONAL_PHASES as readonly string[]).includes(x));
        if (unknown.length > 0) throw new UsageError(`--phases: unknown phase ${JSON.stringify(unknown[0])} (choose from ${OPTIONAL_PHASES.join(', ')})`);
        phases = OPTIONAL_PHASES.filter((x) => names.includes(x));
        break;
      }
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return { sizes, out, joins, idleSeconds, limitRuns, failOnMiss, daemonArgs, repeat, churnSeconds, churnRate, phases };
}
