import type { FastifyInstance } from 'fastify';
import type { LocationService } from '../../core/location-service.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import { locationView } from './views.ts';

type IdParams = { id: string };

/**
 * The newer locations API of glance/api/v2/router.py (API 2.17): `POST
 * /v2/images/{image_id}/locations` → 202 with no body (images.py ResponseSerializer
 * `add_location`; the api-ref's "Normal response codes: 200" is not what the code answers), and
 * `GET /v2/images/{image_id}/locations` → 200, a JSON list of `{url, metadata}`. At an edge the
 * POST is passed up to central (a write), the GET is answered from the replica.
 */
export function registerLocationRoutes(app: FastifyInstance, locations: LocationService): void {
  resource(app, '/v2/images/:id/locations', {
    GET: async (req) => (await locations.list(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal })).map(locationView),
    POST: async (req, reply) => {
      await locations.add(req.ctx, (req.params as IdParams).id, await jsonBody(req), { signal: req.clientSignal, requestId: req.id });
      return reply.code(202).send();
    },
  });
}
