import type { RequestContext } from './context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from './errors.ts';
import type { Image } from './image.ts';
import type { Catalog, IoOptions } from './ports.ts';

/** The site an image was created at while it was cut off (kept for good: that site may change it while cut off again). */
export const ORIGIN_PROPERTY = 'os_outpost_origin_site';
/** Set on an edge's own copy of an image written there while cut off, until central has it. */
export const PENDING_PROPERTY = 'os_outpost_pending_sync';
/** Set at central when an edge's writes made while cut off lost to central's own (the rule below). */
export const CONFLICT_PROPERTY = 'os_outpost_conflict';

/** POST /outpost/v1/images/{id}/reconcile: an edge's version of an image it wrote while cut off. */
export interface ReconcileRequest {
  /** The edge that wrote it. */
  site: string;
  /** Its version of the image; null when it deleted the image. */
  image: Image | null;
  /** The `updated_at` of central's version its writes were made on; null for an image it created. */
  base_updated_at: string | null;
  /**
   * The `updated_at` of the versions it sent before since that base, whose answers it did not
   * get: central holding one of them has changed nothing of its own since.
   */
  sent_updated_at?: string[];
}

export interface ReconcileResult {
  /** What central did: took the edge's version (created, updated, deleted, or had it already: unchanged) or kept its own (conflict). */
  result: 'created' | 'updated' | 'deleted' | 'unchanged' | 'conflict';
  /** Central's version now (null: it has none). */
  image: Image | null;
  /** Why the edge's writes were not applied (conflict only). */
  conflict: string | null;
}

/** What an edge's version brings to central: the image's own attributes, never central's bookkeeping. */
function edgeAttributes(edge: Image): Partial<Image> {
  const { [PENDING_PROPERTY]: _pending, [CONFLICT_PROPERTY]: _conflict, ...properties } = edge.properties;
  return {
    name: edge.name, visibility: edge.visibility, protected: edge.protected, os_hidden: edge.os_hidden, disk_format: edge.disk_format,
    container_format: edge.container_format, min_disk: edge.min_disk, min_ram: edge.min_ram, tags: [...edge.tags], properties, updated_at: edge.updated_at,
  };
}

const DATA_KEYS = ['status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size'] as const;

/**
 * Central's side of an edge's writes made while it was cut off (issue 17). An edge accepts, while
 * it cannot reach its parent, the creation of images and the upload of their bytes (kept in its
 * own store), changes to their attributes, tags and properties, and their deletion; and changes to
 * images created at that edge before (ORIGIN_PROPERTY). When the link is back it sends each image
 * as it stands there, once per image and in the order they were first written, with the version of
 * central's it was based on; the call is idempotent. The rules:
 *
 * - An image central never had is created as the edge has it, with its id (ids are UUIDs made at
 *   the edge: a collision is not possible by construction); its bytes stay in the edge's store
 *   and are located there (the edge checked size, md5 and sha512 when they were uploaded).
 * - An image central has, unchanged since the version the edge's writes were based on or since a
 *   version the edge sent before (whose answer it lost), or already as the edge has it, takes the
 *   edge's attributes, tags and properties — or is deleted, if the edge deleted it.
 * - Otherwise central wins: an image changed (or deleted) at central while the edge was cut off
 *   keeps central's version; the edge's writes are dropped, logged, and said in the image's
 *   CONFLICT_PROPERTY at central (and so at every site), and the edge takes central's version.
 *
 * Only sites (the `service` role) and administrators may call it; the image must have been
 * created at the calling site, and the locations its version adds must be in the stores of that
 * site or of a site below it (an upload at a far edge is recorded at its edge while cut off).
 * A refusal (4xx) is final: the edge takes central's version (OfflineReplayer).
 */
export class OfflineReconciliation {
  readonly #catalog: Catalog;
  readonly #log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };

