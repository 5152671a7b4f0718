import type { CacheListing } from '../src/cache/pull-through-images.ts';
import { execFileP } from './procs.ts';

/** Every client request goes to loopback: refuse anything else. */
export function assertLoopback(url: string): void {
  const { hostname } = new URL(url);
  if (hostname !== '127.0.0.1') throw new Error(`refusing non-loopback URL ${url}`);
}

export async function api(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  assertLoopback(base);
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return text === '' ? undefined : JSON.parse(text);
}

export interface ImageRecord {
  id: string;
  status: string;
  size: number | null;
  checksum: string | null;
  os_hash_value?: string | null;
}

export async function createImage(base: string, name: string): Promise<string> {
  const image = await api(base, 'POST', '/v2/images', { name, disk_format: 'raw', container_format: 'bare' }) as ImageRecord;
  return image.id;
}

export const getImage = (base: string, id: string) => api(base, 'GET', `/v2/images/${id}`) as Promise<ImageRecord>;
export const deleteImage = async (base: string, id: string) => { await api(base, 'DELETE', `/v2/images/${id}`); };

/** Polls GET /v2/images/{id} at `base` until the image is `status` there (it has replicated), failing after `timeoutMs`. */
export async function waitForImage(base: string, id: string, status: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const seen = await getImage(base, id).then((i) => i.status, () => 'absent');
    if (seen === status) return;
    if (Date.now() > end) throw new Error(`image ${id} is ${seen} at ${base} after ${timeoutMs} ms, not ${status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Creates `n` queued images (`concurrency` requests at a time), so the catalog is not empty. */
export async function fillCatalog(base: string, n: number, concurrency = 4): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      await createImage(base, `bench-filler-${String(i).padStart(4, '0')}`);
    }
  }));
}

const CURL = ['-sS', '--noproxy', '*', '--max-time', '600'];

/** `curl -T FILE` as PUT /v2/images/{id}/file: seconds from start to the server's answer. */
export async function curlUpload(base: string, id: string, file: string): Promise<number> {
  assertLoopback(base);
  const { stdout } = await execFileP('curl', [
    ...CURL, '-o', '/dev/null', '-w', '%{http_code} %{size_upload} %{time_total}',
    '-T', file, '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:',
    `${base}/v2/images/${id}/file`,
  ]);
  const [code, , seconds] = stdout.trim().split(' ');
  if (code !== '204') throw new Error(`upload to ${base}: HTTP ${code}`);
  return Number(seconds);
}

/** `curl -o /dev/null URL`: seconds, after checking the status and the byte count. */
export async function curlDownload(url: string, expectedBytes: number): Promise<number> {
  assertLoopback(url);
  const { stdout } = await execFileP('curl', [...CURL, '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url]);
  const [code, bytes, seconds] = stdout.trim().split(' ');
  if (code !== '200' || Number(bytes) !== expectedBytes) throw new Error(`download ${url}: HTTP ${code}, ${bytes} bytes (expected ${expectedBytes})`);
  return Number(seconds);
}

export interface HashedDownload {
  /** HTTP status ('000' when curl failed before one). */
  code: string;
  bytes: number;
  seconds: number;
  sha512: string;
  /** curl's or the pipe's error, if any. */
  error?: string;
}

/**
 * `curl URL | sha512sum`: the status, byte count and time curl saw and the body's sha512, hashed
 * by another process as it arrives (nothing is kept). Does not throw for a failed transfer.
 */
export async function curlSha512(url: string): Promise<HashedDownload> {
  assertLoopback(url);
  const args = [...CURL, '-w', '%{stderr}%{http_code} %{size_download} %{time_total}\n', url];
  const parse = (stdout: string, stderr: string, error?: string): HashedDownload => {
    const [code = '000', bytes = '0', seconds = 'NaN'] = stderr.trim().split('\n').at(-1)?.split(' ') ?? [];
    return { code, bytes: Number(bytes), seconds: Number(seconds), sha512: stdout.split(' ')[0], error };
  };
  try {
    const { stdout, stderr } = await execFileP('bash', ['-c', 'set -o pipefail; curl "$@" | sha512sum', 'curl-sha512', ...args]);
    return parse(stdout, stderr);
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    return parse(err.stdout ?? '', err.stderr ?? '', (err.stderr ?? err.message).trim().split('\n')[0]);
  }
}

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  non2xx: number;
  socketErrors: string;
}

function toMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value);
  if (m === null) throw new Error(`wrk latency "${value}"`);
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** wrk -t THREADS -c CONNS -d SECONDS --latency [-H 'NAME: VALUE']... URL, parsed. */
export async function runWrk(url: string, threads: number, conns: number, seconds: number, headers: Record<string, string> = {}): Promise<WrkResult> {
  assertLoopback(url);
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const { stdout } = await execFileP('wrk', ['-t', String(threads), '-c', String(conns), '-d', `${seconds}s`, '--timeout', '10s', '--latency', ...h, url], {
    timeout: (seconds + 60) * 1000,
  });
  const num = (re: RegExp) => {
    const m = re.exec(stdout);
    if (m === null) throw new Error(`wrk output lacks ${re}:\n${stdout}`);
    return m[1];
  };
  return {
    rps: Number(num(/Requests\/sec:\s+([\d.]+)/)),
    p50ms: toMs(num(/^\s+50%\s+(\S+)/m)),
    p99ms: toMs(num(/^\s+99%\s+(\S+)/m)),
    requests: Number(num(/(\d+) requests in/)),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0),
    socketErrors: /Socket errors: (.*)/.exec(stdout)?.[1] ?? '',
  };
}

/**
 * A site's GET /v2/cache once no fill is committing there (its queued_images empty, or after
 * `timeoutMs`): a client has the last byte of a fill once the bytes are verified, a moment before
 * the copy is committed and listed.
 */
export async function settledCache(base: string, timeoutMs = 120_000): Promise<CacheListing> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const listing = await api(base, 'GET', '/v2/cache') as CacheListing;
    if (listing.queued_images.length === 0 || Date.now() > end) return listing;
    await new Promise((r) => setTimeout(r, 20));
  }
}
