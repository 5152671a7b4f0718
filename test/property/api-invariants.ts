/**
 * Shared machinery of the property-based tests in this folder: a real site over real HTTP, a raw
 * HTTP client (paths are sent verbatim, bodies with or without Content-Type), a read-only view of
 * the site's SQLite catalog, and the invariants every answer must keep:
 *   - no status ≥ 500, and the site keeps answering;
 *   - every response carries `x-openstack-request-id`;
 *   - every 4xx body is in Glance's (webob's) shape for the Accept sent;
 *   - a rejected request (4xx) leaves the catalog as it was: same number of change-log rows,
 *     same rows in every image table, same image as seen by GET.
 */
import assert from 'node:assert/strict';
import { Agent, request as httpRequest, STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import fc from 'fast-check';
import { startTestSite, type TestSite } from '../helpers/site.ts';

export interface ApiRequest {
  method: string;
  /** Sent verbatim (no normalisation of `..`, no re-encoding). */
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface ApiResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  bytes: Buffer;
}

export interface Harness {
  site: TestSite;
  send(req: ApiRequest): Promise<ApiResponse>;
  /** `select count(*) from changes`. */
  changeCount(): number;
  /** Every row of every image table (everything but the change log), as one comparable value. */
  catalogRows(): unknown;
  /** How many answers of each method and status sendChecked saw (printed on close when FC_STATS is set). */
  statuses: Map<string, number>;
  close(): Promise<void>;
}

const IMAGE_TABLES = ['images', 'image_properties', 'image_tags', 'image_locations', 'image_members'];

export async function startHarness(config: Record<string, unknown> = {}): Promise<Harness> {
  const site = await startTestSite(config);
  const url = new URL(site.url);
  assert.equal(url.hostname, '127.0.0.1');
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const db = new DatabaseSync(join(site.dataDir, 'catalog.sqlite'), { readOnly: true });
  const count = db.prepare('select count(*) as n from changes');
  const statuses = new Map<string, number>();
  const recent: ApiRequest[] = [];
  const dumps = IMAGE_TABLES.map((t) => [t, db.prepare(`select * from ${t} order by rowid`)] as const);

  /**
   * One request. A keep-alive socket the server closed meanwhile fails before any answer; that
   * request is sent once more on a fresh connection (as Node's documentation advises).
   */
  const send = async (req: ApiRequest): Promise<ApiResponse> => {
    try {
      return await sendOnce(req, false);
    } catch (e) {
      if ((e as { reusedSocket?: boolean }).reusedSocket !== true) throw e;
      return sendOnce(req, true);
    }
  };

  const sendOnce = (req: ApiRequest, fresh: boolean): Promise<ApiResponse> => new Promise((resolve, reject) => {
    let answered = false;
    const r = httpRequest({
      host: url.hostname, port: url.port, method: req.method, path: req.path, agent: fresh ? false : agent,
      headers: {
        ...(req.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(req.body)) }),
        ...req.headers,
      },
    }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, text: bytes.toString('utf8'), bytes });
      });
      res.on('error', reject);
    });
    // A server may answer (e.g. 413) and close before it has read the whole body.
    r.on('error', (e) => {
      if (answered) return;
      const error = new Error(`${req.method} ${clip(req.path)}: ${e.message} (after ${recent.map((q) => `${q.method} ${clip(q.path, 200)}`).join(', ')})`);
      reject(Object.assign(error, { reusedSocket: r.reusedSocket && ['ECONNRESET', 'EPIPE'].includes((e as NodeJS.ErrnoException).code ?? '') }));
    });
    recent.push(req);
    if (recent.length > 3) recent.shift();
    r.end(req.body);
  });

  return {
    site,
    send,
    changeCount: () => Number((count.get() as { n: number }).n),
    catalogRows: () => Object.fromEntries(dumps.map(([t, s]) => [t, s.all()])),
    statuses,
    async close() {
      if (process.env.FC_STATS !== undefined) console.log([...statuses].sort().map(([k, n]) => `${k}: ${n}`).join('\n'));
      db.close();
      agent.destroy();
      await site.close();
    },
  };
}

// -- error shapes ---------------------------------------------------------------------------------

/** Accept values whose negotiated error type is known (webob/exc.py generate_response). */
export const KNOWN_ACCEPTS: readonly (readonly [string | undefined, 'json' | 'html' | 'plain'])[] = [
  ['application/json', 'json'],
  ['application/json; charset=utf-8', 'json'],
  ['application/json, text/plain;q=0.5', 'json'],
  ['text/html', 'html'],
  ['*/*', 'html'],
  ['text/html,application/json;q=0.9', 'html'],
  ['text/plain', 'plain'],
  [undefined, 'plain'],
  ['', 'plain'],
  ['application/xml', 'plain'],
];

type Shape = 'json' | 'html' | 'plain';

function shapeOf(contentType: string | undefined): Shape | undefined {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return type === 'application/json' ? 'json' : type === 'text/html' ? 'html' : type === 'text/plain' ? 'plain' : undefined;
}

/**
 * The body of a 4xx is what webob renders for that status: the JSON object
 * {message, code, title}, the HTML page or the plain text, per the response's Content-Type; when
 * the negotiated shape is known for the Accept sent, it must be that one.
 */
