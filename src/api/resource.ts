import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { MethodNotAllowedError } from '../core/errors.ts';

export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
type Method = 'HEAD' | 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Registers the handlers of one path, and answers every other method the app routes (every
 * method Node's HTTP parser knows: see createApp) with 405 and an `Allow` header, as Glance's
 * router does (`reject_method_resource`).
 */
export function resource(app: FastifyInstance, url: string, handlers: Partial<Record<Method, Handler>>): void {
  const allowed = Object.keys(handlers) as Method[];
  for (const method of allowed) app.route({ method, url, handler: handlers[method]! });
  const others = app.supportedMethods.filter((m) => !allowed.includes(m as Method) && !(m === 'HEAD' && allowed.includes('GET')));
  // HEAD goes with GET, as in Glance's Allow headers.
  const allow = allowed.filter((m) => m !== 'HEAD' || !allowed.includes('GET')).join(', ');
  app.route({
    method: others as HTTPMethods[],
    url,
    config: { methodNotAllowed: true },
    handler: async () => {
      throw new MethodNotAllowedError('The method specified is not allowed for this resource.', { Allow: allow });
    },
  });
}
