/**
 * The `flanneld-ts trace` report: what `--json` prints and what the text is
 * rendered from. docs/trace.schema.json documents the same shape; change both
 * together and bump the version on any change that is not a pure addition.
 */

import type { CaptureReport } from './capture-verdict';

/** Version of the `--json` document; scripts should check it. */
export const TRACE_SCHEMA_VERSION = 1;

export type CheckState = 'ok' | 'warning' | 'problem';

/** One finding at a hop: ok, or what is wrong in one line and the fix. */
export interface Check {
  readonly state: CheckState;
  /** What was checked and found ("neighbour 10.7.34.0 lladdr a6:… permanent", "ip_forward is off"). */
  readonly message: string;
  /** What to run or change; null for ok checks. */
  readonly fix: string | null;
}

export type HopKind = 'host' | 'pod' | 'veth' | 'bridge' | 'route' | 'vxlan' | 'underlay' | 'remote' | 'local';

/** A real interface at a hop, as iproute2 shows it. */
export interface HopInterface {
  readonly name: string;
  readonly index: number;
  readonly mac: string;
  readonly mtu: number;
  /** Addresses of the traced family with prefix ("10.7.24.1/24", "fc00:0:0:18::1/64"). */
  readonly addresses: readonly string[];
  readonly up: boolean;
  /** The namespace the interface is in: "host" or the pod namespace's name or path. */
  readonly netns: string;
}

export interface Hop {
  /** 1, 2, … in path order. */
  readonly step: number;
  readonly kind: HopKind;
  /** One line naming the hop ("pod eth0 in netns flts-58da-h1-pod"). */
  readonly title: string;
  /** Not read from this host: what the lease implies on the remote node. */
  readonly predicted: boolean;
  readonly interface: HopInterface | null;
  /** The lookup that chose the next hop, in iproute2 words with its answer, or null. */
  readonly lookup: string | null;
  /** Other facts of the hop, one line each ("rp_filter 0 (all 0, cni0 0)"). */
  readonly facts: readonly string[];
  /** iproute2 (or iptables, sysctl) commands an operator runs to see the same facts. */
  readonly commands: readonly string[];
  readonly checks: readonly Check[];
}

/** The VXLAN datagram the kernel builds for the packet. */
export interface Encapsulation {
  readonly outerSrc: string;
  readonly outerDst: string;
  readonly udpPort: number;
  readonly vni: number;
  readonly innerSrcMAC: string;
  readonly innerDstMAC: string;
  /** The inner packet's source: the pod's IP, or what a masquerade rule rewrites it to. */
  readonly innerSrc: string;
  readonly innerDst: string;
  /** The underlay interface it leaves by. */
  readonly egress: string | null;
}

/** ICMP echoes sent from the source, end to end. */
export interface Probe {
  readonly command: string;
  readonly sent: number;
  readonly received: number;
}

/** A problem found at a hop, for the summary and for scripts. */
export interface TraceProblem {
  readonly step: number;
  readonly kind: HopKind;
  readonly message: string;
  readonly fix: string | null;
}

export interface TraceReport {
  readonly schemaVersion: typeof TRACE_SCHEMA_VERSION;
  readonly generatedAt: string;
  /** No problem at any hop (warnings may be shown). */
  readonly ok: boolean;
  /** 0 ok, 1 a problem found (2 usage and 3 etcd unreachable print no report). */
  readonly exitCode: 0 | 1;
  readonly source: { readonly ip: string | null; readonly kind: 'pod' | 'host'; readonly netns: string | null };
  readonly destination: {
    readonly ip: string;
    /** The lease holding it, or null when none does. */
    readonly subnet: string | null;
    readonly publicIP: string | null;
    readonly vtepMAC: string | null;
    /** On this node (the destination is in this host's own lease). */
    readonly local: boolean;
  };
  readonly etcd: { readonly endpoints: readonly string[]; readonly prefix: string; readonly revision: string };
  readonly hops: readonly Hop[];
  readonly encapsulation: Encapsulation | null;
  readonly probe: Probe | null;
  /** With --capture: what each local hop saw of the probes; null without. */
  readonly capture: CaptureReport | null;
  readonly problems: readonly TraceProblem[];
  /** One line: "OK: …" or the first problem's hop and cause. */
  readonly verdict: string;
  /** Only with --listen: the hops are the capture points of this (destination) node, the way the requests come in. */
  readonly listen?: ListenSummary;
}

/** What `trace --listen` waited for and how long. */
export interface ListenSummary {
  /** Echo requests (with their replies) waited for at every hop. */
  readonly count: number;
  readonly timeoutSeconds: number;
  readonly waitedSeconds: number;
  /** The timeout came before `count` requests and replies crossed every hop. */
  readonly timedOut: boolean;
}
