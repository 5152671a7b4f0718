import { BadRequestError, ConflictError, type OutpostError } from './errors.ts';
import type { IoOptions, Site } from './ports.ts';
import type { StoreRegistry } from './stores.ts';

/**
 * The store model of a region (docs/architecture.md, "The store model"). The region's stores are
 * every site's stores, each owned by exactly one site: a store id is unique in the region
 * (SiteRegistry refuses a registration naming a store another site owns). A request at a site
 * may name only that site's own stores, because only those are written here: an upload stores its
 * bytes at the site it arrives at, and an import, copy-image or stores-delete acts on the stores
 * of the site that runs it (central, where every such write goes). Another site's store is known,
 * and refused with a message that says whose it is and what may be named instead.
 */
export class RegionStores {
  readonly #site: string;
  readonly #local: StoreRegistry;
  readonly #sites: (opts: IoOptions) => Promise<Site[]>;

  constructor(opts: { site: string; local: StoreRegistry; sites: (opts: IoOptions) => Promise<Site[]> }) {
    this.#site = opts.site;
    this.#local = opts.local;
    this.#sites = opts.sites;
  }

  /** The site owning a store of the region, or undefined for an id no site has. */
  async owner(storeId: string, opts: IoOptions = {}): Promise<string | undefined> {
    if (this.#local.has(storeId)) return this.#site;
    return (await this.#sites(opts)).find((s) => s.id !== this.#site && s.stores.includes(storeId))?.id;
  }

  /**
   * Every store's weight in the region (the site's own from its configuration, the others' from
   * the descriptions their sites registered), so that every site orders an image's `stores` alike.
   */
  async weights(opts: IoOptions = {}): Promise<(storeId: string) => number> {
    const weights = new Map((await this.#sites(opts)).flatMap((s) => (s.store_details ?? []).map((d) => [d.id, d.weight] as const)));
    for (const s of this.#local.list()) weights.set(s.id, s.weight);
    return (id) => weights.get(id) ?? 0;
  }

  /**
   * The refusal for a store a request at this site may not name (undefined when it may):
   * `upload` → 400 (as Glance's X-Image-Meta-Store on an upload); `import` (any method, copy-image
   * included) and `delete` (DELETE /v2/stores/{store}/{image}) → 409, Glance's status for an
   * unknown store there (with Glance's message for an import naming a store no site has).
   */
  async refusal(storeId: string, action: 'upload' | 'import' | 'delete', opts: IoOptions = {}): Promise<OutpostError | undefined> {
    if (this.#local.has(storeId)) return undefined;
    const owner = await this.owner(storeId, opts);
    const here = this.#local.list().map((s) => s.id).join(', ');
    if (action === 'upload') {
      const whose = owner === undefined ? `Store for identifier ${storeId} not found` : `Store ${storeId} belongs to site ${owner}`;
      return new BadRequestError(`${whose}. An upload at site ${this.#site} is stored in one of its own stores (${here}; default ${this.#local.defaultId})${
        owner === undefined ? '' : `; to store the image at ${owner}, upload it there`}.`);
    }
    const named = `stores that can be named at site ${this.#site}: ${here}`;
    if (owner === undefined) return new ConflictError(action === 'import' ? `Store for identifier ${storeId} not found` : `Unknown store ${storeId}; ${named}.`);
    const what = action === 'import' ? 'importing or copying an image to' : 'removing an image\'s copy from';
    return new ConflictError(`Store ${storeId} belongs to site ${owner}: ${what} another site's store comes with placement, which is not built yet; ${named}.`);
  }
}

/**
 * Store ids must be unique in the region: the stores among `stores` that a site other than
 * `siteId` already owns, each with its owner.
 */
export function storesOwnedElsewhere(siteId: string, stores: readonly string[], sites: readonly Site[]): { store: string; owner: string }[] {
  return stores.flatMap((store) => {
    const owner = sites.find((s) => s.id !== siteId && s.stores.includes(store));
    return owner === undefined ? [] : [{ store, owner: owner.id }];
  });
}
