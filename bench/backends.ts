/**
 * Catalog backends benchmark (issue 14): the catalog's read path on SQLite and on PostgreSQL,
 * one node and two nodes behind a load balancer, against the real Glance, in one run on this
 * machine, all on loopback. wrk measures, in rounds that rotate the order of the systems:
 *
 *   GET /v2/images/{id}        one image's record
 *   GET /v2/images?limit=25    the first page of a catalog of N images (the same N everywhere)
 *
 * on: Outpost on SQLite (one node); Outpost on PostgreSQL (one node); the same PostgreSQL node
 * behind nginx; two PostgreSQL nodes behind the same nginx (round robin, keepalive to the nodes);
 * Glance (Debian glance-api). "Two nodes against one" is measured with the balancer on both
 * sides, so its cost is on both. Needs a PostgreSQL the benchmark can create a database in:
 *
 *   eval "$(scripts/test-servers.sh start)"; npm run bench:backends [-- --quick]   (see --help)
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startBalancer } from './balancer.ts';
import { api, createImage, curlUpload, fillCatalog, getImage, runWrk, type WrkResult } from './clients.ts';
import { rotate } from './measure.ts';
import { COMMON_BENCH_OPTIONS, docsTarget, exitOnHelp, loadClockTicks, LoadNotes, machineFacts, positiveInt, runBench, sh, startGlance, startOutpost, treeCpuSeconds, type Cleanup } from './procs.ts';
import { markdownTable, resultsHead, textTable, writeDocs, type DocSection } from './report.ts';
import { compareRow, EXIT_NOT_MEASURED, fmt, fmtLoad, fmtSpread, median, outcome, ROW_HEADER, rowCells, seriesOf, withLoad, type LoadSpan, type Row } from './rounds.ts';

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const HELP = `usage: node bench/backends.ts [options]
  --postgres-url URL   an admin URL of a PostgreSQL to create the benchmark's database in and drop
                       it after (default $TEST_POSTGRES_URL: eval "$(scripts/test-servers.sh start)")
  --rounds N           wrk runs per system and request, median of all reported (default 5; --quick 1)
  --wrk-seconds N      length of each wrk run (default 8; --quick 3)
  --catalog N          images in every catalog (default 200)
  --quick              short run: --rounds 1 --wrk-seconds 3 (and no docs unless --docs)
  --no-glance          do not start Glance: its comparisons are "not measured" (exit code 3)
  --no-glance-install  do not apt-get install glance-api when it is missing
  --glance-dir DIR     where glance-peer.sh lives (default /work/shared/glance)
  --docs PATH          write results there (default docs/benchmarks.md on full runs)
  --no-docs            do not write the results file
  --tmp DIR            where the temp directory goes (default ${tmpdir()})`;

const SECTION: DocSection = {
  tag: 'bench:backends',
  by: '`npm run bench:backends` (bench/backends.ts)',
  intro: '## Catalog backends (issue 14)\n\nThe catalog\'s read path on SQLite and on PostgreSQL, one node and two nodes behind a load balancer, against Glance: ' +
    '`GET /v2/images/{id}` and a list page. Run it with `eval "$(scripts/test-servers.sh start)"; npm run bench:backends` (5 rounds, about 9 minutes) or ' +
    '`npm run bench:backends -- --quick`; `--help` lists the options. The part between the `bench:backends` markers is rewritten by each full run.',
};

const WRK_THREADS = 2;
const WRK_CONNS = 16;
const LIST_LIMIT = 25;

function options() {
  const { values } = parseArgs({
    options: {
      'postgres-url': { type: 'string' },
      rounds: { type: 'string' },
      'wrk-seconds': { type: 'string' },
      catalog: { type: 'string' },
      'no-glance': { type: 'boolean', default: false },
      'no-glance-install': { type: 'boolean', default: false },
      'glance-dir': { type: 'string', default: '/work/shared/glance' },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const postgresUrl = values['postgres-url'] ?? process.env.TEST_POSTGRES_URL;
  if (postgresUrl === undefined || postgresUrl === '') {
    throw new Error('no PostgreSQL: give --postgres-url or set TEST_POSTGRES_URL (eval "$(scripts/test-servers.sh start)")');
  }
  if (new URL(postgresUrl).hostname !== '127.0.0.1') throw new Error(`refusing a PostgreSQL that is not on 127.0.0.1: ${new URL(postgresUrl).host}`);
  return {
    postgresUrl,
    rounds: positiveInt('rounds', values.rounds, quick ? 1 : 5),
    wrkSeconds: positiveInt('wrk-seconds', values['wrk-seconds'], quick ? 3 : 8),
    catalog: positiveInt('catalog', values.catalog, 200),
    quick,
    glance: !values['no-glance'],
    glanceInstall: !values['no-glance-install'],
    glanceDir: values['glance-dir'],
    docs: docsTarget(values),
    tmp: values.tmp,
  };
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/** CPU time of the whole machine, all CPUs: busy and total seconds since boot (/proc/stat). */
function machineCpu(ticks: number): { busy: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  return { busy: busy / ticks };
}

