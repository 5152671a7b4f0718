import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequestError, PayloadTooLargeError, ServiceUnavailableError } from '../core/errors.ts';
import type { ParentClient } from '../links/parent-client.ts';

/** An edge's link to its parent site. */
export interface ParentLink {
  /** This site's id. */
  site: string;
  /** The parent's base URL. */
  url: string;
  /** The link to the parent (TLS trust); forwarded requests carry their client's headers, not the site's credential. */
  client: Pick<ParentClient, 'fetch'>;
  /** How long a forwarded request may wait for the parent before it fails with 503, ms. */
  timeoutMs: number;
  /**
   * Resolves once this site's replica has applied the parent's change `seq` (true), or when
   * `timeoutMs` passed (false).
   */
  waitForReplica(seq: number, timeoutMs: number): Promise<boolean>;
  /**
   * `metadata_max_staleness`: once the parent has not been heard from for longer than this (ms),
   * a single-image read is revalidated with the parent first (and answered from the replica if
   * the parent cannot be reached). Undefined: never.
   */
  maxStalenessMs?: number;
  /** When the parent last answered the change feed. */
  lastContact(): Date | null;
  /**
   * Whether the parent is known to be away (the client's ParentReachability, told of every answer
   * and failure through it): while it is, a stale single-image read answers from the replica at
   * once. Told here too when a forwarded request timed out, which the client sees as an abort.
   */
  reachability: { readonly reachable: boolean; failed(why: string): void };
}

/** Response header carrying the site's change-log position after a write (x-outpost-seq). */
export const SEQ_HEADER = 'x-outpost-seq';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host',
  'expect',
]);

const FORWARDABLE = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Requests an edge passes to its parent instead of answering itself: every write to the Glance
 * API (create, PATCH, delete, tags, members, actions, import, stage), the records that travel up
 * to central (site registrations and removals, inventories, copies held at sites, placement
 * policies), and reads of other sites'
 * inventories. Reads — image data included, through
 * the site's cache — are answered here, and so are the cache API, which acts on this site's cache,
 * and uploads, whose bytes stay in this site's store (ImageService.upload records them at central).
 */
function forwarded(req: FastifyRequest, site: string): boolean {
  // Other methods (TRACE, OPTIONS, ...) are answered here, as central would: 405 or 404.
  if (!FORWARDABLE.has(req.method)) return false;
  const path = req.url.split('?')[0];
  if (path === '/outpost/v1/sites' && req.method === 'POST') return true;
  if (req.method === 'DELETE' && /^\/outpost\/v1\/sites\/[^/]+$/.test(path)) return true;
  // Placement policies are central's: writes go up, reads answer from the replica.
  if (path === '/outpost/v1/policies' || path.startsWith('/outpost/v1/policies/')) return req.method !== 'GET' && req.method !== 'HEAD';
  // The fleet view is central's (it has every site's reports).
  if (path === '/outpost/v1/fleet' || path === '/outpost/v1/fleet/transfers') return true;
  if (path === '/outpost/v1/inventory-summaries') return true;
  // Identity is central's: tokens and every change to users, projects and roles (reads are local).
  if (path.startsWith('/identity/')) return req.method !== 'GET' && req.method !== 'HEAD';
  // Inventories: reports go up; another site's is known at central.
  const inventory = /^\/outpost\/v1\/sites\/([^/]+)\/inventory$/.exec(path);
  if (inventory !== null) return req.method !== 'GET' || inventory[1] !== site;
  if (/^\/outpost\/v1\/images\/[^/]+\/locations\/[^/]+$/.test(path)) return true;
  if (/^\/outpost\/v1\/images\/[^/]+\/reconcile$/.test(path)) return true;
  // A pin at another site goes up to central, which reaches that site.
  const pin = /^\/outpost\/v1\/sites\/([^/]+)\/cache\/[^/]+\/pin$/.exec(path);
  if (pin !== null) return decodeURIComponent(pin[1]) !== site;
  // Which sites hold an image is known at central (the sites' inventories).
  if (/^\/v2\/cache\/nodes\/[^/]+$/.test(path)) return true;
  if (!path.startsWith('/v2/') || path === '/v2/cache' || path.startsWith('/v2/cache/')) return false;
  if (req.method === 'PUT' && /^\/v2\/images\/[^/]+\/file$/.test(path)) return false;
  return req.method !== 'GET' && req.method !== 'HEAD';
}

/**
 * The edge role's write path: the request goes to the parent (and on up to central) unchanged;
 * the parent's status, headers and body come back unchanged — but only once the change has reached
 * this site's replica, so a client that writes then reads here sees its write. With the parent
 * unreachable the request fails promptly with 503 naming the parent; reads never come here, but
 * those readsUpToDate names, which the parent answers unless it is known to be away or fails to.
 */
