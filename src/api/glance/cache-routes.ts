import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PullThroughImages } from '../../cache/pull-through-images.ts';
import type { RequestContext } from '../../core/context.ts';
import { BadRequestError, ForbiddenError, ImageNotFoundError, NotFoundError } from '../../core/errors.ts';
import type { Image } from '../../core/image.ts';
import type { ImageService } from '../../core/image-service.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource, type Handler } from '../resource.ts';
import { header } from './request-helpers.ts';

type IdParams = { id: string };

function enforce(ctx: RequestContext, action: string): void {
  if (!ctx.isAdmin) throw new ForbiddenError(`You are not authorized to complete ${action} action.`);
}

/** The route's image; Glance looks it up without the visibility rules (authorization_layer=False). */
async function image(images: ImageService, req: FastifyRequest): Promise<Image | undefined> {
  try {
    return await images.get(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal });
  } catch (error) {
    if (error instanceof ImageNotFoundError) return undefined;
    throw error;
  }
}

async function activeImage(images: ImageService, req: FastifyRequest): Promise<Image> {
  const found = await image(images, req);
  if (found === undefined) throw new NotFoundError(`Image ${(req.params as IdParams).id} not found.`);
  // "Only images with status active can be targeted for queueing"
  if (found.status !== 'active') throw new BadRequestError('Only images with status active can be targeted for queueing');
  return found;
}

/**
 * The Glance cache API of a site (glance/api/v2/cached_images.py, API 2.14/2.16), at central and
 * at every edge, as Glance answers it on every API node with `image_cache_dir` set: it acts on
 * this site's cache only, and is for administrators ("All default to admin-only"). Outpost adds
 * pins: `PUT /outpost/v1/cache/{id}/pin` (optional body `{"until": ISO 8601}`), and `DELETE` of the
 * same to unpin.
 */
export function registerCacheRoutes(app: FastifyInstance, images: ImageService, cache: PullThroughImages): void {
  resource(app, '/v2/cache', {
    GET: async (req) => {
      enforce(req.ctx, 'cache_list');
      return cache.list();
    },
    DELETE: async (req, reply) => {
      enforce(req.ctx, 'cache_delete');
      // "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string."
      const target = (header(req, 'x-image-cache-clear-target') ?? '').toLowerCase();
      if (target !== '' && target !== 'cache' && target !== 'queue') {
        throw new BadRequestError('If provided \'x-image-cache-clear-target\' must be \'cache\', \'queue\' or empty string.');
      }
      await cache.clear(target === '' ? 'both' : target);
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/cache/:id', {
    PUT: async (req, reply) => {
      enforce(req.ctx, 'cache_image');
      cache.prefetch(await activeImage(images, req));
      return reply.code(202).send();
    },
    DELETE: async (req, reply) => {
      enforce(req.ctx, 'cache_delete');
      const id = (req.params as IdParams).id;
      const known = (await image(images, req)) !== undefined;
      // 404 "only if image is not present in cache or queue list" either.
      if (!(await cache.evict(id)) && !known) throw new NotFoundError(`Image ${id} not found.`);
      return reply.code(204).send();
    },
  });

  // API 2.18: cache maintenance on demand (Glance's glance-cache-cleaner and -pruner as calls).
  resource(app, '/v2/cache/clean', {
    POST: async (req, reply) => {
      enforce(req.ctx, 'cache_clean');
      await cache.clean({ signal: req.clientSignal });
      return reply.code(200).send();
    },
  });
  resource(app, '/v2/cache/prune', {
    POST: async (req) => {
      enforce(req.ctx, 'cache_prune');
      return cache.prune();
    },
  });

  resource(app, '/outpost/v1/cache/:id/pin', pinHandlers(images, cache));
}

/**
 * Outpost's pins (PUT /outpost/v1/cache/{id}/pin, optional body `{"until": ISO 8601}`; DELETE to
 * unpin) on this site's cache, for the image of the route's `id` parameter: 200 when the copy is
 * held, 202 while it is being fetched. Administrators only, as the cache API.
 */
export function pinHandlers(images: ImageService, cache: PullThroughImages): { PUT: Handler; DELETE: Handler } {
  return {
    PUT: async (req, reply) => {
      enforce(req.ctx, 'cache_pin');
      const body = (await jsonBody(req)) ?? {};
      const until = (body as { until?: unknown }).until ?? null;
      if (until !== null && (typeof until !== 'string' || Number.isNaN(Date.parse(until)))) {
        throw new BadRequestError('"until" must be a date and time (ISO 8601) or null.');
      }
      const held = await cache.pin(await activeImage(images, req), until === null ? null : new Date(until).toISOString(), { signal: req.clientSignal });
      return reply.code(held ? 200 : 202).send({ image_id: (req.params as IdParams).id, pinned: true, until, held });
    },
    DELETE: async (req, reply) => {
      enforce(req.ctx, 'cache_pin');
      await cache.unpin((req.params as IdParams).id, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  };
}

/**
 * GET /v2/cache/nodes/{image_id} (glance/api/v2/cached_images.py get_cached_nodes, with the
 * centralized_db cache driver: "a list of node URLs where the specified image is cached"): for
 * Outpost, the public URLs of the sites holding a verified copy of the image — located in their
 * stores or cached, from the catalog and the sites' inventories. Central answers it (an edge
 * passes it up); administrators only; an image the caller cannot see is 404.
 */
export function registerCacheNodesRoute(app: FastifyInstance, deps: {
  images: ImageService;
  sites(): Promise<{ public_url: string; stores: readonly string[] }[]>;
  heldStores?(imageIds: readonly string[]): Promise<Map<string, string[]>>;
}): void {
  resource(app, '/v2/cache/nodes/:id', {
    GET: async (req) => {
      if (!req.ctx.isAdmin) throw new ForbiddenError('You are not authorized to complete list_cached_nodes action.');
      const found = await deps.images.get(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal });
      const held = new Set([...found.locations.map((l) => l.store), ...((await deps.heldStores?.([found.id]))?.get(found.id) ?? [])]);
      return (await deps.sites()).filter((s) => s.public_url !== '' && s.stores.some((store) => held.has(store))).map((s) => s.public_url);
    },
  });
}
