/**
 * Soak benchmark (issue 11, item 13): memory of one edge over many cold misses and hits. Central
 * and an edge, each its own `outpost serve` process on 127.0.0.1; the edge's cache budget holds
 * 4 of the N images it is asked for in turn, so each turn through them is N cold misses (each
 * evicting the least recently used copy), followed by hits of the copies held. After every round
 * the edge's memory is read after a forced full garbage collection (test-support/memory-probe.ts:
 * the inspector protocol, no hook in the product). The criteria: the median RSS after GC of the
 * second half of the rounds is within +10 % of the first half's (nothing grows with the work),
 * and no round's is more than 10 % above the first half's median (nothing is held for a while and
 * then let go: before the fix the hashing threads held 12 MiB per miss until they happened to
 * collect, every 20-30 misses, a saw-tooth whose halves had equal medians). Prints a table and
 * writes a section of docs/benchmarks.md.
 *
 *   npm run bench:soak [-- --size 16MiB --misses 200 --hits 2000 --rounds 20 --quick]   (see --help)
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { inspectEnv, MemoryProbe, type MemoryAfterGc } from '../test-support/memory-probe.ts';
import { api, createImage, curlDownload, curlUpload, getImage, settledCache, waitForImage } from './clients.ts';
import { makeTestFile, type TestFile } from './measure.ts';
import { docsTarget, checkDisk, COMMON_BENCH_OPTIONS, exitOnHelp, freePort, LoadNotes, machineFacts, positiveInt, runBench, sh, startOutpost, type Cleanup } from './procs.ts';
import { fmt, markdownTable, median, resultsHead, textTable, writeDocs, type DocSection } from './report.ts';

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const MiB = 2 ** 20;
const HELP = `usage: node bench/soak.ts [options]
  --size MIB        image size in MiB (default 16)
  --images N        distinct images asked for in turn; the edge's cache holds 4 of them (default 10)
  --misses N        cold misses in all (default 200; --quick 40)
  --hits N          hits in all (default 2000; --quick 400)
  --rounds N        memory samples, one after each round of misses/rounds misses and hits/rounds hits (default 20; --quick 8)
  --quick           short run (and no docs unless --docs)
  --docs PATH       write results there (default docs/benchmarks.md on full runs)
  --no-docs         do not write the results file
  --tmp DIR         where the temp directory goes (default ${tmpdir()})`;

/** Median RSS after GC, second half of the rounds against the first, and each round against the first half: at most +10 %. */
const TARGET_GROWTH = 0.10;
/** Images the edge's cache budget holds. */
const HELD = 4;
/** Hits run this many at a time. */
const HIT_CLIENTS = 4;
const SECTION: DocSection = {
  tag: 'bench:soak',
  by: '`npm run bench:soak` (bench/soak.ts)',
  intro: '## Soak: memory over many misses and hits\n\nOne edge\'s memory over 200 cold misses and 2,000 hits, read after a forced garbage collection after every round. ' +
    'Run it with `npm run bench:soak` (a few minutes) or `npm run bench:soak -- --quick` (`--help` lists the options). Central\'s memory with 200 followers is checked ' +
    'the same way by `npm run bench:propagation`. The part between the `bench:soak` markers is rewritten by each full run; the findings after it are kept.',
};

function options() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '16' },
      images: { type: 'string', default: '10' },
      misses: { type: 'string' },
      hits: { type: 'string' },
      rounds: { type: 'string' },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const o = {
    size: positiveInt('size', values.size, 16) * MiB,
    images: positiveInt('images', values.images, 10),
    misses: positiveInt('misses', values.misses, quick ? 40 : 200),
    hits: positiveInt('hits', values.hits, quick ? 400 : 2000),
    rounds: positiveInt('rounds', values.rounds, quick ? 8 : 20),
    quick,
    docs: docsTarget(values),
    tmp: values.tmp,
  };
  if (o.images <= HELD) throw new Error(`--images must be more than ${HELD} (the images the cache holds), so that every turn through them misses`);
  if (o.rounds < 2 || o.misses % o.rounds !== 0 || o.hits % o.rounds !== 0) throw new Error('--rounds must be at least 2 and divide --misses and --hits');
  return o;
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const mib = (bytes: number) => fmt(bytes / MiB, 1);

interface Sample extends MemoryAfterGc {
  round: number;
  misses: number;
  hits: number;
  /** The 1-minute load average when the sample was taken (what `uptime` shows first). */
  load1: number;
}

