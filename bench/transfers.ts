/**
 * Transfer benchmark (issue 12): central and an edge, each its own `outpost serve` process on
 * 127.0.0.1, the edge's parent link a FaultProxy shaped as a WAN (bandwidth and latency), and an
 * identical link for the reference downloads straight from central. Measures, in the same run:
 *
 *   1. a new version of an image the edge holds (5% of its 1 MiB blocks rewritten, two short
 *      insertions): bytes over the link per image byte, and seconds, against a plain full fetch of
 *      the same bytes over the identical link;
 *   2. a cold 1 MB range near the end of an image at the edge: seconds, against the full fetch;
 *   3. one transfer to the edge with the link reset 10 times: bytes over the link per image byte;
 *   4. with --real-pair, a real pair: one file of two versions of a package from Debian's or npm's
 *      registry (default: the Java 17 runtime image of two openjdk-17-jre-headless security
 *      updates), v1 then v2 fetched at the edge: bytes over the link per byte of v2 and seconds,
 *      against the share of v2's chunks that v1's manifest already has. When the files cannot be
 *      fetched (no registry, a version gone from the mirror) its row says "not measured".
 *
 *   npm run bench:transfers [-- --size 256MiB --rounds 3 --link-mbit 100 --rtt-ms 50 --quick --real-pair]   (see --help)
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { spawnServe, type ServeProcess } from '../src/cli/site-process.ts';
import type { ChunkManifest, ManifestChunk } from '../src/core/chunk-manifest.ts';
import { FaultProxy } from '../test-support/fault-proxy.ts';
import { api, settledCache } from './clients.ts';
import { COMMON_BENCH_OPTIONS, docsTarget, exitOnHelp, LoadNotes, machineFacts, positiveInt, runBench, type Cleanup } from './procs.ts';
import { markdownTable, resultsHead, textTable, writeDocs, type DocSection } from './report.ts';
import { compareRow, fmt, outcome, ROW_HEADER, rowCells, withLoad, type LoadSpan, type Row, type Series } from './rounds.ts';
import { createCipheriv } from 'node:crypto';
import { tmpdir } from 'node:os';

const run = promisify(execFile);
const MiB = 2 ** 20;

/**
 * The default real pair: the Java runtime image (jimage, the JDK's classes in one 123 MiB file) of
 * two security updates of Debian 12's OpenJDK 17, both on Debian's mirror (bookworm and
 * bookworm-security) when this was written. A version gone from the mirror makes the pair "not
 * measured": name another with --pair.
 */
const DEFAULT_PAIR = 'apt openjdk-17-jre-headless 17.0.19+10-1~deb12u2 17.0.21.1+2-1~deb12u1 usr/lib/jvm/java-17-openjdk-amd64/lib/modules';

const HELP = `usage: node bench/transfers.ts [options]
  --size MIB        image size in MiB (default 256; --quick 64)
  --rounds N        rounds of each measure, median of all reported (default 3; --quick 1)
  --link-mbit N     bandwidth of each link, Mbit/s (default 100)
  --rtt-ms N        round-trip time of each link, ms (default 50)
  --real-pair       also measure a real pair: one file of two versions of a package, fetched with
                    apt-get download or npm pack (the only step that leaves loopback)
  --pair SPEC       the pair, "apt|npm PACKAGE V1 V2 PATH" (PATH inside the package; default
                    "${DEFAULT_PAIR}")
  --quick           short run (and no docs unless --docs)
  --docs PATH       write results there (default docs/benchmarks.md on full runs)
  --no-docs         do not write the results file
  --tmp DIR         where the temp directory goes (default ${tmpdir()})`;

const SECTION: DocSection = {
  tag: 'bench:transfers',
  by: '`npm run bench:transfers` (bench/transfers.ts)',
  intro: '## Transfers between sites\n\nImage bytes moved to an edge by their chunk manifests, over a link shaped as a WAN, against plain full fetches over an identical link. ' +
    'Run it with `npm run bench:transfers` (256 MiB, 3 rounds) or `npm run bench:transfers -- --quick`; add `--real-pair` for a real pair of files of two versions from a package registry.',
};