export function assertGlanceError(res: ApiResponse, accept: string | undefined, expected?: Shape): void {
  const title = STATUS_CODES[res.status] ?? 'Error';
  const code = `${res.status} ${title}`;
  const shape = shapeOf(res.headers['content-type']);
  assert.ok(shape !== undefined, `error ${res.status} with content-type ${res.headers['content-type']} for Accept ${accept}: ${clip(res.text)}`);
  const known = expected ?? KNOWN_ACCEPTS.find(([a]) => a === accept)?.[1];
  if (known !== undefined) assert.equal(shape, known, `error shape for Accept ${JSON.stringify(accept)}: ${clip(res.text)}`);
  if (shape === 'json') {
    const body = JSON.parse(res.text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'title'], clip(res.text));
    assert.equal(body.code, code);
    assert.equal(body.title, title);
    assert.equal(typeof body.message, 'string');
    assert.ok((body.message as string).endsWith('<br /><br />\n\n\n'), clip(res.text));
  } else if (shape === 'html') {
    assert.ok(res.text.includes(`<title>${code}</title>`) && res.text.includes(`<h1>${code}</h1>`), clip(res.text));
  } else {
    assert.ok(res.text.startsWith(`${code}\n\n`), clip(JSON.stringify(res.text)));
  }
}

/** What every answer must satisfy, whatever was asked. */
export function assertSaneAnswer(res: ApiResponse, req: ApiRequest): void {
  const what = `${req.method} ${clip(req.path)} ${clip(JSON.stringify(req.headers ?? {}))} → ${res.status} ${clip(res.text)}`;
  assert.ok(res.status < 500, `server error: ${what}`);
  assert.ok(typeof res.headers['x-openstack-request-id'] === 'string', `no x-openstack-request-id: ${what}`);
  if (res.status >= 400) {
    assert.ok(res.status < 500);
    if (req.method !== 'HEAD') assertGlanceError(res, headerOf(req, 'accept'));
    if (res.status === 405) assert.ok(typeof res.headers.allow === 'string', `405 without Allow: ${what}`);
  }
}

function headerOf(req: ApiRequest, name: string): string | undefined {
  const hit = Object.entries(req.headers ?? {}).find(([k]) => k.toLowerCase() === name);
  return hit?.[1];
}

// -- catalog invariance ---------------------------------------------------------------------------

export interface Observation {
  changes: number;
  rows: unknown;
  images: (ApiResponse | undefined)[];
}

/** GET /v2/images/{id} as an administrator, JSON. */
export function adminGet(h: Harness, id: string): Promise<ApiResponse> {
  return h.send({ method: 'GET', path: `/v2/images/${id}`, headers: { accept: 'application/json' } });
}

export async function observe(h: Harness, imageIds: readonly string[]): Promise<Observation> {
  return {
    changes: h.changeCount(),
    rows: h.catalogRows(),
    images: await Promise.all(imageIds.map(async (id) => {
      const r = await adminGet(h, id);
      return r.status === 200 ? { ...r, headers: {} } : undefined;
    })),
  };
}

/**
 * Sends `req` and checks the invariants: sane answer, and when it is a 4xx, the catalog (change
 * log, image tables and the images `watch`ed through GET) is exactly as before.
 */
export async function sendChecked(h: Harness, req: ApiRequest, watch: readonly string[] = []): Promise<ApiResponse> {
  const before = await observe(h, watch);
  const res = await h.send(req);
  h.statuses.set(`${req.method} ${res.status}`, (h.statuses.get(`${req.method} ${res.status}`) ?? 0) + 1);
  assertSaneAnswer(res, req);
  if (res.status >= 400) {
    const after = await observe(h, watch);
    const what = `${req.method} ${clip(req.path)} → ${res.status} ${clip(res.text)}`;
    assert.equal(after.changes, before.changes, `change log grew on a rejected request: ${what}`);
    assert.deepEqual(after.rows, before.rows, `catalog rows changed on a rejected request: ${what}`);
    assert.deepEqual(after.images.map((r) => r?.text), before.images.map((r) => r?.text), `image changed on a rejected request: ${what}`);
  }
  return res;
}

/** The site still answers after a run of generated requests. */
export async function assertAlive(h: Harness): Promise<void> {
  const res = await h.send({ method: 'GET', path: '/versions', headers: { accept: 'application/json' } });
  assert.equal(res.status, 200);
}

/** Creates an image (as admin unless headers say otherwise) and returns its JSON. */
export async function createImage(h: Harness, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await h.send({
    method: 'POST', path: '/v2/images', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 201, res.text);
  return JSON.parse(res.text) as Record<string, unknown>;
}

export async function uploadBytes(h: Harness, id: string, bytes: Buffer, headers: Record<string, string> = {}): Promise<void> {
  const res = await h.send({
    method: 'PUT', path: `/v2/images/${id}/file`, headers: { 'content-type': 'application/octet-stream', ...headers }, body: bytes,
  });
  assert.equal(res.status, 204, res.text);
}

/** Cuts a string for a failure message (generated values can be megabytes). */
export function clip(s: string, max = 300): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${s.length} chars)`;
}

/**
 * fast-check run parameters: a fixed budget per property (scaled by FC_RUNS_SCALE, seeded by
 * FC_SEED), and failure reports whose generated values are clipped.
 */
export function runs<Ts>(n: number): fc.Parameters<Ts> {
  const scale = Number(process.env.FC_RUNS_SCALE ?? '1');
  const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
  return {
    numRuns: Math.max(1, Math.round(n * scale)),
    ...(seed === undefined ? {} : { seed }),
    reporter(details) {
      if (!details.failed) return;
      const report = fc.defaultReportMessage(details) ?? 'property failed';
      const error = new Error(report.split('\n').map((line) => clip(line, 1500)).join('\n'));
      const cause = details.errorInstance;
      if (cause instanceof Error) error.message += `\ncaused by: ${clip(cause.message, 1500)}`;
      throw error;
    },
  };
}