/** Where the CPU went during one wrk run, in cores (CPU-seconds per second of the run). */
interface Cores {
  /** The system's server processes (one entry per Outpost node; Glance's tree). */
  nodes: number[];
  nginx: number;
  /** The whole PostgreSQL cluster (postmaster and every backend), whoever its clients. */
  postgres: number;
  machine: number;
}

interface Run extends WrkResult {
  load: LoadSpan;
  cores: Cores;
  /** Server CPU (all nodes) per request, µs. */
  serverUs: number;
}

type Endpoint = 'get' | 'list';
const ENDPOINTS: Endpoint[] = ['get', 'list'];
const ENDPOINT_LABEL: Record<Endpoint, string> = { get: 'GET /v2/images/{id}', list: `GET /v2/images?limit=${LIST_LIMIT}` };

interface System {
  key: string;
  name: string;
  /** What wrk is pointed at (a node, or the balancer). */
  base: string;
  imageId: string;
  nodePids: number[];
  nginxPid?: number;
  runs: Record<Endpoint, Run[]>;
}

class Meter {
  readonly ticks: number;
  readonly pgPid: number | undefined;
  constructor(ticks: number, pgPid: number | undefined) {
    this.ticks = ticks;
    this.pgPid = pgPid;
  }

  #cpu(sys: System) {
    const tree = (pid: number | undefined) => {
      if (pid === undefined) return Number.NaN;
      try {
        return treeCpuSeconds(pid);
      } catch {
        return Number.NaN;
      }
    };
    return { nodes: sys.nodePids.map(tree), nginx: sys.nginxPid === undefined ? 0 : tree(sys.nginxPid), postgres: tree(this.pgPid), machine: machineCpu(this.ticks).busy };
  }

  /** One wrk run on `sys`'s `endpoint` (recorded unless `label` is undefined: a warm-up). */
  async run(sys: System, endpoint: Endpoint, seconds: number, label: string | undefined): Promise<void> {
    const url = endpoint === 'get' ? `${sys.base}/v2/images/${sys.imageId}` : `${sys.base}/v2/images?limit=${LIST_LIMIT}`;
    const before = this.#cpu(sys);
    const t0 = process.hrtime.bigint();
    const { value: r, load } = await withLoad(() => runWrk(url, WRK_THREADS, WRK_CONNS, seconds));
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = this.#cpu(sys);
    if (r.non2xx > 0) throw new Error(`${sys.name}: wrk saw ${r.non2xx} non-2xx answers on ${url}`);
    if (label === undefined) return;
    const cores: Cores = {
      nodes: after.nodes.map((a, i) => (a - before.nodes[i]) / wall),
      nginx: (after.nginx - before.nginx) / wall,
      postgres: (after.postgres - before.postgres) / wall,
      machine: (after.machine - before.machine) / wall,
    };
    const serverUs = cores.nodes.reduce((a, b) => a + b, 0) * wall / r.requests * 1e6;
    sys.runs[endpoint].push({ ...r, load, cores, serverUs });
    log(`  ${sys.name} ${ENDPOINT_LABEL[endpoint]} ${label}: ${fmt(r.rps)} req/s, p50 ${fmt(r.p50ms, 2)} ms, p99 ${fmt(r.p99ms, 2)} ms` +
      `${r.socketErrors ? `, socket errors ${r.socketErrors}` : ''}; cores: server ${cores.nodes.map((c) => c.toFixed(2)).join('+')}, ` +
      `nginx ${cores.nginx.toFixed(2)}, PostgreSQL ${cores.postgres.toFixed(2)}, machine ${cores.machine.toFixed(2)}; load ${load.start.toFixed(2)} → ${load.end.toFixed(2)}`);
  }
}

