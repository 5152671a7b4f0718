import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type { Sample, SystemResult } from './measure.ts';
import type { LoadNotes } from './procs.ts';
import { compareRow, fmt, fmtLoad, fmtSpread, seriesOf, type Reference, type Row, type Series } from './rounds.ts';

// Also exported here, where benchmarks have long imported them from.
export { fmt, median, percentile } from './rounds.ts';

const GIB = 2 ** 30;

/** A system's figure per round (MB/s, CPU-s per GiB of `size`, req/s, ms), each with its round's load. */
export const figures = {
  uploadMBps: (r: SystemResult) => seriesOf(r.upload ?? [], (s) => s.mbps),
  uploadCpuPerGiB: (r: SystemResult, size: number) => seriesOf(r.upload ?? [], (s: Sample) => s.cpuS * GIB / size),
  downloadMBps: (r: SystemResult) => seriesOf(r.download ?? [], (s) => s.mbps),
  downloadCpuPerGiB: (r: SystemResult, size: number) => seriesOf(r.download ?? [], (s: Sample) => s.cpuS * GIB / size),
  rps: (r: SystemResult) => seriesOf(r.get ?? [], (w) => w.rps),
  p50ms: (r: SystemResult) => seriesOf(r.get ?? [], (w) => w.p50ms),
  p99ms: (r: SystemResult) => seriesOf(r.get ?? [], (w) => w.p99ms),
};

/** A system measured in this run, or why it was not. */
export type Measured = { result: SystemResult } | { name: string; missing: string };

function ref(m: Measured, label: string, f: (r: SystemResult) => Series): Reference {
  return 'missing' in m ? { label, missing: m.missing } : { label, series: f(m.result) };
}

/**
 * bench/run.ts's targets table. Not compared: the servers' CPU per GiB downloaded against
 * nginx's. nginx sends with sendfile, and on loopback the kernel's copy of those bytes into the
 * client's socket is done in the receiving process and charged to curl, not to nginx, while
 * Outpost's write() copies are charged to Outpost: the method cannot measure that fairly.
 */
