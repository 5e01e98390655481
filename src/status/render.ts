/**
 * The compact outputs of `status` (the one-line `--brief` and `--json`) and the
 * helpers the table shares with them: durations, colour and column alignment.
 */
import { Problem, StatusReport } from './report';

export type Style = 'ok' | 'bad' | 'warn' | 'dim' | 'bold';

const SGR: Record<Style, string> = { ok: '32', bad: '31', warn: '33', dim: '2', bold: '1' };

/** Wraps `text` in an ANSI colour when `color` is on; the text itself never changes. */
export function paint(text: string, style: Style | undefined, color: boolean): string {
  return color && style && text !== '' ? `\u001b[${SGR[style]}m${text}\u001b[0m` : text;
}

/** 83_520 → "23h12m"; 300 → "5m00s"; 42 → "42s"; 200_000 → "2d07h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number): string => String(n).padStart(2, '0');
  if (s >= 86_400) return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${s}s`;
}

/** A table cell: its text and how to colour it. */
export interface Cell {
  readonly text: string;
  readonly style?: Style | undefined;
}

/** A row; with `span`, its last cell runs on past the columns and does not widen them. */
export interface Row {
  readonly cells: readonly Cell[];
  readonly span?: boolean;
}

/** Left-aligned columns two spaces apart, widths measured on the plain text so colour cannot skew them. */
export function alignRows(rows: readonly Row[], color: boolean, indent = ''): string[] {
  const widths: number[] = [];
  for (const r of rows) {
    const measured = r.span ? r.cells.slice(0, -1) : r.cells;
    measured.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.text.length)));
  }
  return rows.map((r) => {
    const parts = r.cells.map((c, i) => {
      const last = i === r.cells.length - 1;
      const padded = last ? c.text : c.text.padEnd(widths[i] ?? 0);
      return paint(c.text, c.style, color) + padded.slice(c.text.length);
    });
    return (indent + parts.join('  ')).trimEnd();
  });
}

/** How an entry or check state reads: ok is good, unknown is grey, anything else is wrong. */
export function stateStyle(state: string | null): Style | undefined {
  if (state === null) return undefined;
  return state === 'ok' ? 'ok' : state === 'unknown' ? 'dim' : 'bad';
}

function count(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function filterText(report: StatusReport): string {
  const parts = [report.filter.subnet && `subnet ${report.filter.subnet}`, report.filter.publicIP && `public IP ${report.filter.publicIP}`].filter(Boolean);
  return parts.length === 0 ? '' : ` (filtered: ${parts.join(', ')})`;
}

const BRIEF_PROBLEMS = 2;

/** One line, for probes and `watch`: `OK: …` or `UNHEALTHY: N errors: <first problems>`. No newline. */
export function renderBrief(report: StatusReport, color = false): string {
  const errors = report.problems.filter((p) => p.severity === 'error');
  const warnings = report.problems.filter((p) => p.severity === 'warning');
  const tally = [errors.length > 0 && count(errors.length, 'error'), warnings.length > 0 && count(warnings.length, 'warning')].filter(Boolean).join(', ');
  if (!report.healthy) {
    const shown = (errors as readonly Problem[]).slice(0, BRIEF_PROBLEMS).map((p) => p.message);
    const more = errors.length > BRIEF_PROBLEMS ? `; +${errors.length - BRIEF_PROBLEMS} more` : '';
    return `${paint('UNHEALTHY', 'bad', color)}: ${tally}: ${shown.join('; ')}${more}${filterText(report)}`;
  }
  const parts: string[] = [];
  const c = report.config;
  const network = c ? ` in ${[c.network, c.ipv6?.network].filter((n) => n !== null && n !== undefined).join(' and ')}` : '';
  parts.push(`${count(report.leases.length, 'lease')}${network}${report.pool ? ` (${report.pool.usedPercent}% used)` : ''}`);
  const own = [report.self.subnet, report.self.subnet6].filter((x) => x !== null).join(' + ');
  if (own) parts.push(`this host ${own}`);
  if (report.kernel.state === 'checked') {
    const programmed = report.kernel.peers.filter((p) => p.programmed).length;
    parts.push(`${count(programmed, 'peer')} ok`);
  } else {
    parts.push('kernel check skipped');
  }
  if (tally !== '') parts.push(tally);
  return `${paint('OK', 'ok', color)}: ${parts.join(', ')}${filterText(report)}`;
}

/** The report as JSON: indented for a person, one line per document in `--watch` (NDJSON). */
export function renderJson(report: StatusReport, oneLine: boolean): string {
  return oneLine ? JSON.stringify(report) : JSON.stringify(report, null, 2);
}
