/**
 * Image stores benchmark (issue 14): upload and download MB/s through Outpost on its default file
 * store and on an S3 store (Swift's s3api), in one run on this machine, all on loopback, with the
 * same file and the same client (curl) for both, each beside a reference measured in the same run:
 *
 *   S3 store     the same bytes put to and got from the same S3 server directly, with the AWS SDK
 *                Outpost's S3 driver uses (multipart in the same parts; GetObject read and discarded)
 *   file store   `dd conv=fdatasync` of the file to the same disk (upload); nginx sendfile (download)
 *
 * in rounds that rotate the order of the systems. Needs an S3 server on 127.0.0.1:
 *
 *   eval "$(scripts/test-servers.sh start)"; npm run bench:stores [-- --quick]   (see --help)
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteBucketCommand,
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client, UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { partSizeFor } from '../src/storage/drivers/s3-blob-driver.ts';
import { deleteImage } from './clients.ts';
import { ApiSystem, httpTarget, makeTestFile, measureDownloads, rotate, type DownloadTarget, type RunPlan, type Sample, type SystemResult, type TestFile } from './measure.ts';
import { checkDisk, COMMON_BENCH_OPTIONS, docsTarget, execFileP, exitOnHelp, loadClockTicks, LoadNotes, machineFacts, positiveInt, runBench, sh, startNginx, startOutpost, treeCpuSeconds, type Cleanup } from './procs.ts';
import { figures, loadOf, markdownTable, resultsHead, runsList, systemsTable, textTable, writeDocs, type DocSection } from './report.ts';
import { compareRow, EXIT_NOT_MEASURED, fmt, fmtSpread, outcome, ROW_HEADER, rowCells, withLoad, type Reference, type Row } from './rounds.ts';

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const MiB = 2 ** 20;
const HELP = `usage: node bench/stores.ts [options]
  --s3-endpoint URL    the S3 server, on 127.0.0.1 (default $TEST_S3_ENDPOINT: eval "$(scripts/test-servers.sh start)")
  --s3-access-key KEY  its access key (default $TEST_S3_ACCESS_KEY, else $AWS_ACCESS_KEY_ID); the secret key is
                       read from $TEST_S3_SECRET_KEY, else $AWS_SECRET_ACCESS_KEY, never from the command line,
                       which the results record
  --s3-region NAME     signing region (default us-east-1, Swift s3api's default location)
  --size-mib N         image size in MiB (default 256)
  --rounds N           timed uploads and downloads per system, median of all reported (default 5; --quick 1)
  --part-size-mib N    the S3 store's part_size_mb, and the direct reference's part size (default 8, Outpost's default)
  --max-parts N        the S3 store's max_parts (default 1000: Swift s3api's max_upload_part_num)
  --s3-queue N         parts in flight of the second direct S3 upload reference (default 4)
  --quick              short run: --rounds 1 (and no docs unless --docs)
  --docs PATH          write results there (default docs/benchmarks.md on full runs)
  --no-docs            do not write the results file
  --tmp DIR            where the temp directory goes (default ${tmpdir()})`;

const SECTION: DocSection = {
  tag: 'bench:stores',
  by: '`npm run bench:stores` (bench/stores.ts)',
  intro: '## Image stores: S3 vs the file store (issue 14)\n\nUpload and download MB/s through Outpost on its default file store and on an S3 store ' +
    '(Swift\'s s3api from scripts/test-servers.sh), with curl as the client of both, each beside references measured in the same run: the same bytes ' +
    'put to and got from the same S3 server directly with the AWS SDK; `dd conv=fdatasync` to the same disk and nginx (sendfile). ' +
    'Run it with `eval "$(scripts/test-servers.sh start)"; npm run bench:stores` (256 MiB, 5 rounds, 3-4 minutes) or ' +
    '`npm run bench:stores -- --quick`; `--help` lists the options. The part between the `bench:stores` markers is rewritten by each full run; ' +
    'the text after it is kept.',
};

function options() {
  const { values } = parseArgs({
    options: {
      's3-endpoint': { type: 'string' },
      's3-access-key': { type: 'string' },
      's3-region': { type: 'string', default: 'us-east-1' },
      'size-mib': { type: 'string' },
      rounds: { type: 'string' },
      'part-size-mib': { type: 'string' },
      'max-parts': { type: 'string' },
      's3-queue': { type: 'string' },
      ...COMMON_BENCH_OPTIONS,
    },
  });
  exitOnHelp(values.help, HELP);
  const quick = values.quick;
  const endpoint = values['s3-endpoint'] ?? process.env.TEST_S3_ENDPOINT;
  const accessKeyId = values['s3-access-key'] ?? process.env.TEST_S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.TEST_S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY;
  const hint = 'run `eval "$(scripts/test-servers.sh start)"` first, which starts Swift with its S3 API on loopback and sets TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY and TEST_S3_SECRET_KEY';
  if (endpoint === undefined || endpoint === '') throw new Error(`no S3 server: give --s3-endpoint or set TEST_S3_ENDPOINT (${hint})`);
  if (accessKeyId === undefined || accessKeyId === '') throw new Error(`no S3 access key: give --s3-access-key or set TEST_S3_ACCESS_KEY (${hint})`);
  if (secretAccessKey === undefined || secretAccessKey === '') throw new Error(`no S3 secret key: set TEST_S3_SECRET_KEY or AWS_SECRET_ACCESS_KEY (${hint})`);
  const url = new URL(endpoint);
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing an S3 server that is not on 127.0.0.1: ${url.host}`);
  if (url.protocol !== 'http:') throw new Error(`the S3 endpoint must be http://127.0.0.1:PORT, not ${endpoint}`);
  const partSizeMiB = positiveInt('part-size-mib', values['part-size-mib'], 8);
  if (partSizeMiB < 5) throw new Error('--part-size-mib must be at least 5 (S3\'s smallest part)');
  return {
    endpoint: url.origin,
    credentials: { accessKeyId, secretAccessKey },
    region: values['s3-region'],
    sizeMiB: positiveInt('size-mib', values['size-mib'], 256),
    rounds: positiveInt('rounds', values.rounds, quick ? 1 : 5),
    partSizeMiB,
    maxParts: positiveInt('max-parts', values['max-parts'], 1000),
    queue: positiveInt('s3-queue', values['s3-queue'], 4),
    quick,
    docs: docsTarget(values),
    tmp: values.tmp,
  };
}

type Options = ReturnType<typeof options>;
const log = (s: string) => process.stderr.write(`${s}\n`);
const mb = (size: number, seconds: number) => size / seconds / 1e6;

/** A process of the S3 server whose CPU time is measured around every transfer that touches S3. */
interface S3Process {
  name: string;
  pid: number;
}

