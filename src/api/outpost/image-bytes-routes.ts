import type { FastifyInstance } from 'fastify';
import { ForbiddenError } from '../../core/errors.ts';
import type { ImageService } from '../../core/image-service.ts';
import { HELD_ONLY_HEADER } from '../../transfer/parent-image-source.ts';
import type { TransferLog } from '../../transfer/transfer-log.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';

/**
 * Outpost's own calls about an image's bytes, between sites:
 *
 * PUT /outpost/v1/images/{id}/locations/{store} → 204: records a verified copy of the image's
 * bytes held in a store of another site (ImageService.addCopy). An edge forwards it to its parent,
 * so it reaches central from any depth; an edge sends it after an upload there.
 * Body: {url, size, checksum, os_hash_algo: "sha512", os_hash_value, virtual_size, placed_by?: "policy"}.
 *
 * DELETE /outpost/v1/images/{id}/locations/{store} → 204: a site agent removes the record of a
 * copy a placement policy made there (ImageService.removeCopy), before deleting its bytes.
 *
 * GET /outpost/v1/images/{id}/manifest → 200 {size, chunking, chunks: [{offset, length, sha256,
 * zero?}]}: the chunk manifest of the image's bytes (ImageService.manifest), for whoever may
 * download them; 404 when the image has no data.
 *
 * GET /outpost/v1/transfers → 200 {transfers: [TransferRecord]}: the transfers of image bytes to
 * this site, running ones first, then the last 50 ended (administrators and sites).
 */
export function registerImageBytesRoutes(app: FastifyInstance, images: ImageService, transfers: Pick<TransferLog, 'list'>): void {
  resource(app, '/outpost/v1/images/:id/locations/:store', {
    PUT: async (req, reply) => {
      const { id, store } = req.params as { id: string; store: string };
      const body = await jsonBody(req);
      await images.addCopy(req.ctx, id, { ...(body as object), store }, { signal: req.clientSignal });
      return reply.code(204).send();
    },
    DELETE: async (req, reply) => {
      const { id, store } = req.params as { id: string; store: string };
      await images.removeCopy(req.ctx, id, store, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });
  resource(app, '/outpost/v1/images/:id/manifest', {
    GET: async (req) => images.manifest(req.ctx, (req.params as { id: string }).id, { signal: req.clientSignal, heldOnly: req.headers[HELD_ONLY_HEADER] !== undefined }),
  });
  // The transfers of image bytes to this site, running and recent (administrators and sites).
  resource(app, '/outpost/v1/transfers', {
    GET: async (req) => {
      if (!req.ctx.isAdmin && !req.ctx.roles.includes('service')) throw new ForbiddenError('Transfers are for administrators and sites.');
      return { transfers: transfers.list() };
    },
  });
}
