import { randomUUID } from 'node:crypto';
import { METHODS, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, {
  LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest,
} from 'fastify';
import type { RequestContext } from '../core/context.ts';
import { OutpostError } from '../core/errors.ts';
import { PATCH_MEDIA_TYPES } from '../core/image-patch.ts';
import { renderError, renderKeystoneError } from './error-responses.ts';
import { identityIsPublic, registerIdentityRoutes } from './identity/identity-routes.ts';
import { registerDiscoveryRoutes } from './glance/discovery-routes.ts';
import { pinHandlers, registerCacheNodesRoute, registerCacheRoutes } from './glance/cache-routes.ts';
import { registerSitePinRoutes } from './outpost/site-pin-routes.ts';
import { registerDashboardRoutes } from './dashboard-routes.ts';
import { registerMetadefRoutes } from './glance/metadef-routes.ts';
import { checkReadOnly, metadefValidator } from './glance/metadef-validation.ts';
import { registerImageRoutes } from './glance/image-routes.ts';
import { registerImportRoutes } from './glance/import-routes.ts';
import { registerLocationRoutes } from './glance/location-routes.ts';
import { registerImageBytesRoutes } from './outpost/image-bytes-routes.ts';
import { registerReconcileRoutes } from './outpost/reconcile-routes.ts';
import { registerPlacementRoutes } from './outpost/placement-routes.ts';
import { registerReplicationRoutes } from './outpost/replication-routes.ts';
import { registerParentForwarding, SEQ_HEADER } from './parent-forwarding.ts';
import { registerMetricsRoute } from './metrics-route.ts';
import { NO_METRICS } from '../core/ports.ts';
import type { AppDeps } from './app-deps.ts';
import { JSON_BODY_LIMIT, registerBodyParsers } from './http/json-body.ts';
import { negotiateVersionPath, versionsDocument } from './glance/versions.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, set by the authentication hook. */
    ctx: RequestContext;
    /**
     * Aborted when the client goes away before the response is complete. (Fastify's own
     * request.signal also fires once a request body has been read, so it cannot serve.)
     */
    clientSignal: AbortSignal;
  }
  interface FastifyContextConfig {
    /** Set on resource()'s catch-all that answers 405 to the methods a path does not take. */
    methodNotAllowed?: boolean;
  }
  interface FastifyInstance {
    /** The method and path of every route the site serves (405 catch-alls and implied HEADs left out). */
    servedRoutes(): ServedRoute[];
  }
}

export interface ServedRoute {
  method: string;
  /** The path as routed, with `:param` segments. */
  url: string;
}



/** How long in-flight requests may take to finish once the site is closing. */
const CLOSE_GRACE_MS = 5000;

/**
 * A connection on which no byte moves either way for this long is closed (fastify's
 * connectionTimeout, the socket's idle timeout): a client that stalls mid-request cannot hold it
 * for ever. Longer than the longest quiet stretch of a live request: a change-feed long poll
 * (≤ 60 s), a cache fill waiting on its parent (parent_timeout_ms per stall).
 */
const IDLE_CONNECTION_MS = 120_000;


/** Paths of writes that change the catalog (answered with the change-log position, SEQ_HEADER). */
const WRITE_PREFIXES = ['/v2/', '/outpost/v1/sites', '/outpost/v1/images/', '/outpost/v1/policies'];

/**
 * Whether a request acts as someone: the Glance API, Outpost's own API but the site status
 * (which parents are probed with), and identity's but its version document and getting a token.
 */
function needsCaller(method: string, path: string): boolean {
  if (path.startsWith('/v2/')) return true;
  if (path.startsWith('/outpost/')) return path !== '/outpost/v1/status';
  return path.startsWith('/identity') && !identityIsPublic(method, path);
}

/** Paths that are Outpost's own or Glance's; any other first segment gets the version list (300). */
const KNOWN_PREFIXES = ['/v2/', '/v2', '/outpost/', '/identity/', '/healthcheck', '/metrics', '/dashboard'];

/**
 * Builds the HTTP application of a site: the Glance v2 API with Glance's status codes, headers
 * and error bodies. All error → HTTP mapping happens here, in the error handler.
 */
