/**
 * Readiness for systemd `Type=notify`. Node has no unix datagram sockets, so we
 * run systemd's own `systemd-notify` (the unit sets NotifyAccess=all, since the
 * message then comes from a child process). Outside systemd (no NOTIFY_SOCKET)
 * this does nothing.
 */
import { execFile } from 'node:child_process';
import { errorMessage } from './errors';
import { Logger } from './log';

export function notifySystemd(state: { ready?: boolean; stopping?: boolean; status?: string }, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!env.NOTIFY_SOCKET) return Promise.resolve();
  const args: string[] = [];
  if (state.ready) args.push('--ready');
  if (state.stopping) args.push('STOPPING=1');
  if (state.status) args.push(`--status=${state.status}`);
  return new Promise((resolve) => {
    execFile('systemd-notify', [`--pid=${process.pid}`, ...args], { env, timeout: 5000 }, (err) => {
      if (err) log.warn({ err: errorMessage(err) }, `failed to notify systemd: ${errorMessage(err)}`);
      resolve();
    });
  });
}
