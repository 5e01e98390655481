/**
 * `flanneld-ts trace`: collect (status's collectors plus the path's reads),
 * analyze, render. Reads only, apart from the ICMP echoes of the probe.
 */
import { TraceOptions } from '../cli';
import { StatusStore } from '../status/collect';
import { ETCD_BUDGET_MS } from '../status/command';
import { Capture } from '../capture/capture';
import { formatIp } from '../net/family';
import { Clock } from '../util/clock';
import { analyzeTrace } from './analyze';
import { TraceKernel, collectTraceFacts } from './collect';
import { Exec } from './pod-netns';
import { collectListenFacts } from './listen';
import { listenReport } from './listen-report';
import { renderTrace } from './render';
import { TraceReport } from './report';

export interface TraceDeps {
  readonly store: StatusStore;
  readonly kernel: () => Promise<TraceKernel>;
  readonly readFile: (path: string) => Promise<string>;
  readonly exec: Exec;
  readonly capture: Capture;
  readonly clock: Clock;
  readonly stdout: (text: string) => void;
  /** Progress for people (--listen: "listening on …, start the probes"). */
  readonly stderr: (text: string) => void;
  readonly isTTY: boolean;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Runs the command. Returns the exit code: 0 path ok, 1 a problem found. An
 * unreachable etcd rejects with StoreUnavailableError (exit 3 in main.ts), as status.
 */
export async function runTrace(opts: TraceOptions, deps: TraceDeps): Promise<number> {
  const analyze = { endpoints: opts.etcd.endpoints, prefix: opts.etcd.prefix, iface: opts.iface, ifaceRegex: opts.ifaceRegex, renewMarginMs: opts.renewMarginMinutes * 60_000 };
  const collect = { store: deps.store, kernel: deps.kernel, readFile: deps.readFile, exec: deps.exec, capture: deps.capture, clock: deps.clock };
  const where = { subnetFile: opts.subnetFile, etcdBudgetMs: ETCD_BUDGET_MS, endpoints: opts.etcd.endpoints, dst: opts.dst, src: opts.src };
  let report: TraceReport;
  if (opts.listen) {
    const listening = (points: ReadonlyArray<{ iface: string }>): void =>
      deps.stderr(`listening on ${points.map((p) => p.iface).join(', ')} for ${opts.count} echo request${opts.count === 1 ? '' : 's'} to ${formatIp(opts.dst)}${opts.src === undefined ? '' : ` from ${formatIp(opts.src)}`} (timeout ${opts.timeoutSeconds} s): start the probes\n`);
    const facts = await collectListenFacts({ ...collect, listening }, { ...where, count: opts.count, timeoutMs: opts.timeoutSeconds * 1000 }, analyze);
    report = listenReport(facts, analyze);
  } else {
    report = analyzeTrace(await collectTraceFacts(collect, { ...where, probeCount: opts.count, capture: opts.capture }), analyze);
  }
  const color = opts.format !== 'json' && (opts.color ?? (deps.isTTY && !deps.env.NO_COLOR && deps.env.TERM !== 'dumb'));
  deps.stdout(opts.format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderTrace(report, color));
  return report.exitCode;
}
