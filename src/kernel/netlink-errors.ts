/** Errors of the `netlink` package's requests, as `KernelError`s naming the errno. */
import { KernelError, errorMessage } from '../util/errors';

const TRANSIENT_ERRNOS = new Set(['EBUSY', 'EAGAIN', 'ENOBUFS', 'EINTR', 'ETIMEDOUT']);

/** The errno name of a failed request: the package rejects with "Request rejected: ENOENT". */
export function errnoName(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  const message = errorMessage(err);
  if (message.includes('Timeout has been reached')) return 'ETIMEDOUT';
  return /Request rejected: (\S+)/.exec(message)?.[1];
}

export function kernelError(what: string, err: unknown): KernelError {
  const errno = errnoName(err);
  const transient = errno !== undefined && TRANSIENT_ERRNOS.has(errno);
  return new KernelError(`failed to ${what}: ${errno ?? errorMessage(err)}`, errno, transient, { cause: err });
}

/** Runs `request`, counting the listed errnos (the thing is already gone) as success. */
export async function ignoring(errnos: readonly string[], request: () => Promise<unknown>): Promise<void> {
  try {
    await request();
  } catch (err) {
    if (!errnos.includes(errnoName(err) ?? '')) throw err;
  }
}
