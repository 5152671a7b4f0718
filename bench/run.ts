/**
 * Outpost's benchmark: Outpost against the real Glance (Debian glance-api), nginx (sendfile) and
 * `cat`, all in one run on this machine, all on loopback, with the same file and the same clients
 * (curl for transfers, wrk for metadata). Prints a table and writes docs/benchmarks.md.
 *
 *   npm run bench [-- --size-mib 256 --quick]      (see --help)
 */
import { tmpdir } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ApiSystem, catTarget, httpTarget, makeTestFile, measureDownloads, rotate, type DownloadTarget, type RunPlan, type SystemResult } from './measure.ts';
import { checkDisk, COMMON_BENCH_OPTIONS, execFileP, exitOnHelp, loadClockTicks, LoadNotes, machineFacts, positiveInt as int, runBench, sh, startGlance, startNginx, startOutpost, type Cleanup } from './procs.ts';
import { compare, markdownTable, RECORDED_GLANCE, resultsHead, RUN_SECTION, runsList, summarize, systemsTable, textTable, writeDocs, type Summary } from './report.ts';

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const HELP = `usage: node bench/run.ts [options]
  --size-mib N         image size in MiB (default 1024)
  --runs N             timed uploads/downloads per system, median reported (default 3; --quick 1)
  --wrk-seconds N      length of each wrk run (default 10; --quick 3)
  --wrk-runs N         wrk runs per system, median reported (default 3; --quick 1)
  --catalog N          images in each catalog during the GET test (default 200)
  --quick              short run: --runs 1 --wrk-runs 1 --wrk-seconds 3 (and no docs unless --docs)
  --no-glance          do not start Glance; compare with BASELINE.md's recorded figures
  --no-glance-install  do not apt-get install glance-api when it is missing
  --glance-dir DIR     where glance-peer.sh lives (default /work/shared/glance)
  --outpost-env K=V    extra environment for outpost serve (repeatable; recorded in the output)
  --docs PATH          write results there (default docs/benchmarks.md on full runs)
  --no-docs            do not write the results file
  --tmp DIR            where the temp directory goes (default ${tmpdir()})`;

