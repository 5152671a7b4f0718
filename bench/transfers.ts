/**
 * Transfer benchmark (issue 12): central and an edge, each its own `outpost serve` process on
 * 127.0.0.1, the edge's parent link a FaultProxy shaped as a WAN (bandwidth and latency), and an
 * identical link for the reference downloads straight from central. Measures, in the same run:
 *
 *   1. a new version of an image the edge holds (5% of its 1 MiB blocks rewritten, two short
 *      insertions): bytes over the link per image byte, and seconds, against a plain full fetch of
 *      the same bytes over the identical link;
 *   2. a cold 1 MB range near the end of an image at the edge: seconds, against the full fetch;
 *   3. one transfer to the edge with the link reset 10 times: bytes over the link per image byte.
 *
 *   npm run bench:transfers [-- --size 256MiB --rounds 3 --link-mbit 100 --rtt-ms 50 --quick]   (see --help)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { spawnServe, type ServeProcess } from '../src/cli/site-process.ts';
import { FaultProxy } from '../test-support/fault-proxy.ts';
import { COMMON_BENCH_OPTIONS, docsTarget, exitOnHelp, LoadNotes, machineFacts, positiveInt, runBench, type Cleanup } from './procs.ts';
import { markdownTable, resultsHead, textTable, writeDocs, type DocSection } from './report.ts';
import { compareRow, fmt, outcome, ROW_HEADER, rowCells, withLoad, type LoadSpan, type Series } from './rounds.ts';
import { createCipheriv } from 'node:crypto';
import { tmpdir } from 'node:os';

const run = promisify(execFile);
const MiB = 2 ** 20;
const HELP = `usage: node bench/transfers.ts [options]
  --size MIB        image size in MiB (default 256; --quick 64)
  --rounds N        rounds of each measure, median of all reported (default 3; --quick 1)
  --link-mbit N     bandwidth of each link, Mbit/s (default 100)
  --rtt-ms N        round-trip time of each link, ms (default 50)
  --quick           short run (and no docs unless --docs)
  --docs PATH       write results there (default docs/benchmarks.md on full runs)
  --no-docs         do not write the results file
  --tmp DIR         where the temp directory goes (default ${tmpdir()})`;

const SECTION: DocSection = {
  tag: 'bench:transfers',
  by: '`npm run bench:transfers` (bench/transfers.ts)',
  intro: '## Transfers between sites\n\nImage bytes moved to an edge by their chunk manifests, over a link shaped as a WAN, against plain full fetches over an identical link. ' +
    'Run it with `npm run bench:transfers` (256 MiB, 3 rounds) or `npm run bench:transfers -- --quick`.',
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

/** curl's seconds for a GET (into /dev/null), checked for the status and, with `size`, the byte count. */
async function curlSeconds(url: string, status: number, size: number, range?: string): Promise<number> {
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', ...(range === undefined ? [] : ['-H', `Range: ${range}`]), url];
  const [code, got, seconds] = (await run('curl', args)).stdout.trim().split(' ');
  if (Number(code) !== status || Number(got) !== size) throw new Error(`GET ${url}${range === undefined ? '' : ` (${range})`}: ${code}, ${got} bytes, expected ${status} with ${size}`);
  return Number(seconds);
}

interface Sample { value: number; load: LoadSpan }
const series = (samples: Sample[]): Series => ({ values: samples.map((s) => s.value), loads: samples.map((s) => s.load) });

async function main(cleanup: Cleanup): Promise<number> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' }, rounds: { type: 'string' }, 'link-mbit': { type: 'string', default: '100' }, 'rtt-ms': { type: 'string', default: '50' },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const size = positiveInt('size', values.size, quick ? 64 : 256) * MiB;
  const rounds = positiveInt('rounds', values.rounds, quick ? 1 : 3);
  const bytesPerSecond = (positiveInt('link-mbit', values['link-mbit'], 100) * 1e6) / 8;
  const rttMs = positiveInt('rtt-ms', values['rtt-ms'], 50);
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
    wan.resetStats();
    const cuts = await withLoad(async () => {
      const done = curlSeconds(`${edge.url}/v2/images/${cut}/file`, 200, size);
      for (let k = 1; k <= 10; k++) {
        while (wan.stats().toClient.forwarded < (k * size) / 11) await new Promise((r) => setTimeout(r, 20));
        wan.cut();
      }
      return done;
    });
    cutBytes.push({ value: wan.stats().toClient.forwarded / size, load: cuts.load });
    process.stderr.write(`round ${round}: 10 cuts, ${fmt(cutBytes.at(-1)!.value, 3)}× the image over the link in ${cuts.value.toFixed(1)} s\n`);
  }
  loads.note('at end');

  const two = (n: number) => fmt(n, 2);
  const rows = [
    compareRow({ measure: 'New version of a held image: bytes over the link per image byte', subject: series(deltaBytes), format: (n) => fmt(n, 3), target: { text: '≤ 0.10', met: (x) => x <= 0.1 } }),
    compareRow({ measure: 'New version of a held image, s', subject: series(deltaSeconds), reference: { label: 'plain full fetch over an identical link', series: series(fullSeconds) }, format: two }),
    compareRow({ measure: 'Cold 1 MiB range near the end, s', subject: series(rangeSeconds), reference: { label: 'plain full fetch over an identical link', series: series(fullSeconds) }, format: two }),
    compareRow({ measure: '10 cuts during one transfer: bytes over the link per image byte', subject: series(cutBytes), format: (n) => fmt(n, 3), target: { text: '≤ 1.10', met: (x) => x <= 1.1 } }),
  ];
  const end = outcome(rows);
  const cells = rows.map(rowCells);
  process.stdout.write(`\n${textTable(ROW_HEADER, cells)}\n\n${loads}\n${end.message}\n`);
  if (docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 3, script: 'bench/transfers.ts', quick, facts, loads, targets: markdownTable(ROW_HEADER, cells),
        what: `images of ${size / MiB} MiB (random), ${rounds} round(s); each link ${link}.`,
      }),
      end.message,
      '',
      '#### Method',
      '',
      `- Two \`outpost serve\` processes on 127.0.0.1, fresh data directories, \`--auth none\`: central, and an edge whose \`--parent\` is a FaultProxy (test-support/fault-proxy.ts, in the benchmark's process) shaped to ${link}; the reference downloads go to central through a second, identical proxy.`,
      '- The edge first holds v1 (downloaded once). Each round: a new version (5% of v1\'s 1 MiB blocks rewritten, two short insertions) is uploaded at central and downloaded at the edge with curl; the bytes the edge\'s link carried are counted; the same image is then fetched whole through the identical link (the reference).',
      '- Cold range: a new image, never at the edge; `curl -H "Range: bytes=…"` for the 1 MiB one MiB before its end, at the edge.',
      '- Cuts: a new image downloaded at the edge while the link is reset (every connection) each time another eleventh of the image has crossed it: 10 resets.',
    ].join('\n');
    await writeDocs(docs, md, SECTION);
    process.stderr.write(`Wrote ${docs}\n`);
  }
  return end.code;
}

await runBench(main);
