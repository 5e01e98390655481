/**
 * Go flag-package spellings (contract §15), rewritten into what yargs reads.
 *
 * flanneld's unit files and manifests say `-etcd-endpoints=…`, `-iface eth0`,
 * `-ip-masq`, `-v=2`. Go accepts one or two dashes, `-x=v` or `-x v` for a flag
 * with a value, and `-x` or `-x=true|false|1|0|t|f|…` for a boolean. yargs
 * would read `-etcd-endpoints` as a group of one-letter flags, so every token
 * is rewritten to `--name` / `--name=value` before yargs sees it. Which flags
 * exist and which are booleans comes from the caller (the yargs spec), never
 * from a list kept here.
 *
 * Deliberate differences from Go (README, "Migrating from flanneld"):
 * - `-bool false` (a boolean, then a separate true/false word) is rejected: Go
 *   sets the flag *true* and silently stops parsing at `false`, dropping every
 *   flag after it.
 * - Parsing does not stop at the first non-flag word (our sub-commands come
 *   first and flags follow them); unknown words are reported, not ignored.
 */
import { UsageError } from './util/errors';

export type FlagKind = 'boolean' | 'value';

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool; undefined when `text` is none of its spellings. */
export function parseGoBool(text: string): boolean | undefined {
  if (GO_TRUE.has(text)) return true;
  if (GO_FALSE.has(text)) return false;
  return undefined;
}

/**
 * Rewrites Go-style flags to yargs' `--name[=value]`. `kinds` names every
 * declared flag; unknown flags pass as `--name` so that yargs reports them by
 * name. Throws UsageError (one line naming the flag) for a missing value, a bad
 * boolean, or the ambiguous `-bool false`.
 */
export function normalizeGoFlags(args: readonly string[], kinds: ReadonlyMap<string, FlagKind>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const token = args[i] as string;
    if (token === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (!token.startsWith('-') || token === '-') {
      out.push(token);
      continue;
    }
    const body = token.startsWith('--') ? token.slice(2) : token.slice(1);
    if (body === '' || body.startsWith('-') || body.startsWith('=')) throw new UsageError(`bad flag syntax: ${token}`);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? undefined : body.slice(eq + 1);
    const kind = kinds.get(name);
    if (kind === undefined) {
      // yargs' own negation (--no-iptables-forward-rules) or an unknown flag yargs will name.
      out.push(`--${body}`);
      continue;
    }
    if (kind === 'value') {
      if (value !== undefined) {
        out.push(`--${name}=${value}`);
        continue;
      }
      if (i + 1 >= args.length) throw new UsageError(`flag needs an argument: -${name}`);
      out.push(`--${name}=${args[++i] as string}`);
      continue;
    }
    if (value !== undefined) {
      const b = parseGoBool(value);
      if (b === undefined) throw new UsageError(`invalid boolean value ${JSON.stringify(value)} for -${name}: use -${name}=true or -${name}=false`);
      out.push(`--${name}=${b}`);
      continue;
    }
    const next = args[i + 1];
    if (next !== undefined && parseGoBool(next) !== undefined) {
      throw new UsageError(`-${name} ${next}: write -${name}=${next} (flanneld would set -${name} to true and ignore every argument after ${JSON.stringify(next)})`);
    }
    out.push(`--${name}`);
  }
  return out;
}
