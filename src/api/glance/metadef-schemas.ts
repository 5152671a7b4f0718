/**
 * JSON-Schema documents of Glance's metadata definitions (metadefs) API, as Glance serves them at
 * GET /v2/schemas/metadefs/{name} (glance/api/v2/schemas.py, built by `get_schema` /
 * `get_collection_schema` of glance/api/v2/metadef_namespaces.py, metadef_objects.py,
 * metadef_properties.py, metadef_resource_types.py and metadef_tags.py, rendered by
 * glance/schema.py `Schema.raw`, `CollectionSchema.raw` and `DictCollectionSchema.raw`).
 *
 * Contract:
 * - Every call builds new objects (nothing here is shared or mutable between callers), so a
 *   caller may hand a document to a serializer or a validator compiler without copying it.
 * - Keys come in the order Glance's dicts put them: `name`, `properties`, `additionalProperties`,
 *   `definitions`, `required`, `links` for an item schema; `name`, `properties`, `links`,
 *   `definitions` for a collection schema. The item schema inside a collection carries no
 *   `definitions` of its own: Glance hoists them to the collection (its `$ref`s still resolve
 *   against the document's root).
 * - Where the api-ref samples (api-ref/source/v2/samples/schemas-metadef-*.json) and the code
 *   disagree, the code wins: the samples show `"maxLength": 255` for the `name` of a property
 *   (in `definitions.property` and in the property schemas), of an object and of a tag, but the
 *   code has said 80 since Glance's "Fix 500 if user passes name with more than 80 characters"
 *   (2017, the width of the database columns), and 80 is what Glance 25 serves.
 */

export type JsonSchema = Record<string, unknown>;

/** The {name}s of GET /v2/schemas/metadefs/{name} (glance/api/v2/router.py). */
export const METADEF_SCHEMA_NAMES = [
  'namespace', 'namespaces',
  'resource_type', 'resource_types',
  'property', 'properties',
  'object', 'objects',
  'tag', 'tags',
] as const;
export type MetadefSchemaName = (typeof METADEF_SCHEMA_NAMES)[number];

/** The types a metadef property may declare; `null` is listed as Glance lists `None`. */
const PROPERTY_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string', null];

/** Glance's `glance.schema.Schema.raw()`: additional properties are never allowed. */
function itemSchema(
  name: string,
  properties: JsonSchema,
  opts: { required?: string[]; definitions?: JsonSchema } = {},
): JsonSchema {
  return {
    name,
    properties,
    additionalProperties: false,
    ...(opts.definitions === undefined ? {} : { definitions: opts.definitions }),
    ...(opts.required === undefined || opts.required.length === 0 ? {} : { required: opts.required }),
  };
}

/** The three links of every paged collection schema (`CollectionSchema.raw`). */
function collectionLinks(): JsonSchema[] {
  return [
    { rel: 'first', href: '{first}' },
    { rel: 'next', href: '{next}' },
    { rel: 'describedby', href: '{schema}' },
  ];
}

/**
 * `CollectionSchema.raw` (an array of items) or, with `keyed`, `DictCollectionSchema.raw` (an
 * object whose values are the items: the properties of a namespace, keyed by property name).
 */
function collectionSchema(name: string, item: JsonSchema, keyed = false): JsonSchema {
  const { definitions, ...itemWithoutDefinitions } = item;
  return {
    name,
    properties: {
      [name]: keyed
        ? { type: 'object', additionalProperties: itemWithoutDefinitions }
        : { type: 'array', items: itemWithoutDefinitions },
      first: { type: 'string' },
      next: { type: 'string' },
      schema: { type: 'string' },
    },
    links: collectionLinks(),
    ...(definitions === undefined ? {} : { definitions }),
  };
}

/** `created_at` / `updated_at` as every metadef schema declares them (read-only, date-time). */
function timestamp(description: string): JsonSchema {
  return { type: 'string', readOnly: true, description, format: 'date-time' };
}