const cmdline = (pid: number | string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
};

/**
 * The S3 server's processes: the one listening on the endpoint's port and, when it is a Swift
 * proxy, the object, container and account servers of the same configuration directory (the top
 * process of each: its tree's CPU is counted, workers included). Empty when none can be found.
 */
async function s3Processes(endpoint: string): Promise<{ procs: S3Process[]; conf: string | undefined }> {
  const port = new URL(endpoint).port || '80';
  const pid = Number(/pid=(\d+)/.exec(await sh('ss', ['-Hltnp', `sport = :${port}`]))?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) return { procs: [], conf: undefined };
  const etc = /(\S+)\/proxy-server\.conf/.exec(cmdline(pid))?.[1];
  if (etc === undefined) return { procs: [{ name: 'S3 server', pid }], conf: undefined };
  const procs: S3Process[] = [{ name: 'Swift proxy', pid }];
  const all = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => ({ pid: Number(n), cmd: cmdline(n) }));
  const ppid = (p: number) => Number(/\) \S+ (\d+)/.exec(readFileSync(`/proc/${p}/stat`, 'utf8'))?.[1]);
  for (const server of ['object', 'container', 'account']) {
    const matches = all.filter((p) => p.cmd.includes(`${etc}/${server}-server.conf`)).map((p) => p.pid);
    for (const p of matches) {
      try {
        if (!matches.includes(ppid(p))) procs.push({ name: `Swift ${server} server`, pid: p });
      } catch {
        // gone meanwhile
      }
    }
  }
  return { procs, conf: etc };
}

