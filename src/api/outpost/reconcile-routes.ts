import type { FastifyInstance } from 'fastify';
import type { OfflineReconciliation } from '../../core/offline-writes.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';

/**
 * POST /outpost/v1/images/{id}/reconcile (central; an edge passes it up) → 200 ReconcileResult:
 * an edge's version of an image it wrote while cut off from its parent (OfflineReconciliation
 * says what central does with it). Body: {site, image (null: deleted there), base_updated_at}.
 * Sites (the `service` role) and administrators.
 */
export function registerReconcileRoutes(app: FastifyInstance, reconciliation: OfflineReconciliation): void {
  resource(app, '/outpost/v1/images/:id/reconcile', {
    POST: async (req) => reconciliation.reconcile(req.ctx, (req.params as { id: string }).id, await jsonBody(req), { signal: req.clientSignal }),
  });
}