const readOnlyString = (): JsonSchema => ({ readOnly: true, type: 'string' });

/** The schema of one property type: the values of `definitions.property`, and the property schema. */
function propertyTypeProperties(): JsonSchema {
  const typeEnum = () => ({ type: 'string', enum: [...PROPERTY_TYPES] });
  return {
    name: { type: 'string', maxLength: 80 },
    title: { type: 'string' },
    description: { type: 'string' },
    operators: { type: 'array', items: { type: 'string' } },
    type: typeEnum(),
    required: { $ref: '#/definitions/stringArray' },
    minimum: { type: 'number' },
    maximum: { type: 'number' },
    maxLength: { $ref: '#/definitions/positiveInteger' },
    minLength: { $ref: '#/definitions/positiveIntegerDefault0' },
    pattern: { type: 'string', format: 'regex' },
    enum: { type: 'array' },
    readonly: { type: 'boolean' },
    default: {},
    items: {
      type: 'object',
      properties: { type: typeEnum(), enum: { type: 'array' } },
    },
    maxItems: { $ref: '#/definitions/positiveInteger' },
    minItems: { $ref: '#/definitions/positiveIntegerDefault0' },
    uniqueItems: { type: 'boolean', default: false },
    additionalItems: { type: 'boolean' },
  };
}

/**
 * `positiveInteger`, `positiveIntegerDefault0` and `stringArray`. The property schemas' own
 * `stringArray` needs at least one item (metadef_properties.py `_get_base_definitions`); the one
 * of the namespace and object schemas does not (its `minItems` is commented out in
 * metadef_namespaces.py `get_schema_definitions`).
 */
function baseDefinitions(stringArrayMinItems: boolean): JsonSchema {
  return {
    positiveInteger: { type: 'integer', minimum: 0 },
    positiveIntegerDefault0: { allOf: [{ $ref: '#/definitions/positiveInteger' }, { default: 0 }] },
    stringArray: {
      type: 'array',
      items: { type: 'string' },
      ...(stringArrayMinItems ? { minItems: 1 } : {}),
      uniqueItems: true,
    },
  };
}

/** metadef_namespaces.py `get_schema_definitions`, shared by the namespace and object schemas. */
function namespaceDefinitions(): JsonSchema {
  return {
    ...baseDefinitions(false),
    property: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['title', 'type'],
        properties: propertyTypeProperties(),
      },
    },
  };
}

/** metadef_namespaces.py `get_schema`; `required` is the mandatory attribute of its model. */
function namespaceSchema(): JsonSchema {
  return itemSchema('namespace', {
    namespace: { type: 'string', description: 'The unique namespace text.', maxLength: 80 },
    display_name: { type: 'string', description: 'The user friendly name for the namespace. Used by UI if available.', maxLength: 80 },
    description: { type: 'string', description: 'Provides a user friendly description of the namespace.', maxLength: 500 },
    visibility: { type: 'string', description: 'Scope of namespace accessibility.', enum: ['public', 'private'] },
    protected: { type: 'boolean', description: 'If true, namespace will not be deletable.' },
    owner: { type: 'string', description: 'Owner of the namespace.', maxLength: 255 },
    created_at: timestamp('Date and time of namespace creation'),
    updated_at: timestamp('Date and time of the last namespace modification'),
    schema: readOnlyString(),
    self: readOnlyString(),
    resource_type_associations: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string' }, prefix: { type: 'string' }, properties_target: { type: 'string' } },
      },
    },
    properties: { $ref: '#/definitions/property' },
    objects: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          description: { type: 'string' },
          required: { $ref: '#/definitions/stringArray' },
          properties: { $ref: '#/definitions/property' },
        },
      },
    },
    tags: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string' } } },
    },
  }, { required: ['namespace'], definitions: namespaceDefinitions() });
}