export function registerParentForwarding(app: FastifyInstance, parent: ParentLink): void {
  const base = parent.url.replace(/\/+$/, '');
  // The parent refuses a JSON body over the app's limit with 413 (and may close the connection
  // before reading it): the edge applies the same limit before passing anything on.
  const bodyLimit = app.initialConfig.bodyLimit ?? 1 << 20;
  app.addHook('onRequest', async (req, reply) => {
    // Cut off: the writes an edge may make alone are answered here (offline-writes-catalog.ts),
    // once the parent, known to be away, does not answer a quick look either.
    if (!parent.reachability.reachable && writableWhileCutOff(req) && !(await answers(parent))) return undefined;
    if (forwarded(req, parent.site)) {
      await forward(req, reply, base, parent, bodyLimit);
      return reply;
    }
    if (parent.reachability.reachable && req.method === 'GET' && readsUpToDate(req.url.split('?')[0], parent)) {
      try {
        await forward(req, reply, base, parent, bodyLimit);
        return reply;
      } catch {
        return undefined; // the parent is away too: the replica answers
      }
    }
    return undefined;
  });
}

/** How long the look at a parent known to be away may take before a write is answered here, ms (at most parent_timeout_ms). */
const PROBE_MS = 1000;

/** Whether the parent answers now (GET /outpost/v1/status); the link's reachability learns the outcome either way. */
async function answers(parent: ParentLink): Promise<boolean> {
  try {
    const res = await parent.client.fetch('/outpost/v1/status', { headers: { accept: 'application/json' } }, { timeoutMs: Math.min(PROBE_MS, parent.timeoutMs), credential: false });
    await res.body?.cancel();
    return true; // any answer, an error status too: the parent is there, and a write goes to it
  } catch {
    return false;
  }
}

/**
 * The writes an edge answers itself while it is cut off from its parent (issue 17): creating an
 * image, changing its attributes and tags, deleting it (uploads are answered here always), and a
 * site below recording the copy of an upload there (an image written here: its bytes stay there).
 */
function writableWhileCutOff(req: FastifyRequest): boolean {
  const path = req.url.split('?')[0];
  if (req.method === 'PUT' && /^\/outpost\/v1\/images\/[^/]+\/locations\/[^/]+$/.test(path)) return true;
  if (req.method === 'POST') return path === '/v2/images';
  if (req.method === 'PATCH' || req.method === 'DELETE') return /^\/v2\/images\/[^/]+$/.test(path) || (req.method === 'DELETE' && /^\/v2\/images\/[^/]+\/tags\/[^/]+$/.test(path));
  return req.method === 'PUT' && /^\/v2\/images\/[^/]+\/tags\/[^/]+$/.test(path);
}

/**
 * Reads the parent answers while it can be reached, the replica otherwise: a single image while
 * the replica is stale (metadata_max_staleness), and the sites — whose last contact is kept at
 * central (heartbeats are not replicated), so a replica shows only each site's last
 * registration.
 */
function readsUpToDate(path: string, parent: ParentLink): boolean {
  if (path === '/outpost/v1/sites' || /^\/outpost\/v1\/sites\/[^/]+$/.test(path)) return true;
  return isStale(parent) && /^\/v2\/images\/[^/]+$/.test(path);
}

function isStale(parent: ParentLink): boolean {
  if (parent.maxStalenessMs === undefined) return false;
  const last = parent.lastContact();
  return last === null || Date.now() - last.getTime() > parent.maxStalenessMs;
}

/** Request bodies passed on as they arrive (image data being staged); every other body is JSON. */
const STREAMED_BODY = /^\/v2\/images\/[^/]+\/stage$/;

/** How much of a refused body, in multiples of the limit, is read and dropped before the connection is cut. */
const DRAIN_LIMIT_FACTOR = 64;

/** fastify's answer to a body over its limit (FST_ERR_CTP_BODY_TOO_LARGE), which the parent gives. */
const TOO_LARGE = 'Request body is too large';

/**
 * The whole body of a JSON request, at most `limit` bytes: a Content-Length over it is refused at
 * once (413, the body left for Node to discard); a body that grows past it while being read is
 * refused there, and the rest of it is read and dropped, so that a client still sending gets the
 * answer (a connection closed on unread bytes is reset, and the client sees the reset instead) —
 * up to DRAIN_LIMIT_FACTOR × `limit` more bytes, after which the connection is cut.
 */
