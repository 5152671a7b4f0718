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
import { docsTarget, checkDisk, COMMON_BENCH_OPTIONS, execFileP, exitOnHelp, loadClockTicks, LoadNotes, machineFacts, positiveInt as int, runBench, sh, startGlance, startNginx, startOutpost, type Cleanup } from './procs.ts';
import { compare, loadOf, markdownTable, resultsHead, RUN_SECTION, runsList, systemsTable, textTable, writeDocs, type Measured } from './report.ts';
import { outcome, ROW_HEADER, rowCells } from './rounds.ts';

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const HELP = `usage: node bench/run.ts [options]
  --size-mib N         image size in MiB (default 1024)
  --rounds N           timed uploads and downloads per system, median of all reported (default 5; --quick 1)
  --wrk-seconds N      length of each wrk run (default 10; --quick 3)
  --wrk-rounds N       wrk runs per system, median of all reported (default 5; --quick 1)
  --catalog N          images in each catalog during the GET test (default 200)
  --quick              short run: --rounds 1 --wrk-rounds 1 --wrk-seconds 3 (and no docs unless --docs)
  --no-glance          do not start Glance: its comparisons are "not measured", no PASS/FAIL (exit code 3)
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
      rounds: { type: 'string' },
      'wrk-seconds': { type: 'string' },
      'wrk-rounds': { type: 'string' },
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
      runs: int('rounds', values.rounds, quick ? 1 : 5),
      wrkRuns: int('wrk-rounds', values['wrk-rounds'], quick ? 1 : 5),
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
    docs: docsTarget(values),
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
  // rotating order, so the noise of a shared machine falls on all of them alike. A reference that
  // cannot be started is "not measured": no target is judged against it.
  let glance: ApiSystem | undefined;
  let glanceMissing: string | undefined;
  let glanceNote: string;
  if (!opts.glance) {
    glanceMissing = 'not run: --no-glance';
    glanceNote = 'Glance was not run (--no-glance): its comparisons are not measured and not judged.';
  } else {
    process.stderr.write(`Starting Glance (glance-peer.sh --single${opts.glanceInstall ? ', GLANCE_INSTALL=1' : ''})\n`);
    const started = await startGlance(opts.glanceDir, join(tmp, 'glance'), opts.glanceInstall, cleanup);
    if (started.server === undefined) {
      glanceMissing = `could not be started: ${started.failure}`;
      glanceNote = `Glance could not be started here (${started.failure}): its comparisons are not measured and not judged.`;
      process.stderr.write(`${glanceNote}\n`);
    } else {
      glance = new ApiSystem(started.server);
      process.stderr.write(`Glance at ${glance.server.url} (PID ${glance.server.pid})\n`);
      glanceNote = `Glance ${await sh('dpkg-query', ['-W', '-f', '${Version}', 'glance-api'])} measured in this run (glance-peer.sh --single: 2 workers, SQLite, file store).`;
    }
  }
  const outpost = new ApiSystem(await startOutpost(REPO_ROOT, join(tmp, 'outpost-data'), opts.outpostEnv, cleanup, ['--auth', 'none']));
  process.stderr.write(`Outpost at ${outpost.server.url} (PID ${outpost.server.pid})\n`);
  // The same Outpost without chunk manifests built while uploading: what the manifest costs.
  const lean = new ApiSystem(await startOutpost(REPO_ROOT, join(tmp, 'outpost-lean-data'), { ...opts.outpostEnv, OUTPOST_CHUNK_MANIFESTS: 'false' }, cleanup, ['--auth', 'none'], 'Outpost without manifests'));
  process.stderr.write(`Outpost without manifests at ${lean.server.url} (PID ${lean.server.pid})\n`);
  if (Object.keys(opts.outpostEnv).length > 0) outpost.result.note = `run with ${Object.entries(opts.outpostEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`;
  const nginx = await startNginx(filesDir, join(tmp, 'nginx'), cleanup).catch((e: Error) => `could not be started: ${e.message.split('\n')[0]}`);
  if (typeof nginx === 'string') process.stderr.write(`nginx ${nginx}\n`);
  else process.stderr.write(`nginx at ${nginx.url} (PID ${nginx.pid})\n`);
  const apis = glance === undefined ? [outpost] : [outpost, glance];
  for (const a of apis) await a.prepare(file, opts.plan);
  await lean.prepare(file, { ...opts.plan, catalog: 1 });

  loads.note('before uploads');
  for (let round = 0; round < opts.plan.runs; round++) {
    for (const a of rotate([...apis, lean], round)) await a.upload(file, `${round + 1}/${opts.plan.runs}`, round === opts.plan.runs - 1);
  }
  await lean.server.stop();

  loads.note('before downloads');
  const nginxResult: SystemResult = { name: 'nginx (sendfile)' };
  const catResult: SystemResult = { name: 'cat > /dev/null' };
  const targets: DownloadTarget[] = apis.map((a) => httpTarget(a.result, a.server.pid, () => a.downloadUrl, file));
  if (typeof nginx !== 'string') targets.splice(1, 0, httpTarget(nginxResult, undefined, () => `${nginx.url}/image.bin`, file));
  targets.push(catTarget(catResult, file));
  await measureDownloads(targets, file, opts.plan.runs);

  loads.note('before GETs');
  for (const a of apis) await a.wrk(opts.plan, 2, undefined);
  for (let round = 0; round < opts.plan.wrkRuns; round++) {
    for (const a of rotate(apis, round)) await a.wrk(opts.plan, opts.plan.wrkSeconds, `${round + 1}/${opts.plan.wrkRuns}`);
  }
  loads.note('at end');

  if (typeof nginx !== 'string') await nginx.stop();
  await outpost.server.stop();
  await glance?.server.stop();

  const measuredGlance: Measured = glance === undefined ? { name: 'Glance', missing: glanceMissing! } : { result: glance.result };
  const measuredNginx: Measured = typeof nginx === 'string' ? { name: 'nginx', missing: nginx } : { result: nginxResult };
  const results: SystemResult[] = [outpost.result, lean.result, ...(typeof nginx === 'string' ? [] : [nginxResult]), catResult, ...(glance === undefined ? [] : [glance.result])];
  const rows = compare(outpost.result, measuredGlance, measuredNginx, catResult, size, lean.result);
  const end = outcome(rows);
  const cells = rows.map(rowCells);
  process.stdout.write(`\n${textTable(ROW_HEADER, cells)}\n\n${glanceNote}\n${loads}\n${end.message}\n`);

  if (opts.docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 2, script: 'bench/run.ts', quick: opts.quick, facts, loads, targets: markdownTable(ROW_HEADER, cells),
        what: `image ${opts.sizeMiB} MiB (${size.toLocaleString('en-US')} bytes, random), ${opts.plan.runs} rounds of one timed upload and one timed download per system, ` +
          `${opts.plan.wrkRuns} rounds of wrk -t${opts.plan.wrkThreads} -c${opts.plan.wrkConns} -d${opts.plan.wrkSeconds}s --latency per system, with ${opts.plan.catalog} images in the catalog ` +
          `(load average over all rounds ${loadOf(results)}). MB = 10^6 bytes.`,
      }),
      glanceNote,
      '',
      end.message,
      '',
      '### Medians per system [min–max]',
      '',
      systemsTable(results, size),
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
      '- "Outpost without manifests" is the same Outpost started with `OUTPOST_CHUNK_MANIFESTS=false` (no chunk manifest built while uploading), measured in the upload rounds only: what building the manifest costs an upload.',
      '- Upload: `curl -T FILE -H "Content-Type: application/octet-stream" -H "Expect:"` to `PUT /v2/images/{id}/file` of a new image, ' +
        '`sync` before each; MB/s = bytes / curl time_total (until the server answers 204); the result is checked (active, size, md5, sha512).',
      '- Download: `curl -o /dev/null` after one untimed warm-up, so the file is in the page cache.',
      '- CPU: utime+stime (with reaped children) of the server process and its descendants from /proc/PID/stat, before and after each transfer. ' +
        'Not compared with nginx: with sendfile on loopback the kernel\'s copy into the client\'s socket is charged to curl, not to nginx, so nginx\'s figure leaves out work Outpost\'s includes.',
      '- Load: the 1-minute load average (os.loadavg()) at the start and end of every timed transfer and wrk run.',
      '- A single curl on loopback is client-bound near the top; the 2 CPUs are shared by the client, the server and anything else running.',
    ].join('\n');
    await writeDocs(opts.docs, md, RUN_SECTION);
    process.stderr.write(`Wrote ${opts.docs}\n`);
  }
  return end.code;
}

await runBench(main);