/** CPU seconds spent during one transfer by the S3 server's processes and by this process (the SDK client of the direct references). */
interface Usage {
  s3: number[];
  client: number;
  /** Bytes the S3 server's processes read from and wrote to storage (not the page cache; NaN: not readable). */
  disk: { read: number; written: number };
}

/** read_bytes and write_bytes of /proc/PID/io: what the process itself (not its children) made the storage layer read and write. */
function ioBytes(pid: number): { read: number; written: number } {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    return { read: field('read_bytes'), written: field('write_bytes') };
  } catch {
    return { read: Number.NaN, written: Number.NaN };
  }
}

/** Measures the S3 server's processes (and this process) around a transfer; fails the run if one of them is gone (restarted: its figures are void). */
class S3Meter {
  readonly procs: S3Process[];
  /** Usage of each timed transfer, by system name and direction, in the order of the samples. */
  readonly usage = new Map<string, Usage[]>();

  constructor(procs: S3Process[]) {
    this.procs = procs;
  }

  #disk(): { read: number; written: number } {
    return this.procs.map((p) => ioBytes(p.pid)).reduce((a, b) => ({ read: a.read + b.read, written: a.written + b.written }), { read: 0, written: 0 });
  }

  #cpu(): number[] {
    return this.procs.map((p) => {
      try {
        return treeCpuSeconds(p.pid);
      } catch {
        throw new Error(`${p.name} (PID ${p.pid}) is gone: the S3 server was restarted during the run, so its figures are void`);
      }
    });
  }

  /** Runs `fn`, noting what it cost; recorded under `key` unless `record` is false (a warm-up). */
  async around<T>(key: string, fn: () => Promise<T>, record = true): Promise<T> {
    const s3 = this.#cpu();
    const disk = this.#disk();
    const client = process.cpuUsage();
    const value = await fn();
    const used = process.cpuUsage(client);
    const after = this.#cpu();
    const diskAfter = this.#disk();
    if (record) {
      const list = this.usage.get(key) ?? [];
      list.push({ s3: after.map((a, i) => a - s3[i]), client: (used.user + used.system) / 1e6, disk: { read: diskAfter.read - disk.read, written: diskAfter.written - disk.written } });
      this.usage.set(key, list);
    }
    return value;
  }
}

/** The S3 client of the direct references: the SDK and settings of Outpost's S3 driver (src/storage/drivers/s3-blob-driver.ts). */
function s3Client(opts: Options): S3Client {
  return new S3Client({
    endpoint: opts.endpoint, region: opts.region, forcePathStyle: true, credentials: opts.credentials, maxAttempts: 3,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * A multipart upload of `file` to `Key`, read from the file part by part (partSizeFor: the S3
 * driver's sizes) with at most `queue` parts in flight while the next is read. With `queue` 1 this
 * is the driver's pattern: one part sent while the next one fills.
 */
async function s3PutFile(client: S3Client, Bucket: string, Key: string, file: TestFile, partSize: number, maxParts: number, queue: number): Promise<void> {
  const fh = await open(file.path, 'r');
  let UploadId: string | undefined;
  try {
    UploadId = (await client.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId;
    if (UploadId === undefined) throw new Error('CreateMultipartUpload answered no UploadId');
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    for (let n = 1, offset = 0; offset < file.size; n++) {
      if (n > maxParts) throw new Error(`${file.size} bytes need more than ${maxParts} parts`);
      const length = Math.min(partSizeFor(n, partSize, maxParts), file.size - offset);
      const Body = Buffer.allocUnsafeSlow(length);
      for (let got = 0; got < length;) {
        const { bytesRead } = await fh.read(Body, got, length - got, offset + got);
        if (bytesRead === 0) throw new Error(`${file.path} ended early`);
        got += bytesRead;
      }
      while (inFlight.size >= queue) await Promise.race(inFlight);
      if (failure !== undefined) throw failure.error;
      const PartNumber = n;
      const sent: Promise<void> = client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: length })).then(
        (out) => { parts.push({ PartNumber, ETag: out.ETag }); },
        (error: unknown) => { failure ??= { error }; },
      ).finally(() => inFlight.delete(sent));
      inFlight.add(sent);
      offset += length;
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure.error;
    parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
    await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
    UploadId = undefined;
  } finally {
    await fh.close();
    if (UploadId !== undefined) await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
  }
}

/** GetObject of `Key`, read to the end and discarded: seconds; fails unless it had `size` bytes. */
async function s3GetToNothing(client: S3Client, Bucket: string, Key: string, size: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const out = await client.send(new GetObjectCommand({ Bucket, Key }));
  let bytes = 0;
  for await (const chunk of out.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (bytes !== size) throw new Error(`GetObject ${Key}: ${bytes} bytes, expected ${size}`);
  return seconds;
}

/** `dd if=FILE of=DEST bs=256K conv=fdatasync`: seconds (Outpost's file store writes 256 KiB at a time and fdatasyncs before it commits). */
function ddWrite(source: string, dest: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('dd', [`if=${source}`, `of=${dest}`, 'bs=256K', 'conv=fdatasync', 'status=none'], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`dd exited with ${code}`));
      resolve(Number(process.hrtime.bigint() - start) / 1e9);
    });
  });
}

