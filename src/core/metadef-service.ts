import type { RequestContext } from './context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from './errors.ts';
import {
  namespaceVisible, propertyDefinition, propertyDefinitions, sameTagName,
  type MetadefAssociation, type MetadefNamespace, type MetadefObject, type MetadefProperty, type MetadefResourceType, type MetadefTag,
} from './metadefs.ts';
import type { IoOptions, MetadefStore, MetadefWriter } from './ports.ts';

/** A namespace's own fields, as a create or update body gives them (already checked against the namespace schema). */
export interface NamespaceInput {
  namespace: string;
  display_name?: string;
  description?: string;
  visibility?: 'public' | 'private';
  protected?: boolean;
  owner?: string;
}

/** A create body: the namespace and what it contains. */
export interface NamespaceCreateInput extends NamespaceInput {
  resource_type_associations?: { name: string; prefix?: string; properties_target?: string }[];
  properties?: Record<string, Record<string, unknown>>;
  objects?: ObjectInput[];
  tags?: { name: string }[];
}

export interface ObjectInput {
  name: string;
  description?: string;
  required?: string[];
  properties?: Record<string, Record<string, unknown>>;
}

export interface NamespaceListQuery {
  limit: number;
  marker?: string;
  sortKey: NamespaceSortKey;
  sortDir: 'asc' | 'desc';
  visibility?: 'public' | 'private';
  /** Namespaces associated with any of these resource types. */
  resourceTypes?: readonly string[];
}

export const NAMESPACE_SORT_KEYS = ['created_at', 'updated_at', 'namespace', 'display_name', 'visibility', 'protected', 'owner'] as const;
export type NamespaceSortKey = (typeof NAMESPACE_SORT_KEYS)[number];

/** How an object's or a property's name is shown when a caller names a resource type (its association's prefix). */
export interface Prefixed {
  namespace: MetadefNamespace;
  /** The association's prefix, when `resource_type` named one of the namespace's associations that has a prefix. */
  prefix?: string;
}

/**
 * The metadata-definitions API's use cases (glance/api/v2/metadef_*.py over
 * glance/db/sqlalchemy/metadef_api), with Glance's default policies: anyone may read what they can
 * see (`_is_namespace_visible`); creating, changing and deleting is for administrators
 * ("metadef_admin": role:admin). A namespace another project owns privately is "not found", as in
 * Glance. A protected namespace cannot be deleted, nor can anything in it.
 */
export class MetadefService {
  readonly #store: MetadefStore;
  readonly #now: () => Date;

  constructor(store: MetadefStore, now: () => Date = () => new Date()) {
    this.#store = store;
    this.#now = now;
  }

  // --- namespaces -----------------------------------------------------------------------------

  async listNamespaces(ctx: RequestContext, query: NamespaceListQuery, opts: IoOptions = {}): Promise<{ namespaces: MetadefNamespace[]; next?: string }> {
    const all = await this.#store.listMetadefNamespaces(opts);
    let visible = all.filter((ns) => namespaceVisible(ctx, ns));
    if (query.visibility !== undefined) visible = visible.filter((ns) => ns.visibility === query.visibility);
    if (query.resourceTypes !== undefined) {
      const wanted = new Set(query.resourceTypes);
      visible = visible.filter((ns) => ns.resource_type_associations.some((a) => wanted.has(a.name)));
    }
    // Glance sorts by [sort_key, created_at, id]; the name stands in for the id it does not show.
    const keyOf = (ns: MetadefNamespace): string => String(ns[query.sortKey] ?? '');
    const sign = query.sortDir === 'asc' ? 1 : -1;
    const order = (a: MetadefNamespace, b: MetadefNamespace) => sign * (compare(keyOf(a), keyOf(b)) || compare(a.created_at, b.created_at) || compare(a.namespace, b.namespace));
    visible.sort(order);
    if (query.marker !== undefined) {
      const marker = all.find((ns) => ns.namespace === query.marker);
      if (marker === undefined) throw new NotFoundError(`Metadata definition namespace=${query.marker} was not found.`);
      if (!namespaceVisible(ctx, marker)) throw new ForbiddenError(`Forbidding request, metadata definition namespace=${query.marker} is not visible.`);
      // What sorts after the marker, whether or not the filters keep the marker itself (paginate_query).
      visible = visible.filter((ns) => order(ns, marker) > 0);
    }
    const page = visible.slice(0, query.limit);
    return { namespaces: page, ...(page.length > 0 && page.length === query.limit ? { next: page[page.length - 1].namespace } : {}) };
  }

