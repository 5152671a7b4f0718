import type { Readable } from 'node:stream';
import { NotFoundError, PayloadTooLargeError } from '../core/errors.ts';
import type { Image } from '../core/image.ts';
import { NO_METRICS, type BlobStore, type CacheEntry, type CacheIndex, type ChunkIndex, type HeldOnlyOptions, type IoOptions, type ManifestIndex, type Metrics, type TransferPriority } from '../core/ports.ts';
import type { CacheUsage } from '../core/metrics.ts';
import { countDownload } from '../core/download-metrics.ts';
import { describeError } from '../core/describe-error.ts';
import type { ImageFill } from '../transfer/image-fill.ts';
import type { ImageFills } from '../transfer/image-fills.ts';

/**
 * A range that starts this far beyond what a running fill has received is asked of the source
 * rather than waited for (a few seconds of a WAN link's worth).
 */
const RANGE_AHEAD = 8 << 20;

export interface PullThroughImagesOptions {
  /** The site's id, for messages. */
  site: string;
  index: CacheIndex;
  /** Where the chunk manifests of the copies it fetches are recorded, and their chunks indexed. */
  manifests: ManifestIndex;
  chunks: ChunkIndex;
  /** Build each copy's manifest as it is fetched (`chunk_manifests`). */
  buildManifests: boolean;
  /**
   * Where verified copies are kept, under `cacheKey(image id)`: the site's default store, or a
   * directory of the cache's own (`image_cache_dir`).
   */
  blobs: BlobStore;
  /**
   * The store a held copy is shown in (an image's `stores`; default `blobs.id`): the site's
   * default store where the cache has a directory of its own, which is no store of the region.
   */
  shownAs?: string;
  /**
   * Where the copies were kept before the cache had a directory of its own (the default store):
   * at start, a copy listed in the index but not found in `blobs` is removed from there.
   */
  former?: BlobStore;
  /**
   * Set where the cache also serves images the site's own stores hold (central; Glance's cache on
   * an API node, whose images live in its backend store): a held copy serves their downloads (a
   * hit); on a miss, only an image with no copy in a `direct` store (those read as fast as the
   * cache: directories) is kept — one in a remote store (S3) is. Unset (an edge): downloads of
   * such images read the stores, as always.
   */
  located?: { direct: ReadonlySet<string> };
  /**
   * The site's transfers of image bytes, shared with its placement agent: one fill per image, which
   * a client's read joins whoever started it.
   */
  fills: ImageFills;
  /** Bytes the cached copies may take together (`cache_max_bytes`). */
  budgetBytes: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Where reads by source, fill joins and evictions are counted (default: nowhere). */
  metrics?: Metrics;
  now?: () => Date;
}

/** Why a cached copy was removed (outpost_cache_evictions_total). */
type Removal = 'budget' | 'prune' | 'request' | 'invalidated';


/** What GET /v2/cache shows (glance/api/v2/cached_images.py), plus Outpost's pins. */
export interface CacheListing {
  cached_images: { image_id: string; hits: number; last_accessed: number; last_modified: number; size: number }[];
  queued_images: string[];
}

/**
 * A site's image cache: copies it holds are served from the cache's store; a miss is fetched once
 * (from the parent at an edge; at central from its own stores or the sites holding a copy), however
 * many clients ask at the same time, and streamed to all of them as it arrives while it is written
 * to the cache's store. A copy becomes visible only once its size, md5 and sha512 match the image;
 * a fill that fails (corrupt bytes, a cut link) commits nothing and ends every waiting client's
 * response before its last byte, so no client can take a partial or wrong image for a whole one.
 *
 * Hits (GET /v2/cache, the site's inventory): a hit is a read this site served without asking its
 * parent for it, from its copy or from a fill another request started. The GET whose miss started
 * a fill is not a hit (as in Glance, where the download that caches an image is not); every client
 * that joined the fill is, counted when the copy is committed (a fill that fails keeps nothing, so
 * its joiners count nowhere); so are all clients of a fill a prefetch or a pin started.
 *
 * Budget: cached copies together stay within `budgetBytes`; unpinned ones are evicted least
 * recently used first; pinned ones never, and a copy that would only fit by evicting them is
 * refused (PayloadTooLargeError, as Glance answers a full store). A GET that cannot be admitted
 * is passed through from the parent without being kept.
 */
