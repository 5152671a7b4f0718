import { BadRequestError, ConflictError, ForbiddenError } from './errors.ts';
import { setProperty, type Image } from './image.ts';
import { parseLocationList, parseLocationValue } from './image-locations.ts';
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
  /**
   * `locations` only: the second segment of `/locations/N` or `/locations/-` (add, remove). The
   * value of a location operation is parsed: a LocationValue (add), a LocationValue[] (replace).
   */
  position?: string;
  value?: unknown;
}

/**
 * How deep a path may be, per operation (the deserializer's `_path_depth_limits`): `locations`
 * takes `/locations/N` for add and remove and `/locations` for replace; everything else one segment.
 */
const LOCATION_DEPTH = { add: 2, remove: 2, replace: 1 } as const;

const OPS = ['add', 'remove', 'replace'] as const;

/**
 * Decodes a JSON pointer ("~1" → "/", "~0" → "~"): one segment, or `locations` with the position
 * its operation takes ("Invalid JSON pointer for this resource" otherwise, as Glance's
 * `_validate_path`).
 */
function decodePointer(path: unknown, op: PatchOp['op']): { key: string; position?: string } {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new BadRequestError(`Pointer \`${typeof path === 'string' ? path : repr(path)}\` does not start with "/".`);
  }
  if (/~(?![01])/.test(path)) throw new BadRequestError(`Pointer \`${path}\` contains "~" not part of a recognized escape sequence.`);
  const parts = path.slice(1).split('/').map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
  if (parts[0] === 'locations') {
    if (parts.length !== LOCATION_DEPTH[op]) throw new BadRequestError(`Invalid JSON pointer for this resource: '/${parts.join('/')}'`);
    return parts.length === 1 ? { key: 'locations' } : { key: 'locations', position: parts[1] };
  }
  if (parts.length !== 1) throw new BadRequestError(`Nested paths are not allowed`);
  return { key: parts[0] };
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
    const { key, position } = decodePointer(path, op);
    if (op !== 'remove' && !Object.hasOwn(o, 'value')) {
      throw new BadRequestError(`Operation "${op}" requires a member named "value".`);
    }
    if (key === 'locations') {
      // Validated against the image schema's `locations` as the deserializer does (400).
      if (op === 'remove') return { op, key, position };
      return op === 'add' ? { op, key, position, value: parseLocationValue(o.value) } : { op, key, value: parseLocationList(o.value) };
    }
    return op === 'remove' ? { op, key } : { op, key, value: o.value };
  });
}

/**
 * Applies operations to a copy of `image` and returns it; policy checks that depend on the caller
 * (visibility 'public', owner) are the service's. Operations on `locations` go to `locations`
 * (image-locations.ts), in their turn; without it they are refused as Glance refuses them when
 * locations are not shown.
 */
export function applyPatch(image: Image, ops: readonly PatchOp[], dialect: PatchDialect, locations?: (next: Image, op: PatchOp) => void): Image {
  const next: Image = { ...image, tags: [...image.tags], properties: { ...image.properties }, locations: [...image.locations] };
  for (const patchOp of ops) {
    const { op, key, value } = patchOp;
    if (key === 'locations') {
      if (locations === undefined) throw new ForbiddenError(`It's not allowed to ${op === 'replace' ? 'update' : op} locations if locations are invisible.`);
      locations(next, patchOp);
      continue;
    }
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
