import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ServiceUnavailableError } from '../core/errors.ts';
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
}

/** Response header carrying the site's change-log position after a write (x-outpost-seq). */
export const SEQ_HEADER = 'x-outpost-seq';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host',
  'expect',
]);

/**
 * Requests an edge passes to its parent instead of answering itself: every write to the Glance
 * API (create, PATCH, delete, tags, members, actions, import, stage), the records that travel up
 * to central (site registrations and removals, inventories, copies held at sites), and reads of other sites'
 * inventories. Reads — image data included, through
 * the site's cache — are answered here, and so are the cache API, which acts on this site's cache,
 * and uploads, whose bytes stay in this site's store (ImageService.upload records them at central).
 */
function forwarded(req: FastifyRequest, site: string): boolean {
  const path = req.url.split('?')[0];
  if (path === '/outpost/v1/sites' && req.method === 'POST') return true;
  if (req.method === 'DELETE' && /^\/outpost\/v1\/sites\/[^/]+$/.test(path)) return true;
  // Identity is central's: tokens and every change to users, projects and roles (reads are local).
  if (path.startsWith('/identity/')) return req.method !== 'GET' && req.method !== 'HEAD';
  // Inventories: reports go up; another site's is known at central.
  const inventory = /^\/outpost\/v1\/sites\/([^/]+)\/inventory$/.exec(path);
  if (inventory !== null) return req.method !== 'GET' || inventory[1] !== site;
  if (/^\/outpost\/v1\/images\/[^/]+\/locations\/[^/]+$/.test(path)) return true;
  if (!path.startsWith('/v2/') || path === '/v2/cache' || path.startsWith('/v2/cache/')) return false;
  if (req.method === 'PUT' && /^\/v2\/images\/[^/]+\/file$/.test(path)) return false;
  return req.method !== 'GET' && req.method !== 'HEAD';
}

/**
 * The edge role's write path: the request goes to the parent (and on up to central) unchanged;
 * the parent's status, headers and body come back unchanged — but only once the change has reached
 * this site's replica, so a client that writes then reads here sees its write. With the parent
 * unreachable the request fails promptly with 503 naming the parent; reads never come here.
 */
export function registerParentForwarding(app: FastifyInstance, parent: ParentLink): void {
  const base = parent.url.replace(/\/+$/, '');
  app.addHook('onRequest', async (req, reply) => {
    if (forwarded(req, parent.site)) {
      await forward(req, reply, base, parent);
      return reply;
    }
    if (isStale(parent) && req.method === 'GET' && /^\/v2\/images\/[^/]+$/.test(req.url.split('?')[0])) {
      try {
        await forward(req, reply, base, parent);
        return reply;
      } catch {
        return undefined; // the parent is away too: the replica answers
      }
    }
    return undefined;
  });
}

function isStale(parent: ParentLink): boolean {
  if (parent.maxStalenessMs === undefined) return false;
  const last = parent.lastContact();
  return last === null || Date.now() - last.getTime() > parent.maxStalenessMs;
}

async function forward(req: FastifyRequest, reply: FastifyReply, base: string, parent: ParentLink): Promise<void> {
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
  const gone = () => controller.abort();
  req.raw.once('close', () => { if (!req.raw.complete) gone(); });
  if (hasBody) {
    req.raw.on('data', progress);
    req.raw.once('end', sent);
  }

  let res: Response;
  try {
    res = await parent.client.fetch(req.url, {
      method: req.method,
      headers,
      body: hasBody ? (Readable.toWeb(req.raw) as ReadableStream) : undefined,
      duplex: 'half',
      redirect: 'manual',
      signal: controller.signal,
    } as RequestInit, { timeoutMs: null, credential: false });
  } catch (error) {
    clearTimeout(timer);
    const why = controller.signal.aborted ? `no answer within ${parent.timeoutMs} ms`
      : ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message;
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
