/**
 * How every benchmark reports a figure, in one place:
 *
 * - each figure is measured in N rounds (`--rounds`) and reported as the median of all rounds,
 *   with the spread (min–max), never the best round;
 * - beside it, the 1-minute load average (os.loadavg()), sampled at the start and end of every
 *   measurement, so a reader sees how busy the machine was while it was taken;
 * - a target is judged (PASS/FAIL) only against a reference measured in the same run; when the
 *   reference could not be measured the row says "not measured (reason)", there is no PASS or
 *   FAIL, and the benchmark exits with EXIT_NOT_MEASURED;
 * - a target that holds only on a quiet machine says so, and its result says when the machine
 *   was busy (1-minute load above the number of CPUs) while it was measured.
 */
import { availableParallelism, loadavg } from 'node:os';

/** Exit code of a benchmark that could not measure a reference some target is judged against. */
export const EXIT_NOT_MEASURED = 3;

/** The `p`-th percentile (0-100) by nearest rank; NaN for no values. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))];
}

/** The median (mean of the middle two for an even count); NaN for no values. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');

/** The 1-minute load average at the start and at the end of one measurement. */
export interface LoadSpan {
  start: number;
  end: number;
}

/** Runs one measurement and notes the 1-minute load average before and after it. */
export async function withLoad<T>(fn: () => Promise<T>, load1: () => number = () => loadavg()[0]): Promise<{ value: T; load: LoadSpan }> {
  const start = load1();
  const value = await fn();
  return { value, load: { start, end: load1() } };
}

/** One figure measured in rounds: a value per round and the load during that round. */
export interface Series {
  values: number[];
  loads: LoadSpan[];
}

/** The series of figure `f` of samples that each carry their load. */
export function seriesOf<S extends { load: LoadSpan }>(samples: readonly S[], f: (s: S) => number): Series {
  return { values: samples.map(f), loads: samples.map((s) => s.load) };
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: percentile(xs, 0), max: percentile(xs, 100), n: xs.length };
}

/** "median [min–max]" (just the median for one round). */
export function fmtSpread(xs: readonly number[], format: (n: number) => string = (n) => fmt(n)): string {
  const s = spread(xs);
  return s.n <= 1 || s.min === s.max ? format(s.median) : `${format(s.median)} [${format(s.min)}–${format(s.max)}]`;
}

/** Lowest and highest 1-minute load average sampled during the measurements. */
export function loadRange(loads: readonly LoadSpan[]): { min: number; max: number } {
  const xs = loads.flatMap((l) => [l.start, l.end]);
  return { min: percentile(xs, 0), max: percentile(xs, 100) };
}

export function fmtLoad(loads: readonly LoadSpan[]): string {
  const { min, max } = loadRange(loads);
  if (!Number.isFinite(min)) return '—';
  return min.toFixed(1) === max.toFixed(1) ? min.toFixed(1) : `${min.toFixed(1)}–${max.toFixed(1)}`;
}

export interface Target {
  /** As printed, e.g. "≥ 1.5× Glance", "≤ 10 ms". */
  text: string;
  /** Whether the judged figure meets it: the ratio of the medians when there is a reference, else the median. */
  met(x: number): boolean;
  /**
   * Set when the target holds only on a quiet machine (say why): it is still judged, the target
   * says "quiet machine only", and the result says when the machine was busy.
   */
  quietOnly?: string;
}

/** What a figure is compared with: measured in this run, or not (and why). */
export type Reference = { label: string; series: Series } | { label: string; missing: string };

export interface Comparison {
  measure: string;
  subject: Series;
  reference?: Reference;
  target?: Target;
  /** How a value is printed (default: whole numbers). */
  format?: (n: number) => string;
  /** Judge every round (a correctness check, e.g. bytes sent), not the median; only without a reference. */
  everyRound?: boolean;
}

export type Verdict = 'PASS' | 'FAIL' | 'not measured' | undefined;