export function compare(o: SystemResult, glance: Measured, nginx: Measured, cat: SystemResult, size: number, lean?: SystemResult): Row[] {
  const two = (n: number) => fmt(n, 2);
  const withoutManifests = lean === undefined ? [] : [
    compareRow({
      measure: 'Upload 1 image, MB/s', subject: figures.uploadMBps(o), reference: { label: 'Outpost without manifests', series: figures.uploadMBps(lean) },
      target: {
        text: '≥ 0.9× without manifests', met: (x) => x >= 0.9,
        quietOnly: 'the manifest is a third pass over every byte (content-defined chunking and sha256) on a thread of its own: with both CPUs busy, throughput follows CPU-s per GiB',
      },
    }),
    compareRow({ measure: 'Upload, server CPU-s per GiB', subject: figures.uploadCpuPerGiB(o, size), reference: { label: 'Outpost without manifests', series: figures.uploadCpuPerGiB(lean, size) }, format: two }),
  ];
  return [
    ...withoutManifests,
    compareRow({
      measure: 'Upload 1 image, MB/s', subject: figures.uploadMBps(o), reference: ref(glance, 'Glance', figures.uploadMBps),
      target: {
        text: '≥ 1.5× Glance', met: (x) => x >= 1.5,
        quietOnly: 'Outpost hashes md5 and sha512 on two threads where Glance hashes on one, which helps while a core is free; ' +
          'on a busy machine throughput follows CPU-s per GiB, where Outpost is close to Glance',
      },
    }),
    compareRow({ measure: 'Upload, server CPU-s per GiB', subject: figures.uploadCpuPerGiB(o, size), reference: ref(glance, 'Glance', (r) => figures.uploadCpuPerGiB(r, size)), format: two }),
    compareRow({
      measure: 'Download, MB/s', subject: figures.downloadMBps(o), reference: ref(nginx, 'nginx sendfile', figures.downloadMBps),
      target: {
        text: '≥ 0.8× nginx', met: (x) => x >= 0.8,
        quietOnly: 'Outpost copies each byte through user space, nginx\'s sendfile does not: with the CPUs taken by other work, nginx gets more done per CPU-second',
      },
    }),
    compareRow({ measure: 'Download, MB/s', subject: figures.downloadMBps(o), reference: ref(glance, 'Glance', figures.downloadMBps) }),
    compareRow({ measure: 'Download, MB/s', subject: figures.downloadMBps(o), reference: { label: 'cat > /dev/null', series: figures.downloadMBps(cat) } }),
    compareRow({ measure: 'Download, server CPU-s per GiB', subject: figures.downloadCpuPerGiB(o, size), reference: ref(glance, 'Glance', (r) => figures.downloadCpuPerGiB(r, size)), format: two }),
    compareRow({
      measure: 'GET /v2/images/{id}, req/s', subject: figures.rps(o), reference: ref(glance, 'Glance', figures.rps),
      target: { text: '≥ 6× Glance', met: (x) => x >= 6 },
    }),
    compareRow({ measure: 'GET /v2/images/{id}, p50 ms', subject: figures.p50ms(o), reference: ref(glance, 'Glance', figures.p50ms), format: two }),
    compareRow({
      measure: 'GET /v2/images/{id}, p99 ms', subject: figures.p99ms(o), format: two,
      target: { text: '≤ 10 ms', met: (x) => x <= 10, quietOnly: 'other work on the CPUs delays some of the 16 connections\' answers' },
    }),
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

/**
 * Median [min–max] of every figure of every system measured. A column no system has a figure in
 * (GET for a benchmark of transfers only) is left out; CPU is that of the samples that measured it.
 */
export function systemsTable(results: SystemResult[], size: number): string {
  const two = (n: number) => fmt(n, 2);
  const cell = (s: Series, f?: (n: number) => string) => (s.values.length === 0 ? '—' : fmtSpread(s.values, f));
  const cpuPerGiB = (samples: Sample[] | undefined) => seriesOf((samples ?? []).filter((s) => Number.isFinite(s.cpuS)), (s) => s.cpuS * GIB / size);
  const header = ['System', 'Upload MB/s', 'Upload CPU-s/GiB', 'Download MB/s', 'Download CPU-s/GiB', 'GET req/s', 'GET p50 ms', 'GET p99 ms'];
  const rows = results.map((r) => [
    r.name, cell(figures.uploadMBps(r)), cell(cpuPerGiB(r.upload), two), cell(figures.downloadMBps(r)), cell(cpuPerGiB(r.download), two),
    cell(figures.rps(r)), cell(figures.p50ms(r), two), cell(figures.p99ms(r), two),
  ]);
  const kept = header.map((_, i) => i === 0 || rows.some((row) => row[i] !== '—'));
  return markdownTable(header.filter((_, i) => kept[i]), rows.map((row) => row.filter((_, i) => kept[i])));
}

/** Every round of every system, each with the 1-minute load average at its start → end. */
export function runsList(results: SystemResult[]): string {
  const at = (l: { start: number; end: number }) => `load ${l.start.toFixed(1)}→${l.end.toFixed(1)}`;
  const lines: string[] = [];
  for (const r of results) {
    if (r.upload?.length) lines.push(`- ${r.name} upload: ${r.upload.map((s) => `${fmt(s.mbps)} MB/s (${Number.isFinite(s.cpuS) ? `${fmt(s.cpuS, 2)} CPU-s; ` : ''}${at(s.load)})`).join(', ')}`);
    if (r.download?.length) lines.push(`- ${r.name} download: ${r.download.map((s) => `${fmt(s.mbps)} MB/s (${Number.isFinite(s.cpuS) ? `${fmt(s.cpuS, 2)} CPU-s; ` : ''}${at(s.load)})`).join(', ')}`);
    if (r.get?.length) lines.push(`- ${r.name} GET: ${r.get.map((w) => `${fmt(w.rps)} req/s p50 ${fmt(w.p50ms, 2)} ms p99 ${fmt(w.p99ms, 2)} ms (${at(w.load)})`).join('; ')}`);
    if (r.note) lines.push(`- ${r.name}: ${r.note}`);
  }
  return lines.join('\n');
}

/** The load average over all rounds of these systems, for a one-line summary. */
export function loadOf(results: SystemResult[]): string {
  return fmtLoad(results.flatMap((r) => [...(r.upload ?? []), ...(r.download ?? []), ...(r.get ?? [])].map((s) => s.load)));
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

/** How to read a targets table (printed under each). */
export const ROUNDS_LEGEND = `Each figure is the median of all rounds with the spread [min–max] of the rounds; the ratio is that of the medians, ` +
  `with the spread of the per-round ratios where both sides were measured in turns, round by round. Load (1 min) is the lowest–highest ` +
  `1-minute load average sampled at the start and end of each measurement; above ${availableParallelism()} (the number of CPUs) the machine counts as busy. ` +
  `PASS/FAIL is printed only against figures measured in this run; a target marked "quiet machine only" is not expected to hold on a busy machine.`;

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
    ROUNDS_LEGEND,
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
