import type { FastifyInstance } from 'fastify';
import { ForbiddenError, NotFoundError } from '../../core/errors.ts';
import type { AppDeps } from '../app-deps.ts';
import { resource } from '../resource.ts';
import { metadefSchemaDocuments } from './metadef-schemas.ts';
import { schemaDocuments } from './schemas.ts';
import { versionsDocument } from './versions.ts';

/** Versions, health, schemas and store/import discovery (glance/api/versions.py, v2/discovery.py). */
export function registerDiscoveryRoutes(app: FastifyInstance, deps: AppDeps): void {
  const schemas = schemaDocuments();
  const metadefSchemas: Record<string, Record<string, unknown>> = metadefSchemaDocuments();
  resource(app, '/', { GET: async (_req, reply) => reply.code(300).send(versionsDocument(deps.publicUrl, deps.cache !== undefined)) });
  resource(app, '/versions', { GET: async () => versionsDocument(deps.publicUrl, deps.cache !== undefined) });
  resource(app, '/healthcheck', { GET: async (_req, reply) => reply.type('text/plain').send('OK') });

  resource(app, '/v2/schemas/:name', {
    GET: async (req) => {
      const doc = schemas[(req.params as { name: string }).name];
      if (doc === undefined || !Object.hasOwn(schemas, (req.params as { name: string }).name)) {
        throw new NotFoundError('The resource could not be found.');
      }
      return doc;
    },
  });

  // GET /v2/schemas/metadefs/{name}: namespace(s), resource_type(s), property/properties,
  // object(s), tag(s) (glance/api/v2/router.py); any other name is 404 as Glance's router answers.
  resource(app, '/v2/schemas/metadefs/:name', {
    GET: async (req) => {
      const name = (req.params as { name: string }).name;
      if (!Object.hasOwn(metadefSchemas, name)) throw new NotFoundError('The resource could not be found.');
      return metadefSchemas[name];
    },
  });

  // GET /v2/info/stores: "default" and "read-only" are the strings "true" (discovery.py); the
  // detail adds type, weight and properties, for admins.
  const stores = async (detail: boolean) => ({
    stores: (await deps.storeDescriptions()).map((s) => ({
      id: s.id,
      ...(s.description === '' ? {} : { description: s.description }),
      ...(s.default ? { default: 'true' } : {}),
      ...(s.read_only ? { 'read-only': 'true' } : {}),
      ...(detail ? { type: s.type, weight: s.weight, properties: s.properties } : {}),
    })),
  });
  resource(app, '/v2/info/stores', { GET: async () => stores(false) });
  resource(app, '/v2/info/stores/detail', {
    GET: async (req) => {
      if (!req.ctx.isAdmin && !req.ctx.roles.includes('service')) {
        throw new ForbiddenError('You are not authorized to complete stores_info_detail action.');
      }
      return stores(true);
    },
  });
  resource(app, '/v2/info/import', {
    GET: async () => ({
      'import-methods': { description: 'Import methods available.', type: 'array', value: [...deps.imports.methods] },
    }),
  });
}
