/**
 * What the installed iptables supports, from `iptables --version`, decided once
 * at start as flanneld does (contract §16; flannel uses go-iptables' version
 * checks, no kernel probe): `--random-fully` from 1.6.2, and
 * `iptables-restore --wait` when iptables itself is 1.6.2 or newer. flanneld
 * also gives `iptables` commands `--wait` from 1.4.20; flanneld-ts runs no
 * `iptables` command, only iptables-save (which takes no lock) and
 * iptables-restore, so only the restore's lock wait matters here.
 */

export type IptablesVersion = readonly [major: number, minor: number, patch: number];

export interface IptablesFeatures {
  readonly version: IptablesVersion | undefined;
  readonly randomFully: boolean;
  /** Lock-wait arguments for `iptables-restore` (none before 1.6.2). */
  readonly restoreWaitArgs: readonly string[];
}

/** True for an iptables whose rules live in nf_tables: "iptables v1.8.9 (nf_tables)", not "(legacy)" or an old one without a mode. */
export function iptablesUsesNfTables(text: string): boolean {
  return /\(nf_tables\)/.test(text);
}

/** "iptables v1.8.9 (nf_tables)" → [1, 8, 9]; undefined when no version is found. */
export function parseIptablesVersion(text: string): IptablesVersion | undefined {
  const m = /\bv(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function atLeast(v: IptablesVersion, min: IptablesVersion): boolean {
  for (let i = 0; i < 3; i++) {
    if (v[i]! !== min[i]!) return v[i]! > min[i]!;
  }
  return true;
}

/**
 * The features of a version; an unknown version gets none (the rules still work,
 * only without --random-fully and the lock wait). flanneld waits for the xtables
 * lock without a bound; we bound it at 5 s, so a stuck lock holder cannot stall
 * the resync forever.
 */
export function iptablesFeatures(v: IptablesVersion | undefined): IptablesFeatures {
  const modern = v !== undefined && atLeast(v, [1, 6, 2]);
  return { version: v, randomFully: modern, restoreWaitArgs: modern ? ['-w', '5'] : [] };
}

export function formatIptablesVersion(v: IptablesVersion | undefined): string {
  return v === undefined ? 'unknown' : v.join('.');
}
