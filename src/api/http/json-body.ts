import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { BadRequestError } from '../../core/errors.ts';
import { PATCH_MEDIA_TYPES } from '../../core/image-patch.ts';

/** Largest JSON request body accepted. */
export const JSON_BODY_LIMIT = 1 << 20;

/** The parsed body of a JSON request whose text is not JSON (see jsonBody). */
const MALFORMED_JSON = Symbol('malformed JSON');

/**
 * Bodies: JSON (and both JSON-patch media types) parsed as they arrive; malformed JSON becomes
 * Glance's 400 in jsonBody(), so that a route checking the media type first (upload, PATCH) still
 * answers 415. Every other type is handed to the route as the raw stream (image uploads).
 */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', ...PATCH_MEDIA_TYPES], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch {
      done(null, MALFORMED_JSON);
    }
  });
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
}

/**
 * The JSON body of a request: already parsed for JSON media types; read from the stream for any
 * other type (Glance parses the body as JSON whatever Content-Type says).
 */
export async function jsonBody(req: FastifyRequest): Promise<unknown> {
  const body = req.body as unknown;
  if (body === MALFORMED_JSON) throw new BadRequestError('Malformed JSON in request body.');
  if (body === null || typeof body !== 'object' || typeof (body as Readable).pipe !== 'function') return body;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as Readable) {
    size += (chunk as Buffer).length;
    if (size > JSON_BODY_LIMIT) throw new BadRequestError('Request body too large.');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequestError('Malformed JSON in request body.');
  }
}