/** Fills a catalog with `n - 1` queued images, then one active image (1 MiB uploaded): its id. */
async function prepareCatalog(name: string, base: string, n: number, file: string): Promise<string> {
  const t0 = Date.now();
  await fillCatalog(base, n - 1);
  const id = await createImage(base, 'bench-backends-get');
  await curlUpload(base, id, file);
  log(`${name}: ${n} images in the catalog (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return id;
}

/** Checks what every system answers: the image active, a full list page of the same size. */
async function check(sys: System, catalog: number): Promise<void> {
  const image = await getImage(sys.base, sys.imageId);
  if (image.status !== 'active') throw new Error(`${sys.name}: image ${sys.imageId} is ${image.status}`);
  const page = await api(sys.base, 'GET', `/v2/images?limit=${LIST_LIMIT}`) as { images: unknown[]; next?: string };
  const want = Math.min(LIST_LIMIT, catalog);
  if (page.images.length !== want) throw new Error(`${sys.name}: a list page of ${page.images.length} images, not ${want}`);
  if (catalog > LIST_LIMIT && page.next === undefined) throw new Error(`${sys.name}: no next link on the first page of ${catalog} images`);
}

/** The postmaster's PID (its tree is the whole cluster), from data_directory/postmaster.pid. */
async function postmasterPid(client: pg.Client): Promise<number | undefined> {
  try {
    const dir = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0].data_directory;
    const pid = Number((await readFile(join(dir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch (e) {
    log(`PostgreSQL's CPU will not be measured: ${(e as Error).message}`);
    return undefined;
  }
}