  async getNamespace(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<MetadefNamespace> {
    return visibleOrNotFound(ctx, name, await this.#store.getMetadefNamespace(name, opts));
  }

  /**
   * GET /v2/metadefs/namespaces/{namespace}?resource_type=R: the namespace, and the prefix of its
   * association with R (if it has one), which the API puts before every property name and
   * object's property and required name.
   */
  async getNamespaceFor(ctx: RequestContext, name: string, resourceType: string | undefined, opts: IoOptions = {}): Promise<Prefixed> {
    const namespace = await this.getNamespace(ctx, name, opts);
    const prefix = resourceType === undefined ? undefined : namespace.resource_type_associations.find((a) => a.name === resourceType)?.prefix;
    return { namespace, ...(prefix === undefined || prefix === '' ? {} : { prefix }) };
  }

  async createNamespace(ctx: RequestContext, input: NamespaceCreateInput, opts: IoOptions = {}): Promise<MetadefNamespace> {
    assertAdmin(ctx, 'add_metadef_namespace');
    const now = this.#now().toISOString();
    const ns: MetadefNamespace = {
      ...namespaceFields(input, ctx),
      created_at: now,
      updated_at: now,
      resource_type_associations: [],
      properties: {},
      objects: [],
      tags: [],
    };
    for (const a of input.resource_type_associations ?? []) {
      if (ns.resource_type_associations.some((x) => x.name === a.name)) throw duplicateAssociation(a.name, ns.namespace);
      ns.resource_type_associations.push(association(a, now));
    }
    for (const o of input.objects ?? []) {
      if (ns.objects.some((x) => x.name === o.name)) throw duplicateObject(o.name, ns.namespace);
      ns.objects.push(objectOf(o, now, now));
    }
    for (const t of input.tags ?? []) {
      if (ns.tags.some((x) => sameTagName(x.name, t.name))) throw duplicateTag(t.name, ns.namespace);
      ns.tags.push({ name: t.name, created_at: now, updated_at: now });
    }
    ns.properties = propertyDefinitions(input.properties ?? {});
    return this.#store.writeMetadefs(async (tx) => {
      await this.#ensureResourceTypes(tx, ns.resource_type_associations, now);
      if (!(await tx.createNamespace(ns))) throw new ConflictError(`The metadata definition namespace=${ns.namespace} already exists.`);
      return ns;
    }, opts);
  }

