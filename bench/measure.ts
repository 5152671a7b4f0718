import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createImage, curlDownload, curlUpload, deleteImage, fillCatalog, getImage, runWrk, type WrkResult } from './clients.ts';
import { execFileP, treeCpuSeconds, type Server } from './procs.ts';
import { withLoad, type LoadSpan } from './rounds.ts';

export interface TestFile {
  path: string;
  size: number;
  md5: string;
  sha512: string;
}

/** Writes `size` random bytes to `path` (once per run) and returns their md5/sha512. */
export async function makeTestFile(path: string, size: number): Promise<TestFile> {
  const md5 = createHash('md5');
  const sha512 = createHash('sha512');
  const buf = Buffer.allocUnsafe(8 << 20);
  const fh = await open(path, 'wx');
  try {
    for (let done = 0; done < size;) {
      const n = Math.min(buf.length, size - done);
      const chunk = buf.subarray(0, n);
      randomFillSync(chunk);
      md5.update(chunk);
      sha512.update(chunk);
      await fh.write(chunk, 0, n);
      done += n;
    }
  } finally {
    await fh.close();
  }
  return { path, size, md5: md5.digest('hex'), sha512: sha512.digest('hex') };
}

/** One timed transfer: throughput in MB/s (10^6 bytes), the server's CPU seconds (NaN: none) and the load meanwhile. */
export interface Sample {
  mbps: number;
  cpuS: number;
  load: LoadSpan;
}

/** What was measured on one system in this run, round by round. */
export interface SystemResult {
  name: string;
  upload?: Sample[];
  download?: Sample[];
  get?: (WrkResult & { load: LoadSpan })[];
  note?: string;
}

export interface RunPlan {
  runs: number;
  wrkRuns: number;
  wrkSeconds: number;
  wrkThreads: number;
  wrkConns: number;
  catalog: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`${s}\n`);
const mb = (size: number, seconds: number) => size / seconds / 1e6;

