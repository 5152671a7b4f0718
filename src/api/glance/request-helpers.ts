import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { BadRequestError, UnsupportedMediaTypeError } from '../../core/errors.ts';
import type { QueryParams } from '../../core/list-query.ts';

export function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function mediaType(req: FastifyRequest): string {
  return (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase();
}

/** The raw query string's pairs, in order, and the same grouped by name (repeatable names keep every value). */
export function queryParams(req: FastifyRequest): { pairs: [string, string][]; map: QueryParams } {
  const q = req.url.indexOf('?');
  const pairs = q < 0 ? [] : [...new URLSearchParams(req.url.slice(q + 1))];
  const map = new Map<string, string[]>();
  for (const [k, v] of pairs) map.set(k, [...(map.get(k) ?? []), v]);
  return { pairs, map };
}

/**
 * The body of an image-data request (PUT …/file, PUT …/stage): `application/octet-stream` only
 * (415), with `x-openstack-image-size` checked. A declared size the body's own Content-Length
 * already contradicts is refused before the image changes state.
 */
export function octetBody(req: FastifyRequest): { data: AsyncIterable<Uint8Array>; declaredSize?: number } {
  if (mediaType(req) !== 'application/octet-stream') {
    throw new UnsupportedMediaTypeError(`The request media type ${mediaType(req) || 'None'} is not supported by this server.`);
  }
  const declared = header(req, 'x-openstack-image-size');
  if (declared !== undefined && !/^\d+$/.test(declared.trim())) throw new BadRequestError(`Invalid x-openstack-image-size: ${declared}`);
  const length = header(req, 'content-length');
  if (declared !== undefined && length !== undefined && Number(length) !== Number(declared)) {
    throw new BadRequestError(`Image size mismatch: ${length} bytes sent, ${declared.trim()} were declared.`);
  }
  return {
    data: (req.body as Readable | undefined) ?? (async function* () { /* empty body */ })(),
    declaredSize: declared === undefined ? undefined : Number(declared),
  };
}

/** `first` and `next` links of a paged collection (relative, as Glance gives them). */
export function pageLinks(path: string, pairs: [string, string][], lastId: string | undefined): { first: string; next?: string } {
  const withoutMarker = pairs.filter(([k]) => k !== 'marker');
  const qs = (p: [string, string][]) => (p.length === 0 ? '' : `?${new URLSearchParams(p).toString()}`);
  const links: { first: string; next?: string } = { first: `${path}${qs(withoutMarker)}` };
  if (lastId !== undefined) links.next = `${path}${qs([...withoutMarker, ['marker', lastId]])}`;
  return links;
}
