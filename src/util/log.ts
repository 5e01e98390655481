/** pino, configured once in main.ts; everything else takes a child `Logger`. */
import pino from 'pino';

export type Logger = pino.Logger;

/** Paths never logged in clear (etcd password, TLS key contents). */
export const REDACT_PATHS = ['etcdPassword', '*.etcdPassword', 'password', '*.password', 'etcd.password'];

export function createLogger(level: string = process.env.FLANNELD_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  const opts: pino.LoggerOptions = {
    level,
    base: { name: 'flanneld-ts', pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(opts, destination) : pino(opts, pino.destination({ dest: 2, sync: true }));
}

/** A logger that writes nothing (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
