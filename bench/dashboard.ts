/**
 * Dashboard benchmark (issue 16): how long the dashboard's pages take to render in Debian's
 * Chromium (headless, playwright-core) for a region of many sites and images, against a reference
 * measured in the same run: the same browser rendering the same site table pre-rendered as static
 * HTML and served by nginx (what a page cannot beat: no API calls, no script).
 *
 * Central (`outpost serve`, auth none, on 127.0.0.1) with N images (every 10th tagged golden) and
 * S lightweight sites registered over real HTTP (POST /outpost/v1/sites, no process of their own),
 * one placement policy wanting the golden images at a third of the sites. Each round opens a
 * fresh browser context (no cache) at:
 *   - #/sites: until the table shows every site (S + 1 rows);
 *   - #/fleet: until the matrix shows its first image row;
 *   - the reference page: until its table shows every site.
 * Target: the first page (#/sites) renders in under 1 s (median of the rounds).
 *
 *   npm run bench:dashboard [-- --sites 1000 --images 5000 --rounds 10 --quick]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { spawnServe } from '../src/cli/site-process.ts';
import { COMMON_BENCH_OPTIONS, docsTarget, exitOnHelp, machineFacts, positiveInt, runBench, startNginx } from './procs.ts';
import { markdownTable, textTable, writeDocs, type DocSection } from './report.ts';
import { fmt, median, withLoad, type LoadSpan } from './rounds.ts';

const HELP = `usage: node bench/dashboard.ts [options]
  --sites N     lightweight sites (default 1000; --quick 100)
  --images N    images at central (default 5000; --quick 500)
  --rounds N    page loads of each kind, median reported (default 10; --quick 3)
  --quick       short run (and no docs unless --docs)
  --docs FILE   where to write the results (default docs/benchmarks.md; --no-docs: nowhere)`;

const SECTION: DocSection = {
  tag: 'bench-dashboard', by: '`npm run bench:dashboard` (bench/dashboard.ts)',
  intro: '## Dashboard\n\nThe dashboard\'s pages rendered in Debian\'s Chromium for a region of many sites and images, against the same table as static HTML from nginx.',
};

const log = (line: string) => process.stderr.write(`${line}\n`);

async function call(base: string, method: string, path: string, body?: unknown, type = 'application/json'): Promise<any> {
  const res = await fetch(`${base}${path}`, { method, headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': type }) }, body: body === undefined ? undefined : type === 'application/json' ? JSON.stringify(body) : body as Buffer });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? undefined : res.json();
}

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await fn(next++);
  }));
}

interface Figure { values: number[]; loads: LoadSpan[] }

await runBench(async (cleanup) => {
  const { values } = parseArgs({ options: { ...COMMON_BENCH_OPTIONS, sites: { type: 'string' }, images: { type: 'string' }, rounds: { type: 'string' } } });
  exitOnHelp(values.help === true, HELP);
  const quick = values.quick === true;
  const nSites = positiveInt('--sites', values.sites, quick ? 100 : 1000);
  const nImages = positiveInt('--images', values.images, quick ? 500 : 5000);
  const rounds = positiveInt('--rounds', values.rounds, quick ? 3 : 10);
  const docs = docsTarget(values as never);

  const tmp = await mkdtemp(join(tmpdir(), 'outpost-bench-dashboard-'));
  cleanup.add('remove the temp dir', () => rm(tmp, { recursive: true, force: true }));
  const central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(tmp, 'central'), '--auth', 'none'], {
    env: { ...process.env, OUTPOST_STORAGE_SYNC: 'false' }, onStderr: (d) => process.stderr.write(`[central] ${d}`), startTimeoutMs: 30_000,
  });
  cleanup.add('stop central', async () => { await central.stop(); });
  const base = central.url;
  const centralId = (await call(base, 'GET', '/outpost/v1/status')).site as string;

  log(`creating ${nImages} images`);
  await pool(nImages, 8, async (i) => {
    const image = await call(base, 'POST', '/v2/images', { name: `img-${String(i).padStart(5, '0')}`, disk_format: 'raw', container_format: 'bare', tags: i % 10 === 0 ? ['golden'] : [] });
    await call(base, 'PUT', `/v2/images/${image.id}/file`, Buffer.alloc(256 + (i % 256), i % 251), 'application/octet-stream');
  });
  log(`registering ${nSites} sites`);
  const sites = Array.from({ length: nSites }, (_, i) => ({ id: `site-${String(i).padStart(5, '0')}`, region: ['eu', 'us', 'ap'][i % 3]! }));
  await pool(nSites, 8, async (i) => {
    const s = sites[i]!;
    await call(base, 'POST', '/outpost/v1/sites', {
      id: s.id, parent: centralId, labels: { region: s.region }, public_url: `http://127.0.0.1:1/${s.id}`, version: 'bench', stores: [s.id],
      store_details: [{ id: s.id, type: 'file', description: '', weight: 0, read_only: false, default: true, properties: {} }],
    });
  });
  await call(base, 'POST', '/outpost/v1/policies', { name: 'golden-eu', images: { tags: ['golden'] }, sites: { labels: 'region=eu' }, mode: 'replicate', priority: 50 });

  // The reference: the sites table as central lists it, pre-rendered, served by nginx.
  const listed = (await call(base, 'GET', '/outpost/v1/sites')).sites as { id: string; parent: string | null; last_contact: string; lag_changes: number | null; labels: Record<string, string>; stores: string[] }[];
  const root = join(tmp, 'www');
  await mkdir(root, { recursive: true });
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  await writeFile(join(root, 'sites.html'), `<!doctype html><html><head><meta charset="utf-8"><title>sites</title></head><body><table class="sites"><thead><tr><th>Site</th><th>Health</th><th>Last contact</th><th>Lag</th><th>Labels</th><th>Stores</th></tr></thead><tbody>${
    listed.map((s) => `<tr><th>${esc(s.id)}</th><td>ok</td><td>${esc(s.last_contact)}</td><td>${s.lag_changes ?? '-'}</td><td>${esc(Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' '))}</td><td>${esc(s.stores.join(','))}</td></tr>`).join('')
  }</tbody></table></body></html>`);
  const nginx = await startNginx(root, join(tmp, 'nginx'), cleanup);

  const browser: Browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  cleanup.add('close the browser', () => browser.close());
  const rows = listed.length;
  const render = async (url: string, done: string): Promise<number> => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    try {
      const page = await context.newPage();
      const start = performance.now();
      await page.goto(url);
      await page.waitForFunction(done, undefined, { timeout: 60_000, polling: 'raf' });
      return (performance.now() - start) / 1000;
    } finally {
      await context.close();
    }
  };
  const allRows = `document.querySelectorAll('table.sites tbody tr').length >= ${rows}`;
  const kinds: { name: string; url: string; done: string }[] = [
    { name: 'dashboard #/sites (every site shown)', url: `${base}/dashboard/#/sites`, done: allRows },
    { name: 'dashboard #/fleet (first image row)', url: `${base}/dashboard/#/fleet`, done: `document.querySelectorAll('table.fleet tbody tr').length >= 1` },
    { name: 'reference: the sites table as static HTML from nginx', url: `${nginx.url}/sites.html`, done: allRows },
  ];
  await render(kinds[0]!.url, kinds[0]!.done); // warm the server's paths once
  const figures = new Map<string, Figure>(kinds.map((k) => [k.name, { values: [], loads: [] }]));
  for (let r = 1; r <= rounds; r++) {
    for (const k of kinds) {
      const { value, load } = await withLoad(() => render(k.url, k.done));
      figures.get(k.name)!.values.push(value);
      figures.get(k.name)!.loads.push(load);
    }
    log(`round ${r}: ${kinds.map((k) => `${k.name.split(' (')[0]} ${(figures.get(k.name)!.values.at(-1)! * 1000).toFixed(0)} ms`).join(', ')}`);
  }
  const ms = (name: string) => median(figures.get(name)!.values) * 1000;
  const spread = (name: string) => `${fmt(Math.min(...figures.get(name)!.values) * 1000)}–${fmt(Math.max(...figures.get(name)!.values) * 1000)}`;
  const load = (name: string) => {
    const l = figures.get(name)!.loads;
    return `${fmt(Math.min(...l.map((x) => x.start)), 2)}–${fmt(Math.max(...l.map((x) => x.end)), 2)}`;
  };
  const sitesMs = ms(kinds[0]!.name);
  const refMs = ms(kinds[2]!.name);
  const header = ['page', 'median ms', 'spread ms', 'vs reference', '1-min load'];
  const body = kinds.map((k) => [k.name, fmt(ms(k.name)), spread(k.name), k === kinds[2] ? '1.00×' : `${(ms(k.name) / refMs).toFixed(2)}×`, load(k.name)]);
  const verdict = `first page (#/sites) median ${fmt(sitesMs)} ms: ${sitesMs < 1000 ? 'PASS' : 'FAIL'} (target < 1000 ms); ${(sitesMs / refMs).toFixed(2)}× the static reference`;
  process.stdout.write(`${textTable(header, body)}\n${verdict}\n`);
  if (docs !== undefined) {
    const facts = await machineFacts(['chromium', 'nginx']);
    await writeDocs(docs, [
      `${nSites} lightweight sites, ${nImages} images (every 10th wanted at a third of the sites), ${rounds} rounds of each page, each in a fresh browser context.`,
      '',
      facts.join('\n\n'),
      '',
      markdownTable(header, body),
      '',
      `**${verdict}.** Each figure is the median of all rounds with the spread of the rounds; the 1-minute load average beside it.`,
    ].join('\n'), SECTION);
  }
  return sitesMs < 1000 ? 0 : 1;
});
