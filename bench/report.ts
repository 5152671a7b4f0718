import { readFile, writeFile } from 'node:fs/promises';
import type { Sample, SystemResult } from './measure.ts';
import type { LoadNotes } from './procs.ts';

const GIB = 2 ** 30;

/** The `p`-th percentile (0-100) by nearest rank; NaN for no values. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))];
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Medians of one system's figures (NaN when not measured). */
export interface Summary {
  name: string;
  measured: boolean;
  uploadMBps: number;
  uploadCpuPerGiB: number;
  downloadMBps: number;
  downloadCpuPerGiB: number;
  rps: number;
  p50ms: number;
  p99ms: number;
}

export function summarize(r: SystemResult, size: number): Summary {
  const perGiB = (xs: Sample[] | undefined) => median((xs ?? []).map((s) => s.cpuS * GIB / size));
  const byRps = [...(r.get ?? [])].sort((a, b) => a.rps - b.rps);
  const mid = byRps[Math.floor(byRps.length / 2)];
  return {
    name: r.name,
    measured: r.measured,
    uploadMBps: median((r.upload ?? []).map((s) => s.mbps)),
    uploadCpuPerGiB: perGiB(r.upload),
    downloadMBps: median((r.download ?? []).map((s) => s.mbps)),
    downloadCpuPerGiB: perGiB(r.download),
    rps: mid?.rps ?? Number.NaN,
    // p50/p99 of the wrk run with the median req/s, so the three figures belong together.
    p50ms: mid?.p50ms ?? Number.NaN,
    p99ms: mid?.p99ms ?? Number.NaN,
  };
}

/** Glance's figures from /work/shared/glance/BASELINE.md, used only when Glance cannot run here. */
export const RECORDED_GLANCE: Summary = {
  name: 'Glance (recorded, not measured in this run)',
  measured: false,
  uploadMBps: 355,
  uploadCpuPerGiB: 3.0,
  downloadMBps: 3960,
  downloadCpuPerGiB: 0.27,
  rps: 718,
  p50ms: 21,
  p99ms: 115,
};

export interface Row {
  measure: string;
  outpost: string;
  reference: string;
  ratio: string;
  target: string;
  result: string;
}

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');

export function compare(o: Summary, glance: Summary, nginx: Summary, cat: Summary): Row[] {
  const g = glance.measured ? 'Glance' : 'Glance, recorded';
  const verdict = (ok: boolean, ref: Summary | undefined) => {
    const v = ok ? 'PASS' : 'FAIL';
    return ref !== undefined && !ref.measured ? `${v} (vs recorded)` : v;
  };
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : 'n/a');
  return [
    {
      measure: 'Upload 1 image, MB/s', outpost: fmt(o.uploadMBps), reference: `${fmt(glance.uploadMBps)} (${g})`,
      ratio: ratio(o.uploadMBps, glance.uploadMBps), target: '≥ 1.5× Glance',
      result: verdict(o.uploadMBps >= 1.5 * glance.uploadMBps, glance),
    },
    {
      measure: 'Upload, server CPU-s per GiB', outpost: fmt(o.uploadCpuPerGiB, 2), reference: `${fmt(glance.uploadCpuPerGiB, 2)} (${g})`,
      ratio: ratio(o.uploadCpuPerGiB, glance.uploadCpuPerGiB), target: '—', result: '—',
    },
    {
      measure: 'Download, MB/s', outpost: fmt(o.downloadMBps), reference: `${fmt(nginx.downloadMBps)} (nginx sendfile)`,
      ratio: ratio(o.downloadMBps, nginx.downloadMBps), target: '≥ 0.8× nginx',
      result: verdict(o.downloadMBps >= 0.8 * nginx.downloadMBps, undefined),
    },
    {
      measure: 'Download, MB/s', outpost: fmt(o.downloadMBps), reference: `${fmt(glance.downloadMBps)} (${g})`,
      ratio: ratio(o.downloadMBps, glance.downloadMBps), target: '—', result: '—',
    },
    {
      measure: 'Download, MB/s', outpost: fmt(o.downloadMBps), reference: `${fmt(cat.downloadMBps)} (cat > /dev/null)`,
      ratio: ratio(o.downloadMBps, cat.downloadMBps), target: '—', result: '—',
    },
    {
      measure: 'Download, server CPU-s per GiB', outpost: fmt(o.downloadCpuPerGiB, 2), reference: `${fmt(nginx.downloadCpuPerGiB, 2)} (nginx); ${fmt(glance.downloadCpuPerGiB, 2)} (${g})`,
      ratio: ratio(o.downloadCpuPerGiB, nginx.downloadCpuPerGiB), target: '—', result: '—',
    },
    {
      measure: 'GET /v2/images/{id}, req/s', outpost: fmt(o.rps), reference: `${fmt(glance.rps)} (${g})`,
      ratio: ratio(o.rps, glance.rps), target: '≥ 6× Glance', result: verdict(o.rps >= 6 * glance.rps, glance),
    },
    {
      measure: 'GET /v2/images/{id}, p50 ms', outpost: fmt(o.p50ms, 2), reference: `${fmt(glance.p50ms, 2)} (${g})`,
      ratio: ratio(o.p50ms, glance.p50ms), target: '—', result: '—',
    },
    {
      measure: 'GET /v2/images/{id}, p99 ms', outpost: fmt(o.p99ms, 2), reference: `${fmt(glance.p99ms, 2)} (${g})`,
      ratio: ratio(o.p99ms, glance.p99ms), target: '≤ 10 ms', result: verdict(o.p99ms <= 10, undefined),
    },
  ];
}

