import { BadRequestError, ConflictError, ForbiddenError } from './errors.ts';
import { setProperty, type Image } from './image.ts';
import { assertWritableName, isBaseWritable, repr, validateAttribute } from './image-validation.ts';

/**
 * PATCH /v2/images/{id}. "The PATCH request … must use the media type
 * application/openstack-images-v2.1-json-patch" (api-ref); the deprecated
 * application/openstack-images-v2.0-json-patch dialect is accepted too because tempest uses it.
 */
export const PATCH_MEDIA_TYPES = [
  'application/openstack-images-v2.0-json-patch',
  'application/openstack-images-v2.1-json-patch',
] as const;
export type PatchDialect = 'v2.0' | 'v2.1';

export interface PatchOp {
  op: 'add' | 'remove' | 'replace';
  key: string;
  value?: unknown;
}

const OPS = ['add', 'remove', 'replace'] as const;

/** Decodes one JSON-pointer segment ("~1" → "/", "~0" → "~"). */
function decodePointer(path: unknown): string {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new BadRequestError(`Pointer \`${typeof path === 'string' ? path : repr(path)}\` does not start with "/".`);
  }
  if (/~(?![01])/.test(path)) throw new BadRequestError(`Pointer \`${path}\` contains "~" not part of a recognized escape sequence.`);
  const parts = path.slice(1).split('/');
  if (parts[0] === 'locations') {
    throw new ForbiddenError("It's not allowed to add locations if locations are invisible.");
  }
  if (parts.length !== 1) throw new BadRequestError(`Nested paths are not allowed`);
  return parts[0].replaceAll('~1', '/').replaceAll('~0', '~');
}

/** Parses and validates a patch document of either dialect into normalised operations. */
export function parsePatch(body: unknown, dialect: PatchDialect): PatchOp[] {
  if (!Array.isArray(body)) throw new BadRequestError('Request body must be a JSON array of operation objects.');
  return body.map((raw): PatchOp => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new BadRequestError('Operations must be JSON objects.');
    }
    const o = raw as Record<string, unknown>;
    let op: PatchOp['op'];
    let path: unknown;
    if (dialect === 'v2.1') {
      if (!OPS.includes(o.op as PatchOp['op'])) {
        throw new BadRequestError(`Operation objects must contain exactly one member named "op" with one of: add, remove, replace.`);
      }
      op = o.op as PatchOp['op'];
      path = o.path;
    } else {
      const named = OPS.filter((k) => Object.hasOwn(o, k));
      if (named.length !== 1) {
        throw new BadRequestError('Operation objects must contain exactly one member named "add", "remove", or "replace".');
      }
      op = named[0];
      path = o[op];
    }
    const key = decodePointer(path);
    if (op !== 'remove' && !Object.hasOwn(o, 'value')) {
      throw new BadRequestError(`Operation "${op}" requires a member named "value".`);
    }
    return op === 'remove' ? { op, key } : { op, key, value: o.value };
  });
}

/**
 * Applies operations to a copy of `image` and returns it; policy checks that depend on the caller
 * (visibility 'public', owner) are the service's.
 */
export function applyPatch(image: Image, ops: readonly PatchOp[], dialect: PatchDialect): Image {
  const next: Image = { ...image, tags: [...image.tags], properties: { ...image.properties } };
  for (const { op, key, value } of ops) {
    assertWritableName(key);
    if (isBaseWritable(key)) {
      if (op === 'remove') throw new ForbiddenError(`Properties ${key} cannot be removed.`);
      const v = validateAttribute(key, value);
      if ((key === 'disk_format' || key === 'container_format') && v !== image[key]
        && image.status !== 'queued' && image.status !== 'importing') {
        throw new ForbiddenError(`Attribute ${key} can be only replaced for a queued image.`);
      }
      (next as unknown as Record<string, unknown>)[key] = v;
      continue;
    }
    const exists = Object.hasOwn(next.properties, key);
    if (op === 'remove') {
      if (!exists) throw new ConflictError(`Property ${key} does not exist.`);
      delete next.properties[key];
    } else {
      if (op === 'replace' && !exists) throw new ConflictError(`Property ${key} does not exist.`);
      if (op === 'add' && exists && dialect === 'v2.0') throw new ConflictError(`Property ${key} already present.`);
      setProperty(next.properties, key, validateAttribute(key, value) as string);
    }
  }
  return next;
}
