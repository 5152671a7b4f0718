import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { BadRequestError, ReadOnlyAttributeError, SchemaViolationError } from '../../core/errors.ts';
import { metadefSchemaDocuments, propertySchema, tagListSchema, type JsonSchema } from './metadef-schemas.ts';

/**
 * Validation of metadef request bodies against the very documents served at
 * GET /v2/schemas/metadefs/{name}, as Glance's request deserializers do (glance/api/v2/
 * metadef_*.py `RequestDeserializer`): first `checkReadOnly` (`_check_allowed`, 403), then the
 * validator's `check` (`self.schema.validate(body)`, 400).
 *
 * Which body goes against which schema (Glance 25):
 * - `namespace`: POST /v2/metadefs/namespaces and PUT /v2/metadefs/namespaces/{namespace}.
 * - `object`: POST and PUT of …/objects[/{object_name}]; on POST (`'create'`) Glance also checks
 *   each value of the body's `properties` against the property schema without `name` required.
 * - `property`: POST …/properties and PUT …/properties/{property_name}.
 * - `tag`: PUT …/tags/{tag_name}; POST …/tags/{tag_name} has no body (Glance checks
 *   `{"name": tag_name}` against this schema, so a route may pass that).
 * - `tags`: POST …/tags, `{"tags": [{"name": …}]}` (metadef_tags.py `get_schema_for_list`; not
 *   the served `tags` collection schema).
 * - `resource_type`: POST …/resource_types (an association; its schema is named
 *   `resource_type_association`, the name Glance's messages quote).
 *
 * A refusal reads as Glance's (glance/schema.py `validate` → `InvalidObject`): "Provided object
 * does not match schema '<name>': <reason>", where the reason is the first line of what Python's
 * jsonschema says of the error, e.g. "'x…x' is too long", "'namespace' is a required property",
 * "1 is not of type 'string'" — values quoted as Python's repr.
 *
 * As in Glance (jsonschema.validate without a format checker), `format` (`date-time`, `regex`) is
 * not asserted, and nothing beyond the schema is: `readOnly` is an annotation only.
 */

export type MetadefBodySchema = 'namespace' | 'object' | 'property' | 'tag' | 'tags' | 'resource_type';

export interface MetadefValidator {
  /**
   * Throws `BadRequestError('Body expected in request.')` when `body` is not a JSON object, and
   * `SchemaViolationError` (400) when it does not validate against `schemaName`'s schema. With
   * `op` `'create'` and `schemaName` `'object'`, each of the body's properties is also checked
   * against the property schema (metadef_objects.py `create`); otherwise `op` changes nothing.
   */
  check(schemaName: MetadefBodySchema, body: unknown, op?: 'create' | 'update'): void;
}

/**
 * `_disallowed_properties` of each deserializer: a body naming one of them is refused with 403
 * "Attribute 'x' is read-only." before any schema check.
 */
