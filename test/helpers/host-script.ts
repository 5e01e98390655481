/**
 * Runs one of the repository's Docker end-to-end scripts (scripts/container-e2e.sh,
 * scripts/systemd-e2e.sh) from the suite: in the namespaces of scripts/test.sh's
 * own shell (dockerd cannot live in the suite's private namespace), with its
 * output in a file, its progress lines (not the daemons' JSON logs) echoed to the
 * test output, and a failure reported with the script's last 200 lines.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { inHostNamespaces } from './host-namespaces';

function run(argv: string[], logFile: string, timeoutMs: number): Promise<number> {
  return new Promise((res, rej) => {
    const out = createWriteStream(logFile);
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      out.end(() => res(code ?? -1));
    });
  });
}

/** Runs `bash script` in the machine's namespaces; resolves with its whole output once it passed. */
export async function runHostScript(script: string, timeoutMs: number): Promise<string> {
  if (process.getuid?.() !== 0) throw new Error(`${script} needs root (it may start dockerd): run the suite with scripts/test.sh`);
  const dir = mkdtempSync(join(tmpdir(), 'flts-host-script-'));
  try {
    const log = join(dir, 'script.log');
    const code = await run([...inHostNamespaces(['net', 'mount']), 'bash', script], log, timeoutMs);
    const text = readFileSync(log, 'utf8');
    process.stderr.write(`${text.split('\n').filter((l) => !l.startsWith('{')).join('\n')}\n`);
    if (code !== 0) expect.fail(`${script} exited with ${code}:\n${text.split('\n').slice(-200).join('\n')}`);
    return text;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
