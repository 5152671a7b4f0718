import type { MetadefAssociation, MetadefNamespace, MetadefObject, MetadefProperty, MetadefResourceType, MetadefTag } from '../../core/metadefs.ts';

/**
 * The metadefs API's response bodies, shaped as Glance's wsme models render them
 * (glance/api/v2/model/metadef_*.py): unset fields are left out, times are oslo's isotime
 * ("2014-08-28T17:13:06Z"), `self` and `schema` are relative links, keys in name order.
 */

/** oslo_utils' isotime: seconds, "Z". */
export function isotime(iso: string): string {
  return `${iso.slice(0, 19)}Z`;
}

const namespaceHref = (ns: string) => `/v2/metadefs/namespaces/${ns}`;

function sortedKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function associationView(a: MetadefAssociation): Record<string, unknown> {
  return sortedKeys({ name: a.name, prefix: a.prefix, properties_target: a.properties_target, created_at: isotime(a.created_at), updated_at: isotime(a.updated_at) });
}

export function resourceTypeView(rt: MetadefResourceType): Record<string, unknown> {
  return { created_at: isotime(rt.created_at), name: rt.name, updated_at: isotime(rt.updated_at) };
}

/** A property definition, with its name (a property shown alone) or without (in a map of them). */
export function propertyView(property: MetadefProperty, name?: string): Record<string, unknown> {
  return sortedKeys({ ...property, name });
}

function prefixed(properties: Record<string, MetadefProperty>, prefix: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(properties).map(([k, v]) => [`${prefix}${k}`, propertyView(v)]));
}

export function objectView(namespace: string, o: MetadefObject, prefix = ''): Record<string, unknown> {
  return sortedKeys({
    name: o.name,
    description: o.description,
    required: o.required?.map((r) => `${prefix}${r}`),
    properties: o.properties === undefined ? undefined : prefixed(o.properties, prefix),
    created_at: isotime(o.created_at),
    updated_at: isotime(o.updated_at),
    schema: '/v2/schemas/metadefs/object',
    self: `${namespaceHref(namespace)}/objects/${o.name}`,
  });
}

export function tagView(t: MetadefTag): Record<string, unknown> {
  return { created_at: isotime(t.created_at), name: t.name, updated_at: isotime(t.updated_at) };
}

/**
 * A namespace: its own fields and associations (a list entry, an update's answer), and with
 * `detail` what it contains too (show, create) — names of properties and of objects' properties
 * behind `prefix` (show with `resource_type`), tags by name only. Empty collections are left out.
 */
export function namespaceView(ns: MetadefNamespace, detail: boolean, prefix = ''): Record<string, unknown> {
  const some = <T>(list: readonly T[]) => (list.length === 0 ? undefined : list);
  return sortedKeys({
    namespace: ns.namespace,
    display_name: ns.display_name,
    description: ns.description,
    visibility: ns.visibility,
    protected: ns.protected,
    owner: ns.owner ?? undefined,
    created_at: isotime(ns.created_at),
    updated_at: isotime(ns.updated_at),
    resource_type_associations: some(ns.resource_type_associations.map(associationView)),
    ...(detail ? {
      properties: Object.keys(ns.properties).length === 0 ? undefined : prefixed(ns.properties, prefix),
      objects: some(ns.objects.map((o) => objectView(ns.namespace, o, prefix))),
      tags: some(ns.tags.map((t) => ({ name: t.name }))),
    } : {}),
    schema: '/v2/schemas/metadefs/namespace',
    self: namespaceHref(ns.namespace),
  });
}
