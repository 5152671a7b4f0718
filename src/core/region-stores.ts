import { BadRequestError, ConflictError, type OutpostError } from './errors.ts';
import type { IoOptions, Site, StoreDescription } from './ports.ts';
import type { StoreRegistry } from './stores.ts';

/**
 * The store model of a region (docs/architecture.md, "The store model"). The region's stores are
 * every site's stores, each owned by exactly one site: a store id is unique in the region
 * (SiteRegistry refuses a registration naming a store another site owns). A request at a site
 * may name only that site's own stores for new bytes: an upload stores its bytes at the site it
 * arrives at, and an import at the site that runs it (central, where every such write goes).
 * copy-image and stores-delete may name any site's store: that site's placement agent fetches or
 * deletes its copy. Another site's store named where it may not be is refused with a message that
 * says whose it is and what to do instead.
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
   * GET /v2/info/stores at this site: its own stores (its default marked), then every other site's
   * — which copy-image and stores-delete may name (glanceclient checks `--stores` against this
   * list), though an upload here may not (it says where to upload instead).
   */
  async describe(opts: IoOptions = {}): Promise<StoreDescription[]> {
    const others = (await this.#sites(opts)).filter((s) => s.id !== this.#site).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return [...this.#local.describe(), ...others.flatMap((site) => site.stores.map((id): StoreDescription => {
      const d = site.store_details?.find((x) => x.id === id);
      return {
        id, type: d?.type ?? 'file', weight: d?.weight ?? 0, read_only: d?.read_only ?? false, default: false, properties: { site: site.id },
        description: `Store of site ${site.id} (copy-image and stores-delete may name it; upload at ${site.id} to store there)`,
      };
    }))];
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
   * `upload` → 400 (as Glance's X-Image-Meta-Store on an upload); `import` (any method but
   * copy-image, which may name another site's store) and `delete` of a store no site has → 409,
   * Glance's status for an unknown store there (with Glance's message for an import naming a
   * store no site has).
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
    if (action === 'import') {
      return new ConflictError(`Store ${storeId} belongs to site ${owner}: an import writes to the stores of site ${this.#site} (${named}); `
        + `import there, then copy it to ${storeId} with the copy-image method.`);
    }
    return new ConflictError(`Store ${storeId} belongs to site ${owner}: ${named}.`);
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