  /**
   * PUT /v2/metadefs/namespaces/{namespace}: replaces the namespace's own fields (a rename
   * included); the optional ones not given return to their defaults, as in Glance (private, not
   * protected, the caller's project). What the namespace contains is kept.
   */
  async updateNamespace(ctx: RequestContext, name: string, input: NamespaceInput, opts: IoOptions = {}): Promise<MetadefNamespace> {
    return this.#store.writeMetadefs(async (tx) => {
      const current = visibleOrNotFound(ctx, name, await tx.namespace(name), `Namespace ${name} not found`);
      assertAdmin(ctx, 'modify_metadef_namespace');
      const next: MetadefNamespace = {
        ...current,
        display_name: undefined,
        description: undefined,
        ...namespaceFields(input, ctx),
        updated_at: this.#now().toISOString(),
      };
      await this.#replace(tx, name, next, () => new ConflictError(
        `Invalid update. It would result in a duplicate metadata definition namespace with the same name of ${next.namespace}`,
      ));
      return next;
    }, opts);
  }

  async deleteNamespace(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<void> {
    await this.#store.writeMetadefs(async (tx) => {
      const ns = await this.#deletable(ctx, tx, name, 'delete_metadef_namespace');
      await tx.deleteNamespace(ns.namespace);
    }, opts);
  }

  /** DELETE /v2/metadefs/namespaces/{namespace}/objects, /properties, /tags: all of one kind at once (not in a protected namespace). */
  async deleteContents(ctx: RequestContext, name: string, what: 'objects' | 'properties' | 'tags', opts: IoOptions = {}): Promise<void> {
    await this.#store.writeMetadefs(async (tx) => {
      const ns = await this.#deletable(ctx, tx, name, what === 'tags' ? 'delete_metadef_tags' : 'delete_metadef_namespace');
      await tx.putNamespace({ ...ns, ...(what === 'properties' ? { properties: {} } : { [what]: [] }) });
    }, opts);
  }

  // --- objects --------------------------------------------------------------------------------

  async listObjects(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<MetadefObject[]> {
    return (await this.#readable(ctx, name, opts)).objects;
  }

  async getObject(ctx: RequestContext, name: string, objectName: string, opts: IoOptions = {}): Promise<MetadefObject> {
    const ns = await this.#readable(ctx, name, opts);
    return ns.objects.find((o) => o.name === objectName) ?? throwNotFound(objectNotFound(objectName, name));
  }

  async createObject(ctx: RequestContext, name: string, input: ObjectInput, opts: IoOptions = {}): Promise<MetadefObject> {
    return this.#change(ctx, name, 'add_metadef_object', opts, (ns, now) => {
      if (ns.objects.some((o) => o.name === input.name)) throw duplicateObject(input.name, name);
      const created = objectOf(input, now, now);
      return { next: { ...ns, objects: [...ns.objects, created] }, result: created };
    });
  }

  /** PUT .../objects/{object}: replaces the object (a rename included); fields not given are cleared, as in Glance. */
  async updateObject(ctx: RequestContext, name: string, objectName: string, input: ObjectInput, opts: IoOptions = {}): Promise<MetadefObject> {
    return this.#change(ctx, name, 'modify_metadef_object', opts, (ns, now) => {
      const current = ns.objects.find((o) => o.name === objectName) ?? throwNotFound(objectNotFound(objectName, name));
      if (input.name !== objectName && ns.objects.some((o) => o.name === input.name)) throw duplicateObject(input.name, name);
      const updated = objectOf(input, current.created_at, now);
      return { next: { ...ns, objects: ns.objects.map((o) => (o === current ? updated : o)) }, result: updated };
    });
  }

  async deleteObject(ctx: RequestContext, name: string, objectName: string, opts: IoOptions = {}): Promise<void> {
    await this.#change(ctx, name, 'delete_metadef_object', opts, (ns) => {
      const current = ns.objects.find((o) => o.name === objectName) ?? throwNotFound(objectNotFound(objectName, name));
      if (ns.protected) throw new ForbiddenError(`Metadata definition object ${objectName} is protected and cannot be deleted.`);
      return { next: { ...ns, objects: ns.objects.filter((o) => o !== current) }, result: undefined };
    });
  }

  // --- properties -----------------------------------------------------------------------------

  async listProperties(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<Record<string, MetadefProperty>> {
    return (await this.#readable(ctx, name, opts)).properties;
  }

  /**
   * GET .../properties/{property}[?resource_type=R]: with R, `propertyName` carries the prefix of
   * the namespace's association with R, which must be there (glance/api/v2/metadef_properties.py).
   */
  async getProperty(ctx: RequestContext, name: string, propertyName: string, resourceType: string | undefined, opts: IoOptions = {}): Promise<{ name: string; property: MetadefProperty }> {
    const ns = await this.#readable(ctx, name, opts);
    let stored = propertyName;
    if (resourceType !== undefined && resourceType !== '') {
      const association = ns.resource_type_associations.find((a) => a.name === resourceType)
        ?? throwNotFound(`The metadata definition resource-type association of resource-type=${resourceType} to namespace=${name}, was not found.`);
      const prefix = association.prefix;
      if (prefix === undefined || prefix === '' || !propertyName.startsWith(prefix)) {
        throw new NotFoundError(`Property ${propertyName} does not start with the expected resource type association prefix of '${prefix ?? 'None'}'.`);
      }
      stored = propertyName.slice(prefix.length);
    }
    const property = Object.hasOwn(ns.properties, stored) ? ns.properties[stored] : throwNotFound(propertyNotFound(stored, name));
    return { name: stored, property };
  }

  async createProperty(ctx: RequestContext, name: string, input: Record<string, unknown> & { name: string }, opts: IoOptions = {}): Promise<{ name: string; property: MetadefProperty }> {
    return this.#change(ctx, name, 'add_metadef_property', opts, (ns) => {
      if (Object.hasOwn(ns.properties, input.name)) {
        throw new ConflictError(`A metadata definition property with name=${input.name} already exists in namespace=${name}.`);
      }
      const property = propertyDefinition(input);
      return { next: { ...ns, properties: { ...ns.properties, [input.name]: property } }, result: { name: input.name, property } };
    });
  }

  async updateProperty(ctx: RequestContext, name: string, propertyName: string, input: Record<string, unknown> & { name: string }, opts: IoOptions = {}): Promise<{ name: string; property: MetadefProperty }> {
    return this.#change(ctx, name, 'modify_metadef_property', opts, (ns) => {
      if (!Object.hasOwn(ns.properties, propertyName)) throw new NotFoundError(propertyNotFound(propertyName, name));
      if (input.name !== propertyName && Object.hasOwn(ns.properties, input.name)) {
        throw new ConflictError(`A metadata definition property with name=${input.name} already exists in namespace=${name}.`);
      }
      const property = propertyDefinition(input);
      // A rename keeps the property's place among the others.
      const properties = Object.fromEntries(Object.entries(ns.properties).map(([k, v]) => (k === propertyName ? [input.name, property] : [k, v])));
      return { next: { ...ns, properties }, result: { name: input.name, property } };
    });
  }

  async deleteProperty(ctx: RequestContext, name: string, propertyName: string, opts: IoOptions = {}): Promise<void> {
    await this.#change(ctx, name, 'remove_metadef_property', opts, (ns) => {
      if (!Object.hasOwn(ns.properties, propertyName)) throw new NotFoundError(propertyNotFound(propertyName, name));
      if (ns.protected) throw new ForbiddenError(`Metadata definition property ${propertyName} is protected and cannot be deleted.`);
      const { [propertyName]: _gone, ...properties } = ns.properties;
      return { next: { ...ns, properties }, result: undefined };
    });
  }

  // --- tags -----------------------------------------------------------------------------------

  async listTags(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<MetadefTag[]> {
    return (await this.#readable(ctx, name, opts)).tags;
  }

  async getTag(ctx: RequestContext, name: string, tagName: string, opts: IoOptions = {}): Promise<MetadefTag> {
    const ns = await this.#readable(ctx, name, opts);
    return ns.tags.find((t) => sameTagName(t.name, tagName)) ?? throwNotFound(tagNotFound(tagName, name));
  }

  async createTag(ctx: RequestContext, name: string, tagName: string, opts: IoOptions = {}): Promise<MetadefTag> {
    return this.#change(ctx, name, 'add_metadef_tag', opts, (ns, now) => {
      if (ns.tags.some((t) => sameTagName(t.name, tagName))) throw duplicateTag(tagName, name);
      const tag = { name: tagName, created_at: now, updated_at: now };
      return { next: { ...ns, tags: [...ns.tags, tag] }, result: tag };
    });
  }

  /**
   * POST .../tags {"tags": [...]}: replaces the namespace's tags with these, or with `append`
   * (header X-Openstack-Append: true) adds them to those it has; a name twice → 409.
   */
  async createTags(ctx: RequestContext, name: string, names: readonly string[], append: boolean, opts: IoOptions = {}): Promise<MetadefTag[]> {
    return this.#change(ctx, name, 'add_metadef_tags', opts, (ns, now) => {
      const tags = append ? [...ns.tags] : [];
      const added: MetadefTag[] = [];
      for (const tagName of names) {
        if (tags.some((t) => sameTagName(t.name, tagName))) throw duplicateTag(tagName, name);
        const tag = { name: tagName, created_at: now, updated_at: now };
        tags.push(tag);
        added.push(tag);
      }
      return { next: { ...ns, tags }, result: added };
    });
  }

  /** PUT .../tags/{tag} {"name": ...}: renames the tag. */
  async updateTag(ctx: RequestContext, name: string, tagName: string, newName: string, opts: IoOptions = {}): Promise<MetadefTag> {
    return this.#change(ctx, name, 'modify_metadef_tag', opts, (ns, now) => {
      const current = ns.tags.find((t) => sameTagName(t.name, tagName)) ?? throwNotFound(tagNotFound(tagName, name));
      if (ns.tags.some((t) => t !== current && sameTagName(t.name, newName))) throw duplicateTag(newName, name);
      const tag = { ...current, name: newName, updated_at: now };
      return { next: { ...ns, tags: ns.tags.map((t) => (t === current ? tag : t)) }, result: tag };
    });
  }

  async deleteTag(ctx: RequestContext, name: string, tagName: string, opts: IoOptions = {}): Promise<void> {
    await this.#change(ctx, name, 'delete_metadef_tag', opts, (ns) => {
      const current = ns.tags.find((t) => sameTagName(t.name, tagName)) ?? throwNotFound(tagNotFound(tagName, name));
      if (ns.protected) throw new ForbiddenError(`Metadata definition tag ${current.name} is protected and cannot be deleted.`);
      return { next: { ...ns, tags: ns.tags.filter((t) => t !== current) }, result: undefined };
    });
  }

  // --- resource types -------------------------------------------------------------------------

  /** GET /v2/metadefs/resource_types: every resource type of the region. */
  listResourceTypes(opts: IoOptions = {}): Promise<MetadefResourceType[]> {
    return this.#store.listMetadefResourceTypes(opts);
  }

  async listAssociations(ctx: RequestContext, name: string, opts: IoOptions = {}): Promise<MetadefAssociation[]> {
    return (await this.#readable(ctx, name, opts)).resource_type_associations;
  }

  /** POST .../resource_types: associates the namespace with a resource type, which is created if the region has none of that name. */
  async associate(ctx: RequestContext, name: string, input: { name: string; prefix?: string; properties_target?: string }, opts: IoOptions = {}): Promise<MetadefAssociation> {
    return this.#store.writeMetadefs(async (tx) => {
      const ns = await this.#writable(ctx, tx, name, 'add_metadef_resource_type_association');
      if (ns.resource_type_associations.some((a) => a.name === input.name)) throw duplicateAssociation(input.name, name);
      const now = this.#now().toISOString();
      const created = association(input, now);
      await this.#ensureResourceTypes(tx, [created], now);
      await tx.putNamespace({ ...ns, resource_type_associations: [...ns.resource_type_associations, created] });
      return created;
    }, opts);
  }

  async dissociate(ctx: RequestContext, name: string, resourceType: string, opts: IoOptions = {}): Promise<void> {
    await this.#change(ctx, name, 'remove_metadef_resource_type_association', opts, (ns) => {
      const current = ns.resource_type_associations.find((a) => a.name === resourceType)
        ?? throwNotFound(`Failed to find resource type ${resourceType} to delete`);
      if (ns.protected) throw new ForbiddenError(`Metadata definition resource-type-association ${resourceType} is protected and cannot be deleted.`);
      return { next: { ...ns, resource_type_associations: ns.resource_type_associations.filter((a) => a !== current) }, result: undefined };
    });
  }

  // --- the parts every call shares ------------------------------------------------------------

  /** A namespace the caller can see, or 404 (Glance: "Namespace X not found" for one it cannot). */
  async #readable(ctx: RequestContext, name: string, opts: IoOptions): Promise<MetadefNamespace> {
    return visibleOrNotFound(ctx, name, await this.#store.getMetadefNamespace(name, opts), `Namespace ${name} not found`);
  }

  async #writable(ctx: RequestContext, tx: MetadefWriter, name: string, action: string): Promise<MetadefNamespace> {
    const ns = visibleOrNotFound(ctx, name, await tx.namespace(name), `Namespace ${name} not found`);
    assertAdmin(ctx, action);
    return ns;
  }

  /** A namespace whose contents may be deleted: the caller may, and it is not protected. */
  async #deletable(ctx: RequestContext, tx: MetadefWriter, name: string, action: string): Promise<MetadefNamespace> {
    const ns = await this.#writable(ctx, tx, name, action);
    if (ns.protected) throw new ForbiddenError(`Metadata definition namespace ${name} is protected and cannot be deleted.`);
    return ns;
  }

  /** One change of what a namespace contains, in one transaction: `fn` returns the namespace after it and the call's result. */
  async #change<T>(ctx: RequestContext, name: string, action: string, opts: IoOptions, fn: (ns: MetadefNamespace, now: string) => { next: MetadefNamespace; result: T }): Promise<T> {
    return this.#store.writeMetadefs(async (tx) => {
      const ns = await this.#writable(ctx, tx, name, action);
      const { next, result } = fn(ns, this.#now().toISOString());
      await tx.putNamespace(next);
      return result;
    }, opts);
  }

  /** Stores `next` in place of the namespace named `name` (a rename when the names differ). */
  async #replace(tx: MetadefWriter, name: string, next: MetadefNamespace, duplicate: () => Error): Promise<void> {
    if (next.namespace === name) {
      await tx.putNamespace(next);
      return;
    }
    if (!(await tx.createNamespace(next))) throw duplicate();
    await tx.deleteNamespace(name);
  }

  async #ensureResourceTypes(tx: MetadefWriter, associations: readonly MetadefAssociation[], now: string): Promise<void> {
    for (const a of associations) {
      if ((await tx.resourceType(a.name)) === undefined) await tx.putResourceType({ name: a.name, protected: false, created_at: now, updated_at: now });
    }
  }
}

