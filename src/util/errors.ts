/**
 * The few error classes of flanneld-ts. Each is either transient (retried with
 * backoff where it happens) or fatal (reaches main.ts, which maps it to an exit
 * code). Messages read "failed to <verb> <object> <id>: <cause>".
 */

export class FlannelError extends Error {
  /** Retrying the same operation later may succeed. */
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.transient = transient;
  }
}

/** A bad command-line flag or environment variable (exit code 2). */
export class UsageError extends FlannelError {
  constructor(message: string) {
    super(message, false);
  }
}

/** A bad network config in etcd; names the field. Fatal at the moment it is seen, but the daemon keeps waiting for a fix. */
export class ConfigError extends FlannelError {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`invalid network config: ${field}: ${message}`, false);
    this.field = field;
  }
}

/** etcd could not be reached or answered with an error: retried. */
export class StoreUnavailableError extends FlannelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, true, options);
  }
}

/** The network has no free subnet left (fatal: needs an operator). */
export class OutOfSubnetsError extends FlannelError {
  constructor(network: string) {
    super(`failed to acquire a subnet lease in ${network}: out of subnets`, false);
  }
}

/** A kernel (netlink) call failed. */
export class KernelError extends FlannelError {
  readonly errno: string | undefined;
  constructor(message: string, errno: string | undefined, transient: boolean, options?: { cause?: unknown }) {
    super(message, transient, options);
    this.errno = errno;
  }
}

/** Fatal start-up problems on this host: no interface, no public IP, unwritable subnet file. */
export class HostError extends FlannelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, false, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isTransient(err: unknown): boolean {
  return err instanceof FlannelError ? err.transient : true;
}
