import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NotFoundError, ServiceUnavailableError } from '../../core/errors.ts';
import type { ParentClient } from '../../links/parent-client.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource, type Handler } from '../resource.ts';

type Params = { site: string; id: string };

/** The caller's identity headers, passed on as they came (the other site checks them itself). */
const IDENTITY_HEADERS = ['x-auth-token', 'x-project-id', 'x-user-id', 'x-roles', 'x-openstack-request-id'];

export interface SitePinDeps {
  /** This site's id. */
  self: string;
  /** This site's own pin handlers (pinHandlers in glance/cache-routes.ts). */
  here: { PUT: Handler; DELETE: Handler };
  /** A client for another site of the region by id (its public URL, the region's TLS trust); undefined for an unknown site. */
  siteClient(site: string, signal: AbortSignal): Promise<ParentClient | undefined>;
}

/**
 * PUT/DELETE /outpost/v1/sites/{site}/cache/{id}/pin (central): pins an image in any site's cache
 * from one place (the dashboard's image page): this site's own pins, or the named site's,
 * reached at its public URL with the caller's own credentials — that site checks them and answers
 * as its own pin route does (200 held, 202 being fetched, 204 unpinned). An edge passes these up
 * (parent-forwarding.ts) unless they name it. A site that cannot be reached: 503 naming it.
 */
export function registerSitePinRoutes(app: FastifyInstance, deps: SitePinDeps): void {
  const relay = (method: 'PUT' | 'DELETE'): Handler => async (req, reply) => {
    const { site, id } = req.params as Params;
    if (site === deps.self) return deps.here[method](req, reply);
    const client = await deps.siteClient(site, req.clientSignal);
    if (client === undefined) throw new NotFoundError(`No site ${site} is registered.`);
    return pass(req, reply, client, method, `/outpost/v1/cache/${encodeURIComponent(id)}/pin`, site);
  };
  resource(app, '/outpost/v1/sites/:site/cache/:id/pin', { PUT: relay('PUT'), DELETE: relay('DELETE') });
}

async function pass(req: FastifyRequest, reply: FastifyReply, client: ParentClient, method: string, path: string, site: string): Promise<FastifyReply> {
  const headers: Record<string, string> = { accept: 'application/json' };
  for (const name of IDENTITY_HEADERS) {
    const v = req.headers[name];
    if (typeof v === 'string') headers[name] = v;
  }
  const body = method === 'PUT' ? await jsonBody(req) : undefined;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await client.fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }, { signal: req.clientSignal, credential: false });
  } catch (error) {
    if (req.clientSignal.aborted) throw error;
    throw new ServiceUnavailableError(`Site ${site} could not be reached: ${(error as Error).message}`);
  }
  const text = await res.text();
  reply.code(res.status);
  const type = res.headers.get('content-type');
  if (type !== null) reply.type(type);
  return reply.send(text === '' ? undefined : text);
}
