import { Option, type Command } from 'commander';

export type OutputFormat = 'table' | 'json';

/** `-f, --format table|json`: tables for people, JSON for scripts. */
export function withFormat(cmd: Command): Command {
  return cmd.addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'));
}

/** Lines of a table: a header and one row per record, columns padded to their widest cell. */
export function table(columns: readonly string[], rows: readonly (readonly unknown[])[]): string[] {
  const cells = [columns, ...rows.map((r) => r.map(cell))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd());
}

/** A record shown as two columns: field and value. */
export function fields(record: Readonly<Record<string, unknown>>): string[] {
  return table(['field', 'value'], Object.entries(record).map(([k, v]) => [k, v]));
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (Array.isArray(v)) return v.map(cell).join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