/** The systems in a different order each round, so none always goes first (or last). */
export function rotate<T>(items: T[], round: number): T[] {
  const k = items.length === 0 ? 0 : round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Runs one timed transfer, noting the server's CPU seconds and the load average around it. */
async function cpuAround<T>(pid: number | undefined, fn: () => Promise<T>): Promise<{ value: T; cpuS: number; load: LoadSpan }> {
  const before = pid === undefined ? 0 : treeCpuSeconds(pid);
  const { value, load } = await withLoad(fn);
  if (pid === undefined) return { value, cpuS: Number.NaN, load };
  await sleep(200); // let the server finish whatever follows its answer
  return { value, cpuS: treeCpuSeconds(pid) - before, load };
}

/** A Glance-API server under test (Outpost or Glance) and what was measured on it. */
export class ApiSystem {
  readonly server: Server;
  readonly result: SystemResult;
  /** The image kept after the last timed upload: downloads and GETs use it. */
  kept = '';

  constructor(server: Server) {
    this.server = server;
    this.result = { name: server.name, upload: [], download: [], get: [] };
  }

  /** Fills the catalog and runs one untimed upload (lazy start-up, page cache steady state). */
  async prepare(file: TestFile, plan: RunPlan): Promise<void> {
    log(`${this.server.name}: filling the catalog with ${plan.catalog - 1} images, one warm-up upload`);
    await fillCatalog(this.server.url, Math.max(0, plan.catalog - 1));
    const warm = await createImage(this.server.url, 'bench-warm-up');
    await curlUpload(this.server.url, warm, file.path);
    await deleteImage(this.server.url, warm);
  }

  /**
   * One timed upload to a new image (`sync` first, so earlier dirty pages do not weigh on it),
   * checked (active, size, md5, sha512); the image is deleted unless `keep`.
   */
  async upload(file: TestFile, label: string, keep: boolean): Promise<void> {
    const base = this.server.url;
    const id = await createImage(base, `bench-upload-${label}`);
    await execFileP('sync');
    const { value: seconds, cpuS, load } = await cpuAround(this.server.pid, () => curlUpload(base, id, file.path));
    const image = await getImage(base, id);
    if (image.status !== 'active' || image.size !== file.size || image.checksum !== file.md5 || (image.os_hash_value ?? file.sha512) !== file.sha512) {
      throw new Error(`${this.server.name}: uploaded image ${id} is ${JSON.stringify({ status: image.status, size: image.size, checksum: image.checksum, os_hash_value: image.os_hash_value })}`);
    }
    this.result.upload!.push({ mbps: mb(file.size, seconds), cpuS, load });
    log(`  ${this.server.name} upload ${label}: ${mb(file.size, seconds).toFixed(0)} MB/s, server ${cpuS.toFixed(2)} CPU-s, load ${load.start.toFixed(2)} → ${load.end.toFixed(2)}`);
    if (keep) this.kept = id;
    else await deleteImage(base, id);
  }

  get downloadUrl(): string {
    return `${this.server.url}/v2/images/${this.kept}/file`;
  }

  /** One wrk run on GET /v2/images/{kept} (`seconds` long; recorded unless a warm-up). */
  async wrk(plan: RunPlan, seconds: number, label: string | undefined): Promise<void> {
    const { value: r, load } = await withLoad(() => runWrk(`${this.server.url}/v2/images/${this.kept}`, plan.wrkThreads, plan.wrkConns, seconds));
    if (r.non2xx > 0) throw new Error(`${this.server.name}: wrk saw ${r.non2xx} non-2xx answers`);
    if (label === undefined) return;
    this.result.get!.push({ ...r, load });
    log(`  ${this.server.name} GET ${label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50ms.toFixed(2)} ms, p99 ${r.p99ms.toFixed(2)} ms${r.socketErrors ? `, socket errors ${r.socketErrors}` : ''}, load ${load.start.toFixed(2)} → ${load.end.toFixed(2)}`);
  }
}

/** Something a 1 GiB file can be read from: a server URL (curl -o /dev/null) or `cat`. */
export interface DownloadTarget {
  result: SystemResult;
  /** Server charged with the CPU time; undefined: not measured (cat, nginx). */
  pid: number | undefined;
  /** Seconds to read the whole file once. */
  read(): Promise<number>;
}

/** `pid` undefined: the server's CPU is not measured (nginx: sendfile's copy is charged to the client on loopback). */
export function httpTarget(result: SystemResult, pid: number | undefined, url: () => string, file: TestFile): DownloadTarget {
  return { result, pid, read: () => curlDownload(url(), file.size) };
}

/** `cat FILE > /dev/null` with the file in the page cache: the ceiling of reading it. */
export function catTarget(result: SystemResult, file: TestFile): DownloadTarget {
  return {
    result,
    pid: undefined,
    read: () => new Promise<number>((resolve, reject) => {
      const start = process.hrtime.bigint();
      const child = spawn('cat', [file.path], { stdio: ['ignore', 'ignore', 'inherit'] });
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`cat exited with ${code}`));
        resolve(Number(process.hrtime.bigint() - start) / 1e9);
      });
    }),
  };
}

/** One untimed read of each target, then `runs` rounds of one timed read each, rotating the order. */
export async function measureDownloads(targets: DownloadTarget[], file: TestFile, runs: number): Promise<void> {
  for (const t of targets) await t.read();
  for (let round = 0; round < runs; round++) {
    for (const t of rotate(targets, round)) {
      const { value: seconds, cpuS, load } = await cpuAround(t.pid, () => t.read());
      (t.result.download ??= []).push({ mbps: mb(file.size, seconds), cpuS, load });
      log(`  ${t.result.name} download ${round + 1}/${runs}: ${mb(file.size, seconds).toFixed(0)} MB/s${Number.isFinite(cpuS) ? `, server ${cpuS.toFixed(2)} CPU-s` : ''}, load ${load.start.toFixed(2)} → ${load.end.toFixed(2)}`);
    }
  }
}
