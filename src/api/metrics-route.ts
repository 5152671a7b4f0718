import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../core/ports.ts';
import { resource } from './resource.ts';

/** A site's metrics as the HTTP app uses them: counted by its hooks, and their exposition. */
export interface SiteMetrics extends Metrics {
  /** The Content-Type of the exposition. */
  readonly contentType: string;
  /** Every metric in Prometheus' text format. */
  exposition(signal?: AbortSignal): Promise<string>;
}

/**
 * GET /metrics → 200, the site's metrics in Prometheus' text format (docs/operations.md,
 * "Metrics"). No token: Prometheus scrapers carry none, and what it shows is operational counts
 * (route patterns, status codes, bytes, the region's site ids) — no image, project or user.
 */
export function registerMetricsRoute(app: FastifyInstance, metrics: SiteMetrics): void {
  resource(app, '/metrics', {
    GET: async (req, reply) => reply.type(metrics.contentType).send(await metrics.exposition(req.clientSignal)),
  });
}