/**
 * Loads namespace documents (the JSON files `glance-manage db load_metadefs` reads, the shape of
 * a namespace create body with an optional `owner`) into the store, as glance/db/sqlalchemy/metadata.py
 * does: a namespace that exists is skipped, or with `merge` given what it lacks (and with
 * `preferNew` what differs too), or with `overwrite` replaced. Resource types it names are created
 * protected (seeded). Returns what happened to each.
 */
export async function loadMetadefs(
  store: MetadefStore,
  docs: readonly NamespaceCreateInput[],
  mode: { merge?: boolean; preferNew?: boolean; overwrite?: boolean },
  now: () => Date = () => new Date(),
  opts: IoOptions = {},
): Promise<{ namespace: string; outcome: 'created' | 'skipped' | 'merged' | 'overwritten' }[]> {
  const outcomes: { namespace: string; outcome: 'created' | 'skipped' | 'merged' | 'overwritten' }[] = [];
  for (const doc of docs) {
    outcomes.push(await store.writeMetadefs(async (tx) => {
      const at = now().toISOString();
      const existing = await tx.namespace(doc.namespace);
      const fresh: MetadefNamespace = {
        namespace: doc.namespace,
        ...(doc.display_name === undefined ? {} : { display_name: doc.display_name }),
        ...(doc.description === undefined ? {} : { description: doc.description }),
        visibility: doc.visibility ?? 'private',
        protected: doc.protected ?? false,
        owner: doc.owner ?? 'admin',
        created_at: existing !== undefined && !mode.overwrite ? existing.created_at : at,
        updated_at: at,
        resource_type_associations: [],
        properties: {},
        objects: [],
        tags: [],
      };
      let outcome: 'created' | 'skipped' | 'merged' | 'overwritten';
      let base: MetadefNamespace;
      if (existing === undefined || mode.overwrite === true) {
        base = fresh;
        outcome = existing === undefined ? 'created' : 'overwritten';
      } else if (mode.merge !== true) {
        return { namespace: doc.namespace, outcome: 'skipped' as const };
      } else {
        base = mode.preferNew === true ? { ...existing, ...fresh, resource_type_associations: existing.resource_type_associations, properties: existing.properties, objects: existing.objects, tags: existing.tags } : existing;
        outcome = 'merged';
      }
      const replace = mode.preferNew === true;
      const merged: MetadefNamespace = {
        ...base,
        resource_type_associations: mergeBy(base.resource_type_associations, (doc.resource_type_associations ?? []).map((a) => association(a, at)), (a) => a.name, replace),
        objects: mergeBy(base.objects, (doc.objects ?? []).map((o) => objectOf({ name: o.name, description: o.description, properties: o.properties }, at, at)), (o) => o.name, replace),
        tags: mergeBy(base.tags, (doc.tags ?? []).map((t) => ({ name: t.name, created_at: at, updated_at: at })), (t) => t.name.toLowerCase(), replace),
        properties: Object.fromEntries(mergeBy(
          Object.entries(base.properties),
          Object.entries(propertyDefinitions(doc.properties ?? {})),
          ([k]) => k, replace,
        )),
      };
      for (const a of merged.resource_type_associations) {
        const rt = await tx.resourceType(a.name);
        if (rt === undefined) await tx.putResourceType({ name: a.name, protected: true, created_at: at, updated_at: at });
      }
      await tx.putNamespace(merged);
      return { namespace: doc.namespace, outcome };
    }, opts));
  }
  return outcomes;
}

