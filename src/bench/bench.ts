/**
 * `npm run bench` (as root): the benchmark of issues 6 and 10. For each size it
 * builds a namespace host with a real etcd (run-size.ts), measures the join
 * storm, single-join latency (several series), idle cost, the CPU of a full
 * pass, memory under churn, cold start, a profiled idle window and the kernel
 * limit, verifies the kernel state after every phase, prints tables with MET /
 * MISSED per target, and writes the results as JSON (and the idle CPU profile
 * beside it).
 *
 * Exit codes: 0 measured and verified; 1 a phase failed or the kernel state was
 * wrong (a fast wrong result must not pass); 2 bad usage; 3 a target was missed
 * and --fail-on-miss was given. Namespaces, etcd and temp files go on every path,
 * including SIGINT / SIGTERM.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cpus, release } from 'node:os';
import { Scene } from '../testbed/scene';
import { UsageError } from '../util/errors';
import { BenchOptions, idleSecondsFor, parseBenchArgs, USAGE } from './options';
import { renderReport } from './report';
import { BenchReport, MachineInfo, SizeResult } from './results';
import { runSize } from './run-size';
import { checkTargets } from './targets';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]?.trim() ?? '';
  } catch {
    return 'unknown';
  }
}

function machineInfo(): MachineInfo {
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return {
    cpus: cpus().length,
    cpuModel: model.trim(),
    kernel: release(),
    node: process.version,
    etcd: firstLine('etcd', ['--version']).replace(/^etcd Version:\s*/, ''),
    iproute2: firstLine('ip', ['-V']),
    loadAvgAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}

async function bench(opts: BenchOptions): Promise<number> {
  const startedAt = new Date();
  const machine = machineInfo();
  const sizes: SizeResult[] = [];
  const failures: string[] = [];
  let current: Scene | undefined;
  const interrupt = (sig: NodeJS.Signals): void => {
    say(`\n${sig}: tearing down`);
    void (current?.destroy() ?? Promise.resolve()).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  say(`flanneld-ts benchmark: sizes ${opts.sizes.join(', ')}; phases storm${opts.phases.map((p) => `, ${p}`).join('')}; ${machine.cpus} × ${machine.cpuModel}, Linux ${machine.kernel}`);
  if (opts.daemonArgs.length > 0) say(`daemon flags added to the defaults: ${opts.daemonArgs.join(' ')}`);
  for (const peers of opts.sizes) {
    try {
      sizes.push(
        await runSize({
          peers,
          joins: opts.joins,
          repeat: opts.repeat,
          idleSeconds: opts.idleSeconds ?? idleSecondsFor(peers),
          limitRuns: opts.limitRuns,
          churnSeconds: opts.churnSeconds,
          churnRate: opts.churnRate,
          phases: opts.phases,
          daemonArgs: opts.daemonArgs,
          profileOut: join(dirname(opts.out), `bench-idle-${peers}.cpuprofile`),
          say,
          onScene: (s) => (current = s),
        }),
      );
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err));
      say(`FAILED: ${failures[failures.length - 1]}`);
    } finally {
      current = undefined;
    }
  }
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    durationS: Math.round((Date.now() - startedAt.getTime()) / 1000),
    machine: { ...machine, loadAvgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') },
    options: { ...opts },
    sizes,
    targets: sizes.flatMap(checkTargets),
    failures,
  };
  writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);
  say(`\n${renderReport(report)}\nresults written to ${opts.out}`);
  if (failures.length > 0) return 1;
  return opts.failOnMiss && report.targets.some((t) => t.judged && !t.met) ? 3 : 0;
}

function main(): void {
  let opts: BenchOptions | 'help';
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('the benchmark creates network namespaces: run it as root (sudo npm run bench)\n');
    process.exit(2);
  }
  bench(opts).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}

main();