export class PullThroughImages {
  readonly #o: PullThroughImagesOptions;
  readonly #now: () => Date;
  /** The index, in memory (write-through), so that admission decisions are taken at once. */
  readonly #entries = new Map<string, CacheEntry>();
  readonly #fills: ImageFills;
  readonly #metrics: Metrics;
  /**
   * Per image being fetched: the clients that joined its fill (every one but the one whose GET
   * started it), its hits once committed; and the pin it is to have.
   */
  readonly #pending = new Map<string, { hits: number; pin: { until: string | null } | undefined }>();

  private constructor(opts: PullThroughImagesOptions) {
    this.#o = opts;
    this.#fills = opts.fills;
    this.#metrics = opts.metrics ?? NO_METRICS;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Loads the index, dropping entries whose copy is missing (and removing such a copy from where
   * the cache kept its copies before, `former`).
   */
  static async create(opts: PullThroughImagesOptions): Promise<PullThroughImages> {
    const cache = new PullThroughImages(opts);
    for (const entry of await opts.index.listCacheEntries()) {
      const stat = await opts.blobs.stat(cacheKey(entry.image_id));
      if (stat?.size === entry.size) {
        cache.#entries.set(entry.image_id, entry);
        continue;
      }
      if (opts.former !== undefined && opts.former.id !== opts.blobs.id) {
        await opts.chunks.removeHeldCopy(opts.former.id, cacheKey(entry.image_id));
        await opts.former.delete(cacheKey(entry.image_id));
      }
      await opts.index.deleteCacheEntry(entry.image_id);
    }
    return cache;
  }

  /**
   * ImageBytesElsewhere.serves: whether a download of an image the site's stores hold (read from
   * `store`) goes through the cache: only where `located` is set, only for an active image (as in
   * Glance, "Deactivated images shall not be served from cache"), when a copy of its bytes is held
   * or being fetched, or when a miss would keep one (`store` is not a direct one).
   */
  serves(image: Image, store: string): boolean {
    const located = this.#o.located;
    if (located === undefined || image.status !== 'active') return false;
    return this.#holds(image) || this.#pending.has(image.id) || !located.direct.has(store);
  }