/** Columns padded to their widest cell, for the terminal. */
export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function markdownTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function systemsTable(summaries: Summary[]): string {
  return markdownTable(
    ['System', 'Upload MB/s', 'Upload CPU-s/GiB', 'Download MB/s', 'Download CPU-s/GiB', 'GET req/s', 'GET p50 ms', 'GET p99 ms'],
    summaries.map((s) => [s.name, fmt(s.uploadMBps), fmt(s.uploadCpuPerGiB, 2), fmt(s.downloadMBps), fmt(s.downloadCpuPerGiB, 2), fmt(s.rps), fmt(s.p50ms, 2), fmt(s.p99ms, 2)]),
  );
}

export function runsList(results: SystemResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    if (r.upload) lines.push(`- ${r.name} upload: ${r.upload.map((s) => `${fmt(s.mbps)} MB/s (${fmt(s.cpuS, 2)} CPU-s)`).join(', ')}`);
    if (r.download) lines.push(`- ${r.name} download: ${r.download.map((s) => `${fmt(s.mbps)} MB/s${Number.isFinite(s.cpuS) ? ` (${fmt(s.cpuS, 2)} CPU-s)` : ''}`).join(', ')}`);
    if (r.get) lines.push(`- ${r.name} GET: ${r.get.map((w) => `${fmt(w.rps)} req/s p50 ${fmt(w.p50ms, 2)} ms p99 ${fmt(w.p99ms, 2)} ms`).join('; ')}`);
    if (r.note) lines.push(`- ${r.name}: ${r.note}`);
  }
  return lines.join('\n');
}

export interface ResultsHead {
  /** Heading level of "Results" (its subsections are one deeper). */
  level: number;
  /** The benchmark's script, e.g. bench/cache.ts (the command line is taken from process.argv). */
  script: string;
  quick: boolean;
  /** What the command ran, after its command line. */
  what: string;
  /** procs.ts machineFacts and the load averages of the run. */
  facts: string[];
  loads: LoadNotes;
  /** The targets table (markdown). */
  targets: string;
}

/** The start of a benchmark's results in the docs: dated heading, command, machine, targets table. */
export function resultsHead(r: ResultsHead): string[] {
  const h = '#'.repeat(r.level);
  const cmd = `node ${r.script} ${process.argv.slice(2).join(' ')}`.trim();
  return [
    `${h} Results: ${new Date().toISOString().slice(0, 10)}${r.quick ? ' (quick run)' : ''}`,
    '',
    `Command: \`${cmd}\` — ${r.what}`,
    '',
    `${h}# Machine`,
    '',
    ...r.facts.map((f) => `- ${f.replace(/\n/g, '\n  ')}`),
    `- ${r.loads}`,
    '',
    `${h}# Targets`,
    '',
    r.targets,
    '',
  ];
}

/** A generated part of a docs file: `<!-- TAG:begin ... -->` … `<!-- TAG:end -->`. */
export interface DocSection {
  tag: string;
  /** The command that generates it (named in the begin marker). */
  by: string;
  /** What goes before the markers when the file does not have them yet. */
  intro: string;
}

export const RUN_SECTION: DocSection = {
  tag: 'bench', by: '`npm run bench` (bench/run.ts)', intro: 'Outpost against the real Glance, nginx and `cat` on the same machine, in one run.',
};

/** Replaces the generated part of `path` (between the section's markers), keeping everything else. */
export async function writeDocs(path: string, generated: string, section: DocSection): Promise<void> {
  let existing: string;
  try {
    existing = await readFile(path, 'utf8');
  } catch {
    existing = '# Benchmarks\n';
  }
  const end = `<!-- ${section.tag}:end -->`;
  const block = `<!-- ${section.tag}:begin: generated by ${section.by}; text outside these markers is kept -->\n${generated.trim()}\n${end}\n`;
  const b = existing.indexOf(`<!-- ${section.tag}:begin`);
  const e = existing.indexOf(end);
  const next = b >= 0 && e > b
    ? `${existing.slice(0, b)}${block}${existing.slice(e + end.length).replace(/^\n/, '')}`
    : `${existing.trimEnd()}\n\n${section.intro}\n\n${block}`;
  await writeFile(path, next);
}