export function createApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    connectionTimeout: IDLE_CONNECTION_MS,
    // glance/api/middleware/context.py: an incoming X-Openstack-Request-ID is honoured (≤ 64 chars).
    genReqId: (req) => {
      const given = req.headers['x-openstack-request-id'];
      return typeof given === 'string' && given.length > 0 && given.length <= 64 ? given : `req-${randomUUID()}`;
    },
    rewriteUrl: (req) => negotiateVersionPath(req.url ?? '/'),
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 1024 },
    clientErrorHandler: answerClientError,
    // Requests the router refuses before any route (a malformed %-escape in the path, a path
    // parameter longer than maxParamLength) get a Glance-shaped error and a request id too.
    frameworkErrors: answerFrameworkError,
    // Typed as the plain HTTP server: an https.Server answers the same requests.
    ...(deps.tls === undefined ? {} : { https: deps.tls }),
  });

  const metrics = deps.metrics ?? NO_METRICS;
  const served: ServedRoute[] = [];
  app.addHook('onRoute', (route) => {
    if (route.config?.methodNotAllowed === true) return;
    for (const method of [route.method].flat()) served.push({ method, url: route.url });
  });
  app.decorate('servedRoutes', () => served.filter((r) => r.method !== 'HEAD' || !served.some((g) => g.method === 'GET' && g.url === r.url)));

  // Every method Node's HTTP parser knows is routed, so a known path answers any method it does
  // not take with 405 and Allow (resource.ts), and an unknown path answers 404 (or the version
  // list) whatever the method, at every role. CONNECT never reaches the app (Node closes it).
  for (const method of METHODS) if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method);

  registerBodyParsers(app);

  app.addHook('onRequest', async (req, reply) => {
    const controller = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new Error('the client went away'));
    });
    req.clientSignal = controller.signal;
    if (needsCaller(req.method, req.url.split('?')[0])) {
      try {
        req.ctx = await deps.authenticator.authenticate(req.headers, controller.signal);
      } catch (error) {
        metrics.count('outpost_token_checks_total', { result: checkResult(error, req) });
        throw error;
      }
      metrics.count('outpost_token_checks_total', VALID);
    }
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-openstack-request-id', req.id);
    // After a write, the change-log position that includes it: an edge that forwarded the write
    // waits for its replica to reach it (parent-forwarding.ts).
    if (req.method !== 'GET' && req.method !== 'HEAD' && WRITE_PREFIXES.some((p) => req.url.startsWith(p)) && reply.statusCode < 400) {
      reply.header(SEQ_HEADER, String(await deps.replication.changeLog.lastSeq()));
    }
  });
  if (deps.parent !== undefined) registerParentForwarding(app, deps.parent);
  // One line per request at info, with its request id (reqId, from req.log), once answered:
  // fastify's own request logging (disableRequestLogging above) would write two.
  app.addHook('onResponse', (req, reply, done) => {
    req.log.info({ method: req.method, url: req.originalUrl, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
    // By the route's pattern, never the URL (whose ids would make a series per image).
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.count('outpost_http_requests_total', { method: req.method, route, status: String(reply.statusCode) });
    metrics.observe('outpost_http_request_duration_seconds', { method: req.method, route }, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler(async (error, req, reply) => {
    let status = 500;
    let message = 'The server has either erred or is incapable of performing the requested operation.';
    if (error instanceof OutpostError) {
      status = error.status;
      message = error.message;
      for (const [k, v] of Object.entries(error.headers)) reply.header(k, v);
    } else if (typeof (error as { statusCode?: unknown }).statusCode === 'number' && (error as { statusCode: number }).statusCode < 500) {
      // Fastify's own client errors (body too large, bad content-type header, ...).
      status = (error as { statusCode: number }).statusCode;
      message = (error as Error).message;
    } else if (clientGone(req)) {
      // A client that went away mid-request (a body cut off, a closed connection) is not an error.
      req.log.debug({ err: (error as Error).message, method: req.method, url: req.url }, 'the client went away before the answer');
    } else {
      req.log.error({ err: error, method: req.method, url: req.url }, 'unexpected error');
    }
    // A request body abandoned half-read (too large, upload failed mid-stream) leaves the rest of it
    // in the socket: the connection cannot carry another request, so close it after this answer
    // rather than keep it alive and stall the client's next request.
    if (!req.raw.complete && req.raw.destroyed) reply.header('Connection', 'close');
    // Glance answers every unsupported PATCH media type with Accept-Patch (images.py update), also
    // when the Content-Type is too malformed for Fastify to reach the route at all.
    if (status === 415 && req.method === 'PATCH') reply.header('Accept-Patch', PATCH_MEDIA_TYPES.join(', '));
    const rendered = req.url.startsWith('/identity') ? renderKeystoneError(status, message) : renderError(status, message, req.headers.accept);
    return reply.code(status).type(rendered.contentType).send(rendered.body);
  });

  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0];
    if (!KNOWN_PREFIXES.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`))) {
      // glance/api/middleware/version_negotiation.py: unknown versions get the version list.
      return reply.code(300).send(versionsDocument(deps.publicUrl, deps.cache !== undefined));
    }
    const rendered = renderError(404, 'The resource could not be found.', req.headers.accept);
    return reply.code(404).type(rendered.contentType).send(rendered.body);
  });

  registerDiscoveryRoutes(app, deps);
  if (deps.metrics !== undefined) registerMetricsRoute(app, deps.metrics);
  if (deps.identity !== undefined) registerIdentityRoutes(app, deps.identity, () => deps.publicUrl);
  if (deps.cache !== undefined) {
    registerCacheRoutes(app, deps.images, deps.cache);
    registerSitePinRoutes(app, {
      self: deps.replication.site.id,
      here: pinHandlers(deps.images, deps.cache),
      siteClient: async (site, signal) => deps.regionLinks?.client(site, signal),
    });
  }
  if (deps.parent === undefined) registerCacheNodesRoute(app, { images: deps.images, sites: () => deps.replication.sites.list(), heldStores: deps.heldStores });
  registerImageRoutes(app, deps);
  registerImportRoutes(app, deps);
  if (deps.locations !== undefined) registerLocationRoutes(app, deps.locations);
  const metadefBodies = metadefValidator();
  registerMetadefRoutes(app, {
    metadefs: deps.metadefs,
    checkBody: (schema, body, op) => {
      checkReadOnly(schema, body);
      metadefBodies.check(schema, body, op);
    },
    limits: { defaultLimit: deps.defaultLimit, maxLimit: deps.maxLimit },
  });
  // Long polls end when the site stops, instead of holding its shutdown for their whole wait.
  const stopping = new AbortController();
  // Closing: long polls end at once; other requests get a grace period, after which every
  // connection is closed (a keep-alive connection Node does not see as idle would otherwise hold
  // the close for the whole keep-alive timeout).
  app.addHook('preClose', async () => {
    stopping.abort();
    setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS).unref();
  });
  registerReplicationRoutes(app, deps.replication, stopping.signal);
  registerImageBytesRoutes(app, deps.images, deps.transfers);
  if (deps.reconciliation !== undefined) registerReconcileRoutes(app, deps.reconciliation);
  registerPlacementRoutes(app, deps.policies, deps.fleet);
  registerDashboardRoutes(app, deps.dashboard);
  return app;
}

const VALID = Object.freeze({ result: 'valid' as const });

/** How a refused authentication counts (outpost_token_checks_total). */
function checkResult(error: unknown, req: FastifyRequest): 'missing' | 'refused' | 'unavailable' | 'error' {
  const status = error instanceof OutpostError ? error.status : 500;
  if (status === 401) return req.headers['x-auth-token'] === undefined ? 'missing' : 'refused';
  if (status === 403) return 'refused';
  return status === 503 ? 'unavailable' : 'error';
}

/** Whether the client closed its connection before the request was answered. */
function clientGone(req: FastifyRequest): boolean {
  return req.clientSignal?.aborted === true || req.raw.socket?.destroyed === true || (req.raw.destroyed && !req.raw.complete);
}

/** Answers what the router refuses before any route, in Glance's shape (see the option above). */
function answerFrameworkError(error: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const status = typeof error.statusCode === 'number' && error.statusCode < 500 ? error.statusCode : 400;
  const rendered = renderError(status, error.message, req.headers.accept);
  void reply.code(status).header('x-openstack-request-id', req.id).type(rendered.contentType).send(rendered.body);
}

/**
 * Requests Node's HTTP parser rejects (a byte not allowed in the request line or a header, headers
 * too large, a body shorter than its Content-Length when the client half-closes, ...) get a
 * Glance-shaped error too — negotiated on the Accept header when it can be read from the raw
 * bytes — with a request id, unless the app already answers that request; the connection is
 * closed (what follows in it cannot be parsed either). Exactly one answer per request.
 */
function answerClientError(error: Error, socket: Socket): void {
  const { code, rawPacket } = error as Error & { code?: string; rawPacket?: unknown };
  if (code === 'ECONNRESET' || socket.destroyed) return;
  // The error is in the body of a request already handed to the app (a body cut short by the
  // client's half-close, a malformed chunk) that has answered or is answering: a second answer
  // would answer nothing (Node's own handler also stays silent while a response is in flight).
  // The connection cannot carry another request: it ends once that answer is out.
  const { parser, _httpMessage: inFlight } = socket as Socket & { parser?: { incoming: { complete: boolean } | null }; _httpMessage?: ServerResponse | null };
  if (parser?.incoming != null && !parser.incoming.complete && (inFlight == null || inFlight.headersSent)) {
    if (inFlight == null || inFlight.writableFinished) socket.end();
    else inFlight.once('finish', () => socket.end());
    return;
  }
  const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const raw = Buffer.isBuffer(rawPacket) ? rawPacket.toString('latin1') : '';
  const accept = /\r\naccept:[ \t]*([^\r\n]*)/i.exec(raw)?.[1];
  const given = /\r\nx-openstack-request-id:[ \t]*([\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?)[ \t]*\r\n/i.exec(raw)?.[1];
  const rendered = renderError(status, status === 400 ? 'The request could not be parsed.' : STATUS_CODES[status]!, accept);
  const body = Buffer.from(rendered.body);
  if (socket.writable) {
    socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${rendered.contentType}\r\n`
      + `Content-Length: ${body.length}\r\nx-openstack-request-id: ${given ?? `req-${randomUUID()}`}\r\nConnection: close\r\n\r\n`), body]));
  } else {
    socket.destroy();
  }
}
