import { ReadOnlyAttributeError, SchemaViolationError } from './errors.ts';
import {
  CONTAINER_FORMATS, DISK_FORMATS, READ_ONLY, UUID_RE, VISIBILITIES, isReservedName,
} from './image.ts';

/**
 * Validation of client-written image attributes against Glance's image schema
 * (GET /v2/schemas/image). Messages follow Glance's "Provided object does not match schema
 * 'image': …" so clients show the same text.
 */

type Rule = (value: unknown, key: string) => unknown;

function violation(detail: string): SchemaViolationError {
  return new SchemaViolationError(`Provided object does not match schema 'image': ${detail}`);
}

/** A client value as quoted in messages; one nested too deeply to serialise is elided (never a 500). */
export function repr(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Array.isArray(value) ? '[...]' : '{...}';
  }
}

/**
 * True when `s` has more than `max` characters. Glance's jsonschema `maxLength` counts characters
 * (Python str, i.e. code points), not UTF-16 units: 255 emoji are a valid name.
 */
export function tooLong(s: string, max: number): boolean {
  if (s.length <= max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return true;
  return false;
}

const nullableString = (max: number): Rule => (v) => {
  if (v === null) return null;
  if (typeof v !== 'string') throw violation(`${repr(v)} is not of type 'null', 'string'`);
  if (tooLong(v, max)) throw violation(`${repr(v)} is too long`);
  return v;
};

const enumOf = (values: readonly string[], nullable: boolean): Rule => (v) => {
  if (v === null && nullable) return null;
  if (typeof v !== 'string' || !values.includes(v)) {
    throw violation(`${repr(v)} is not one of [${[...(nullable ? ['None'] : []), ...values.map((x) => `'${x}'`)].join(', ')}]`);
  }
  return v;
};

const boolean: Rule = (v) => {
  if (typeof v !== 'boolean') throw violation(`${repr(v)} is not of type 'boolean'`);
  return v;
};

const nonNegativeInteger: Rule = (v) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw violation(`${repr(v)} is not of type 'integer'`);
  if (v < 0) throw new SchemaViolationError('Cannot be a negative value.');
  return v;
};

const tags: Rule = (v) => {
  if (!Array.isArray(v)) throw violation(`${repr(v)} is not of type 'array'`);
  for (const t of v) {
    if (typeof t !== 'string') throw violation(`${repr(t)} is not of type 'string'`);
    if (tooLong(t, 255)) throw violation(`${repr(t)} is too long`);
  }
  return [...new Set(v as string[])];
};

const uuidOrNull: Rule = (v) => {
  if (v === null) return '';
  if (typeof v !== 'string') throw violation(`${repr(v)} is not of type 'null', 'string'`);
  if (!UUID_RE.test(v)) throw violation(`${repr(v)} does not match '${UUID_RE.source}'`);
  return v;
};

const customString: Rule = (v) => {
  if (typeof v !== 'string') throw violation(`${repr(v)} is not of type 'string'`);
  return v;
};

/** Rules for base attributes a client may write. */
const BASE_RULES: Record<string, Rule> = {
  name: nullableString(255),
  visibility: enumOf(VISIBILITIES, false),
  protected: boolean,
  os_hidden: boolean,
  disk_format: enumOf(DISK_FORMATS, true),
  container_format: enumOf(CONTAINER_FORMATS, true),
  min_disk: nonNegativeInteger,
  min_ram: nonNegativeInteger,
  owner: nullableString(255),
  tags,
};

/** Typed custom properties of Glance's default schema-image.json. */
const CUSTOM_RULES: Record<string, Rule> = {
  kernel_id: uuidOrNull,
  ramdisk_id: uuidOrNull,
  cinder_encryption_key_deletion_policy: enumOf(['on_image_deletion', 'do_not_delete'], false),
};

export function isBaseWritable(key: string): boolean {
  return Object.hasOwn(BASE_RULES, key);
}

/**
 * 403 for attributes no client may write: "Attribute 'x' is read-only." / "Attribute 'x' is
 * reserved." (glance/api/v2/images.py `_check_allowed`).
 */
export function assertWritableName(key: string): void {
  if ((READ_ONLY as readonly string[]).includes(key)) throw new ReadOnlyAttributeError(`Attribute '${key}' is read-only.`);
  if (isReservedName(key)) throw new ReadOnlyAttributeError(`Attribute '${key}' is reserved.`);
}

/** Validates one attribute value and returns it normalised (tags de-duplicated...). */
export function validateAttribute(key: string, value: unknown): unknown {
  if (tooLong(key, 255) || key.length === 0 || !key.isWellFormed()) throw violation(`${repr(key)} is not a valid property name`);
  const rule = Object.hasOwn(BASE_RULES, key) ? BASE_RULES[key]
    : Object.hasOwn(CUSTOM_RULES, key) ? CUSTOM_RULES[key] : customString;
  const v = rule(value, key);
  // The catalog stores UTF-8: a lone surrogate (legal in JSON text, not in Unicode) would come back
  // as U+FFFD — another value than the one accepted, and two such values could collide.
  if ((typeof v === 'string' && !v.isWellFormed()) || (Array.isArray(v) && v.some((t) => !(t as string).isWellFormed()))) {
    throw violation(`${repr(value)} is not a valid Unicode string`);
  }
  return v;
}
