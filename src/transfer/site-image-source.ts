import { NotFoundError, ServiceUnavailableError } from '../core/errors.ts';
import type { Catalog, GetOptions, IoOptions, ParentImageBytes, ParentImageSource } from '../core/ports.ts';
import { ParentClient, type TrustedConnections } from '../links/parent-client.ts';
import { HttpParentImageSource } from './parent-image-source.ts';

export interface SiteImageSourceOptions {
  /** This site's catalog: the image's locations and the registered sites' stores and URLs. */
  catalog: Catalog;
  /** This site's id (never asked for its own copies). */
  self: string;
  /** Headers that identify this site to the others (its credential), fetched per transfer. */
  headers?: () => Promise<Record<string, string>>;
  timeoutMs: number;
  /** The site's connection pool, with the TLS trust for the sites' https URLs (`sites_ca`). */
  connections: TrustedConnections;
  /** Only these sites are asked (an edge's peers); default: every site holding a copy. */
  only?: readonly string[];
  /** The TLS trust of the sites' https URLs: `sites_ca` (central's, default) or `parent_ca` (an edge's). */
  trustKey?: 'sites_ca' | 'parent_ca';
  /** How long a site whose bytes failed their check is not asked again for the image, ms (default 10 min). */
  distrustMs?: number;
  log?: { warn(obj: object, msg: string): void };
  now?: () => number;
}

/** Images whose manifest's sender is remembered, for manifestMismatched. */
const MANIFEST_SENDERS = 1000;

/**
 * Central's source of bytes it does not hold itself: the sites that hold a verified copy (an image
 * uploaded at an edge lives in that edge's store). Each such site is asked in turn, at its
 * registered public URL, `GET /v2/images/{id}/file` — which it serves from its own store. Limited
 * to an edge's peers (`only`), it then asks the peers that hold no copy in a store for one they may
 * have cached (the catalog does not record cached copies), for held bytes only
 * (`x-outpost-held-only`): a peer without one answers "no data", never fetching it from its own
 * parent on this site's behalf.
 */
export class SiteImageSource implements ParentImageSource {
  readonly #o: SiteImageSourceOptions;
  /** Sites whose bytes of an image failed their check, by `{image id} {site id}`: until when they are not asked for it. */
  readonly #distrusted = new Map<string, number>();
  /** The site each image's manifest last came from (at most MANIFEST_SENDERS, the newest). */
  readonly #manifestFrom = new Map<string, string>();

  constructor(opts: SiteImageSourceOptions) {
    this.#o = opts;
  }

  async open(imageId: string, opts: GetOptions = {}): Promise<ParentImageBytes> {
    return this.#fromHolders(imageId, opts, async (source, site) => ({ ...await source.open(imageId, opts), from: site }));
  }

  async manifest(imageId: string, opts: IoOptions = {}): Promise<unknown> {
    return this.#fromHolders(imageId, opts, async (source, site) => {
      const manifest = await source.manifest(imageId, opts);
      this.#manifestFrom.delete(imageId);
      this.#manifestFrom.set(imageId, site);
      if (this.#manifestFrom.size > MANIFEST_SENDERS) this.#manifestFrom.delete(this.#manifestFrom.keys().next().value!);
      return manifest;
    });
  }

  manifestMismatched(imageId: string): void {
    const site = this.#manifestFrom.get(imageId);
    this.#manifestFrom.delete(imageId);
    if (site !== undefined) this.distrust(imageId, site);
  }

  distrust(imageId: string, from: string): void {
    const now = (this.#o.now ?? Date.now)();
    for (const [key, until] of this.#distrusted) if (until <= now) this.#distrusted.delete(key);
    this.#distrusted.set(`${imageId} ${from}`, now + (this.#o.distrustMs ?? 600_000));
    this.#o.log?.warn({ image: imageId, site: from }, 'a site sent bytes of the image that failed their check; it is not asked for them again for a while');
  }

  /**
   * Asks each site holding a copy of the image in its stores in turn, then (with `only`) each other
   * peer for a cached copy — none whose bytes of it failed their check lately; the first answer.
   * When none gives one, a site that could not be reached says so before one that had no copy.
   */
  async #fromHolders<T>(imageId: string, opts: IoOptions, ask: (source: HttpParentImageSource, site: string) => Promise<T>): Promise<T> {
    const image = await this.#o.catalog.getImage(imageId, opts);
    const stores = new Set(image?.locations.map((l) => l.store) ?? []);
    const now = (this.#o.now ?? Date.now)();
    const trusted = (site: string) => (this.#distrusted.get(`${imageId} ${site}`) ?? 0) <= now;
    const sites = (await this.#o.catalog.listSites(opts))
      .filter((s) => s.id !== this.#o.self && s.public_url !== '' && (this.#o.only === undefined || this.#o.only.includes(s.id)) && trusted(s.id));
    const holding = (s: (typeof sites)[number]) => s.stores.some((id) => stores.has(id));
    const asked = [
      ...sites.filter(holding).map((site) => ({ site, heldOnly: false })),
      ...(this.#o.only === undefined ? [] : sites.filter((s) => !holding(s)).map((site) => ({ site, heldOnly: true }))),
    ];
    if (asked.length === 0) throw new NotFoundError(`No ${this.#o.only === undefined ? 'site' : 'peer'} holds a verified copy of image ${imageId}.`);
    let unreachable: Error | undefined;
    let last: Error | undefined;
    const headers = await this.#o.headers?.();
    for (const { site, heldOnly } of asked) {
      try {
        const parent = new ParentClient({
          url: site.public_url, headers, timeoutMs: this.#o.timeoutMs, connections: this.#o.connections, trustKey: this.#o.trustKey ?? 'sites_ca',
        });
        return await ask(new HttpParentImageSource({ parent, timeoutMs: this.#o.timeoutMs, name: `Site ${site.id} (${site.public_url})`, heldOnly }), site.id);
      } catch (error) {
        opts.signal?.throwIfAborted();
        last = error as Error;
        if (error instanceof ServiceUnavailableError) unreachable ??= error;
      }
    }
    const error = unreachable ?? last;
    throw error instanceof ServiceUnavailableError || error instanceof NotFoundError ? error
      : new ServiceUnavailableError(`No site holding image ${imageId} could be reached.`);
  }
}
