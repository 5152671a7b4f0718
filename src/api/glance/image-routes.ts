import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError, UnsupportedMediaTypeError } from '../../core/errors.ts';
import { PATCH_MEDIA_TYPES, parsePatch, type PatchDialect } from '../../core/image-patch.ts';
import type { QueryParams } from '../../core/list-query.ts';
import { jsonBody, type AppDeps } from '../create-app.ts';
import { resource } from '../resource.ts';
import { parseRange } from './range.ts';
import { imageView, memberView } from './views.ts';

type IdParams = { id: string };

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaType(req: FastifyRequest): string {
  return (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase();
}

/** The raw query string's pairs, in order (repeatable names such as `tag` keep every value). */
function queryPairs(req: FastifyRequest): [string, string][] {
  const q = req.url.indexOf('?');
  return q < 0 ? [] : [...new URLSearchParams(req.url.slice(q + 1))];
}

function toParams(pairs: [string, string][]): QueryParams {
  const params = new Map<string, string[]>();
  for (const [k, v] of pairs) params.set(k, [...(params.get(k) ?? []), v]);
  return params;
}

/** Routes of glance/api/v2/router.py for images, image data, tags, members and actions. */
export function registerImageRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { images } = deps;
  const view = (image: Parameters<typeof imageView>[0]) => imageView(image, {
    stores: deps.stores, showLocations: deps.showLocations, showDirectUrl: deps.showDirectUrl,
  });
  const storeIds = deps.stores.list().map((s) => s.id).join(',');

  resource(app, '/v2/images', {
    GET: async (req) => {
      const pairs = queryPairs(req);
      const { images: page, more } = await images.list(req.ctx, toParams(pairs), { signal: req.clientSignal });
      const withoutMarker = pairs.filter(([k]) => k !== 'marker');
      const qs = (p: [string, string][]) => (p.length === 0 ? '' : `?${new URLSearchParams(p).toString()}`);
      const body: Record<string, unknown> = {
        images: page.map(view),
        first: `/v2/images${qs(withoutMarker)}`,
        schema: '/v2/schemas/images',
      };
      if (more) body.next = `/v2/images${qs([...withoutMarker, ['marker', page[page.length - 1].id]])}`;
      return body;
    },
    POST: async (req, reply) => {
      const image = await images.create(req.ctx, await jsonBody(req), { signal: req.clientSignal });
      return reply.code(201)
        .header('Location', `${deps.publicUrl}/v2/images/${image.id}`)
        .header('OpenStack-image-store-ids', storeIds)
        .send(view(image));
    },
  });

  resource(app, '/v2/images/:id', {
    GET: async (req) => view(await images.get(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal })),
    PATCH: async (req) => {
      const type = mediaType(req);
      if (!(PATCH_MEDIA_TYPES as readonly string[]).includes(type)) {
        throw new UnsupportedMediaTypeError(`The request media type ${type || 'None'} is not supported by this server.`, {
          'Accept-Patch': PATCH_MEDIA_TYPES.join(', '),
        });
      }
      const dialect: PatchDialect = type === PATCH_MEDIA_TYPES[0] ? 'v2.0' : 'v2.1';
      const ops = parsePatch(await jsonBody(req), dialect);
      return view(await images.patch(req.ctx, (req.params as IdParams).id, ops, dialect, { signal: req.clientSignal }));
    },
    DELETE: async (req, reply) => {
      await images.delete(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/images/:id/file', {
    PUT: async (req, reply) => {
      if (mediaType(req) !== 'application/octet-stream') {
        throw new UnsupportedMediaTypeError(`The request media type ${mediaType(req) || 'None'} is not supported by this server.`);
      }
      const declared = header(req, 'x-openstack-image-size');
      if (declared !== undefined && !/^\d+$/.test(declared.trim())) {
        throw new BadRequestError(`Invalid x-openstack-image-size: ${declared}`);
      }
      // A declared size the body's own length already contradicts is refused before the image
      // goes to 'saving' (a mismatch found only while streaming puts it back to 'queued').
      const length = header(req, 'content-length');
      if (declared !== undefined && length !== undefined && Number(length) !== Number(declared)) {
        throw new BadRequestError(`Image size mismatch: ${length} bytes sent, ${declared.trim()} were declared.`);
      }
      const body = (req.body as Readable | undefined) ?? (async function* () { /* empty body */ })();
      await images.upload(req.ctx, (req.params as IdParams).id, body, {
        signal: req.clientSignal,
        declaredSize: declared === undefined ? undefined : Number(declared),
        storeId: header(req, 'x-image-meta-store'),
      });
      return reply.code(204).send();
    },
    GET: async (req, reply) => {
      const range = parseRange(header(req, 'range'), header(req, 'content-range'));
      const result = await images.download(req.ctx, (req.params as IdParams).id, range, { signal: req.clientSignal });
      if (result.kind === 'no-data') return reply.code(204).send();
      const { image, stream, start, end, partial } = result;
      reply.header('Content-Type', 'application/octet-stream');
      if (image.checksum !== null) reply.header('Content-MD5', image.checksum);
      reply.header('Content-Length', String(end - start + 1));
      if (partial) reply.code(206).header('Content-Range', `bytes ${start}-${end}/${image.size}`);
      return reply.send(stream);
    },
  });

  resource(app, '/v2/images/:id/tags/:tag', {
    PUT: async (req, reply) => {
      const { id, tag } = req.params as IdParams & { tag: string };
      await images.addTag(req.ctx, id, tag, { signal: req.clientSignal });
      return reply.code(204).send();
    },
    DELETE: async (req, reply) => {
      const { id, tag } = req.params as IdParams & { tag: string };
      await images.removeTag(req.ctx, id, tag, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  resource(app, '/v2/images/:id/members', {
    GET: async (req) => ({
      members: (await images.listMembers(req.ctx, (req.params as IdParams).id, { signal: req.clientSignal })).map(memberView),
      schema: '/v2/schemas/members',
    }),
    POST: async (req) => memberView(await images.addMember(req.ctx, (req.params as IdParams).id, await jsonBody(req), { signal: req.clientSignal })),
  });

  resource(app, '/v2/images/:id/members/:member', {
    GET: async (req) => {
      const { id, member } = req.params as IdParams & { member: string };
      return memberView(await images.getMember(req.ctx, id, member, { signal: req.clientSignal }));
    },
    PUT: async (req) => {
      const { id, member } = req.params as IdParams & { member: string };
      return memberView(await images.updateMember(req.ctx, id, member, await jsonBody(req), { signal: req.clientSignal }));
    },
    DELETE: async (req, reply) => {
      const { id, member } = req.params as IdParams & { member: string };
      await images.removeMember(req.ctx, id, member, { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  for (const action of ['deactivate', 'reactivate'] as const) {
    resource(app, `/v2/images/:id/actions/${action}`, {
      POST: async (req, reply) => {
        await images.setActivation(req.ctx, (req.params as IdParams).id, action === 'reactivate', { signal: req.clientSignal });
        return reply.code(204).send();
      },
    });
  }
}