const READ_ONLY: Readonly<Record<MetadefBodySchema, readonly string[]>> = {
  namespace: ['self', 'schema', 'created_at', 'updated_at'],
  object: ['self', 'schema', 'created_at', 'updated_at'],
  property: ['created_at', 'updated_at'],
  tag: ['created_at', 'updated_at'],
  tags: ['created_at', 'updated_at'],
  resource_type: ['created_at', 'updated_at'],
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * 403 `ReadOnlyAttributeError` "Attribute 'x' is read-only." when the top level of `body` names an
 * attribute the deserializer of `schemaName` disallows (glance/api/v2/metadef_*.py
 * `_check_allowed`, the same answer as for an image's read-only attributes). Checked in Glance's
 * order; a body that is not an object has no attributes and passes.
 */
export function checkReadOnly(schemaName: MetadefBodySchema, body: unknown): void {
  if (!isObject(body)) return;
  for (const key of READ_ONLY[schemaName]) {
    if (Object.hasOwn(body, key)) throw new ReadOnlyAttributeError(`Attribute '${key}' is read-only.`);
  }
}

/** A JSON value as Python's `repr` shows it after `json.loads` (as jsonschema quotes instances). */
export function pythonRepr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'nan';
  if (typeof value === 'string') return pythonStringRepr(value);
  if (Array.isArray(value)) return `[${value.map(pythonRepr).join(', ')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${pythonStringRepr(k)}: ${pythonRepr(v)}`).join(', ')}}`;
  }
  return String(value);
}

/** Python's str repr: single quotes unless the text has a ' and no ", control characters escaped. */
function pythonStringRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code >= 0xd800 && code <= 0xdfff) out += `\\u${code.toString(16)}`;
    else out += ch;
  }
  return out + quote;
}

/** The first line of python-jsonschema's message for one ajv error (jsonschema 4.x wording). */
function reason(e: ErrorObject): string {
  const data: unknown = e.data;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type': {
      const types = Array.isArray(e.schema) ? e.schema as string[] : [String(e.schema)];
      return `${pythonRepr(data)} is not of type ${types.map((t) => `'${t}'`).join(', ')}`;
    }
    case 'required':
      return `'${String(p.missingProperty)}' is a required property`;
    case 'additionalProperties': {
      // jsonschema names every unexpected property, sorted; ajv stops at the first.
      const declared = (e.parentSchema as JsonSchema | undefined)?.properties as JsonSchema | undefined;
      const extras = isObject(data) && declared !== undefined
        ? Object.keys(data).filter((k) => !Object.hasOwn(declared, k)).sort()
        : [String(p.additionalProperty)];
      return `Additional properties are not allowed (${extras.map(pythonStringRepr).join(', ')} ${extras.length === 1 ? 'was' : 'were'} unexpected)`;
    }
    case 'enum':
      return `${pythonRepr(data)} is not one of ${pythonRepr(p.allowedValues)}`;
    case 'maxLength':
    case 'maxItems':
      return `${pythonRepr(data)} ${p.limit === 0 ? 'is expected to be empty' : 'is too long'}`;
    case 'minLength':
    case 'minItems':
      return `${pythonRepr(data)} ${p.limit === 1 ? 'should be non-empty' : 'is too short'}`;
    case 'minimum':
      return `${pythonRepr(data)} is less than the minimum of ${String(p.limit)}`;
    case 'maximum':
      return `${pythonRepr(data)} is greater than the maximum of ${String(p.limit)}`;
    case 'uniqueItems':
      return `${pythonRepr(data)} has non-unique elements`;
    default:
      return `${e.instancePath || 'body'} ${e.message ?? 'is invalid'}`;
  }
}

/** Python's ordering of two path segments (str by code point, int by value). */
function compareSegments(a: string | number, b: string | number): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = [...String(a)].map((c) => c.codePointAt(0)!);
  const y = [...String(b)].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** The instance path of an error as python-jsonschema's `error.path`: array indices as numbers. */
function pathOf(root: unknown, pointer: string): (string | number)[] {
  if (pointer === '') return [];
  const out: (string | number)[] = [];
  let at: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    const seg = Array.isArray(at) ? Number(key) : key;
    out.push(seg);
    at = (at as Record<string | number, unknown> | undefined)?.[seg];
  }
  return out;
}

function isJsonType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null': return value === null;
    case 'boolean': return typeof value === 'boolean';
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'number': return typeof value === 'number';
    case 'string': return typeof value === 'string';
    case 'array': return Array.isArray(value);
    case 'object': return isObject(value);
    default: return false;
  }
}

/**
 * The error python-jsonschema's `best_match` (what `jsonschema.validate` raises) would pick among
 * all of them: the one highest up in the instance; among siblings, the one at the greatest path;
 * then one whose schema's `type` the instance does not match; then the first in the order
 * jsonschema meets them (the schema's keys in document order; ajv's order breaks what is left).
 */
function bestMatch(errors: readonly ErrorObject[], root: unknown): ErrorObject {
  const ranked = errors.map((e, i) => {
    const schema = e.parentSchema as JsonSchema | undefined;
    const type = schema?.type;
    const types = typeof type === 'string' ? [type] : Array.isArray(type) ? type as string[] : undefined;
    return {
      e,
      path: pathOf(root, e.instancePath),
      offType: types === undefined || !types.some((t) => isJsonType(e.data, t)),
      order: schema === undefined ? 0 : Object.keys(schema).indexOf(e.keyword),
      i,
    };
  });
  ranked.sort((a, b) => {
    if (a.path.length !== b.path.length) return a.path.length - b.path.length;
    for (let k = 0; k < a.path.length; k++) {
      const c = compareSegments(a.path[k]!, b.path[k]!);
      if (c !== 0) return -c;
    }
    if (a.offType !== b.offType) return a.offType ? -1 : 1;
    return a.order - b.order || a.i - b.i;
  });
  return ranked[0]!.e;
}

interface Compiled {
  /** The name Glance's messages quote (the schema document's `name`). */
  name: string;
  validate: ValidateFunction;
}

/**
 * Compiles every metadef body schema once (draft-4-style documents: `definitions` and `$ref`s to
 * them, `readOnly`, `null` in enums, Glance's own `name` and `links` keywords — so not strict;
 * formats not validated, defaults not applied, nothing coerced). The result holds no state that
 * changes: one per app, shared by every request.
 */
export function metadefValidator(): MetadefValidator {
  const ajv = new Ajv({
    strict: false,
    validateFormats: false,
    allErrors: true, // every error, to pick the one jsonschema would report (`bestMatch`)
    verbose: true, // errors carry the offending value and schema, for jsonschema-style reasons
    useDefaults: false,
    coerceTypes: false,
  });
  const docs = metadefSchemaDocuments();
  const compile = (schema: JsonSchema): Compiled => ({ name: String(schema.name), validate: ajv.compile(schema) });
  const schemas: Record<MetadefBodySchema, Compiled> = {
    namespace: compile(docs.namespace),
    object: compile(docs.object),
    property: compile(docs.property),
    tag: compile(docs.tag),
    tags: compile(tagListSchema()),
    resource_type: compile(docs.resource_type),
  };
  const propertyInObject = compile(propertySchema(false));

  const validate = (schema: Compiled, value: unknown): void => {
    if (schema.validate(value)) return;
    const errors = schema.validate.errors ?? [];
    const why = errors.length === 0 ? 'invalid' : reason(bestMatch(errors, value));
    throw new SchemaViolationError(`Provided object does not match schema '${schema.name}': ${why}`);
  };

  return {
    check(schemaName, body, op) {
      if (!isObject(body)) throw new BadRequestError('Body expected in request.');
      if (!Object.hasOwn(schemas, schemaName)) throw new TypeError(`no metadef body schema ${String(schemaName)}`);
      const schema = schemas[schemaName];
      validate(schema, body);
      if (schemaName === 'object' && op === 'create' && isObject(body.properties)) {
        for (const property of Object.values(body.properties)) validate(propertyInObject, property);
      }
    },
  };
}
