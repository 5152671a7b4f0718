import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError } from '../../core/errors.ts';
import {
  NAMESPACE_SORT_KEYS, type MetadefService, type NamespaceCreateInput, type NamespaceInput, type NamespaceSortKey, type ObjectInput,
} from '../../core/metadef-service.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import type { MetadefBodySchema } from './metadef-validation.ts';
import { associationView, namespaceView, objectView, propertyView, resourceTypeView, tagView } from './metadef-views.ts';
import { header, queryParams } from './request-helpers.ts';

export interface MetadefRouteDeps {
  metadefs: MetadefService;
  /**
   * Checks a request body as Glance's deserializers do: read-only attributes (403), then the
   * body against the named schema (400); `op` as MetadefValidator.check.
   */
  checkBody(schema: MetadefBodySchema, body: unknown, op: 'create' | 'update'): void;
  /** `limit_param_default` and `api_limit_max`, for the namespace list. */
  limits: { defaultLimit: number; maxLimit: number };
}

type Ns = { namespace: string };

/**
 * The metadata definitions API (glance/api/v2/router.py, metadef_*.py): namespaces with their
 * objects, properties, tags and resource-type associations, and the resource types. Every site
 * serves the reads from its catalog (an edge from its replica, also while cut off); an edge passes
 * the writes to its parent like every other write.
 */
