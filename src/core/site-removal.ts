import type { RequestContext } from './context.ts';
import { ConflictError, ForbiddenError, NotFoundError } from './errors.ts';
import type { Image } from './image.ts';
import type { Catalog, InventoryStore, IoOptions } from './ports.ts';

/** What removing a site changed (the body of DELETE /outpost/v1/sites/{id}). */
export interface SiteRemovalReport {
  site: string;
  /** The site's stores, gone from the region. */
  stores: string[];
  /** Whether a site credential was revoked (auth keystone, Outpost's own identity). */
  credential_revoked: boolean;
  /** Images that lost a located copy held in the site's stores but keep another. */
  images_with_copy_removed: string[];
  /**
   * Images whose only located copy was at the site: they are `queued` again, without size or
   * hashes, so that nobody is shown an active image whose bytes no site has; uploading the data
   * again makes them active.
   */
  images_without_copy: string[];
}

export interface SiteRemovalOptions {
  catalog: Catalog;
  inventories: InventoryStore;
  /** Revokes the site's credential (false when it had none); absent where central issues none. */
  revokeCredentials?(ctx: RequestContext, site: string, opts: IoOptions): Promise<boolean>;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  now?: () => Date;
}

/**
 * DELETE /outpost/v1/sites/{id} at central (admin): takes a site out of the region. Refused for
 * an unknown site (404), for central (409) and while other sites have it as their parent (409,
 * naming them). Otherwise, in this order: the site's credential is revoked (so that it can no
 * longer register again or follow the feed), its registration is deleted (the Keystone catalog
 * loses its endpoints; the delete replicates to every site), its inventory is forgotten (its
 * cached copies leave images' `stores`), and the copies located in its stores leave the images'
 * locations. Placement wants copies only at registered sites, so none is wanted there any more.
 */
export class SiteRemoval {
  readonly #o: SiteRemovalOptions;
  readonly #now: () => Date;

  constructor(opts: SiteRemovalOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
  }

  async remove(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<SiteRemovalReport> {
    if (!ctx.isAdmin) throw new ForbiddenError('Only administrators remove sites.');
    const sites = await this.#o.catalog.listSites(opts);
    const site = sites.find((s) => s.id === id);
    if (site === undefined) throw new NotFoundError(`No site ${id} is registered.`);
    if (site.parent === null) throw new ConflictError(`Site ${id} is central, the root of the region: it cannot be removed.`);
    const children = sites.filter((s) => s.parent === id).map((s) => s.id);
    if (children.length > 0) {
      throw new ConflictError(`Site ${id} still has child sites (${children.join(', ')}): remove them first.`);
    }
    const revoked = await this.#o.revokeCredentials?.(ctx, id, opts) ?? false;
    await this.#o.catalog.deleteSite(id, opts);
    await this.#o.inventories.deleteInventory(id, opts);
    const report: SiteRemovalReport = { site: id, stores: site.stores, credential_revoked: revoked, images_with_copy_removed: [], images_without_copy: [] };
    for (const image of await this.#o.catalog.imagesInStores(site.stores, opts)) {
      const updated = await this.#o.catalog.updateImage(image.id, (current) => this.#withoutStores(current, site.stores), opts);
      (updated.locations.length === 0 ? report.images_without_copy : report.images_with_copy_removed).push(image.id);
    }
    if (report.images_without_copy.length > 0) {
      this.#o.log.warn({ site: id, images: report.images_without_copy },
        `site ${id} removed: ${report.images_without_copy.length} image(s) had their only copy there and are queued again (upload their data again)`);
    }
    this.#o.log.info({ ...report }, `site ${id} removed`);
    return report;
  }

  /** The image without its locations in `stores`; with none left, back to `queued` without data. */
  #withoutStores(image: Image, stores: readonly string[]): Image {
    const locations = image.locations.filter((l) => !stores.includes(l.store));
    if (locations.length === image.locations.length) return image;
    const next: Image = { ...image, locations, updated_at: this.#now().toISOString() };
    if (locations.length > 0 || (image.status !== 'active' && image.status !== 'deactivated')) return next;
    return { ...next, status: 'queued', size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null };
  }
}