function options() {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '1024' },
      runs: { type: 'string' },
      'wrk-seconds': { type: 'string' },
      'wrk-runs': { type: 'string' },
      catalog: { type: 'string', default: '200' },
      'no-glance': { type: 'boolean', default: false },
      'no-glance-install': { type: 'boolean', default: false },
      'glance-dir': { type: 'string', default: '/work/shared/glance' },
      'outpost-env': { type: 'string', multiple: true, default: [] },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const outpostEnv: Record<string, string> = {};
  for (const kv of values['outpost-env']) {
    const i = kv.indexOf('=');
    if (i < 1) throw new Error(`--outpost-env ${kv}: expected KEY=VALUE`);
    outpostEnv[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return {
    sizeMiB: int('size-mib', values['size-mib'], 1024),
    plan: {
      runs: int('runs', values.runs, quick ? 1 : 3),
      wrkRuns: int('wrk-runs', values['wrk-runs'], quick ? 1 : 3),
      wrkSeconds: int('wrk-seconds', values['wrk-seconds'], quick ? 3 : 10),
      wrkThreads: 2,
      wrkConns: 16,
      catalog: int('catalog', values.catalog, 200),
    } satisfies RunPlan,
    quick,
    glance: !values['no-glance'],
    glanceInstall: !values['no-glance-install'],
    glanceDir: values['glance-dir'],
    outpostEnv,
    docs: values['no-docs'] ? undefined : values.docs ?? (quick ? undefined : join(REPO_ROOT, 'docs/benchmarks.md')),
    tmp: values.tmp,
  };
}

async function main(cleanup: Cleanup): Promise<number> {
  const opts = options();
  await loadClockTicks();
  const size = opts.sizeMiB * 2 ** 20;
  const facts = await machineFacts(['curl', 'wrk', 'nginx-light', 'nginx-common', 'glance-api']);
  process.stderr.write(`${facts.join('\n')}\n`);

  // Disk: the source file, one kept copy in Outpost and in Glance, one upload in flight, slack.
  await checkDisk(opts.tmp, 4 * size + 2 * 2 ** 30);

  const tmp = await mkdtemp(join(opts.tmp, 'outpost-bench-'));
  cleanup.add('remove temp dir', () => rm(tmp, { recursive: true, force: true }));
  const filesDir = join(tmp, 'files');
  await execFileP('mkdir', ['-p', filesDir]);
  process.stderr.write(`Making a ${opts.sizeMiB} MiB random file in ${filesDir}\n`);
  const file = await makeTestFile(join(filesDir, 'image.bin'), size);
  const loads = new LoadNotes();

  // Every server runs for the whole benchmark; they are measured in turns, round by round, in a
  // rotating order, so the noise of a shared machine falls on all of them alike.
  let glance: ApiSystem | undefined;
  let glanceNote: string;
  if (!opts.glance) {
    glanceNote = 'Glance was not run (--no-glance): its figures are BASELINE.md\'s, recorded, not measured in this run.';
  } else {
    process.stderr.write(`Starting Glance (glance-peer.sh --single${opts.glanceInstall ? ', GLANCE_INSTALL=1' : ''})\n`);
    const started = await startGlance(opts.glanceDir, join(tmp, 'glance'), opts.glanceInstall, cleanup);
    if (started.server === undefined) {
      glanceNote = `Glance could not be started here (${started.failure}): its figures are BASELINE.md's, recorded, not measured in this run.`;
      process.stderr.write(`${glanceNote}\n`);
    } else {
      glance = new ApiSystem(started.server);
      process.stderr.write(`Glance at ${glance.server.url} (PID ${glance.server.pid})\n`);
      glanceNote = `Glance ${await sh('dpkg-query', ['-W', '-f', '${Version}', 'glance-api'])} measured in this run (glance-peer.sh --single: 2 workers, SQLite, file store).`;
    }
  }
  const outpost = new ApiSystem(await startOutpost(REPO_ROOT, join(tmp, 'outpost-data'), opts.outpostEnv, cleanup, ['--auth', 'none']));
  process.stderr.write(`Outpost at ${outpost.server.url} (PID ${outpost.server.pid})\n`);
  if (Object.keys(opts.outpostEnv).length > 0) outpost.result.note = `run with ${Object.entries(opts.outpostEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`;
  const nginx = await startNginx(filesDir, join(tmp, 'nginx'), cleanup);
  process.stderr.write(`nginx at ${nginx.url} (PID ${nginx.pid})\n`);
  const apis = glance === undefined ? [outpost] : [outpost, glance];
  for (const a of apis) await a.prepare(file, opts.plan);

  loads.note('before uploads');
  for (let round = 0; round < opts.plan.runs; round++) {
    for (const a of rotate(apis, round)) await a.upload(file, `${round + 1}/${opts.plan.runs}`, round === opts.plan.runs - 1);
  }

  loads.note('before downloads');
  const nginxResult: SystemResult = { name: 'nginx (sendfile)', measured: true };
  const catResult: SystemResult = { name: 'cat > /dev/null', measured: true };
  const targets: DownloadTarget[] = apis.map((a) => httpTarget(a.result, a.server.pid, () => a.downloadUrl, file));
  targets.splice(1, 0, httpTarget(nginxResult, nginx.pid, () => `${nginx.url}/image.bin`, file));
  targets.push(catTarget(catResult, file));
  await measureDownloads(targets, file, opts.plan.runs);

  loads.note('before GETs');
  for (const a of apis) await a.wrk(opts.plan, 2, undefined);
  for (let round = 0; round < opts.plan.wrkRuns; round++) {
    for (const a of rotate(apis, round)) await a.wrk(opts.plan, opts.plan.wrkSeconds, `${round + 1}/${opts.plan.wrkRuns}`);
  }
  loads.note('at end');

  await nginx.stop();
  await outpost.server.stop();
  await glance?.server.stop();

  const results: SystemResult[] = [outpost.result, nginxResult, catResult, ...(glance === undefined ? [] : [glance.result])];
  const glanceSummary: Summary = glance === undefined ? RECORDED_GLANCE : summarize(glance.result, size);
  const summaries = [summarize(outpost.result, size), summarize(nginxResult, size), summarize(catResult, size), glanceSummary];
  const rows = compare(summaries[0], glanceSummary, summaries[1], summaries[2]);

  const header = ['Measure', 'Outpost', 'Reference', 'Ratio', 'Target', 'Result'];
  const cells = rows.map((r) => [r.measure, r.outpost, r.reference, r.ratio, r.target, r.result]);
  process.stdout.write(`\n${textTable(header, cells)}\n\n${glanceNote}\n${loads}\n`);

  if (opts.docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 2, script: 'bench/run.ts', quick: opts.quick, facts, loads, targets: markdownTable(header, cells),
        what: `image ${opts.sizeMiB} MiB (${size.toLocaleString('en-US')} bytes, random), ${opts.plan.runs} timed uploads and downloads per system (median), ` +
          `wrk -t${opts.plan.wrkThreads} -c${opts.plan.wrkConns} -d${opts.plan.wrkSeconds}s --latency × ${opts.plan.wrkRuns} (median by req/s) with ${opts.plan.catalog} images in the catalog. MB = 10^6 bytes.`,
      }),
      glanceNote,
      ...(glance === undefined ? [] : ['', `For comparison, BASELINE.md recorded Glance at ${RECORDED_GLANCE.uploadMBps} MB/s upload and ${RECORDED_GLANCE.rps} req/s GET on a quieter machine of this kind; ` +
        `Outpost's figures in this run are ${(summaries[0].uploadMBps / RECORDED_GLANCE.uploadMBps).toFixed(2)}× and ${(summaries[0].rps / RECORDED_GLANCE.rps).toFixed(1)}× those recorded figures.`]),
      '',
      '### Medians per system',
      '',
      systemsTable(summaries),
      '',
      '### Every run',
      '',
      runsList(results),
      '',
      '### Method',
      '',
      '- Every server listens on 127.0.0.1: Outpost (`node bin/outpost.js serve`, fresh data directory, `OUTPOST_LOG_LEVEL=warn`, ' +
        'default configuration otherwise, so `storage_sync` is on and each upload is fdatasync\'d before it commits), our own nginx ' +
        '(temp prefix, `sendfile on`, serving the source file) and Glance run side by side for the whole benchmark and are measured in turns, ' +
        'round by round, in an order that rotates each round, so that the load of the shared machine falls on each of them alike.',
      '- Each system first gets one untimed upload and one untimed download (warm-up: lazy start-up, page cache).',
      '- Upload: `curl -T FILE -H "Content-Type: application/octet-stream" -H "Expect:"` to `PUT /v2/images/{id}/file` of a new image, ' +
        '`sync` before each; MB/s = bytes / curl time_total (until the server answers 204); the result is checked (active, size, md5, sha512).',
      '- Download: `curl -o /dev/null` after one untimed warm-up, so the file is in the page cache.',
      '- CPU: utime+stime (with reaped children) of the server process and its descendants from /proc/PID/stat, before and after each transfer.',
      '- A single curl on loopback is client-bound near the top; the 2 CPUs are shared by the client, the server and anything else running.',
    ].join('\n');
    await writeDocs(opts.docs, md, RUN_SECTION);
    process.stderr.write(`Wrote ${opts.docs}\n`);
  }
  return 0;
}

await runBench(main);