const two = (n: number) => fmt(n, 2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Transactions committed or rolled back in database `db` so far (pg_stat_database). */
async function transactions(admin: pg.Client, db: string): Promise<number> {
  const r = await admin.query<{ n: string }>('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = $1', [db]);
  return Number(r.rows[0]?.n ?? Number.NaN);
}

/**
 * The count once every backend has reported its own: a backend sends its statistics at most once
 * a second, and one that goes idle within a second of its last report sends the rest 10 s later
 * (PostgreSQL 15's PGSTAT_IDLE_INTERVAL); so read after 12 s of quiet.
 */
async function settledTransactions(admin: pg.Client, db: string): Promise<number> {
  await sleep(12_000);
  return transactions(admin, db);
}

/** PostgreSQL transactions per request: `n` requests to `url`, one at a time, counted in pg_stat_database. */
async function transactionsPerRequest(admin: pg.Client, db: string, url: string, n: number): Promise<number> {
  const before = await settledTransactions(admin, db);
  for (let i = 0; i < n; i++) {
    const res = await fetch(url);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  }
  return (await settledTransactions(admin, db) - before) / n;
}

async function main(cleanup: Cleanup): Promise<number> {
  const opts = options();
  const ticks = await loadClockTicks();
  const facts = await machineFacts(['wrk', 'nginx-light', 'glance-api', 'postgresql-15']);
  log(facts.join('\n'));
  const loads = new LoadNotes();
  const started = Date.now();
  const tmp = await mkdtemp(join(opts.tmp, 'outpost-backends-'));
  cleanup.add('remove temp dir', () => rm(tmp, { recursive: true, force: true }));
  const imageFile = join(tmp, 'image.bin');
  await writeFile(imageFile, randomBytes(1 << 20));

  // PostgreSQL: a database of our own, dropped at the end (after the nodes have stopped).
  // The cluster may be shared (scripts/test-servers.sh): a restart by someone else while the
  // benchmark runs voids its figures, so it is noticed (the admin connection fails, the
  // postmaster's PID changes) and the run fails instead of reporting them.
  let pgFailure: string | undefined;
  const admin = new pg.Client({ connectionString: opts.postgresUrl, application_name: 'outpost-bench' });
  admin.on('error', (e) => {
    pgFailure ??= `the benchmark's connection to PostgreSQL failed: ${e.message}`;
    log(pgFailure);
  });
  await admin.connect();
  cleanup.add('close PostgreSQL admin connection', () => admin.end().catch(() => undefined));
  const db = `outpost_bench_${process.pid}_${Date.now()}`;
  await admin.query(`CREATE DATABASE ${db}`);
  cleanup.add(`drop database ${db}`, async () => {
    // On a connection of its own: the benchmark's may be the one that failed.
    const c = new pg.Client({ connectionString: opts.postgresUrl, application_name: 'outpost-bench' });
    c.on('error', () => undefined);
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      log(`dropped database ${db}`);
    } finally {
      await c.end();
    }
  });
  const settings = await admin.query<{ name: string; setting: string }>(
    "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'fsync', 'shared_buffers', 'max_connections') ORDER BY name");
  const pgSettings = settings.rows.map((r) => `${r.name}=${r.setting}`).join(', ');
  const pgPid = await postmasterPid(admin);
  const dbUrl = new URL(opts.postgresUrl);
  dbUrl.pathname = `/${db}`;
  const databaseUrl = dbUrl.toString();
  log(`PostgreSQL database ${db} (${pgSettings}; postmaster PID ${pgPid ?? 'unknown'})`);

  // Glance first (slowest to start); a Glance that cannot start is "not measured".
  let glance: System | undefined;
  let glanceMissing: string | undefined;
  let glanceNote: string;
  if (!opts.glance) {
    glanceMissing = 'not run: --no-glance';
    glanceNote = 'Glance was not run (--no-glance): its comparisons are not measured.';
  } else {
    log(`Starting Glance (glance-peer.sh --single${opts.glanceInstall ? ', GLANCE_INSTALL=1' : ''})`);
    const g = await startGlance(opts.glanceDir, join(tmp, 'glance'), opts.glanceInstall, cleanup);
    if (g.server === undefined) {
      glanceMissing = `could not be started: ${g.failure}`;
      glanceNote = `Glance could not be started here (${g.failure}): its comparisons are not measured.`;
      log(glanceNote);
    } else {
      glance = { key: 'glance', name: 'Glance', base: g.server.url, imageId: '', nodePids: [g.server.pid], runs: { get: [], list: [] } };
      glanceNote = `Glance ${await sh('dpkg-query', ['-W', '-f', '${Version}', 'glance-api'])} measured in this run (glance-peer.sh --single: 2 workers, SQLite, file store).`;
    }
  }

  // Outpost: one node on SQLite; two nodes on one PostgreSQL database, sharing store and staging.
  const sqlite = await startOutpost(REPO_ROOT, join(tmp, 'sqlite-data'), {}, cleanup,
    ['--auth', 'none', '--store', `central=file:${join(tmp, 'sqlite-store')}`], 'Outpost SQLite');
  const shared = join(tmp, 'shared');
  await mkdir(join(shared, 'central'), { recursive: true });
  await mkdir(join(shared, 'staging'), { recursive: true });
  const pgArgs = ['--auth', 'none', '--database-url', databaseUrl, '--store', `central=file:${join(shared, 'central')}`, '--staging-path', join(shared, 'staging')];
  const nodeA = await startOutpost(REPO_ROOT, join(tmp, 'pg-node-a'), {}, cleanup, pgArgs, 'Outpost PostgreSQL node A');
  const nodeB = await startOutpost(REPO_ROOT, join(tmp, 'pg-node-b'), {}, cleanup, pgArgs, 'Outpost PostgreSQL node B');
  const balancer = await startBalancer({ one: [nodeA.url], two: [nodeA.url, nodeB.url] }, join(tmp, 'nginx'), cleanup);
  log(`nginx balancer: one node at ${balancer.urls.one}, two nodes at ${balancer.urls.two} (PID ${balancer.pid})`);

  const sqliteId = await prepareCatalog('Outpost SQLite', sqlite.url, opts.catalog, imageFile);
  const pgId = await prepareCatalog('Outpost PostgreSQL', nodeA.url, opts.catalog, imageFile);
  if (glance !== undefined) glance.imageId = await prepareCatalog('Glance', glance.base, opts.catalog, imageFile);

  const sys = (key: string, name: string, base: string, imageId: string, nodePids: number[], nginxPid?: number): System =>
    ({ key, name, base, imageId, nodePids, nginxPid, runs: { get: [], list: [] } });
  const sqliteSys = sys('sqlite', 'Outpost SQLite, 1 node', sqlite.url, sqliteId, [sqlite.pid]);
  const pgSys = sys('pg', 'Outpost PostgreSQL, 1 node', nodeA.url, pgId, [nodeA.pid]);
  const pgOneLb = sys('pg-lb-1', 'Outpost PostgreSQL, 1 node behind nginx', balancer.urls.one, pgId, [nodeA.pid], balancer.pid);
  const pgTwoLb = sys('pg-lb-2', 'Outpost PostgreSQL, 2 nodes behind nginx', balancer.urls.two, pgId, [nodeA.pid, nodeB.pid], balancer.pid);
  const systems = [sqliteSys, pgSys, pgOneLb, pgTwoLb, ...(glance === undefined ? [] : [glance])];
  for (const s of systems) await check(s, opts.catalog);

  const meter = new Meter(ticks, pgPid);
  loads.note('before warm-up');
  log('warm-up: one untimed 2 s wrk run per system and request');
  for (const s of systems) for (const e of ENDPOINTS) await meter.run(s, e, 2, undefined);
  loads.note('before the rounds');
  for (let round = 0; round < opts.rounds; round++) {
    const label = `${round + 1}/${opts.rounds}`;
    for (const e of round % 2 === 0 ? ENDPOINTS : [...ENDPOINTS].reverse()) {
      for (const s of rotate(systems, round)) await meter.run(s, e, opts.wrkSeconds, label);
    }
  }
  loads.note('at end');
  const pgStillUp = async () => {
    if (pgFailure !== undefined) throw new Error(`${pgFailure}: the figures of this run are void`);
    if (pgPid !== undefined && await postmasterPid(admin) !== pgPid) throw new Error('PostgreSQL was restarted during the run (its postmaster PID changed): the figures of this run are void');
  };
  await pgStillUp();

  // Why PostgreSQL costs what it costs: its transactions per request (each at least one round trip).
  const TX_REQUESTS = 500;
  log(`counting PostgreSQL transactions per request (${TX_REQUESTS} requests one at a time to node A)`);
  const txPerRequest: Record<Endpoint, number> = {
    get: await transactionsPerRequest(admin, db, `${nodeA.url}/v2/images/${pgId}`, TX_REQUESTS),
    list: await transactionsPerRequest(admin, db, `${nodeA.url}/v2/images?limit=${LIST_LIMIT}`, TX_REQUESTS),
  };
  const txNote = `PostgreSQL transactions per request (pg_stat_database's xact_commit + xact_rollback of the benchmark's database over ${TX_REQUESTS} requests sent one at a time to node A, ` +
    `after the rounds; includes the two idle nodes' heartbeats meanwhile): ${ENDPOINTS.map((e) => `${ENDPOINT_LABEL[e]} ${fmt(txPerRequest[e], 2)}`).join(', ')}. ` +
    'A statement outside a transaction counts as one; each is at least one round trip between the node and PostgreSQL.';
  log(txNote);
  await pgStillUp();
  const wallS = (Date.now() - started) / 1000;

  // Ratios: PG/SQLite, PG/Glance, SQLite/Glance (each node measured directly); two nodes against
  // one (both behind the same nginx); and what the balancer costs one node.
  const rps = (s: System, e: Endpoint) => seriesOf(s.runs[e], (r) => r.rps);
  const glanceRef = (e: Endpoint) => glance === undefined ? { label: 'Glance', missing: glanceMissing! } : { label: 'Glance', series: rps(glance, e) };
  const rows: Row[] = [];
  for (const e of ENDPOINTS) {
    const m = `${ENDPOINT_LABEL[e]}, req/s`;
    rows.push(
      compareRow({ measure: `${m}: PostgreSQL / SQLite (1 node each)`, subject: rps(pgSys, e), reference: { label: 'SQLite', series: rps(sqliteSys, e) } }),
      compareRow({ measure: `${m}: PostgreSQL (1 node) / Glance`, subject: rps(pgSys, e), reference: glanceRef(e) }),
      compareRow({ measure: `${m}: SQLite (1 node) / Glance`, subject: rps(sqliteSys, e), reference: glanceRef(e) }),
      compareRow({ measure: `${m}: PostgreSQL 2 nodes / 1 node (both behind nginx)`, subject: rps(pgTwoLb, e), reference: { label: '1 node behind nginx', series: rps(pgOneLb, e) } }),
      compareRow({ measure: `${m}: PostgreSQL 1 node behind nginx / direct (the balancer's cost)`, subject: rps(pgOneLb, e), reference: { label: '1 node direct', series: rps(pgSys, e) } }),
    );
  }
  const missing = rows.filter((r) => r.missing !== undefined);
  const end = missing.length === 0
    ? { code: outcome(rows).code, message: 'No targets: ratios only, every reference measured in this run.' }
    : { code: EXIT_NOT_MEASURED, message: `NOT MEASURED: ${[...new Set(missing.map((r) => r.missing))].join('; ')}: its ratios are not given; exit code ${EXIT_NOT_MEASURED}.` };
  const cells = rows.map(rowCells);

  // Medians per system and request, and where the CPU went.
  const perSystem = markdownTable(
    ['System', 'Request', 'req/s', 'p50 ms', 'p99 ms', 'Load (1 min)'],
    systems.flatMap((s) => ENDPOINTS.map((e) => [
      s.name, ENDPOINT_LABEL[e], fmtSpread(s.runs[e].map((r) => r.rps)), fmtSpread(s.runs[e].map((r) => r.p50ms), two),
      fmtSpread(s.runs[e].map((r) => r.p99ms), two), fmtLoad(s.runs[e].map((r) => r.load)),
    ])),
  );
  const med = (runs: Run[], f: (r: Run) => number) => two(median(runs.map(f)));
  const cpuTable = markdownTable(
    ['System', 'Request', 'Server (Outpost nodes or Glance)', 'nginx', 'PostgreSQL', 'Whole machine', 'Server CPU µs per request'],
    systems.flatMap((s) => ENDPOINTS.map((e) => {
      const runs = s.runs[e];
      const server = s.nodePids.length === 1
        ? med(runs, (r) => r.cores.nodes[0])
        : `${med(runs, (r) => r.cores.nodes.reduce((a, b) => a + b, 0))} (${s.nodePids.map((_, i) => med(runs, (r) => r.cores.nodes[i])).join(' + ')})`;
      return [s.name, ENDPOINT_LABEL[e], server, s.nginxPid === undefined ? '—' : med(runs, (r) => r.cores.nginx),
        med(runs, (r) => r.cores.postgres), med(runs, (r) => r.cores.machine), fmt(median(runs.map((r) => r.serverUs)))];
    })),
  );
  const everyRun = systems.flatMap((s) => ENDPOINTS.map((e) => `- ${s.name}, ${ENDPOINT_LABEL[e]}: ${s.runs[e].map((r) =>
    `${fmt(r.rps)} req/s p50 ${two(r.p50ms)} ms p99 ${two(r.p99ms)} ms, cores ${r.cores.nodes.map((c) => c.toFixed(2)).join('+')}` +
    `${s.nginxPid === undefined ? '' : ` nginx ${r.cores.nginx.toFixed(2)}`} pg ${r.cores.postgres.toFixed(2)} all ${r.cores.machine.toFixed(2)}` +
    `${r.socketErrors ? `, socket errors ${r.socketErrors}` : ''} (load ${r.load.start.toFixed(1)}→${r.load.end.toFixed(1)})`).join('; ')}`));
  const allLoads = fmtLoad(systems.flatMap((s) => ENDPOINTS.flatMap((e) => s.runs[e].map((r) => r.load))));

  process.stdout.write(`\n${textTable(ROW_HEADER, cells)}\n\n${textTable(['System', 'Request', 'req/s', 'p50 ms', 'p99 ms', 'Load'],
    systems.flatMap((s) => ENDPOINTS.map((e) => [s.name, ENDPOINT_LABEL[e], fmtSpread(s.runs[e].map((r) => r.rps)),
      fmtSpread(s.runs[e].map((r) => r.p50ms), two), fmtSpread(s.runs[e].map((r) => r.p99ms), two), fmtLoad(s.runs[e].map((r) => r.load))])))}\n\n` +
    `${glanceNote}\n${txNote}\n${loads}\nWall time ${fmt(wallS)} s.\n${end.message}\n`);

  if (opts.docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 3, script: 'bench/backends.ts', quick: opts.quick, facts: [...facts, `PostgreSQL: a cluster at ${new URL(opts.postgresUrl).host} (${pgSettings}), the benchmark's database created in it and dropped after`], loads,
        targets: markdownTable(ROW_HEADER, cells),
        what: `${opts.rounds} round(s) of \`wrk -t${WRK_THREADS} -c${WRK_CONNS} -d${opts.wrkSeconds}s --latency\` per system and request, ` +
          `the order of the systems rotating each round, ${opts.catalog} images in every catalog (load average over all rounds ${allLoads}). Wall time of the run ${fmt(wallS)} s.`,
      }),
      glanceNote,
      '',
      end.message,
      '',
      '#### Medians per system [min–max]',
      '',
      perSystem,
      '',
      '#### Where the CPU went (cores busy during the wrk runs, medians)',
      '',
      cpuTable,
      '',
      `Cores = CPU-seconds (utime+stime from /proc, whole process trees) per second of the wrk run; the machine has ${availableParallelism()}. ` +
        '"Whole machine" is every CPU\'s busy time from /proc/stat, wrk included; what it has beyond the columns before it is wrk and anything else running. ' +
        'PostgreSQL is the whole cluster, which other work on the machine may also use.',
      '',
      txNote,
      '',
      '#### Every run',
      '',
      ...everyRun,
      '',
      '#### Method',
      '',
      '- Every server on 127.0.0.1, all running for the whole benchmark and measured in turns: three `outpost serve` processes (src/cli/site-process.ts; `--auth none`, ' +
        '`OUTPOST_LOG_LEVEL=warn`, default configuration otherwise, a fresh `--data` each): one on SQLite (its catalog in its data directory, `--store central=file:DIR`), ' +
        'two (node A, node B) on one fresh PostgreSQL database (`--database-url`), sharing `--store central=file:SHARED/central` and `--staging-path SHARED/staging`; ' +
        'Glance (glance-peer.sh --single: Debian glance-api, 2 workers, SQLite, file store, no Keystone); one nginx (`worker_processes auto`) with two `server`s ' +
        'of the same settings: one proxying to an `upstream` of node A alone, one to an `upstream` of nodes A and B (round robin; `keepalive 32`, HTTP/1.1 to the nodes).',
      `- Every catalog holds ${opts.catalog} images: ${opts.catalog - 1} queued (POST /v2/images, 4 at a time) and then one active (1 MiB uploaded), created through ` +
        'the API; the PostgreSQL nodes share theirs (created through node A). GET /v2/images/{id} asks for the active image; the list is the first page ' +
        `(\`?limit=${LIST_LIMIT}\`, default sort), checked to hold ${LIST_LIMIT} images with a next link on every system before measuring.`,
      '- Systems: "1 node" is wrk against the node itself; "behind nginx" is wrk against the balancer, so two nodes are compared with one with the balancer\'s cost on both sides ' +
        '(node B runs, idle, while node A is measured alone). PostgreSQL / SQLite, PostgreSQL / Glance and SQLite / Glance compare the nodes measured directly.',
      `- Each system and request first gets one untimed 2 s wrk run (JIT, connection pools, page cache). Then ${opts.rounds} round(s): in each, both requests ` +
        '(their order alternating by round), and for each request every system in an order that rotates each round. Figures are medians of all rounds, never the best; ' +
        'ratios are of the medians, with the spread of the per-round ratios.',
      '- Load: the 1-minute load average (os.loadavg()) at the start and end of every wrk run. CPU: /proc/PID/stat of each process tree and /proc/stat before and after each run.',
      `- wrk, nginx, the Outpost nodes, Glance and PostgreSQL all share the ${availableParallelism()} CPUs: with ${availableParallelism()} CPUs a second node cannot add a core of its own; ` +
        'the "Whole machine" column shows how many were busy.',
    ].join('\n');
    await writeDocs(opts.docs, md, SECTION);
    log(`Wrote ${opts.docs}`);
  }
  return end.code;
}

await runBench(main);