export interface Row {
  measure: string;
  subject: string;
  reference: string;
  ratio: string;
  target: string;
  result: string;
  load: string;
  verdict: Verdict;
  /** Why the reference was not measured. */
  missing?: string;
}

const ratioText = (x: number) => (x >= 10 ? `${x.toFixed(1)}×` : `${x.toFixed(2)}×`);

/**
 * One line of a benchmark's targets table. The ratio is that of the medians; when both sides
 * have as many rounds (measured in turns, round by round) the per-round ratios' spread follows.
 * `cpus`: above this 1-minute load average the machine counts as busy.
 */
export function compareRow(c: Comparison, cpus = availableParallelism()): Row {
  const format = c.format ?? ((n: number) => fmt(n));
  const ref = c.reference;
  const loads = [...c.subject.loads, ...(ref !== undefined && 'series' in ref ? ref.series.loads : [])];
  const row: Row = {
    measure: c.measure,
    subject: fmtSpread(c.subject.values, format),
    reference: '—',
    ratio: '—',
    target: c.target === undefined ? '—' : `${c.target.text}${c.target.quietOnly === undefined ? '' : ' (quiet machine only)'}`,
    result: '—',
    load: fmtLoad(loads),
    verdict: undefined,
  };
  let judged = median(c.subject.values);
  if (ref !== undefined) {
    if ('missing' in ref) {
      row.reference = `${ref.label}: not measured`;
      row.ratio = `not measured (${ref.missing})`;
      row.missing = `${ref.label} ${ref.missing}`;
      if (c.target !== undefined) {
        row.result = 'not measured';
        row.verdict = 'not measured';
      }
      return row;
    }
    row.reference = `${fmtSpread(ref.series.values, format)} (${ref.label})`;
    judged = judged / median(ref.series.values);
    const a = c.subject.values;
    const b = ref.series.values;
    const perRound = a.length === b.length && a.length > 1 ? spread(a.map((x, i) => x / b[i])) : undefined;
    row.ratio = Number.isFinite(judged)
      ? `${ratioText(judged)}${perRound === undefined ? '' : ` [${ratioText(perRound.min)}–${ratioText(perRound.max)} per round]`}`
      : 'n/a';
  }
  if (c.target !== undefined) {
    const target = c.target;
    const ok = c.everyRound === true && ref === undefined
      ? c.subject.values.length > 0 && c.subject.values.every((x) => target.met(x))
      : Number.isFinite(judged) && target.met(judged);
    row.verdict = ok ? 'PASS' : 'FAIL';
    const busiest = loadRange(loads).max;
    row.result = target.quietOnly !== undefined && busiest > cpus
      ? `${row.verdict} (busy machine: load up to ${busiest.toFixed(1)} on ${cpus} CPUs)`
      : row.verdict;
  }
  return row;
}

/** The exit code and closing words of a run: EXIT_NOT_MEASURED when a target could not be judged. */
export function outcome(rows: readonly Row[]): { code: number; message: string } {
  const missing = rows.filter((r) => r.verdict === 'not measured');
  if (missing.length === 0) {
    const failed = rows.filter((r) => r.verdict === 'FAIL').length;
    const passed = rows.filter((r) => r.verdict === 'PASS').length;
    return { code: 0, message: `Targets: ${passed} PASS, ${failed} FAIL, all judged against figures measured in this run.` };
  }
  return {
    code: EXIT_NOT_MEASURED,
    message: `NOT MEASURED: ${missing.map((r) => `"${r.measure}" (${r.missing})`).join('; ')}: ` +
      `no PASS or FAIL for ${missing.length === 1 ? 'it' : 'them'}; exit code ${EXIT_NOT_MEASURED}.`,
  };
}

/** Cells of the targets table, in the order of ROW_HEADER. */
export const ROW_HEADER = ['Measure', 'Measured: median [min–max]', 'Reference', 'Ratio of medians', 'Target', 'Result', 'Load (1 min)'];

export function rowCells(r: Row): string[] {
  return [r.measure, r.subject, r.reference, r.ratio, r.target, r.result, r.load];
}