export function registerMetadefRoutes(app: FastifyInstance, deps: MetadefRouteDeps): void {
  const { metadefs } = deps;
  const ns = (req: FastifyRequest) => (req.params as Ns).namespace;
  const param = (req: FastifyRequest, name: string) => (req.params as Record<string, string>)[name];
  const io = (req: FastifyRequest) => ({ signal: req.clientSignal });
  /** "Body expected in request." for none; then the deserializer's checks. */
  const body = async (req: FastifyRequest, schema: MetadefBodySchema, op: 'create' | 'update' = req.method === 'POST' ? 'create' : 'update'): Promise<Record<string, unknown>> => {
    const parsed = await jsonBody(req);
    if (parsed === undefined) throw new BadRequestError('Body expected in request.');
    deps.checkBody(schema, parsed, op);
    return parsed as Record<string, unknown>;
  };
  const resourceTypeParam = (req: FastifyRequest): string | undefined => {
    const v = queryParams(req).map.get('resource_type')?.[0];
    return v === undefined || v === '' ? undefined : v;
  };

  resource(app, '/v2/metadefs/namespaces', {
    GET: async (req) => {
      const { pairs, map } = queryParams(req);
      const one = (k: string) => map.get(k)?.[0];
      const sortDir = one('sort_dir') ?? 'desc';
      if (sortDir !== 'asc' && sortDir !== 'desc') throw new BadRequestError(`Invalid sort direction: ${sortDir}`);
      const sortKey = one('sort_key') ?? 'created_at';
      if (!(NAMESPACE_SORT_KEYS as readonly string[]).includes(sortKey)) throw new BadRequestError(`Invalid sort key: ${sortKey}`);
      const visibility = one('visibility');
      if (visibility !== undefined && visibility !== '' && visibility !== 'public' && visibility !== 'private') {
        throw new BadRequestError(`Invalid visibility value: ${visibility}`);
      }
      const rawLimit = one('limit');
      if (rawLimit !== undefined && !/^-?\d+$/.test(rawLimit.trim())) throw new BadRequestError('limit param must be an integer');
      const limit = Math.min(deps.limits.maxLimit, rawLimit === undefined ? deps.limits.defaultLimit : Number(rawLimit));
      if (limit < 0) throw new BadRequestError('limit param must be positive');
      const resourceTypes = one('resource_types');
      const { namespaces, next } = await metadefs.listNamespaces(req.ctx, {
        limit,
        sortKey: sortKey as NamespaceSortKey,
        sortDir,
        ...(one('marker') === undefined ? {} : { marker: one('marker') }),
        ...(visibility === undefined || visibility === '' ? {} : { visibility }),
        ...(resourceTypes === undefined ? {} : { resourceTypes: resourceTypes.split(',') }),
      }, io(req));
      // As glance's serializer: `first` keeps the query but the marker, `next` sets the marker.
      const query = (p: [string, string][]) => (p.length === 0 ? '' : `?${new URLSearchParams(p).toString()}`);
      const rest = pairs.filter(([k]) => k !== 'marker');
      return {
        namespaces: namespaces.map((n) => namespaceView(n, false)),
        first: `/v2/metadefs/namespaces${query(rest)}`,
        schema: '/v2/schemas/metadefs/namespaces',
        ...(next === undefined ? {} : { next: `/v2/metadefs/namespaces${query([...rest, ['marker', next]])}` }),
      };
    },
    POST: async (req, reply) => {
      const input = await body(req, 'namespace') as unknown as NamespaceCreateInput;
      const created = await metadefs.createNamespace(req.ctx, input, io(req));
      return reply.code(201).header('Location', encodeURI(`/v2/metadefs/namespaces/${created.namespace}`)).send(namespaceView(created, true));
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace', {
    GET: async (req) => {
      const { namespace, prefix } = await metadefs.getNamespaceFor(req.ctx, ns(req), resourceTypeParam(req), io(req));
      return namespaceView(namespace, true, prefix);
    },
    PUT: async (req) => {
      const input = await body(req, 'namespace') as unknown as NamespaceInput;
      return namespaceView(await metadefs.updateNamespace(req.ctx, ns(req), input, io(req)), false);
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteNamespace(req.ctx, ns(req), io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/objects', {
    GET: async (req) => ({
      objects: (await metadefs.listObjects(req.ctx, ns(req), io(req))).map((o) => objectView(ns(req), o)),
      schema: 'v2/schemas/metadefs/objects',
    }),
    POST: async (req, reply) => {
      const input = await body(req, 'object') as unknown as ObjectInput;
      return reply.code(201).send(objectView(ns(req), await metadefs.createObject(req.ctx, ns(req), input, io(req))));
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteContents(req.ctx, ns(req), 'objects', io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/objects/:object', {
    GET: async (req) => objectView(ns(req), await metadefs.getObject(req.ctx, ns(req), param(req, 'object'), io(req))),
    PUT: async (req) => {
      const input = await body(req, 'object') as unknown as ObjectInput;
      return objectView(ns(req), await metadefs.updateObject(req.ctx, ns(req), param(req, 'object'), input, io(req)));
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteObject(req.ctx, ns(req), param(req, 'object'), io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/properties', {
    GET: async (req) => {
      const properties = await metadefs.listProperties(req.ctx, ns(req), io(req));
      return { properties: Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, propertyView(v)])) };
    },
    POST: async (req, reply) => {
      const input = await body(req, 'property') as Record<string, unknown> & { name: string };
      const { name, property } = await metadefs.createProperty(req.ctx, ns(req), input, io(req));
      return reply.code(201).send(propertyView(property, name));
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteContents(req.ctx, ns(req), 'properties', io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/properties/:property', {
    GET: async (req) => {
      const { name, property } = await metadefs.getProperty(req.ctx, ns(req), param(req, 'property'), resourceTypeParam(req), io(req));
      return propertyView(property, name);
    },
    PUT: async (req) => {
      const input = await body(req, 'property') as Record<string, unknown> & { name: string };
      const { name, property } = await metadefs.updateProperty(req.ctx, ns(req), param(req, 'property'), input, io(req));
      return propertyView(property, name);
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteProperty(req.ctx, ns(req), param(req, 'property'), io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/tags', {
    GET: async (req) => ({ tags: (await metadefs.listTags(req.ctx, ns(req), io(req))).map(tagView) }),
    POST: async (req, reply) => {
      const names = ((await body(req, 'tags')).tags as { name: string }[] | undefined ?? []).map((t) => t.name);
      // "X-Openstack-Append: true" adds to the namespace's tags; otherwise they replace them.
      const append = /^(1|t|true|on|y|yes)$/i.test((header(req, 'x-openstack-append') ?? '').trim());
      const tags = await metadefs.createTags(req.ctx, ns(req), names, append, io(req));
      return reply.code(201).send({ tags: tags.map((t) => ({ name: t.name })) });
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteContents(req.ctx, ns(req), 'tags', io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/tags/:tag', {
    GET: async (req) => tagView(await metadefs.getTag(req.ctx, ns(req), param(req, 'tag'), io(req))),
    POST: async (req, reply) => {
      // No body: Glance checks {"name": tag} against the tag schema instead.
      deps.checkBody('tag', { name: param(req, 'tag') }, 'create');
      return reply.code(201).send(tagView(await metadefs.createTag(req.ctx, ns(req), param(req, 'tag'), io(req))));
    },
    PUT: async (req) => {
      const input = await body(req, 'tag');
      return tagView(await metadefs.updateTag(req.ctx, ns(req), param(req, 'tag'), input.name as string, io(req)));
    },
    DELETE: async (req, reply) => {
      await metadefs.deleteTag(req.ctx, ns(req), param(req, 'tag'), io(req));
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/metadefs/resource_types', {
    GET: async (req) => ({ resource_types: (await metadefs.listResourceTypes(io(req))).map(resourceTypeView) }),
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/resource_types', {
    GET: async (req) => ({ resource_type_associations: (await metadefs.listAssociations(req.ctx, ns(req), io(req))).map(associationView) }),
    POST: async (req, reply) => {
      const input = await body(req, 'resource_type') as { name: string; prefix?: string; properties_target?: string };
      return reply.code(201).send(associationView(await metadefs.associate(req.ctx, ns(req), input, io(req))));
    },
  });

  resource(app, '/v2/metadefs/namespaces/:namespace/resource_types/:resource_type', {
    DELETE: async (req, reply) => {
      await metadefs.dissociate(req.ctx, ns(req), param(req, 'resource_type'), io(req));
      return reply.code(204).send();
    },
  });
}