/** Something an upload is timed on: `upload(label)` does one (untimed when label is undefined). */
interface UploadTarget {
  result: SystemResult;
  upload(label: string | undefined): Promise<void>;
}

/** Removes every object and incomplete upload of the bucket, then the bucket. */
async function removeBucket(client: S3Client, Bucket: string): Promise<void> {
  let KeyMarker: string | undefined;
  do {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket, KeyMarker }));
    for (const u of page.Uploads ?? []) await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key!, UploadId: u.UploadId! }));
    KeyMarker = page.IsTruncated === true ? page.NextKeyMarker : undefined;
  } while (KeyMarker !== undefined);
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket }));
    const keys = (page.Contents ?? []).map((o) => o.Key!);
    if (keys.length === 0) break;
    for (const Key of keys) await client.send(new DeleteObjectCommand({ Bucket, Key }));
  }
  await client.send(new DeleteBucketCommand({ Bucket }));
  log(`removed bucket ${Bucket}`);
}

async function main(cleanup: Cleanup): Promise<number> {
  const opts = options();
  await loadClockTicks();
  const size = opts.sizeMiB * MiB;
  const partSize = opts.partSizeMiB * MiB;
  const facts = await machineFacts(['curl', 'nginx-light', 'swift', 'python3-swift']);
  log(facts.join('\n'));

  // Disk: the source file, one kept copy in the file store and in dd's, one upload in flight, slack
  // (the S3 server's copies are where it keeps them: see its own configuration).
  await checkDisk(opts.tmp, 4 * size + 2 ** 30);
  const tmp = await mkdtemp(join(opts.tmp, 'outpost-stores-'));
  cleanup.add('remove temp dir', () => rm(tmp, { recursive: true, force: true }));
  const filesDir = join(tmp, 'files');
  await mkdir(filesDir, { recursive: true });
  await mkdir(join(tmp, 'dd'), { recursive: true });
  log(`Making a ${opts.sizeMiB} MiB random file in ${filesDir}`);
  const file = await makeTestFile(join(filesDir, 'image.bin'), size);
  const loads = new LoadNotes();

  // The S3 server: a bucket of our own, removed at the end (after Outpost has stopped).
  const client = s3Client(opts);
  cleanup.add('close the S3 client', () => client.destroy());
  const bucket = `outpost-bench-${randomBytes(5).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  cleanup.add(`remove bucket ${bucket}`, () => removeBucket(client, bucket));
  const { procs, conf } = await s3Processes(opts.endpoint);
  if (procs.length === 0) log(`no process found listening on ${opts.endpoint}: the S3 server's CPU is not measured`);
  else log(`S3 server processes: ${procs.map((p) => `${p.name} (PID ${p.pid})`).join(', ')}`);
  const meter = new S3Meter(procs);
  const workers = (name: string) => conf === undefined ? undefined : /^\s*workers\s*=\s*(\d+)/m.exec(readFileSync(join(conf, `${name}.conf`), 'utf8'))?.[1];
  const s3Fact = `S3 server: ${opts.endpoint}${conf === undefined ? '' : ` (Swift, configuration in ${conf}: proxy-server workers = ${workers('proxy-server') ?? 'default'}, object-server workers = ${workers('object-server') ?? 'default'})`}; ` +
    `bucket ${bucket} created and removed by the benchmark; its processes measured: ${procs.length === 0 ? 'none found' : procs.map((p) => p.name).join(', ')}`;

  // Outpost: its default file store (in its data directory), and an S3 store in the bucket.
  const storeSpec = `s3://${bucket}/outpost?endpoint=${opts.endpoint}&region=${opts.region}&path_style=true&part_size_mb=${opts.partSizeMiB}&max_parts=${opts.maxParts}`;
  const fileServer = await startOutpost(REPO_ROOT, join(tmp, 'outpost-file'), {}, cleanup, ['--auth', 'none'], 'Outpost, file store');
  const s3Server = await startOutpost(REPO_ROOT, join(tmp, 'outpost-s3'), {
    AWS_ACCESS_KEY_ID: opts.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: opts.credentials.secretAccessKey,
  }, cleanup, ['--auth', 'none', '--store', `s3=${storeSpec}`], 'Outpost, S3 store');
  const outpostFile = new ApiSystem(fileServer);
  const outpostS3 = new ApiSystem(s3Server);
  log(`Outpost, file store at ${fileServer.url} (PID ${fileServer.pid}); Outpost, S3 store at ${s3Server.url} (PID ${s3Server.pid}), --store s3=${storeSpec}`);
  const nginx = await startNginx(filesDir, join(tmp, 'nginx'), cleanup).catch((e: Error) => `could not be started: ${e.message.split('\n')[0]}`);
  if (typeof nginx === 'string') log(`nginx ${nginx}`);
  else log(`nginx at ${nginx.url} (PID ${nginx.pid})`);

  // (No wrk runs here: the plan only gives prepare() a catalog of one image, the one uploaded.)
  const plan: RunPlan = { runs: opts.rounds, wrkRuns: 0, wrkSeconds: 0, wrkThreads: 0, wrkConns: 0, catalog: 1 };
  await outpostFile.prepare(file, plan);
  await outpostS3.prepare(file, plan);

  // Upload targets. Each Outpost keeps its last upload (for the downloads) and deletes the one
  // before after the timed step, so no delete falls inside a measurement.
  const viaOutpost = (sys: ApiSystem, s3: boolean): UploadTarget => ({
    result: sys.result,
    async upload(label) {
      if (label === undefined) return; // prepare() did the warm-up
      const previous = sys.kept;
      await execFileP('sync'); // (upload() syncs again: little is left for it)
      if (s3) await meter.around(`${sys.result.name} upload`, () => sys.upload(file, label, true));
      else await sys.upload(file, label, true);
      if (previous !== '') await deleteImage(sys.server.url, previous);
    },
  });
  const directResult: SystemResult = { name: 'Direct S3 (SDK, 1 part in flight)', upload: [], download: [] };
  const directQueueResult: SystemResult = { name: `Direct S3 (SDK, ${opts.queue} parts in flight)`, upload: [] };
  const ddResult: SystemResult = { name: 'dd conv=fdatasync', upload: [] };
  const nginxResult: SystemResult = { name: 'nginx (sendfile)', download: [] };
  let directKept = '';
  let objects = 0;
  const timedUpload = async (result: SystemResult, label: string | undefined, fn: () => Promise<number>, measuredS3: boolean) => {
    await execFileP('sync');
    const { value: seconds, load } = await withLoad(() => measuredS3 ? meter.around(`${result.name} upload`, fn, label !== undefined) : fn());
    if (label === undefined) return;
    const sample: Sample = { mbps: mb(size, seconds), cpuS: Number.NaN, load };
    result.upload!.push(sample);
    log(`  ${result.name} upload ${label}: ${sample.mbps.toFixed(0)} MB/s, load ${load.start.toFixed(2)} → ${load.end.toFixed(2)}`);
  };
  const direct = (result: SystemResult, queue: number, keep: boolean): UploadTarget => ({
    result,
    async upload(label) {
      const Key = `direct/${++objects}`;
      await timedUpload(result, label, async () => {
        const t0 = process.hrtime.bigint();
        await s3PutFile(client, bucket, Key, file, partSize, opts.maxParts, queue);
        return Number(process.hrtime.bigint() - t0) / 1e9;
      }, true);
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
      if (head.ContentLength !== size) throw new Error(`${result.name}: object ${Key} has ${head.ContentLength} bytes, not ${size}`);
      if (keep && label !== undefined) {
        if (directKept !== '') await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: directKept }));
        directKept = Key;
      } else {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      }
    },
  });
  const ddTarget: UploadTarget = {
    result: ddResult,
    async upload(label) {
      const dest = join(tmp, 'dd', 'image.bin');
      await timedUpload(ddResult, label, () => ddWrite(file.path, dest), false);
      await rm(dest, { force: true });
    },
  };
  const uploads: UploadTarget[] = [viaOutpost(outpostFile, false), viaOutpost(outpostS3, true), direct(directResult, 1, true), direct(directQueueResult, opts.queue, false), ddTarget];

  log('warm-up: one untimed upload each (Outpost: in prepare())');
  for (const t of uploads) await t.upload(undefined);
  loads.note('before uploads');
  for (let round = 0; round < opts.rounds; round++) {
    for (const t of rotate(uploads, round)) await t.upload(`${round + 1}/${opts.rounds}`);
  }

  // Downloads: measureDownloads reads each target once untimed, then once per round in a rotating
  // order; the S3 ones are metered (the first, untimed read is not recorded).
  const metered = (t: DownloadTarget): DownloadTarget => {
    let reads = 0;
    return { ...t, read: () => meter.around(`${t.result.name} download`, () => t.read(), reads++ > 0) };
  };
  const targets: DownloadTarget[] = [
    httpTarget(outpostFile.result, fileServer.pid, () => outpostFile.downloadUrl, file),
    metered(httpTarget(outpostS3.result, s3Server.pid, () => outpostS3.downloadUrl, file)),
    metered({ result: directResult, pid: undefined, read: () => s3GetToNothing(client, bucket, directKept, size) }),
    ...(typeof nginx === 'string' ? [] : [httpTarget(nginxResult, undefined, () => `${nginx.url}/image.bin`, file)]),
  ];
  loads.note('before downloads');
  await measureDownloads(targets, file, opts.rounds);
  loads.note('at end');
  // A restarted S3 server would void the figures: check its processes once more.
  await meter.around('end', async () => undefined, false);

  if (typeof nginx !== 'string') await nginx.stop();
  await outpostFile.server.stop();
  await outpostS3.server.stop();

  // Ratios: Outpost against each store's references, and the two stores through Outpost.
  const two = (n: number) => fmt(n, 2);
  const nginxRef: Reference = typeof nginx === 'string' ? { label: 'nginx sendfile', missing: nginx } : { label: 'nginx sendfile', series: figures.downloadMBps(nginxResult) };
  const rows: Row[] = [
    compareRow({ measure: 'Upload MB/s: Outpost S3 store / direct S3, 1 part in flight', subject: figures.uploadMBps(outpostS3.result), reference: { label: 'direct S3, 1 part in flight', series: figures.uploadMBps(directResult) } }),
    compareRow({ measure: `Upload MB/s: Outpost S3 store / direct S3, ${opts.queue} parts in flight`, subject: figures.uploadMBps(outpostS3.result), reference: { label: `direct S3, ${opts.queue} parts in flight`, series: figures.uploadMBps(directQueueResult) } }),
    compareRow({ measure: 'Upload MB/s: Outpost file store / dd conv=fdatasync', subject: figures.uploadMBps(outpostFile.result), reference: { label: 'dd conv=fdatasync', series: figures.uploadMBps(ddResult) } }),
    compareRow({ measure: 'Upload MB/s: S3 store / file store, through Outpost', subject: figures.uploadMBps(outpostS3.result), reference: { label: 'Outpost file store', series: figures.uploadMBps(outpostFile.result) } }),
    compareRow({ measure: 'Download MB/s: Outpost S3 store / direct S3 GetObject', subject: figures.downloadMBps(outpostS3.result), reference: { label: 'direct S3 GetObject', series: figures.downloadMBps(directResult) } }),
    compareRow({ measure: 'Download MB/s: Outpost file store / nginx sendfile', subject: figures.downloadMBps(outpostFile.result), reference: nginxRef }),
    compareRow({ measure: 'Download MB/s: S3 store / file store, through Outpost', subject: figures.downloadMBps(outpostS3.result), reference: { label: 'Outpost file store', series: figures.downloadMBps(outpostFile.result) } }),
    compareRow({ measure: 'Upload, Outpost CPU-s per GiB: S3 store / file store', subject: figures.uploadCpuPerGiB(outpostS3.result, size), reference: { label: 'file store', series: figures.uploadCpuPerGiB(outpostFile.result, size) }, format: two }),
    compareRow({ measure: 'Download, Outpost CPU-s per GiB: S3 store / file store', subject: figures.downloadCpuPerGiB(outpostS3.result, size), reference: { label: 'file store', series: figures.downloadCpuPerGiB(outpostFile.result, size) }, format: two }),
  ];
  const missing = rows.filter((r) => r.missing !== undefined);
  const end = missing.length === 0
    ? { code: outcome(rows).code, message: 'No targets: ratios only, every reference measured in this run.' }
    : { code: EXIT_NOT_MEASURED, message: `NOT MEASURED: ${[...new Set(missing.map((r) => r.missing))].join('; ')}: its ratios are not given; exit code ${EXIT_NOT_MEASURED}.` };
  const cells = rows.map(rowCells);
  const results = [outpostFile.result, outpostS3.result, ddResult, ...(typeof nginx === 'string' ? [] : [nginxResult]), directResult, directQueueResult];

  // Where the CPU went during the transfers that touch S3: cores = CPU-seconds / seconds of the transfer.
  const cpuRows = ([
    [outpostS3.result, 'upload', true], [directResult, 'upload', false], [directQueueResult, 'upload', false],
    [outpostS3.result, 'download', true], [directResult, 'download', false],
  ] as const).map(([r, dir, outpost]) => {
    const samples = (dir === 'upload' ? r.upload : r.download) ?? [];
    const usage = meter.usage.get(`${r.name} ${dir}`) ?? [];
    const seconds = samples.map((s) => size / (s.mbps * 1e6));
    const cores = (f: (u: Usage, i: number) => number) => fmtSpread(usage.map((u, i) => f(u, i) / seconds[i]), two);
    return [r.name, dir, fmtSpread(samples.map((s) => s.mbps)), outpost ? fmtSpread(samples.map((s, i) => s.cpuS / seconds[i]), two) : '—',
      outpost ? '—' : cores((u) => u.client), ...procs.map((_, k) => cores((u) => u.s3[k])),
      fmtSpread(usage.map((u) => u.disk.read / MiB)), fmtSpread(usage.map((u) => u.disk.written / MiB))];
  });
  const cpuHeader = ['System', 'Transfer', 'MB/s', 'Outpost', 'SDK client (this process)', ...procs.map((p) => p.name), 'S3 server disk read, MiB', 'S3 server disk written, MiB'];
  const cpuNote = `Cores = CPU-seconds (utime+stime from /proc, whole process trees) per second of the transfer, median [min–max] of the rounds; the machine has ${availableParallelism()}. ` +
    'Outpost\'s is measured around the transfer and the 200 ms after it (bench/measure.ts); the S3 server\'s around the timed step (for an upload through Outpost: creating the image, the upload, reading the image back), ' +
    'and includes whatever else asked the S3 server for anything meanwhile. The SDK client of the direct references is this benchmark\'s own process; curl\'s CPU is not measured. ' +
    `Disk read and written: read_bytes and write_bytes of /proc/PID/io of the S3 server's processes (themselves, not their children) over the same step, for a ${opts.sizeMiB} MiB image: ` +
    'what they made the storage layer read and write (a read served from the page cache counts nothing).';

  process.stdout.write(`\n${textTable(ROW_HEADER, cells)}\n\n${textTable(cpuHeader, cpuRows)}\n\n${s3Fact}\n${loads}\n${end.message}\n`);

  if (opts.docs !== undefined) {
    const md = [
      ...resultsHead({
        level: 3, script: 'bench/stores.ts', quick: opts.quick, facts: [...facts, s3Fact], loads, targets: markdownTable(ROW_HEADER, cells),
        what: `image ${opts.sizeMiB} MiB (${size.toLocaleString('en-US')} bytes, random), ${opts.rounds} round(s) of one timed upload and one timed download per system, ` +
          `the order of the systems rotating each round (load average over all rounds ${loadOf(results)}). MB = 10^6 bytes.`,
      }),
      end.message,
      '',
      '#### Medians per system [min–max]',
      '',
      systemsTable(results, size),
      '',
      '"CPU-s/GiB" is the Outpost server\'s (its process tree), for the Outpost systems only.',
      '',
      '#### Where the CPU went during the S3 transfers (cores busy), and the S3 server\'s disk',
      '',
      markdownTable(cpuHeader, cpuRows),
      '',
      cpuNote,
      '',
      '#### Every run',
      '',
      runsList(results),
      '',
      '#### Method',
      '',
      '- Every server on 127.0.0.1, all running for the whole benchmark and measured in turns: two `outpost serve` processes (src/cli/site-process.ts; `--auth none`, ' +
        '`OUTPOST_LOG_LEVEL=warn`, a fresh `--data` each, default configuration otherwise, so `storage_sync` and chunk manifests are on): one with its default file store ' +
        `(in its data directory), one with \`--store s3=s3://BUCKET/outpost?endpoint=…&region=${opts.region}&path_style=true&part_size_mb=${opts.partSizeMiB}&max_parts=${opts.maxParts}\` ` +
        'and the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; our own nginx (temp prefix, `sendfile on`) serving the source file.',
      '- Upload through Outpost: `curl -T FILE -H "Content-Type: application/octet-stream" -H "Expect:"` to `PUT /v2/images/{id}/file` of a new image, `sync` before each; ' +
        'MB/s = bytes / curl time_total (until the server answers 204, i.e. after the file store\'s fdatasync or the S3 CompleteMultipartUpload); the result is checked (active, size, md5, sha512). ' +
        'The S3 store streams the upload as a multipart upload while it hashes it, one part sent while the next one fills (src/storage/drivers/s3-blob-driver.ts).',
      `- Direct S3 upload: a multipart upload of the same file to the same bucket with the AWS SDK (@aws-sdk/client-s3, the client and settings of Outpost's S3 driver) from this process, ` +
        `in the driver's part sizes (${opts.partSizeMiB} MiB first, growing only past a tenth of ${opts.maxParts} parts), each part read from the file (page cache) while the one before is sent: ` +
        `with 1 part in flight, the request pattern Outpost's S3 store sends; with ${opts.queue}, what the S3 server takes from more parallel parts. \`sync\` before each; timed to the CompleteMultipartUpload's answer; the object's size checked.`,
      '- File store upload reference: `dd if=FILE of=DEST bs=256K conv=fdatasync` to the same disk (Outpost\'s file store writes 256 KiB at a time and fdatasyncs before it commits), `sync` before each.',
      '- Download through Outpost and from nginx: `curl -o /dev/null` of the image kept from the last upload round (status and byte count checked). Direct S3 download: one GetObject of the object kept from the last ' +
        '1-part-in-flight upload, read to the end and discarded in this process (byte count checked). Each download target is read once untimed first (the file store\'s and nginx\'s file is then in the page cache; ' +
        'the S3 server keeps or drops its objects as it is configured to).',
      `- ${opts.rounds} round(s): all uploads (every system once, in an order that rotates each round), then all downloads the same way. Figures are medians of all rounds, never the best; ratios are of the medians, with the spread of the per-round ratios.`,
      '- Load: the 1-minute load average (os.loadavg()) at the start and end of every timed transfer. CPU: /proc/PID/stat of each process tree before and after each transfer.',
      `- curl, the Outpost servers, nginx, the S3 server and this benchmark share the ${availableParallelism()} CPUs and the disk: a figure here is what that machine sustains with all of them on it, not what a dedicated S3 server would.`,
    ].join('\n');
    await writeDocs(opts.docs, md, SECTION);
    log(`Wrote ${opts.docs}`);
  }
  return end.code;
}

await runBench(main);