async function readBody(req: FastifyRequest, limit: number): Promise<Buffer> {
  if (Number(req.headers['content-length']) > limit) throw new PayloadTooLargeError(TOO_LARGE);
  const raw = req.raw;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (error?: Error) => {
      raw.off('data', data);
      raw.off('end', end);
      raw.off('error', done);
      raw.off('close', closed);
      if (error === undefined) resolve(Buffer.concat(chunks));
      else reject(error);
    };
    const data = (chunk: Buffer) => {
      size += chunk.length;
      chunks.push(chunk);
      if (size > limit) {
        chunks.length = 0;
        done(new PayloadTooLargeError(TOO_LARGE));
        let dropped = 0;
        raw.on('data', (more: Buffer) => {
          dropped += more.length;
          if (dropped > DRAIN_LIMIT_FACTOR * limit) raw.destroy();
        });
      }
    };
    const end = () => done();
    const closed = () => done(new BadRequestError('The request body ended before it was complete.'));
    raw.on('data', data);
    raw.once('end', end);
    raw.once('error', done);
    raw.once('close', closed);
  });
}

async function forward(req: FastifyRequest, reply: FastifyReply, base: string, parent: ParentLink, bodyLimit: number): Promise<void> {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  headers.set('x-forwarded-for', req.ip);
  // The parent uses this request's id, so tasks and logs agree across sites.
  headers.set('x-openstack-request-id', req.id);
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
    && (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);
  // A JSON body is read whole first (before the parent's clock starts), and handed over as one
  // buffer: the parent's answer is then relayed even when it closes the connection without
  // reading all of it (with a streamed body, fetch fails with EPIPE and the answer is lost).
  const streamed = hasBody && STREAMED_BODY.test(req.url.split('?')[0]);
  const buffered = hasBody && !streamed ? await readBody(req, bodyLimit) : undefined;

  // The parent must answer within timeoutMs; a body being sent counts as progress. Once the whole
  // body is handed over, its last bytes may still be crossing a slow link (held in socket and WAN
  // buffers, invisible from here) for longer than timeoutMs. So from then on, each time the timer
  // expires the request gets another timeoutMs if the parent answered a probe sent meanwhile
  // (reachable, merely slow), and fails with 503 if not (cut off).
  const controller = new AbortController();
  const probes = new AbortController();
  let bodySent = false;
  let reachable = false;
  const probe = () => {
    reachable = false;
    parent.client.fetch('/outpost/v1/status', { signal: AbortSignal.any([probes.signal, AbortSignal.timeout(parent.timeoutMs)]) }, { timeoutMs: null, credential: false })
      .then(async (r) => { reachable = true; await r.body?.cancel(); }, () => undefined);
  };
  const expired = () => {
    if (bodySent && reachable) {
      probe();
      timer = setTimeout(expired, parent.timeoutMs);
    } else {
      controller.abort();
    }
  };
  let timer = setTimeout(expired, parent.timeoutMs);
  const progress = () => {
    clearTimeout(timer);
    timer = setTimeout(expired, parent.timeoutMs);
  };
  const sent = () => {
    bodySent = true;
    progress();
    probe();
  };
  let clientGone = false;
  const gone = () => {
    clientGone = true;
    controller.abort();
  };
  req.raw.once('close', () => { if (!req.raw.complete) gone(); });
  if (streamed) {
    req.raw.on('data', progress);
    req.raw.once('end', sent);
  } else if (buffered !== undefined) {
    sent();
  }

  let res: Response;
  try {
    res = await parent.client.fetch(req.url, {
      method: req.method,
      headers,
      body: streamed ? (Readable.toWeb(req.raw) as ReadableStream) : buffered,
      duplex: 'half',
      redirect: 'manual',
      signal: controller.signal,
    } as RequestInit, { timeoutMs: null, credential: false });
  } catch (error) {
    clearTimeout(timer);
    // ParentClient's errors say why in their message (connection error, certificate problem).
    const why = controller.signal.aborted ? `no answer within ${parent.timeoutMs} ms` : (error as Error).message;
    if (!clientGone) parent.reachability.failed(why);
    // Only a connection closed without any answer comes here (an answer sent before the close is
    // relayed, see above): a reset from the parent and one from a cut link look the same.
    throw new ServiceUnavailableError(`The parent site ${base} could not be reached (${why}); writes need it, reads are served here.`);
  } finally {
    req.raw.off('data', progress);
    req.raw.off('end', sent);
    probes.abort();
  }
  clearTimeout(timer);

  if (res.ok) {
    const seq = Number(res.headers.get(SEQ_HEADER));
    if (Number.isSafeInteger(seq) && seq > 0) {
      const caughtUp = await parent.waitForReplica(seq, parent.timeoutMs);
      if (!caughtUp) req.log.warn({ seq }, 'the replica did not catch up with a forwarded write in time');
    }
  }
  reply.code(res.status);
  res.headers.forEach((value, name) => {
    if (!HOP_BY_HOP.has(name) && name !== SEQ_HEADER) reply.header(name, value);
  });
  if (res.body === null || req.method === 'HEAD') {
    reply.send();
    return;
  }
  reply.send(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream));
}
