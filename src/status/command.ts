/**
 * `flanneld-ts status`: collect, analyze, render; once, or with `--watch` again
 * on every etcd change (LeaseStore.watch), every kernel change on this host, and
 * every TICK_MS (renewals move expiry times without an etcd event). Reads only.
 */
import { StatusOptions } from '../cli';
import { Kernel } from '../kernel/kernel';
import { Clock } from '../util/clock';
import { StoreUnavailableError, errorMessage } from '../util/errors';
import { backoffDelay } from '../util/retry';
import { AnalyzeOptions, analyzeStatus } from './analyze';
import { KernelReader, StatusStore, collectFacts } from './collect';
import { renderBrief, renderJson } from './render';
import { renderTable } from './render-table';
import { escapeStrings } from './escape';
import { StatusReport } from './report';

/** Deadline of each etcd call status makes (EtcdLeaseStore's dialTimeoutMs). */
export const ETCD_CALL_TIMEOUT_MS = 1_500;
/** All etcd reads of one refresh together; with start-up, exit 3 comes well within 5 s. */
export const ETCD_BUDGET_MS = 3_000;
const TICK_MS = 10_000;
// Lets a burst of etcd events (a node restarting) become one refresh.
const COALESCE_MS = 100;
const RETRY = { initialMs: 500, maxMs: 5_000 };

export interface StatusDeps {
  readonly store: StatusStore;
  /** Opens the kernel reader (once; later calls return the same). undefined when --no-kernel-check. */
  readonly kernel: (() => Promise<KernelReader & Partial<Pick<Kernel, 'watch'>>>) | undefined;
  readonly readFile: (path: string) => Promise<string>;
  readonly clock: Clock;
  readonly rand: () => number;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Is stdout a terminal: colour by default, and --watch redraws the screen. */
  readonly isTTY: boolean;
  readonly env: NodeJS.ProcessEnv;
}

/** "failed to … at <endpoint>: <cause>", without grpc's empty trailing "Resolution note" and final full stop. */
export function unreachableMessage(err: unknown): string {
  return errorMessage(err).replace(/\.?\s*(Resolution note:\s*)?$/, '');
}

function analyzeOptions(opts: StatusOptions): AnalyzeOptions {
  return { endpoints: opts.etcd.endpoints, prefix: opts.etcd.prefix, iface: opts.iface, ifaceRegex: opts.ifaceRegex, renewMarginMs: opts.renewMarginMinutes * 60_000, filter: opts.filter, allowWideNetwork: opts.allowWideNetwork };
}

async function refresh(opts: StatusOptions, deps: StatusDeps): Promise<StatusReport> {
  const facts = await collectFacts(
    { store: deps.store, kernel: opts.kernelCheck ? deps.kernel : undefined, readFile: deps.readFile, clock: deps.clock },
    { subnetFile: opts.subnetFile, etcdBudgetMs: ETCD_BUDGET_MS, endpoints: opts.etcd.endpoints, allowWideNetwork: opts.allowWideNetwork },
  );
  return analyzeStatus(facts, analyzeOptions(opts));
}

function render(report: StatusReport, opts: StatusOptions, color: boolean): string {
  if (opts.format === 'json') return `${renderJson(report, opts.watch)}\n`;
  if (opts.format === 'brief') return `${opts.watch ? `${report.generatedAt} ` : ''}${renderBrief(escapeStrings(report), color)}\n`;
  return renderTable(escapeStrings(report), color);
}

/**
 * Runs the command. Returns the exit code: 0 healthy, 1 problems. Without
 * --watch an unreachable etcd rejects with StoreUnavailableError (exit 3 in
 * main.ts); with --watch it is shown and retried, and the code of the last
 * refresh is returned once `signal` aborts.
 */
export async function runStatus(opts: StatusOptions, deps: StatusDeps, signal: AbortSignal): Promise<number> {
  const color = opts.format !== 'json' && (opts.color ?? (deps.isTTY && !deps.env.NO_COLOR && deps.env.TERM !== 'dumb'));
  if (!opts.watch) {
    const report = await refresh(opts, deps);
    deps.stdout(render(report, opts, color));
    return report.exitCode;
  }
  return watchStatus(opts, deps, signal, color);
}

async function watchStatus(opts: StatusOptions, deps: StatusDeps, signal: AbortSignal, color: boolean): Promise<number> {
  let dirty = true;
  let wake: (() => void) | undefined;
  const markDirty = (): void => {
    dirty = true;
    wake?.();
  };
  const stopWatches = new AbortController();
  const onAbort = (): void => {
    stopWatches.abort();
    wake?.();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  let storeWatch: Promise<void> | undefined;
  let unwatchKernel: (() => void) | undefined;
  let code = 0;
  let attempt = 0;
  const redraw = deps.isTTY && opts.format === 'table';
  const frame = (body: string): string => {
    if (opts.format !== 'table') return body;
    const head = `flanneld-ts status --watch: refreshed ${new Date(deps.clock.now()).toISOString()}, on every etcd or kernel change (Ctrl-C to stop)\n\n`;
    return redraw ? `\u001b[H\u001b[2J${head}${body}` : `${head}${body}\n`;
  };
  try {
    while (!signal.aborted) {
      dirty = false;
      let waitMs = TICK_MS;
      try {
        const report = await refresh(opts, deps);
        code = report.exitCode;
        attempt = 0;
        deps.stdout(frame(render(report, opts, color)));
        if (!storeWatch) {
          // A watch that ends (compaction, closed store) is started again from the next refresh's revision.
          storeWatch = deps.store
            .watch(BigInt(report.etcd.revision) + 1n, { onEvents: markDirty, onDisconnected: markDirty, onReconnected: markDirty }, stopWatches.signal)
            .catch(() => undefined)
            .finally(() => {
              storeWatch = undefined;
              markDirty();
            });
        }
        if (!unwatchKernel && opts.kernelCheck && deps.kernel) {
          const kernel = await deps.kernel().catch(() => undefined);
          unwatchKernel = kernel?.watch?.(markDirty) ?? (() => undefined);
        }
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        code = 3;
        waitMs = backoffDelay(RETRY, attempt++, deps.rand);
        const line = `etcd unreachable: ${unreachableMessage(err)}; retrying in ${(waitMs / 1000).toFixed(1)} s`;
        if (opts.format === 'json') deps.stderr(`flanneld-ts status: ${line}\n`);
        else deps.stdout(frame(`${opts.format === 'brief' ? `${new Date(deps.clock.now()).toISOString()} ` : ''}UNREACHABLE: ${line}\n`));
      }
      await waitForChange(waitMs);
    }
    return code;
  } finally {
    signal.removeEventListener('abort', onAbort);
    stopWatches.abort();
    unwatchKernel?.();
    await storeWatch;
  }

  /** Until something is marked dirty (then a short pause to coalesce), `ms` pass, or the signal aborts. */
  async function waitForChange(ms: number): Promise<void> {
    const timer = new AbortController();
    try {
      await new Promise<void>((resolve) => {
        if (dirty || signal.aborted) return resolve();
        wake = resolve;
        deps.clock.sleep(ms, timer.signal).then(resolve, resolve);
      });
      wake = undefined;
      if (dirty && !signal.aborted) await deps.clock.sleep(COALESCE_MS, signal).catch(() => undefined);
    } finally {
      timer.abort();
    }
  }
}
