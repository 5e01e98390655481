/** Capped exponential backoff with full jitter, and a retry loop that logs an outage once. */
import { Clock, abortError, isAbortError } from './clock';
import { errorMessage, isTransient } from './errors';
import { Logger } from './log';

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 10_000 };

/** Delay before retry number `attempt` (0-based): uniform in [cap/2, cap], cap = min(max, initial·2^attempt). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, rand: () => number): number {
  const cap = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (rand() * cap) / 2);
}

export interface RetryOptions {
  readonly what: string;
  readonly log: Logger;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly signal: AbortSignal;
  readonly policy?: BackoffPolicy;
}

/**
 * Runs `fn` until it succeeds, retrying transient errors with backoff. Logs the
 * first failure at warn ("failed to <what>: ..., retrying") and the recovery at
 * info, never a line per retry. Fatal errors and aborts are rethrown.
 */
export async function retryTransient<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  let attempt = 0;
  let firstFailure: number | undefined;
  for (;;) {
    try {
      const result = await fn();
      if (firstFailure !== undefined) {
        opts.log.info({ attempts: attempt + 1, downMs: opts.clock.now() - firstFailure }, `recovered: ${opts.what}`);
      }
      return result;
    } catch (err) {
      // Stopping while a call fails is a stop, not a fatal error.
      if (opts.signal.aborted) throw abortError();
      if (isAbortError(err) || !isTransient(err)) throw err;
      if (firstFailure === undefined) {
        firstFailure = opts.clock.now();
        const msg = errorMessage(err);
        // Store errors already read "failed to <verb> ...": do not say it twice.
        opts.log.warn({ err: msg }, `${msg.startsWith('failed to ') ? msg : `failed to ${opts.what}: ${msg}`}; retrying with backoff`);
      }
      await opts.clock.sleep(backoffDelay(opts.policy ?? DEFAULT_BACKOFF, attempt, opts.rand), opts.signal);
      attempt++;
    }
  }
}