async function main(cleanup: Cleanup): Promise<number> {
  const opts = options();
  const { size, rounds } = opts;
  const dirty = await sh('git', ['--no-optional-locks', '-C', REPO_ROOT, 'status', '--porcelain', '--', 'src', 'bin']);
  const facts = [
    ...await machineFacts(['curl']),
    `Outpost: commit ${await sh('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])}${dirty === '' ? '' : ` with uncommitted changes in ${dirty.split('\n').length} file(s) of src/ and bin/`}`,
  ];
  log(facts.join('\n'));
  const loads = new LoadNotes();

  // Disk: the source files, central's copies, the edge's held copies and a fill's spool, slack.
  await checkDisk(opts.tmp, (2 * opts.images + HELD + 2) * size + 256 * MiB);
  const tmp = await mkdtemp(join(opts.tmp, 'outpost-soak-'));
  cleanup.add('remove temp dir', () => rm(tmp, { recursive: true, force: true }));
  await mkdir(join(tmp, 'files'));
  const central = await startOutpost(REPO_ROOT, join(tmp, 'central'), {}, cleanup, ['--role', 'central', '--auth', 'none'], 'central');
  const inspectPort = await freePort();
  // The budget holds HELD copies and not one more (a fill reserves its image's size).
  const edge = await startOutpost(REPO_ROOT, join(tmp, 'edge'), { OUTPOST_CACHE_MAX_BYTES: String(HELD * size + size / 2), ...inspectEnv(inspectPort) }, cleanup,
    ['--role', 'edge', '--site', 'edge-1', '--parent', central.url, '--auth', 'none'], 'edge');
  for (const s of [central, edge]) log(`${s.name} at ${s.url} (PID ${s.pid})`);
  const probe = await MemoryProbe.connect({ port: inspectPort });
  cleanup.add('close the inspector connection', () => probe.close());

  log(`Uploading ${opts.images} images of ${size / MiB} MiB to central`);
  const images: { id: string; file: TestFile }[] = [];
  for (let i = 0; i < opts.images; i++) {
    const file = await makeTestFile(join(tmp, 'files', `image-${i}.bin`), size);
    const id = await createImage(central.url, `soak-${i}`);
    await curlUpload(central.url, id, file.path);
    const image = await getImage(central.url, id);
    if (image.status !== 'active' || image.os_hash_value !== file.sha512) throw new Error(`central's image ${id} is ${JSON.stringify(image)}`);
    images.push({ id, file });
  }
  for (const { id } of images) await waitForImage(edge.url, id, 'active', 60_000);

  const url = (id: string) => `${edge.url}/v2/images/${id}/file`;
  const held = async () => new Map((await settledCache(edge.url)).cached_images.map((c) => [c.image_id, c]));
  const samples: Sample[] = [];
  const sample = async (round: number, misses: number, hits: number) => {
    samples.push({ round, misses, hits, load1: loadavg()[0], ...await probe.measure() });
    const s = samples.at(-1)!;
    log(`  round ${round}: ${misses} misses, ${hits} hits; after GC: RSS ${mib(s.rss)} MiB, ArrayBuffers ${mib(s.arrayBuffers)} MiB, heap ${mib(s.heapUsed)} MiB; load ${s.load1.toFixed(2)}`);
  };

  // Warm-up (not sampled into the halves): one turn through the images, a few hits.
  log('Warm-up: one cold miss of each image');
  for (const { id } of images) await curlDownload(url(id), size);
  await sample(0, opts.images, 0);

  loads.note('before the soak');
  const missesPerRound = opts.misses / rounds;
  const hitsPerRound = opts.hits / rounds;
  let next = 0;
  let misses = 0;
  let hits = 0;
  const started = performance.now();
  for (let round = 1; round <= rounds; round++) {
    for (let i = 0; i < missesPerRound; i++) {
      const { id } = images[next];
      next = (next + 1) % images.length;
      if ((await held()).has(id)) throw new Error(`the edge still holds image ${id}: not a cold miss`);
      await curlDownload(url(id), size);
      if ((await held()).get(id)?.size !== size) throw new Error(`the edge kept no verified copy of ${id} after a cold miss`);
      misses++;
    }
    const copies = [...(await held()).values()];
    if (copies.length === 0) throw new Error('the edge holds no copy to hit');
    const before = copies.reduce((n, c) => n + c.hits, 0);
    for (let i = 0; i < hitsPerRound; i += HIT_CLIENTS) {
      await Promise.all(Array.from({ length: Math.min(HIT_CLIENTS, hitsPerRound - i) }, (_, k) => curlDownload(url(copies[(i + k) % copies.length].image_id), size)));
    }
    const now = await held();
    const after = copies.reduce((n, c) => n + (now.get(c.image_id)?.hits ?? 0), 0);
    if (after - before !== hitsPerRound) throw new Error(`the edge counted ${after - before} hits in round ${round}, expected ${hitsPerRound}`);
    hits += hitsPerRound;
    await sample(round, misses, hits);
  }
  const seconds = (performance.now() - started) / 1000;
  loads.note('at end');
  probe.close();
  await edge.stop();
  await central.stop();

  // Report. A leak grows with the rounds; what is only not yet collected is gone after the GC.
  const measured = samples.slice(1);
  const half = Math.floor(measured.length / 2);
  const [first, second] = [measured.slice(0, half), measured.slice(half)];
  const med = (xs: Sample[], k: keyof MemoryAfterGc) => median(xs.map((s) => s[k]));
  const growth = (med(second, 'rss') - med(first, 'rss')) / med(first, 'rss');
  const highest = measured.reduce((a, b) => (b.rss > a.rss ? b : a));
  const peak = (highest.rss - med(first, 'rss')) / med(first, 'rss');
  const ok = growth <= TARGET_GROWTH && peak <= TARGET_GROWTH;
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
  const header = ['Measure', '1st half (median)', '2nd half (median)', 'Change', 'Target', 'Result'];
  const change = (k: keyof MemoryAfterGc) => {
    const d = med(second, k) - med(first, k);
    return `${d >= 0 ? '+' : ''}${mib(d)} MiB`;
  };
  const rows = [
    ['Edge RSS after a full GC, MiB', mib(med(first, 'rss')), mib(med(second, 'rss')), pct(growth), `≤ +${TARGET_GROWTH * 100} %`, growth <= TARGET_GROWTH ? 'PASS' : 'FAIL'],
    ["Edge RSS after a full GC, highest round against the 1st half's median, MiB", mib(med(first, 'rss')), `${mib(highest.rss)} (round ${highest.round})`, pct(peak),
      `≤ +${TARGET_GROWTH * 100} %`, peak <= TARGET_GROWTH ? 'PASS' : 'FAIL'],
    ['Edge ArrayBuffers after a full GC, MiB', mib(med(first, 'arrayBuffers')), mib(med(second, 'arrayBuffers')), change('arrayBuffers'), '—', '—'],
    ['Edge JS heap used after a full GC, MiB', mib(med(first, 'heapUsed')), mib(med(second, 'heapUsed')), change('heapUsed'), '—', '—'],
  ];
  const sampleHeader = ['Round', 'Cold misses', 'Hits', 'RSS, MiB', 'ArrayBuffers, MiB', 'Heap used, MiB', 'Load (1 min)'];
  const sampleRows = samples.map((s) => [s.round === 0 ? 'warm-up' : String(s.round), String(s.misses), String(s.hits), mib(s.rss), mib(s.arrayBuffers), mib(s.heapUsed), s.load1.toFixed(2)]);
  const notes = [
    `${opts.misses} cold misses and ${opts.hits} hits of ${size / MiB} MiB images in ${fmt(seconds, 0)} s (after a warm-up of ${opts.images} misses), ` +
      `${rounds} rounds of ${missesPerRound} misses then ${hitsPerRound} hits (${HIT_CLIENTS} at a time); rounds 1-${half} are the first half, ${half + 1}-${rounds} the second.`,
    `${loads}`,
  ];
  process.stdout.write(`\n${textTable(header, rows)}\n\nAfter each round:\n${textTable(sampleHeader, sampleRows)}\n\n${notes.join('\n')}\n`);

  if (opts.docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 3, script: 'bench/soak.ts', quick: opts.quick, facts, loads, targets: markdownTable(header, rows),
        what: `${opts.misses} cold misses and ${opts.hits} hits of ${size / MiB} MiB images at one edge, memory after a full GC after each of ${rounds} rounds.`,
      }),
      '#### After each round (edge process, after a full GC)',
      '',
      markdownTable(sampleHeader, sampleRows),
      '',
      notes[0],
      '',
      '#### Method',
      '',
      '- Two `outpost serve` processes on 127.0.0.1 (port 0), each with its own fresh data directory, `--auth none`, `OUTPOST_LOG_LEVEL=warn`, default configuration otherwise: ' +
        `central, and an edge (\`--parent\` central) whose \`cache_max_bytes\` holds ${HELD} of the ${opts.images} images and no more.`,
      `- The images (random bytes) are uploaded to central with curl. The edge is asked for them in turn, so each request of the next image is a cold miss that fetches it from ` +
        'central, verifies it and evicts the least recently used copy (checked: the image was not held before, a verified copy is held after). Hits are `curl -o /dev/null` ' +
        `of the held copies, ${HIT_CLIENTS} at a time (checked: the edge's hit counters grew by one per read).`,
      '- Memory: after each round, the edge is made to run two full garbage collections and report `process.memoryUsage()` through the inspector protocol ' +
        '(`--inspect=127.0.0.1:PORT` in `NODE_OPTIONS`; `HeapProfiler.collectGarbage`, `Runtime.evaluate`; test-support/memory-probe.ts). Only the main thread is collected, so ' +
        'memory kept alive by worker threads (the hashing threads) stays counted. Load is the 1-minute load average (`uptime`) at that moment.',
      `- "Flat" means the median RSS after GC of the second half of the rounds is within +${TARGET_GROWTH * 100} % of the first half's (a leak grows with the misses and hits, ` +
        `garbage does not survive the collection), and no round's is more than ${TARGET_GROWTH * 100} % above the first half's median (memory held for a while and let go ` +
        'at random moments, which the halves\' medians can miss).',
      `- Everything (the sites, curl, this script) shares the ${availableParallelism()} CPUs of this machine.`,
    ].join('\n');
    await writeDocs(opts.docs, md, SECTION);
    log(`Wrote ${opts.docs}`);
  }
  return ok ? 0 : 1;
}

await runBench(main);
