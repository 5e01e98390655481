/** The shape of one benchmark run, as written to the JSON file (times in ms, sizes in MB). */
import { MemoryPeak } from './memory-sampler';
import { ChurnResult } from './churn';
import { ProfileSummary } from './cpu-profile';
import { PassCostResult } from './pass-cost';
import { Summary } from './stats';

export interface IdleResult {
  readonly seconds: number;
  /** The daemon's own CPU time over the window: its threads' scheduler time (schedstat, ns precision). */
  readonly selfCpuMs: number;
  /** The same from utime + stime, which come in 10 ms ticks charged to whoever runs at a tick (for comparison). */
  readonly selfCpuTicksMs: number;
  /** CPU of the children it reaped meanwhile (its iptables checks). */
  readonly childCpuMs: number;
  /** (self + children) as a percentage of one core. */
  readonly cpuPctOfCore: number;
  /** gRPC messages etcd received (all from the daemon: nothing else talks to etcd meanwhile). */
  readonly etcdRequests: number;
  readonly etcdRequestsPerMin: number;
  /** Of those, everything but lease keep-alives (the issue allows no other periodic traffic). */
  readonly etcdNonKeepAlive: number;
  readonly etcdByMethod: Readonly<Record<string, number>>;
  /** The window on CLOCK_MONOTONIC, ms (to cut a CPU profile to it). */
  readonly fromMonoMs: number;
  readonly toMonoMs: number;
}

/** One series of single joins. */
export type JoinRun = Summary & { readonly samplesMs: number[]; readonly etcdPutMedianMs: number };

export interface SizeResult {
  readonly peers: number;
  /** What the daemons ran with, from the daemon's own parser (shipped defaults plus --daemon-args). */
  readonly daemon: { readonly periodicPassS: number; readonly iptablesCheckS: number };
  readonly storm: {
    /** First byte of N puts sent → all 3N entries verified present. */
    readonly ms: number;
    /** etcd's time to accept the N puts. */
    readonly etcdWriteMs: number;
    /** Txn messages etcd counted during the storm: the positive control of the request counter. */
    readonly etcdTxns: number;
  };
  /** Memory of the daemons (VmHWM, the kernel's peak resident set). */
  readonly rss: {
    /** D1 once the storm is programmed. */
    readonly afterStormMB: number;
    /** The storm's sampled peak split into anonymous and file-backed RSS, with V8's heap then. */
    readonly stormPeak?: MemoryPeak;
    /** The same for the pass phase (external changes, each answered by listing passes). */
    readonly passPeak?: MemoryPeak;
    /** D1 at the end of all its phases (storm, joins, idle, full passes, churn). */
    readonly firstDaemonPeakMB: number;
    /** D2 after its cold start. */
    readonly coldStartPeakMB?: number;
    /** The largest of the above: what the peak-RSS target is judged on. */
    readonly peakMB: number;
  };
  /** CPU (daemon + its children) per phase, ms. */
  readonly cpuByPhaseMs: Readonly<Record<string, number>>;
  /** `bridge -batch` + `ip -batch` of the same 3N entries on a fresh flannel.1: every run and their median. */
  readonly limit?: { readonly runsMs: number[]; readonly ms: number };
  readonly coldStart?: {
    /** Spawn of bin/flanneld-ts → all 3N entries verified present. */
    readonly ms: number;
    /** Spawn → first log line (Node start and module loading). */
    readonly firstLogMs?: number;
    /** Spawn → lease held. */
    readonly leaseMs?: number;
    /** Spawn → "ready" log line. */
    readonly readyLogMs?: number;
  };
  /** Every join series pooled (the table's figures). */
  readonly join?: JoinRun;
  /** Each series run back to back: the spread of p99 and the worst one judged. */
  readonly joinRuns?: JoinRun[];
  readonly leave?: Summary;
  /** Idle with the shipped defaults (plus any --daemon-args), on the daemon that went through the storm and the joins. */
  readonly idle?: IdleResult;
  /** One full reconcile pass, triggered by an external change and counted by the daemon. */
  readonly fullPass?: PassCostResult;
  readonly churn?: ChurnResult;
  /** A restart on a kernel that already holds every entry: spawn → "ready". */
  readonly warmRestartMs?: number;
  /** CPU profile of the warm-restarted daemon over an idle window (profiler overhead included). */
  readonly idleProfile?: ProfileSummary & { readonly file?: string };
  /**
   * How busy the whole machine was while this size ran (% of all CPUs, everything
   * included): the bench shares the machine with whatever else runs, and a busy
   * machine slows the daemon and the ip -batch baseline alike.
   */
  readonly machineBusyPct: number;
  /** Every verification: what was checked and found. */
  readonly checks: string[];
}

export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly kernel: string;
  readonly node: string;
  readonly etcd: string;
  readonly iproute2: string;
  readonly loadAvgAtStart: string;
  readonly loadAvgAtEnd?: string;
}

export interface TargetCheck {
  readonly peers: number;
  readonly name: string;
  readonly met: boolean;
  /** False where issue 6 states the target for another size: shown for information, never a miss. */
  readonly judged: boolean;
  /** "1234 ms ≤ 3 × 410 ms + 1 s = 2230 ms" */
  readonly figure: string;
}

export interface BenchReport {
  readonly startedAt: string;
  readonly durationS: number;
  readonly machine: MachineInfo;
  readonly options: Record<string, unknown>;
  readonly sizes: SizeResult[];
  readonly targets: TargetCheck[];
  /** Set when a size failed (an error or a wrong kernel state): the run exits non-zero. */
  readonly failures: string[];
}