/** metadef_objects.py `get_schema`. */
function objectSchema(): JsonSchema {
  return itemSchema('object', {
    name: { type: 'string', maxLength: 80 },
    description: { type: 'string' },
    required: { $ref: '#/definitions/stringArray' },
    properties: { $ref: '#/definitions/property' },
    schema: readOnlyString(),
    self: readOnlyString(),
    created_at: timestamp('Date and time of object creation'),
    updated_at: timestamp('Date and time of the last object modification'),
  }, { required: ['name'], definitions: namespaceDefinitions() });
}

/**
 * metadef_properties.py `get_schema(require_name)`: `required` is `["type", "title"]` (the
 * mandatory attributes of its model, in declaration order) plus `"name"` when the property stands
 * alone. Without `name` it is the schema of one value of a `properties` map: the items of the
 * properties collection, and what Glance checks each property of a new object against.
 */
export function propertySchema(requireName = true): JsonSchema {
  return itemSchema('property', propertyTypeProperties(), {
    required: requireName ? ['type', 'title', 'name'] : ['type', 'title'],
    definitions: baseDefinitions(true),
  });
}

/**
 * metadef_resource_types.py `get_schema`: the schema of a resource type *association*, so its
 * name is `resource_type_association` although it is served as `resource_type`.
 */
function resourceTypeAssociationSchema(): JsonSchema {
  return itemSchema('resource_type_association', {
    name: {
      type: 'string',
      description: 'Resource type names should be aligned with Heat resource types whenever possible: https://docs.openstack.org/heat/latest/template_guide/openstack.html',
      maxLength: 80,
    },
    prefix: {
      type: 'string',
      description: 'Specifies the prefix to use for the given resource type. Any properties in the namespace should be prefixed with this prefix when being applied to the specified resource type. Must include prefix separator (e.g. a colon :).',
      maxLength: 80,
    },
    properties_target: {
      type: 'string',
      description: 'Some resource types allow more than one key / value pair per instance.  For example, Cinder allows user and image metadata on volumes. Only the image properties metadata is evaluated by Nova (scheduling or drivers). This property allows a namespace target to remove the ambiguity.',
      maxLength: 80,
    },
    created_at: timestamp('Date and time of resource type association'),
    updated_at: timestamp('Date and time of the last resource type association modification'),
  }, { required: ['name'] });
}

/** metadef_tags.py `get_schema` (no definitions). */
function tagSchema(): JsonSchema {
  return itemSchema('tag', {
    name: { type: 'string', maxLength: 80 },
    created_at: timestamp('Date and time of tag creation'),
    updated_at: timestamp('Date and time of the last tag modification'),
  }, { required: ['name'] });
}

/**
 * metadef_tags.py `get_schema_for_list`: the body of POST /v2/metadefs/namespaces/{namespace}/tags
 * (`{"tags": [{"name": …}, …]}`). Never served; its name is `tags`, as in Glance's messages.
 */
export function tagListSchema(): JsonSchema {
  return itemSchema('tags', {
    tags: {
      type: 'array',
      items: {
        type: 'object',
        properties: { name: { type: 'string' } },
        required: ['name'],
        additionalProperties: false,
      },
    },
  });
}

/** Every document of GET /v2/schemas/metadefs/{name}, by {name}, freshly built. */
export function metadefSchemaDocuments(): Record<MetadefSchemaName, JsonSchema> {
  return {
    namespace: namespaceSchema(),
    namespaces: collectionSchema('namespaces', namespaceSchema()),
    resource_type: resourceTypeAssociationSchema(),
    resource_types: collectionSchema('resource_type_associations', resourceTypeAssociationSchema()),
    property: propertySchema(true),
    // metadef_properties.py `get_collection_schema`: the name is a key of the map, not required.
    properties: collectionSchema('properties', propertySchema(false), true),
    object: objectSchema(),
    objects: collectionSchema('objects', objectSchema()),
    tag: tagSchema(),
    tags: collectionSchema('tags', tagSchema()),
  };
}
