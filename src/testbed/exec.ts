/**
 * Running commands for the namespace testbed: a promise around `child_process.spawn`
 * that always resolves with the exit code (callers decide what a failure means),
 * plus a variant that throws with the command line and its output.
 */
import { spawn } from 'node:child_process';

/** What a finished command printed and how it ended (`code` is -1 when killed by a signal or timeout). */
export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** Options for `run`: stdin text, extra environment, and a kill timeout (default 30 s). */
export interface ExecOptions {
  readonly input?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/** Runs `cmd args…` to completion; never rejects except when the program cannot be started. */
export function run(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`failed to start ${cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? -1 });
    });
    // A program that exits without reading stdin makes the write fail with EPIPE; its exit code tells the story.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like `run`, but throws "failed to run <command line> (exit N): <stderr>" on a non-zero exit. */
export async function runChecked(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) {
    const out = (res.stderr.trim() || res.stdout.trim()).slice(0, 2000);
    throw new Error(`failed to run ${[cmd, ...args].join(' ')} (exit ${res.code}): ${out}`);
  }
  return res;
}

/** `ip netns exec <netns> cmd args…` as an argument vector for `run`/`spawn`. */
export function netnsArgv(netns: string, cmd: string, args: readonly string[]): string[] {
  return ['netns', 'exec', netns, cmd, ...args];
}