/** `have` with each of `add` whose key it lacks appended, and (with `replace`) each whose key it has put in its place. */
function mergeBy<T>(have: readonly T[], add: readonly T[], key: (x: T) => string, replace: boolean): T[] {
  const out = [...have];
  for (const x of add) {
    const i = out.findIndex((y) => key(y) === key(x));
    if (i < 0) out.push(x);
    else if (replace) out[i] = x;
  }
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function namespaceFields(input: NamespaceInput, ctx: RequestContext): Pick<MetadefNamespace, 'namespace' | 'display_name' | 'description' | 'visibility' | 'protected' | 'owner'> {
  if (input.namespace.trim() === '') throw new BadRequestError('Namespace name cannot be empty.');
  return {
    namespace: input.namespace,
    ...(input.display_name === undefined ? {} : { display_name: input.display_name }),
    ...(input.description === undefined ? {} : { description: input.description }),
    visibility: input.visibility ?? 'private',
    protected: input.protected ?? false,
    owner: input.owner ?? ctx.projectId,
  };
}

function association(a: { name: string; prefix?: string; properties_target?: string }, now: string): MetadefAssociation {
  return {
    name: a.name,
    ...(a.prefix === undefined ? {} : { prefix: a.prefix }),
    ...(a.properties_target === undefined ? {} : { properties_target: a.properties_target }),
    created_at: now,
    updated_at: now,
  };
}

function objectOf(o: ObjectInput, createdAt: string, updatedAt: string): MetadefObject {
  return {
    name: o.name,
    ...(o.description === undefined ? {} : { description: o.description }),
    ...(o.required === undefined ? {} : { required: o.required }),
    ...(o.properties === undefined ? {} : { properties: propertyDefinitions(o.properties) }),
    created_at: createdAt,
    updated_at: updatedAt,
  };
}

function visibleOrNotFound(ctx: RequestContext, name: string, ns: MetadefNamespace | undefined, message?: string): MetadefNamespace {
  if (ns === undefined || !namespaceVisible(ctx, ns)) throw new NotFoundError(message ?? `Metadata definition namespace=${name} was not found.`);
  return ns;
}

/** `add_metadef_namespace`, `modify_metadef_object`, ...: "rule:metadef_admin" (role:admin) by default. */
function assertAdmin(ctx: RequestContext, action: string): void {
  if (!ctx.isAdmin) throw new ForbiddenError(`You are not authorized to complete ${action} action.`);
}

function throwNotFound(message: string): never {
  throw new NotFoundError(message);
}

const objectNotFound = (object: string, ns: string) => `The metadata definition object with name=${object} was not found in namespace=${ns}.`;
const propertyNotFound = (property: string, ns: string) => `The metadata definition property with name=${property} was not found in namespace=${ns}.`;
const tagNotFound = (tag: string, ns: string) => `The metadata definition tag with name=${tag} was not found in namespace=${ns}.`;
const duplicateObject = (object: string, ns: string) => new ConflictError(`A metadata definition object with name=${object} already exists in namespace=${ns}.`);
const duplicateTag = (tag: string, ns: string) => new ConflictError(
  `A metadata tag with name=${tag} already exists in namespace=${ns}. (Please note that metadata tag names are case insensitive).`,
);
const duplicateAssociation = (rt: string, ns: string) => new ConflictError(
  `The metadata definition resource-type association of resource-type=${rt} to namespace=${ns} already exists.`,
);
