import type { FastifyInstance } from 'fastify';
import type { ImageService } from '../../core/image-service.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';

/**
 * Outpost's own calls about an image's bytes, between sites:
 *
 * PUT /outpost/v1/images/{id}/locations/{store} → 204: records a verified copy of the image's
 * bytes held in a store of another site (ImageService.addCopy). An edge forwards it to its parent,
 * so it reaches central from any depth; an edge sends it after an upload there.
 * Body: {url, size, checksum, os_hash_algo: "sha512", os_hash_value, virtual_size}.
 *
 * GET /outpost/v1/images/{id}/manifest → 200 {size, chunking, chunks: [{offset, length, sha256,
 * zero?}]}: the chunk manifest of the image's bytes (ImageService.manifest), for whoever may
 * download them; 404 when the image has no data.
 */
export function registerImageBytesRoutes(app: FastifyInstance, images: ImageService): void {
  resource(app, '/outpost/v1/images/:id/locations/:store', {
    PUT: async (req, reply) => {
      const { id, store } = req.params as { id: string; store: string };
      const body = await jsonBody(req);
      await images.addCopy(req.ctx, id, { ...(body as object), store }, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });
  resource(app, '/outpost/v1/images/:id/manifest', {
    GET: async (req) => images.manifest(req.ctx, (req.params as { id: string }).id, { signal: req.clientSignal }),
  });
}