/** Pseudo-random bytes, distinct per seed (AES-128-CTR of zeros). */
function bytes(size: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed, 12);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/** v1 with 5% of its 1 MiB blocks rewritten and two short insertions. */
function nextVersion(v1: Buffer, seed: number): Buffer {
  const blocks = v1.length / MiB;
  const rewrite = new Set(Array.from({ length: Math.max(1, Math.round(blocks * 0.05)) }, (_, i) => Math.floor(((i + 0.5) * blocks) / Math.max(1, Math.round(blocks * 0.05)))));
  const parts: Buffer[] = [];
  for (let b = 0; b < blocks; b++) {
    parts.push(rewrite.has(b) ? bytes(MiB, seed * 1000 + b) : v1.subarray(b * MiB, (b + 1) * MiB));
    if (b === Math.floor(blocks / 5) || b === Math.floor((3 * blocks) / 5)) parts.push(bytes(40 + b, seed * 1000 + 500 + b));
  }
  return Buffer.concat(parts);
}

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function upload(central: string, data: Buffer, name: string): Promise<string> {
  const { id } = await json<{ id: string }>(`${central}/v2/images`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, disk_format: 'raw', container_format: 'bare' }),
  });
  const res = await fetch(`${central}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
  if (res.status !== 204) throw new Error(`upload of ${name}: ${res.status} ${await res.text()}`);
  return id;
}

async function visible(site: string, id: string): Promise<void> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const res = await fetch(`${site}/v2/images/${id}`);
    if (res.status === 200 && ((await res.json()) as { status: string }).status === 'active') return;
  }
  throw new Error(`image ${id} did not reach ${site} active within 60 s`);
}

/**
 * Waits until the site runs no transfer: a cold range starts the image's fill behind it (lazy
 * boot), which would otherwise share the link, and its byte count, with the next measure.
 */
async function idle(site: string): Promise<void> {
  for (const deadline = Date.now() + 300_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    const { transfers } = await json<{ transfers: { state: string }[] }>(`${site}/outpost/v1/transfers`);
    if (transfers.every((t) => t.state !== 'running')) return;
  }
  throw new Error(`${site} still runs a transfer after 300 s`);
}

/** curl's seconds for a GET (into /dev/null), checked for the status and, with `size`, the byte count. */
async function curlSeconds(url: string, status: number, size: number, range?: string): Promise<number> {
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', ...(range === undefined ? [] : ['-H', `Range: ${range}`]), url];
  const [code, got, seconds] = (await run('curl', args)).stdout.trim().split(' ');
  if (Number(code) !== status || Number(got) !== size) throw new Error(`GET ${url}${range === undefined ? '' : ` (${range})`}: ${code}, ${got} bytes, expected ${status} with ${size}`);
  return Number(seconds);
}

interface Sample { value: number; load: LoadSpan }
const series = (samples: Sample[]): Series => ({ values: samples.map((s) => s.value), loads: samples.map((s) => s.load) });

/** One file of two versions of a package (--pair "apt|npm PACKAGE V1 V2 PATH"). */
interface RealPair {
  registry: 'apt' | 'npm';
  pkg: string;
  v1: string;
  v2: string;
  /** The file's path inside the package (inside the .deb's file tree, or under npm's package/). */
  path: string;
}

function parsePair(spec: string): RealPair {
  const [registry, pkg, v1, v2, path, ...rest] = spec.trim().split(/\s+/);
  if ((registry !== 'apt' && registry !== 'npm') || path === undefined || rest.length > 0) {
    throw new Error(`--pair must be "apt|npm PACKAGE V1 V2 PATH", not "${spec}"`);
  }
  return { registry, pkg, v1, v2, path: path.replace(/^\.?\//, '') };
}

const pairName = (p: RealPair) => `${p.path} of ${p.registry === 'apt' ? 'Debian\'s' : 'npm\'s'} ${p.pkg} ${p.v1} → ${p.v2}`;

/** What a failed command said, in one line (its first error line, warnings left out). */
function why(e: unknown): string {
  const err = e as Error & { stderr?: string };
  const lines = `${err.stderr ?? ''}\n${err.message}`.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('W:') && !l.startsWith('npm warn'));
  return lines.find((l) => l.startsWith('E:') || l.startsWith('npm error')) ?? lines[0] ?? String(e);
}

/**
 * The pair's file at `version` as `out`, fetched with the registry's ordinary client (apt-get
 * download, npm pack) into `dir` and taken out of the package, which is then removed.
 */
async function fetchPairFile(pair: RealPair, version: string, dir: string, out: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (pair.registry === 'apt') await run('apt-get', ['download', `${pair.pkg}=${version}`], { cwd: dir, timeout: 10 * 60_000 });
  else await run('npm', ['pack', '--silent', `${pair.pkg}@${version}`], { cwd: dir, timeout: 10 * 60_000 });
  const got = (await readdir(dir)).filter((f) => f.endsWith(pair.registry === 'apt' ? '.deb' : '.tgz'));
  if (got.length !== 1) throw new Error(`${pair.registry === 'apt' ? 'apt-get download' : 'npm pack'} ${pair.pkg} ${version} left ${got.length} package files`);
  const script = pair.registry === 'apt'
    ? 'set -o pipefail; dpkg-deb --fsys-tarfile "$1" | tar -xOf - "./$2" > "$3"'
    : 'tar -xzOf "$1" "package/$2" > "$3"';
  await run('bash', ['-c', script, 'extract', join(dir, got[0]), pair.path, out]);
  if ((await stat(out)).size === 0) throw new Error(`${pair.path} is empty or missing in ${got[0]}`);
  await rm(dir, { recursive: true, force: true });
}

/** GET /outpost/v1/images/{id}/manifest at `site`. */
const manifestAt = (site: string, id: string) => json<ChunkManifest>(`${site}/outpost/v1/images/${id}/manifest`);

/** v2's chunks measured against v1's manifest: how many v1 has, and the bytes an edge holding v1 must still fetch. */
function chunkReuse(m1: ChunkManifest, m2: ChunkManifest): { chunks: number; held: number; heldBytes: number; toFetchBytes: number } {
  const key = (c: ManifestChunk) => `${c.sha256}/${c.length}`;
  const inV1 = new Set(m1.chunks.map(key));
  const held = m2.chunks.filter((c) => inV1.has(key(c)));
  const sum = (cs: ManifestChunk[]) => cs.reduce((n, c) => n + c.length, 0);
  return { chunks: m2.chunks.length, held: held.length, heldBytes: sum(held), toFetchBytes: sum(m2.chunks.filter((c) => !inV1.has(key(c)) && c.zero !== true)) };
}

interface Sites { central: string; edge: string; wan: FaultProxy; direct: FaultProxy }

/** The real pair's rows and its line of the method, measured or not ("not measured" and why). */
interface PairResult { rows: Row[]; method: string; what: string }

/**
 * The real pair (--real-pair): v1 and v2 uploaded at central, v1 fetched at the edge (over its
 * link), then v2 `rounds` times, the edge's cached v2 evicted between rounds so that each round
 * starts from v1 alone; and v2 fetched whole over the identical link each round (the reference).
 */
async function measureRealPair(pair: RealPair, sites: Sites, tmp: string, rounds: number): Promise<PairResult> {
  const { central, edge, wan, direct } = sites;
  const name = pairName(pair);
  const files = [join(tmp, 'pair-v1'), join(tmp, 'pair-v2')];
  try {
    await fetchPairFile(pair, pair.v1, join(tmp, 'pair-pkg-v1'), files[0]);
    await fetchPairFile(pair, pair.v2, join(tmp, 'pair-pkg-v2'), files[1]);
  } catch (e) {
    const missing = `${pair.registry === 'apt' ? 'apt-get download' : 'npm pack'} failed: ${why(e)}`;
    process.stderr.write(`Real pair (${name}) not measured: ${missing}\n`);
    const row = compareRow({ measure: 'Real pair: v2 at an edge holding v1, bytes over the link per byte of v2', subject: { values: [], loads: [] }, reference: { label: name, missing } });
    return { rows: [{ ...row, subject: 'not measured' }], what: `real pair ${name} not measured`, method: `- Real pair (${name}): not measured, ${missing}.` };
  }
  const [v1, v2] = await Promise.all(files.map((f) => readFile(f)));
  const mib = (b: Buffer) => `${fmt(b.length / MiB, 1)} MiB`;
  process.stderr.write(`Real pair: ${name}: v1 ${v1.length} bytes, v2 ${v2.length} bytes\n`);
  const [id1, id2] = [await upload(central, v1, 'pair-v1'), await upload(central, v2, 'pair-v2')];
  const reuse = chunkReuse(await manifestAt(central, id1), await manifestAt(central, id2));
  await visible(edge, id1);
  await visible(edge, id2);
  wan.resetStats();
  await curlSeconds(`${edge}/v2/images/${id1}/file`, 200, v1.length);
  const firstBytes = wan.stats().toClient.forwarded / v1.length;
  await settledCache(edge);
  process.stderr.write(`The edge holds the pair's v1 (${fmt(firstBytes, 3)}× its bytes over the link); ${reuse.held} of v2's ${reuse.chunks} chunks are in v1's manifest\n`);

  const deltaBytes: Sample[] = [];
  const deltaSeconds: Sample[] = [];
  const fullSeconds: Sample[] = [];
  for (let round = 1; round <= rounds; round++) {
    wan.resetStats();
    const delta = await withLoad(() => curlSeconds(`${edge}/v2/images/${id2}/file`, 200, v2.length));
    deltaSeconds.push({ value: delta.value, load: delta.load });
    deltaBytes.push({ value: wan.stats().toClient.forwarded / v2.length, load: delta.load });
    const full = await withLoad(() => curlSeconds(`${direct.url}/v2/images/${id2}/file`, 200, v2.length));
    fullSeconds.push({ value: full.value, load: full.load });
    process.stderr.write(`real pair round ${round}: v2 at the edge ${delta.value.toFixed(2)} s, ${fmt(deltaBytes.at(-1)!.value * 100, 1)}% of it over the link; full fetch ${full.value.toFixed(2)} s\n`);
    await settledCache(edge);
    if (round < rounds) await api(edge, 'DELETE', `/v2/cache/${id2}`);
  }

  const pct = (n: number) => `${fmt(n * 100, 1)}%`;
  const toFetch = reuse.toFetchBytes / v2.length;
  return {
    rows: [
      compareRow({
        measure: 'Real pair: v2 at an edge holding v1, bytes over the link per byte of v2', subject: series(deltaBytes), format: (n) => fmt(n, 3),
        reference: { label: 'bytes of v2\'s chunks absent from v1\'s manifest, per byte of v2', series: { values: [toFetch], loads: [] } },
      }),
      compareRow({ measure: 'Real pair: v2 at an edge holding v1, s', subject: series(deltaSeconds), reference: { label: 'plain full fetch over an identical link', series: series(fullSeconds) }, format: (n) => fmt(n, 2) }),
      compareRow({ measure: 'Real pair: v2\'s chunks already in v1\'s manifest', subject: { values: [reuse.held / reuse.chunks], loads: [] }, format: pct }),
    ],
    what: `real pair ${name} (v1 ${mib(v1)}, v2 ${mib(v2)})`,
    method: `- Real pair: ${name}, fetched with ${pair.registry === 'apt' ? '`apt-get download`' : '`npm pack`'} (v1 ${v1.length} bytes, v2 ${v2.length} bytes), uploaded at central as two images. ` +
      `By central's manifests (GET /outpost/v1/images/{id}/manifest), ${reuse.held} of v2's ${reuse.chunks} chunks (${pct(reuse.held / reuse.chunks)}; ${pct(reuse.heldBytes / v2.length)} of its bytes) are in v1's manifest. ` +
      `The edge fetched v1 first (${fmt(firstBytes, 3)}× its bytes over the link), then v2 in each round, its cached v2 evicted (DELETE /v2/cache/{id}) between rounds so that it held v1 alone; ` +
      'the bytes its link carried are counted, and v2 is fetched whole through the identical link (the reference).',
  };
}

