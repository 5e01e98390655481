/**
 * Text that came from etcd (keys, backend types, reasons quoting values) is
 * shown on an operator's terminal: control characters in it could move the
 * cursor, recolour or hide lines, or break `--brief` into two lines. The table
 * and the brief line show them escaped (`\x1b`, `\u202e`); `--json` needs
 * nothing, JSON.stringify escapes control characters itself.
 */

// C0, DEL, C1, the line and paragraph separators, and the bidirectional overrides and isolates.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/g;

/** `text` with every unsafe character written as an escape. */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A deep copy of `value` with every string escaped (the report before the table or brief renders it). */
export function escapeStrings<T>(value: T): T {
  if (typeof value === 'string') return escapeControl(value) as T;
  if (Array.isArray(value)) return value.map((v) => escapeStrings(v)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeStrings(v)])) as T;
  }
  return value;
}