  /**
   * The bytes [start, end] of an image: from the held copy, from the fill in progress, or from a
   * new fill; straight from the parent for an image the budget cannot admit or a deactivated one
   * (only an active one is cached), and for a range the fill has not reached (one of a cold image
   * starts the fill, too). Whether the caller may have a deactivated image's bytes (admins only)
   * is ImageService.download's to decide. `heldOnly`: the held copy, or NotFoundError.
   */
  async open(image: Image, start: number, end: number, opts: HeldOnlyOptions = {}): Promise<Readable> {
    const id = image.id;
    const bytes = end - start + 1;
    if (this.#entries.has(id) && !this.#holds(image)) await this.#drop(id, 'invalidated'); // a copy of other bytes
    if (this.#fills.get(id) === undefined && this.#entries.has(id)) {
      try {
        const stream = await this.#o.blobs.get(cacheKey(id), { start, end, signal: opts.signal });
        this.#touch(id);
        return countDownload(this.#metrics, 'cache', stream, bytes);
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        this.#forget(id); // the copy went missing behind our back: fetch it again
      }
    }
    if (opts.heldOnly === true) throw new NotFoundError(`Image ${id} is not held at this site, and only a copy held here was asked for.`);
    let fill = this.#fills.get(id);
    const whole = start === 0 && end === (image.size ?? 0) - 1;
    if (fill === undefined) {
      // An image a direct store holds is read from there, not kept (see `located`).
      if (this.#readDirectly(image)) return this.#passThrough(id, start, end, opts);
      if (!verifiable(image) || !this.#makeRoom(image.size!)) {
        if (verifiable(image)) this.#o.log.warn({ image: id, size: image.size }, 'image passed through without caching: the cache budget is held by pinned copies');
        return this.#passThrough(id, start, end, opts);
      }
      fill = this.#startFill(image, undefined, false, 'client');
      // A range of a cold image (a hypervisor reading a disk by its URL): the whole image is
      // fetched into the cache from now on, and the range itself is asked of the source at once
      // rather than waited for.
      if (!whole) return this.#passThrough(id, start, end, opts);
      return countDownload(this.#metrics, 'fill', await this.#fills.read(fill, start, end, opts.signal), bytes);
    } else if (fill.state === 'running' && start > fill.received + RANGE_AHEAD) {
      // Far beyond what the fill has received: asked of the source at once too.
      return this.#passThrough(id, start, end, opts);
    } else if (this.#entries.has(id)) {
      this.#touch(id); // the fill has just committed
    } else {
      // A client of a fill the cache started counts as a hit once it commits; one the placement
      // agent started commits into the store, not the cache.
      const pending = this.#pending.get(id);
      if (pending !== undefined) pending.hits++;
    }
    // A read of a fill another request, a prefetch, a pin or a placement policy started (single flight).
    const stream = await this.#fills.read(fill, start, end, opts.signal);
    this.#metrics.count('outpost_fill_joins_total', {});
    return countDownload(this.#metrics, 'fill', stream, bytes);
  }

  /**
   * What the cache holds now, for the site's metrics: the bytes of its copies, of the pinned ones
   * among them, their number, and the budget.
   */
  usage(): CacheUsage {
    let usedBytes = 0;
    let pinnedBytes = 0;
    for (const e of this.#entries.values()) {
      usedBytes += e.size;
      if (this.#isPinned(e)) pinnedBytes += e.size;
    }
    return { usedBytes, pinnedBytes, budgetBytes: this.#o.budgetBytes, copies: this.#entries.size };
  }

  /** PUT /v2/cache/{id}: fetch a copy now unless one is held or coming. */
  prefetch(image: Image): void {
    if (this.#entries.has(image.id) || this.#fills.get(image.id) !== undefined) return;
    this.#admit(image);
    this.#startFill(image, undefined);
  }

  /**
   * Pins the image (fetching it first if needed): a pinned copy is never evicted, until `until`
   * if given. Returns false when the copy is being fetched (pinned once it is committed).
   */
  async pin(image: Image, until: string | null, opts: IoOptions = {}): Promise<boolean> {
    const entry = this.#entries.get(image.id);
    if (entry !== undefined) {
      const pinned = { ...entry, pinned: true, pinned_until: until };
      this.#entries.set(image.id, pinned);
      await this.#o.index.putCacheEntry(pinned, opts);
      return true;
    }
    const fill = this.#fills.get(image.id);
    if (fill !== undefined) {
      await fill.ended;
      opts.signal?.throwIfAborted();
      return this.pin(image, until, opts);
    }
    this.#admit(image);
    this.#startFill(image, { until });
    return false;
  }

  /**
   * Holds the image's copy for a `cache` placement policy, fetching it first if needed: resolves
   * once the copy is held (never evicted until released), rejects when it cannot be (the budget
   * is held by pinned copies: PayloadTooLargeError; the fill failed: its error).
   */
  async holdForPolicy(image: Image, opts: IoOptions = {}): Promise<void> {
    const running = this.#fills.get(image.id);
    if (running !== undefined) {
      await running.ended;
      opts.signal?.throwIfAborted();
    }
    const entry = this.#entries.get(image.id);
    if (entry !== undefined) {
      if (entry.pinned_by_policy === true) return;
      const held = { ...entry, pinned_by_policy: true };
      this.#entries.set(image.id, held);
      await this.#o.index.putCacheEntry(held, opts);
      return;
    }
    if (this.#fills.get(image.id) !== undefined) throw new Error(`image ${image.id} is being fetched for another reason; trying again`);
    this.#admit(image);
    const fill = this.#startFill(image, undefined, true);
    await fill.ended;
    if (fill.state !== 'committed') throw fill.error ?? new Error(`the transfer of image ${image.id} ended without a copy`);
  }

  /** The copy is no longer held for a placement policy (it stays cached, evictable unless pinned). */
  async releaseForPolicy(imageId: string, opts: IoOptions = {}): Promise<void> {
    const entry = this.#entries.get(imageId);
    if (entry?.pinned_by_policy !== true) return;
    const released = { ...entry, pinned_by_policy: false };
    this.#entries.set(imageId, released);
    await this.#o.index.putCacheEntry(released, opts);
  }

  /** The images whose copies are held for a placement policy. */
  heldForPolicy(): Set<string> {
    return new Set([...this.#entries.values()].filter((e) => e.pinned_by_policy === true).map((e) => e.image_id));
  }

  async unpin(imageId: string, opts: IoOptions = {}): Promise<void> {
    const entry = this.#entries.get(imageId);
    if (entry === undefined) throw new NotFoundError(`Site ${this.#o.site} holds no copy of image ${imageId}.`);
    const unpinned = { ...entry, pinned: false, pinned_until: null };
    this.#entries.set(imageId, unpinned);
    await this.#o.index.putCacheEntry(unpinned, opts);
  }

  /** GET /v2/cache. */
  list(): CacheListing {
    const epoch = (iso: string) => Date.parse(iso) / 1000;
    return {
      cached_images: [...this.#entries.values()].map((e) => ({
        image_id: e.image_id, hits: e.hits, last_accessed: epoch(e.last_accessed), last_modified: epoch(e.cached_at), size: e.size,
      })),
      queued_images: this.#fills.running().filter((f) => this.#pending.has(f.image.id)).map((f) => f.image.id),
    };
  }

  /** Per image, this cache's store if it holds a verified copy (what an edge adds to an image's `stores`). */
  async storesHolding(imageIds: readonly string[]): Promise<Map<string, string[]>> {
    return new Map(imageIds.filter((id) => this.#entries.has(id)).map((id) => [id, [this.#o.shownAs ?? this.#o.blobs.id]]));
  }

  /** Every held copy with its pin, for the site's inventory. */
  entries(): CacheEntry[] {
    return [...this.#entries.values()].map((e) => ({ ...e, pinned: this.#isPinned(e) }));
  }

  /**
   * DELETE /v2/cache/{id}: drops the copy (pinned or not) and stops a fill no client is
   * waiting for. Returns false when there was neither.
   */
  async evict(imageId: string): Promise<boolean> {
    const fill = this.#pending.has(imageId) ? this.#fills.get(imageId) : undefined;
    if (fill !== undefined && fill.readers === 0) fill.abort.abort();
    const held = this.#entries.has(imageId);
    if (held) await this.#drop(imageId, 'request');
    return held || fill !== undefined;
  }

  /** DELETE /v2/cache: `cache` drops every copy, `queue` stops idle fills, `both` does both. */
  async clear(target: 'cache' | 'queue' | 'both'): Promise<void> {
    if (target !== 'cache') for (const fill of this.#fills.running()) if (fill.readers === 0 && this.#pending.has(fill.image.id)) fill.abort.abort();
    if (target !== 'queue') for (const id of [...this.#entries.keys()]) await this.#drop(id, 'request');
  }

  /**
   * POST /v2/cache/prune (API 2.18; glance/image_cache ImageCache.prune): least recently used
   * unpinned copies are removed until the copies and the fills in progress fit the budget again
   * (after `cache_max_bytes` was lowered, say; a fill makes room as it is admitted otherwise).
   */
  async prune(): Promise<{ total_files_pruned: number; total_bytes_pruned: number }> {
    let used = this.#used(false);
    let files = 0;
    let bytes = 0;
    const lru = [...this.#entries.values()].filter((e) => !this.#isPinned(e)).sort((a, b) => a.last_accessed.localeCompare(b.last_accessed));
    for (const victim of lru) {
      if (used <= this.#o.budgetBytes) break;
      await this.#drop(victim.image_id, 'prune');
      this.#o.log.info({ image: victim.image_id, size: victim.size }, 'pruned the least recently used cached copy');
      used -= victim.size;
      files++;
      bytes += victim.size;
    }
    return { total_files_pruned: files, total_bytes_pruned: bytes };
  }

  /**
   * POST /v2/cache/clean (API 2.18; ImageCache.clean: "invalid and stalled incomplete" files):
   * the partial writes in the cache's store no running write holds, and what interrupted fills
   * left in the spool that is older than a day.
   */
  async clean(opts: IoOptions = {}): Promise<void> {
    const partial = await this.#o.blobs.removePartial(opts);
    const stale = await this.#fills.removeStaleLeftovers(opts);
    if (partial + stale > 0) this.#o.log.info({ partial, stale }, 'cleaned the cache\'s partial writes and stale spools');
  }

  /**
   * The image changed (CacheInvalidation): a copy of bytes the image no longer has — it went back
   * to queued when its last located copy went, and may get other bytes — is dropped. A
   * deactivated image's copy is kept (never served meanwhile: only active images are).
   */
  async revalidate(image: Image): Promise<void> {
    if (!this.#entries.has(image.id) || ((image.status === 'active' || image.status === 'deactivated') && this.#holds(image))) return;
    await this.invalidate(image.id);
  }

  /**
   * The image was deleted (or can no longer be served): its copy is dropped and a fill in
   * progress is stopped, ending its clients' responses.
   */
  async invalidate(imageId: string): Promise<void> {
    this.#fills.get(imageId)?.abort.abort();
    if (this.#entries.has(imageId)) {
      await this.#drop(imageId, 'invalidated');
      this.#o.log.info({ image: imageId }, 'dropped the cached copy of a deleted image');
    }
  }


  // -- internals ---------------------------------------------------------------------------------

  /** Whether the held copy is of the image's bytes (an entry older than its recorded hash is taken to be). */
  #holds(image: Image): boolean {
    const entry = this.#entries.get(image.id);
    return entry !== undefined && (entry.os_hash_value === undefined || entry.os_hash_value === image.os_hash_value);
  }

  /** An image with a copy in a direct store of the site's (see `located`): read from there, never kept on a miss. */
  #readDirectly(image: Image): boolean {
    const located = this.#o.located;
    return located !== undefined && image.locations.some((l) => located.direct.has(l.store));
  }

  #admit(image: Image): void {
    if (!verifiable(image)) throw new NotFoundError(`Image ${image.id} has no data to cache.`);
    if (!this.#makeRoom(image.size!)) {
      const held = this.#used(true);
      throw new PayloadTooLargeError(
        `Site ${this.#o.site} cannot cache image ${image.id} (${image.size} bytes): its cache budget is ${this.#o.budgetBytes} bytes, `
        + `${held} of them held by pinned copies and fills in progress. Unpin or delete cached images, or raise cache_max_bytes.`,
      );
    }
  }

  /** Bytes taken by copies and the cache's fills (only pinned copies and fills when `pinnedOnly`). */
  #used(pinnedOnly: boolean): number {
    let used = 0;
    for (const e of this.#entries.values()) if (!pinnedOnly || this.#isPinned(e)) used += e.size;
    for (const f of this.#fills.running()) if (this.#pending.has(f.image.id)) used += f.image.size ?? 0;
    return used;
  }

  /** Evicts least recently used unpinned copies until `size` more bytes fit; false if they cannot. */
  #makeRoom(size: number): boolean {
    if (this.#used(true) + size > this.#o.budgetBytes) return false;
    let used = this.#used(false);
    const lru = [...this.#entries.values()].filter((e) => !this.#isPinned(e)).sort((a, b) => a.last_accessed.localeCompare(b.last_accessed));
    for (const victim of lru) {
      if (used + size <= this.#o.budgetBytes) break;
      used -= victim.size;
      this.#o.log.info({ image: victim.image_id, size: victim.size }, 'evicted the least recently used cached copy');
      void this.#drop(victim.image_id, 'budget').catch((error: Error) => this.#o.log.warn({ image: victim.image_id, err: describeError(error) }, 'could not remove an evicted copy'));
    }
    return used + size <= this.#o.budgetBytes;
  }

  #isPinned(e: CacheEntry): boolean {
    return e.pinned_by_policy === true || (e.pinned && (e.pinned_until === null || Date.parse(e.pinned_until) > this.#now().getTime()));
  }

  /** Removes the copy and its bookkeeping; counted as an eviction for `why` (none: a copy that was never served). */
  async #drop(imageId: string, why?: Removal): Promise<void> {
    if (this.#entries.delete(imageId) && why !== undefined) this.#metrics.count('outpost_cache_evictions_total', { reason: why });
    await this.#o.chunks.removeHeldCopy(this.#o.blobs.id, cacheKey(imageId));
    await this.#o.index.deleteCacheEntry(imageId);
    await this.#o.blobs.delete(cacheKey(imageId));
  }

  /** The bytes straight from where they come from, not kept. */
  async #passThrough(imageId: string, start: number, end: number, opts: IoOptions): Promise<Readable> {
    return countDownload(this.#metrics, 'passthrough', await this.#fills.passThrough(imageId, start, end, opts), end - start + 1);
  }

  #forget(imageId: string): void {
    this.#entries.delete(imageId);
    void this.#o.index.deleteCacheEntry(imageId).catch(() => undefined);
  }

  #touch(imageId: string): void {
    const entry = this.#entries.get(imageId);
    if (entry === undefined) return;
    const touched = { ...entry, hits: entry.hits + 1, last_accessed: this.#now().toISOString() };
    this.#entries.set(imageId, touched);
    void this.#o.index.putCacheEntry(touched).catch((error: Error) => this.#o.log.warn({ err: describeError(error) }, 'could not record a cache hit'));
  }

  /** A fill a read starts is for a client; one a prefetch, pin or policy starts is a prefetch. */
  #startFill(image: Image, pin: { until: string | null } | undefined, forPolicy = false, priority: TransferPriority = 'prefetch'): ImageFill {
    const pending = { hits: 0, pin };
    this.#pending.set(image.id, pending);
    const fill = this.#fills.start(image, { blobs: this.#o.blobs, key: cacheKey(image.id), manifest: this.#o.buildManifests, priority }, {
      committed: async (digest) => {
        if (digest.manifest !== undefined) {
          await this.#o.manifests.putManifest(image.id, digest.sha512, digest.manifest);
          await this.#o.chunks.addHeldCopy(this.#o.blobs.id, cacheKey(image.id), digest.manifest);
        }
        const now = this.#now().toISOString();
        const entry: CacheEntry = {
          image_id: image.id, size: image.size!, cached_at: now, last_accessed: now, hits: pending.hits,
          pinned: pin !== undefined, pinned_until: pin?.until ?? null, ...(forPolicy ? { pinned_by_policy: true } : {}),
          os_hash_value: digest.sha512,
        };
        this.#entries.set(image.id, entry);
        await this.#o.index.putCacheEntry(entry);
        // Invalidated while being recorded (invalidate() found no entry yet): not kept.
        if (fill.abort.signal.aborted) {
          await this.#drop(image.id);
          fill.abort.signal.throwIfAborted();
        }
      },
    });
    void fill.ended.then(() => {
      if (this.#pending.get(image.id) === pending) this.#pending.delete(image.id);
    });
    return fill;
  }
}


/**
 * A cached copy's key in the store: apart from the image's own key, which a location (an upload
 * here, a copy placed here) uses, so evicting a cached copy can never remove a located one.
 */
function cacheKey(imageId: string): string {
  return `${imageId}.cached`;
}

/** Only an image with its size and both hashes can be verified, so only such an image is cached. */
function verifiable(image: Image): boolean {
  return image.status === 'active' && image.size !== null && image.checksum !== null && image.os_hash_value !== null && image.os_hash_algo === 'sha512';
}
