import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Authenticator, RequestContext } from '../core/context.ts';
import { BadRequestError, OutpostError } from '../core/errors.ts';
import type { ImageService } from '../core/image-service.ts';
import { PATCH_MEDIA_TYPES } from '../core/image-patch.ts';
import type { StoreRegistry } from '../core/stores.ts';
import { renderError } from './error-responses.ts';
import { registerDiscoveryRoutes } from './glance/discovery-routes.ts';
import { registerImageRoutes } from './glance/image-routes.ts';
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
}

export interface AppDeps {
  logger: FastifyBaseLogger;
  authenticator: Authenticator;
  images: ImageService;
  stores: StoreRegistry;
  /** Base URL of this site as clients reach it, without a trailing slash. */
  publicUrl: string;
  showLocations: boolean;
  showDirectUrl: boolean;
}

/** Largest JSON request body accepted. */
const JSON_BODY_LIMIT = 1 << 20;

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
    // glance/api/middleware/context.py: an incoming X-Openstack-Request-ID is honoured (≤ 64 chars).
    genReqId: (req) => {
      const given = req.headers['x-openstack-request-id'];
      return typeof given === 'string' && given.length > 0 && given.length <= 64 ? given : `req-${randomUUID()}`;
    },
    rewriteUrl: (req) => negotiateVersionPath(req.url ?? '/'),
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 1024 },
  });

  // Bodies: JSON (and both JSON-patch media types) parsed here so that malformed JSON is Glance's
  // 400; every other type is handed to the route as the raw stream (image uploads).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', ...PATCH_MEDIA_TYPES], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch {
      done(new BadRequestError('Malformed JSON in request body.'), undefined);
    }
  });
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.addHook('onRequest', async (req, reply) => {
    const controller = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new Error('the client went away'));
    });
    req.clientSignal = controller.signal;
    if (req.url.startsWith('/v2/')) req.ctx = await deps.authenticator.authenticate(req.headers, controller.signal);
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-openstack-request-id', req.id);
  });
  app.addHook('onResponse', async (req, reply) => {
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request');
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
    } else {
      req.log.error({ err: error, method: req.method, url: req.url }, 'unexpected error');
    }
    const rendered = renderError(status, message, req.headers.accept);
    return reply.code(status).type(rendered.contentType).send(rendered.body);
  });

  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0];
    if (!KNOWN_PREFIXES.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`))) {
      // glance/api/middleware/version_negotiation.py: unknown versions get the version list.
      return reply.code(300).send(versionsDocument(deps.publicUrl));
    }
    const rendered = renderError(404, 'The resource could not be found.', req.headers.accept);
    return reply.code(404).type(rendered.contentType).send(rendered.body);
  });

  registerDiscoveryRoutes(app, deps);
  registerImageRoutes(app, deps);
  return app;
}

/**
 * The JSON body of a request: already parsed for JSON media types; read from the stream for any
 * other type (Glance parses the body as JSON whatever Content-Type says).
 */
export async function jsonBody(req: FastifyRequest): Promise<unknown> {
  const body = req.body as unknown;
  if (body === null || typeof body !== 'object' || typeof (body as Readable).pipe !== 'function') return body;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as Readable) {
    size += (chunk as Buffer).length;
    if (size > JSON_BODY_LIMIT) throw new BadRequestError('Request body too large.');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequestError('Malformed JSON in request body.');
  }
}