async function main(cleanup: Cleanup): Promise<number> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' }, rounds: { type: 'string' }, 'link-mbit': { type: 'string', default: '100' }, 'rtt-ms': { type: 'string', default: '50' },
      'real-pair': { type: 'boolean', default: false }, pair: { type: 'string', default: DEFAULT_PAIR },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const size = positiveInt('size', values.size, quick ? 64 : 256) * MiB;
  const rounds = positiveInt('rounds', values.rounds, quick ? 1 : 3);
  const bytesPerSecond = (positiveInt('link-mbit', values['link-mbit'], 100) * 1e6) / 8;
  const rttMs = positiveInt('rtt-ms', values['rtt-ms'], 50);
  const pair = values['real-pair'] ? parsePair(values.pair) : undefined;
  const docs = docsTarget(values);
  const facts = await machineFacts(['curl']);
  process.stderr.write(`${facts.join('\n')}\n`);
  const loads = new LoadNotes();

  const tmp = await mkdtemp(join(values.tmp, 'outpost-transfers-'));
  cleanup.add('remove temp dir', () => rm(tmp, { recursive: true, force: true }));
  const env = { ...process.env, OUTPOST_LOG_LEVEL: 'warn', OUTPOST_AUTH: 'none', OUTPOST_PARENT_TIMEOUT_MS: '10000' };
  const stopLater = (p: ServeProcess) => cleanup.add('stop a site', async () => { await p.stop(); });
  const central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(tmp, 'central')], { env });
  stopLater(central);
  const target = { host: '127.0.0.1', port: Number(new URL(central.url).port) };
  const shape = (p: FaultProxy) => p.bandwidth(bytesPerSecond).latency(rttMs / 2);
  const wan = shape(await FaultProxy.start({ target }));
  const direct = shape(await FaultProxy.start({ target }));
  cleanup.add('close the links', async () => { await wan.close(); await direct.close(); });
  const edge = await spawnServe(['--role', 'edge', '--site', 'edge-1', '--listen', '127.0.0.1:0', '--data', join(tmp, 'edge'), '--parent', wan.url], { env });
  stopLater(edge);
  const link = `${fmt(bytesPerSecond * 8 / 1e6)} Mbit/s, ${rttMs} ms round trip`;
  process.stderr.write(`central ${central.url}, edge ${edge.url} (parent over a ${link} link), reference link ${direct.url}\n`);

  const v1 = bytes(size, 1);
  const held = await upload(central.url, v1, 'v1');
  await visible(edge.url, held);
  await curlSeconds(`${edge.url}/v2/images/${held}/file`, 200, size);
  process.stderr.write(`The edge holds v1 (${size / MiB} MiB)\n`);

  const deltaBytes: Sample[] = [];
  const deltaSeconds: Sample[] = [];
  const fullSeconds: Sample[] = [];
  const rangeSeconds: Sample[] = [];
  const cutBytes: Sample[] = [];
  loads.note('before the rounds');
  for (let round = 1; round <= rounds; round++) {
    const v2 = nextVersion(v1, 100 + round);
    const id = await upload(central.url, v2, `v2-${round}`);
    await visible(edge.url, id);
    await idle(edge.url);
    wan.resetStats();
    const delta = await withLoad(() => curlSeconds(`${edge.url}/v2/images/${id}/file`, 200, v2.length));
    deltaSeconds.push({ value: delta.value, load: delta.load });
    deltaBytes.push({ value: wan.stats().toClient.forwarded / v2.length, load: delta.load });
    const full = await withLoad(() => curlSeconds(`${direct.url}/v2/images/${id}/file`, 200, v2.length));
    fullSeconds.push({ value: full.value, load: full.load });
    process.stderr.write(`round ${round}: v2 at the edge ${delta.value.toFixed(2)} s, ${fmt(deltaBytes.at(-1)!.value * 100, 1)}% of it over the link; full fetch ${full.value.toFixed(2)} s\n`);

    const cold = await upload(central.url, bytes(size, 200 + round), `cold-${round}`);
    await visible(edge.url, cold);
    const range = await withLoad(() => curlSeconds(`${edge.url}/v2/images/${cold}/file`, 206, MiB, `bytes=${size - 2 * MiB}-${size - MiB - 1}`));
    rangeSeconds.push({ value: range.value, load: range.load });
    process.stderr.write(`round ${round}: a cold 1 MiB range at the edge ${range.value.toFixed(2)} s\n`);

    const cut = await upload(central.url, bytes(size, 300 + round), `cut-${round}`);
    await visible(edge.url, cut);
    await idle(edge.url);
    wan.resetStats();
    const cuts = await withLoad(async () => {
      const done = curlSeconds(`${edge.url}/v2/images/${cut}/file`, 200, size);
      // A transfer that fails ends the cuts (and is reported by `return done`), rather than leaving them waiting.
      let over = false;
      done.then(() => { over = true; }, () => { over = true; });
      for (let k = 1; k <= 10 && !over; k++) {
        while (!over && wan.stats().toClient.forwarded < (k * size) / 11) await new Promise((r) => setTimeout(r, 20));
        if (!over) wan.cut();
      }
      return done;
    });
    cutBytes.push({ value: wan.stats().toClient.forwarded / size, load: cuts.load });
    process.stderr.write(`round ${round}: 10 cuts, ${fmt(cutBytes.at(-1)!.value, 3)}× the image over the link in ${cuts.value.toFixed(1)} s\n`);
  }
  let realPair: PairResult | undefined;
  if (pair !== undefined) {
    loads.note('before the real pair');
    realPair = await measureRealPair(pair, { central: central.url, edge: edge.url, wan, direct }, tmp, rounds);
  }
  loads.note('at end');

  const two = (n: number) => fmt(n, 2);
  const rows = [
    compareRow({ measure: 'New version of a held image: bytes over the link per image byte', subject: series(deltaBytes), format: (n) => fmt(n, 3), target: { text: '≤ 0.10', met: (x) => x <= 0.1 } }),
    compareRow({ measure: 'New version of a held image, s', subject: series(deltaSeconds), reference: { label: 'plain full fetch over an identical link', series: series(fullSeconds) }, format: two }),
    compareRow({ measure: 'Cold 1 MiB range near the end, s', subject: series(rangeSeconds), reference: { label: 'plain full fetch over an identical link', series: series(fullSeconds) }, format: two }),
    compareRow({ measure: '10 cuts during one transfer: bytes over the link per image byte', subject: series(cutBytes), format: (n) => fmt(n, 3), target: { text: '≤ 1.10', met: (x) => x <= 1.1 } }),
    ...(realPair?.rows ?? []),
  ];
  const end = outcome(rows);
  const cells = rows.map(rowCells);
  process.stdout.write(`\n${textTable(ROW_HEADER, cells)}\n\n${loads}\n${end.message}\n`);
  if (docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 3, script: 'bench/transfers.ts', quick, facts, loads, targets: markdownTable(ROW_HEADER, cells),
        what: `images of ${size / MiB} MiB (random), ${rounds} round(s)${realPair === undefined ? '' : `; ${realPair.what}`}; each link ${link}.`,
      }),
      end.message,
      '',
      '#### Method',
      '',
      `- Two \`outpost serve\` processes on 127.0.0.1, fresh data directories, \`--auth none\`: central, and an edge whose \`--parent\` is a FaultProxy (test-support/fault-proxy.ts, in the benchmark's process) shaped to ${link}; the reference downloads go to central through a second, identical proxy.`,
      '- The edge first holds v1 (downloaded once). Each round: a new version (5% of v1\'s 1 MiB blocks rewritten, two short insertions) is uploaded at central and downloaded at the edge with curl; the bytes the edge\'s link carried are counted; the same image is then fetched whole through the identical link (the reference).',
      '- Cold range: a new image, never at the edge; `curl -H "Range: bytes=…"` for the 1 MiB one MiB before its end, at the edge.',
      '- Cuts: a new image downloaded at the edge while the link is reset (every connection) each time another eleventh of the image has crossed it: 10 resets.',
      ...(realPair === undefined ? [] : [realPair.method]),
    ].join('\n');
    await writeDocs(docs, md, SECTION);
    process.stderr.write(`Wrote ${docs}\n`);
  }
  return end.code;
}

await runBench(main);
