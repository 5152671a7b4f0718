import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { UnsupportedMediaTypeError } from '../../core/errors.ts';
import type { Image } from '../../core/image.ts';
import { PATCH_MEDIA_TYPES, parsePatch, type PatchDialect } from '../../core/image-patch.ts';
import type { AppDeps } from '../app-deps.ts';
import { SITE_HEADER } from '../../transfer/egress-budget.ts';
import { HELD_ONLY_HEADER } from '../../transfer/parent-image-source.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import { parseRange } from './range.ts';
import { header, mediaType, octetBody, pageLinks, queryParams } from './request-helpers.ts';
import { imageView, memberView } from './views.ts';

type IdParams = { id: string };

/** Routes of glance/api/v2/router.py for images, image data, tags, members and actions. */
export function registerImageRoutes(app: FastifyInstance, deps: AppDeps): void {
  const { images } = deps;
  type Image = Parameters<typeof imageView>[0];
  const views = async (list: Image[]) => {
    const held = await deps.heldStores?.(list.map((i) => i.id));
    const weight = await deps.storeWeights?.() ?? ((s: string) => deps.stores.weight(s));
    return list.map((image) => imageView(image, {
      weight, showLocations: deps.showLocations, showDirectUrl: deps.showDirectUrl, held: held?.get(image.id),
    }));
  };
  const view = async (image: Image) => (await views([image]))[0];
  const storeIds = deps.stores.list().map((s) => s.id).join(',');

  resource(app, '/v2/images', {
    GET: async (req) => {
      const { pairs, map } = queryParams(req);
      const { images: page, more } = await images.list(req.ctx, map, { signal: req.clientSignal });
      const { first, next } = pageLinks('/v2/images', pairs, more ? page[page.length - 1].id : undefined);
      return { images: await views(page), first, schema: '/v2/schemas/images', ...(next === undefined ? {} : { next }) };
    },
    POST: async (req, reply) => {
      const image = await images.create(req.ctx, await jsonBody(req), { signal: req.clientSignal });
      return reply.code(201)
        .header('Location', `${deps.publicUrl}/v2/images/${image.id}`)
        .header('OpenStack-image-store-ids', storeIds)
        .header('OpenStack-image-import-methods', deps.imports.methods.join(','))
        .send(await view(image));
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
      const { data, declaredSize } = octetBody(req);
      await images.upload(req.ctx, (req.params as IdParams).id, data, {
        signal: req.clientSignal, declaredSize, storeId: header(req, 'x-image-meta-store'),
      });
      return reply.code(204).send();
    },
    // Before GET: fastify's implied HEAD would run GET's handler and open the bytes (at an edge,
    // start a fill) only to throw them away.
    HEAD: async (req, reply) => {
      const range = parseRange(header(req, 'range'), header(req, 'content-range'));
      const head = await images.downloadHead(req.ctx, (req.params as IdParams).id, range, { signal: req.clientSignal, prefer: preferredStores(req) });
      if (head.kind === 'no-data') return reply.code(204).send();
      return dataHeaders(reply, head).send();
    },
    GET: async (req, reply) => {
      const range = parseRange(header(req, 'range'), header(req, 'content-range'));
      const result = await images.download(req.ctx, (req.params as IdParams).id, range, {
        signal: req.clientSignal, prefer: preferredStores(req), heldOnly: header(req, HELD_ONLY_HEADER) !== undefined,
      });
      if (result.kind === 'no-data') {
        if (result.missing !== undefined) {
          req.log.warn({ image: result.image.id, stores: result.missing }, 'the image\'s recorded copies are gone from their stores: answered 204 No Content, as Glance does');
        }
        return reply.code(204).send();
      }
      // A child site's transfer is paced by this site's egress budget; clients never are.
      const child = header(req, SITE_HEADER);
      const stream = deps.egress !== undefined && child !== undefined ? deps.egress.throttle(child, result.stream, req.clientSignal) : result.stream;
      return dataHeaders(reply, result).send(stream);
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

/**
 * The headers of image data (Glance's: Content-Type, Content-MD5, Content-Length; 206 with
 * Content-Range for a range), and Accept-Ranges, which Glance does not send but QEMU's curl block
 * driver needs before it reads an image by its URL.
 */
function dataHeaders(reply: FastifyReply, d: { image: Image; start: number; end: number; partial: boolean }): FastifyReply {
  reply.header('Content-Type', 'application/octet-stream');
  reply.header('Accept-Ranges', 'bytes');
  if (d.image.checksum !== null) reply.header('Content-MD5', d.image.checksum);
  reply.header('Content-Length', String(d.end - d.start + 1));
  if (d.partial) reply.code(206).header('Content-Range', `bytes ${d.start}-${d.end}/${d.image.size}`);
  return reply;
}

/** `?prefer=store1,store2` (Glance API 2.18; repeated, the lists one after the other): the stores to download from first. */
function preferredStores(req: FastifyRequest): string[] | undefined {
  const given = queryParams(req).map.get('prefer');
  if (given === undefined) return undefined;
  return given.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}
