import type { FastifyInstance } from 'fastify';
import { ForbiddenError } from '../../core/errors.ts';
import type { PlacementPolicies } from '../../core/placement-policies.ts';
import { Fleet } from '../../placement/fleet.ts';
import { queryParams } from '../glance/request-helpers.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';

/**
 * The region's placement policies (issue 13), kept at central and replicated to every site; an
 * edge answers reads from its replica and forwards writes up (parent-forwarding):
 *
 *   GET    /outpost/v1/policies       → 200 {policies: [PolicyRecord]}, by name
 *   POST   /outpost/v1/policies       → 201 PolicyRecord (administrators)
 *   GET    /outpost/v1/policies/{id}  → 200 PolicyRecord, 404 when there is none
 *   PATCH  /outpost/v1/policies/{id}  → 200 PolicyRecord; the fields given replace the policy's
 *   DELETE /outpost/v1/policies/{id}  → 204
 *
 * A bad policy gets a 400 whose message names the field (`mode`, `sites.labels`, `sites.ids`, ...).
 *
 *   GET    /outpost/v1/fleet?image=&site=&policy=&state=&tag=&site_labels=&limit=&marker= → 200
 *          FleetPage (central, administrators and sites; an edge forwards it up): every (image,
 *          site) pair the policies want, where it stands, and convergence per image, policy and
 *          site. `tag` (repeatable): images with every tag; `site_labels`: sites matching a label
 *          selector (`region=eu,tier!=far`; a bad one gets a 400 naming site_labels).
 */
export function registerPlacementRoutes(app: FastifyInstance, policies: PlacementPolicies, fleet: Fleet | undefined): void {
  resource(app, '/outpost/v1/policies', {
    GET: async (req) => ({ policies: await policies.list({ signal: req.clientSignal }) }),
    POST: async (req, reply) => reply.code(201).send(await policies.create(req.ctx, await jsonBody(req), { signal: req.clientSignal })),
  });
  resource(app, '/outpost/v1/policies/:id', {
    GET: async (req) => policies.get((req.params as { id: string }).id, { signal: req.clientSignal }),
    PATCH: async (req) => policies.update(req.ctx, (req.params as { id: string }).id, await jsonBody(req), { signal: req.clientSignal }),
    DELETE: async (req, reply) => {
      await policies.delete(req.ctx, (req.params as { id: string }).id, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });
  if (fleet !== undefined) {
    resource(app, '/outpost/v1/fleet', {
      GET: async (req) => {
        if (!req.ctx.isAdmin && !req.ctx.roles.includes('service')) throw new ForbiddenError('The fleet view is for administrators and sites.');
        return fleet.view(Fleet.query(queryParams(req).map), { signal: req.clientSignal });
      },
    });
  }
}
