import type { RequestContext } from './context.ts';

/**
 * Metadata definitions (Glance's "metadefs"): catalogs of the properties an image, a flavor or a
 * volume may carry, grouped in namespaces. A namespace is one aggregate here — its resource-type
 * associations, properties, objects and tags live in its record — because every metadef call
 * names its namespace and Glance's rules (visibility, protection, ownership) are the namespace's.
 * Resource types are the one record shared across namespaces.
 *
 * Times are kept as full ISO 8601 strings; the API renders them as Glance does (seconds, "Z").
 */

/** A property definition: Glance's PropertyType (its JSON-Schema-like fields), without its name. */
export type MetadefProperty = Record<string, unknown>;

export interface MetadefAssociation {
  name: string;
  prefix?: string;
  properties_target?: string;
  created_at: string;
  updated_at: string;
}

export interface MetadefObject {
  name: string;
  description?: string;
  required?: string[];
  properties?: Record<string, MetadefProperty>;
  created_at: string;
  updated_at: string;
}

export interface MetadefTag {
  name: string;
  created_at: string;
  updated_at: string;
}

export interface MetadefNamespace {
  namespace: string;
  display_name?: string;
  description?: string;
  visibility: 'public' | 'private';
  protected: boolean;
  owner: string | null;
  created_at: string;
  updated_at: string;
  resource_type_associations: MetadefAssociation[];
  /** By property name, in the order they were added. */
  properties: Record<string, MetadefProperty>;
  objects: MetadefObject[];
  tags: MetadefTag[];
}

export interface MetadefResourceType {
  name: string;
  /** Seeded by a load of namespace files (glance-manage db load_metadefs marks them so). */
  protected: boolean;
  created_at: string;
  updated_at: string;
}

/**
 * The fields of Glance's PropertyType model (glance/api/v2/model/metadef_property_type.py): a
 * property definition keeps these and drops anything else, as Glance's deserializer does.
 */
const PROPERTY_FIELDS = [
  'type', 'title', 'description', 'operators', 'default', 'readonly', 'minimum', 'maximum', 'enum', 'pattern',
  'minLength', 'maxLength', 'confidential', 'items', 'uniqueItems', 'minItems', 'maxItems', 'additionalItems',
] as const;

/** A property definition as stored: PropertyType's fields only (`name` is the key it is stored under). */
export function propertyDefinition(body: Record<string, unknown>): MetadefProperty {
  const out: MetadefProperty = {};
  for (const field of PROPERTY_FIELDS) {
    const value = body[field];
    if (value === undefined || value === null) continue;
    if (field === 'items' && typeof value === 'object') {
      const items = value as Record<string, unknown>;
      out.items = { ...(items.type === undefined ? {} : { type: items.type }), ...(items.enum === undefined ? {} : { enum: items.enum }) };
      continue;
    }
    out[field] = value;
  }
  return out;
}

/** The property definitions of a body's `properties` map, each reduced to PropertyType's fields. */
export function propertyDefinitions(properties: unknown): Record<string, MetadefProperty> {
  const out: Record<string, MetadefProperty> = {};
  if (properties === null || typeof properties !== 'object') return out;
  for (const [name, value] of Object.entries(properties as Record<string, unknown>)) {
    out[name] = propertyDefinition((value ?? {}) as Record<string, unknown>);
  }
  return out;
}

/**
 * glance/db/sqlalchemy/metadef_api/namespace.py `_is_namespace_visible`: an administrator sees
 * every namespace; anyone sees a public one or one without an owner; a project sees its own.
 */
export function namespaceVisible(ctx: RequestContext, ns: MetadefNamespace): boolean {
  if (ctx.isAdmin || ns.owner === null || ns.visibility === 'public') return true;
  return ctx.projectId !== null && ctx.projectId === ns.owner;
}

/** Glance compares tag names without regard to case ("metadata tag names are case insensitive"). */
export function sameTagName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