  constructor(catalog: Catalog, log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }) {
    this.#catalog = catalog;
    this.#log = log;
  }

  async reconcile(ctx: RequestContext, imageId: string, body: unknown, opts: IoOptions = {}): Promise<ReconcileResult> {
    if (!ctx.isAdmin && !ctx.roles.includes('service')) throw new ForbiddenError('Only sites and administrators reconcile offline writes.');
    const request = await this.#parse(imageId, body, opts);
    const { site, image: edge, base_updated_at: base, sent_updated_at: sent } = request;
    const current = await this.#catalog.getImage(imageId, opts);
    // Its bytes can only have been added at the edge or below it (an upload at a site of its
    // subtree, recorded at the edge while it was cut off), in their stores; those central records stay.
    const added = edge?.locations.filter((l) => !current?.locations.some((c) => c.store === l.store && c.url === l.url)) ?? [];
    if (added.some((l) => !request.stores.includes(l.store))) throw new ForbiddenError(`Image ${imageId}'s bytes must be in the stores of site ${site} or of a site below it.`);
    if (current === undefined) {
      if (edge === null) return { result: 'unchanged', image: null, conflict: null };
      try {
        await this.#catalog.createImage(this.#created(edge), opts);
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
        // The id is a deleted image's: deleted at central while the edge changed it.
        return this.#conflict(site, imageId, null, `image ${imageId} was deleted at central while ${site} was cut off`);
      }
      this.#log.info({ image: imageId, site }, 'offline writes: an image created at a site while it was cut off is now in the catalog');
      return { result: 'created', image: (await this.#catalog.getImage(imageId, opts)) ?? null, conflict: null };
    }
    if (current.properties[ORIGIN_PROPERTY] !== site) throw new ForbiddenError(`Image ${imageId} was not created at site ${site}.`);
    const asTheEdgeHasIt = edge !== null && current.updated_at === edge.updated_at;
    if (asTheEdgeHasIt) return { result: 'unchanged', image: current, conflict: null };
    if (current.updated_at !== base && !sent.includes(current.updated_at)) {
      return this.#conflict(site, imageId, current,
        `${site} changed this image while cut off (${edge === null ? 'deleted it' : `at ${edge.updated_at}`}); central's version, changed at ${current.updated_at}, was kept`);
    }
    if (edge === null) {
      await this.#catalog.deleteImage(imageId, opts);
      return { result: 'deleted', image: null, conflict: null };
    }
    const updated = await this.#catalog.updateImage(imageId, (now) => {
      if (now.updated_at !== current.updated_at) throw new ConflictError(`image ${imageId} changed at central meanwhile`);
      const next: Image = { ...now, ...edgeAttributes(edge) };
      delete next.properties[CONFLICT_PROPERTY];
      // Bytes uploaded at the edge meanwhile: located in its store, as any upload there.
      if (now.status === 'queued' && edge.status === 'active') {
        for (const k of DATA_KEYS) (next as unknown as Record<string, unknown>)[k] = edge[k];
        next.locations = edge.locations;
      }
      return next;
    }, opts);
    return { result: 'updated', image: updated, conflict: null };
  }

  /** An image as created at the edge, with the edge's copy located in its store (status active), or queued without one. */
  #created(edge: Image): Image {
    const image: Image = { ...edge, ...edgeAttributes(edge), owner: edge.owner, created_at: edge.created_at, tags: [...edge.tags] };
    if (edge.status !== 'active') {
      return { ...image, status: 'queued', checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, locations: [] };
    }
    return image;
  }

  async #conflict(site: string, imageId: string, current: Image | null, why: string): Promise<ReconcileResult> {
    this.#log.warn({ image: imageId, site, why }, 'offline writes: central\'s version kept (conflict)');
    const image = current === null ? null : await this.#catalog.updateImage(imageId, (now) => ({ ...now, properties: { ...now.properties, [CONFLICT_PROPERTY]: why } }));
    return { result: 'conflict', image, conflict: why };
  }

  /** The body, checked: a registered site (with the stores of its subtree), the image created there. */
  async #parse(imageId: string, body: unknown, opts: IoOptions): Promise<Required<ReconcileRequest> & { stores: string[] }> {
    const b = (body ?? {}) as Partial<ReconcileRequest>;
    if (typeof b.site !== 'string') throw new BadRequestError('site is required.');
    const sites = await this.#catalog.listSites(opts);
    const site = sites.find((s) => s.id === b.site);
    if (site === undefined) throw new NotFoundError(`No site ${b.site} is registered.`);
    if (b.base_updated_at !== null && typeof b.base_updated_at !== 'string') throw new BadRequestError('base_updated_at must be a time or null.');
    const sent = b.sent_updated_at ?? [];
    if (!Array.isArray(sent) || sent.some((t) => typeof t !== 'string')) throw new BadRequestError('sent_updated_at must be a list of times.');
    const image = b.image ?? null;
    if (image !== null) {
      if (typeof image !== 'object' || image.id !== imageId || !Array.isArray(image.locations) || typeof image.properties !== 'object' || !Array.isArray(image.tags)) {
        throw new BadRequestError('image must be the site\'s version of the image named in the path.');
      }
      if (image.properties[ORIGIN_PROPERTY] !== site.id) throw new ForbiddenError(`Image ${imageId} was not created at site ${site.id}.`);
    }
    // The site and the sites below it, each once, children after their parent.
    const subtree = [site];
    const seen = new Set([site.id]);
    for (let i = 0; i < subtree.length; i++) {
      for (const s of sites) if (s.parent === subtree[i]!.id && !seen.has(s.id)) { seen.add(s.id); subtree.push(s); }
    }
    const stores = subtree.flatMap((s) => s.stores);
    return { site: site.id, stores, image, base_updated_at: b.base_updated_at ?? null, sent_updated_at: sent };
  }
}
