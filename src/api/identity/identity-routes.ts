import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError } from '../../core/errors.ts';
import type { CatalogFilters, IdentityService } from '../../core/identity/identity-service.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import { header, queryParams } from '../glance/request-helpers.ts';

/** Requests under /identity/v3 that need no token: the version document and getting a token. */
export function identityIsPublic(method: string, path: string): boolean {
  return path === '/identity' || path === '/identity/' || path === '/identity/v3' || path === '/identity/v3/'
    || (method === 'POST' && path === '/identity/v3/auth/tokens');
}

const KINDS = { projects: 'project', users: 'user', roles: 'role', domains: 'domain' } as const;

/**
 * The Keystone v3 subset of IdentityService at /identity/v3 (keystone/api/*.py): the version
 * document, auth/tokens (POST issues, GET/HEAD validate, DELETE revokes), projects, users, roles,
 * domains and role assignments, and the catalog's regions, services and endpoints (read-only).
 */
export function registerIdentityRoutes(app: FastifyInstance, identity: IdentityService, publicUrl: () => string): void {
  const versionDoc = () => ({
    version: {
      id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z',
      links: [{ rel: 'self', href: `${publicUrl()}/identity/v3/` }],
      'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
    },
  });
  for (const path of ['/identity/v3', '/identity/v3/']) resource(app, path, { GET: async () => versionDoc() });
  for (const path of ['/identity', '/identity/']) {
    resource(app, path, { GET: async (_req, reply) => reply.code(300).send({ versions: { values: [versionDoc().version] } }) });
  }

  const subject = (req: FastifyRequest) => header(req, 'x-subject-token');
  resource(app, '/identity/v3/auth/tokens', {
    POST: async (req, reply) => {
      const { token, body } = await identity.authenticate(await jsonBody(req), { signal: req.clientSignal });
      return reply.code(201).header('X-Subject-Token', token).send(body);
    },
    GET: async (req, reply) => {
      const body = await identity.validate(req.ctx, subject(req), { signal: req.clientSignal });
      return reply.header('X-Subject-Token', subject(req)).send(body);
    },
    DELETE: async (req, reply) => {
      await identity.revoke(req.ctx, subject(req), { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  for (const [plural, kind] of Object.entries(KINDS)) {
    resource(app, `/identity/v3/${plural}`, {
      GET: async (req) => {
        const { map } = queryParams(req);
        const records = await identity.list(req.ctx, kind, { name: map.get('name')?.at(-1), domain_id: map.get('domain_id')?.at(-1) }, { signal: req.clientSignal });
        return { [plural]: records.map((r) => withLinks(r, plural)), links: { self: `${publicUrl()}/identity/v3/${plural}`, previous: null, next: null } };
      },
      ...(kind === 'domain' ? {} : {
        POST: async (req, reply) => {
          const body = await jsonBody(req) as Record<string, unknown> | undefined;
          const given = body?.[kind];
          if (given === undefined) throw new BadRequestError(`Expecting to find ${kind} in request body.`);
          const created = kind === 'project' ? await identity.createProject(req.ctx, given, { signal: req.clientSignal })
            : kind === 'user' ? await identity.createUser(req.ctx, given, { signal: req.clientSignal })
              : await identity.createRole(req.ctx, given, { signal: req.clientSignal });
          return reply.code(201).send({ [kind]: withLinks(created as unknown as Record<string, unknown>, plural) });
        },
      }),
    });
    resource(app, `/identity/v3/${plural}/:id`, {
      GET: async (req) => ({ [kind]: withLinks(await identity.get(req.ctx, kind, (req.params as { id: string }).id, { signal: req.clientSignal }), plural) }),
      ...(kind === 'domain' ? {} : {
        DELETE: async (req, reply) => {
          await identity.delete(req.ctx, kind, (req.params as { id: string }).id, { signal: req.clientSignal });
          return reply.code(204).send();
        },
      }),
      ...(kind === 'user' || kind === 'project' ? {
        PATCH: async (req) => {
          const body = await jsonBody(req) as Record<string, unknown> | undefined;
          if (body?.[kind] === undefined) throw new BadRequestError(`Expecting to find ${kind} in request body.`);
          return { [kind]: withLinks(await identity.update(req.ctx, kind, (req.params as { id: string }).id, body[kind], { signal: req.clientSignal }), plural) };
        },
      } : {}),
    });
  }

  resource(app, '/identity/v3/projects/:project/users/:user/roles/:role', {
    PUT: async (req, reply) => {
      const p = req.params as { project: string; user: string; role: string };
      await identity.grant(req.ctx, p.project, p.user, p.role, { signal: req.clientSignal });
      return reply.code(204).send();
    },
    DELETE: async (req, reply) => {
      const p = req.params as { project: string; user: string; role: string };
      await identity.ungrant(req.ctx, p.project, p.user, p.role, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  resource(app, '/identity/v3/role_assignments', {
    GET: async (req) => {
      const { map } = queryParams(req);
      const list = await identity.listAssignments(req.ctx, { user_id: map.get('user.id')?.at(-1), project_id: map.get('scope.project.id')?.at(-1) }, { signal: req.clientSignal });
      return {
        role_assignments: list.map((a) => ({ role: { id: a.role_id }, user: { id: a.user_id }, scope: { project: { id: a.project_id } } })),
        links: { self: `${publicUrl()}/identity/v3/role_assignments`, previous: null, next: null },
      };
    },
  });

  // The service catalog's records, read-only (keystone/api/regions.py, services.py,
  // endpoints.py): what `openstack region list`, `service list` and `endpoint list` show.
  const filters = (req: FastifyRequest): CatalogFilters => {
    const { map } = queryParams(req);
    const one = (name: keyof CatalogFilters) => map.get(name)?.at(-1);
    return {
      parent_region_id: one('parent_region_id'), type: one('type'), name: one('name'), interface: one('interface'), service_id: one('service_id'), region_id: one('region_id'),
    };
  };
  const listed = (plural: string, records: object[]) => ({
    [plural]: records.map((r) => withLinks(r as Record<string, unknown>, plural)), links: { self: `${publicUrl()}/identity/v3/${plural}`, previous: null, next: null },
  });
  const id = (req: FastifyRequest) => (req.params as { id: string }).id;
  resource(app, '/identity/v3/regions', { GET: async (req) => listed('regions', await identity.listRegions(filters(req), { signal: req.clientSignal })) });
  resource(app, '/identity/v3/regions/:id', { GET: async (req) => ({ region: withLinks({ ...await identity.getRegion(id(req), { signal: req.clientSignal }) }, 'regions') }) });
  resource(app, '/identity/v3/services', { GET: async (req) => listed('services', await identity.listServices(req.ctx, filters(req), { signal: req.clientSignal })) });
  resource(app, '/identity/v3/services/:id', { GET: async (req) => ({ service: withLinks({ ...await identity.getService(req.ctx, id(req), { signal: req.clientSignal }) }, 'services') }) });
  resource(app, '/identity/v3/endpoints', { GET: async (req) => listed('endpoints', await identity.listEndpoints(req.ctx, filters(req), { signal: req.clientSignal })) });
  resource(app, '/identity/v3/endpoints/:id', { GET: async (req) => ({ endpoint: withLinks({ ...await identity.getEndpoint(req.ctx, id(req), { signal: req.clientSignal }) }, 'endpoints') }) });

  // Outpost's own: central's signing keys (public halves), rotation and removal.
  resource(app, '/outpost/v1/signing-keys', {
    GET: async (req) => ({ signing_keys: await identity.listKeys(req.ctx, { signal: req.clientSignal }) }),
  });
  resource(app, '/outpost/v1/signing-keys/rotate', {
    POST: async (req, reply) => reply.code(201).send({ kid: await identity.rotateKey(req.ctx, { signal: req.clientSignal }) }),
  });
  resource(app, '/outpost/v1/signing-keys/:kid', {
    DELETE: async (req, reply) => {
      await identity.removeKey(req.ctx, (req.params as { kid: string }).kid, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  function withLinks(record: Record<string, unknown>, plural: string): Record<string, unknown> {
    return { ...record, links: { self: `${publicUrl()}/identity/v3/${plural}/${String(record.id)}` } };
  }
}
