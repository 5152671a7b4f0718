import { validateManifest, type ChunkManifest } from './chunk-manifest.ts';
import { DataMismatchError, NotFoundError } from './errors.ts';
import type { Image } from './image.ts';
import type { Catalog, ChunkIndex, HasherFactory, HeldOnlyOptions, IoOptions, ManifestIndex, ParentImageSource } from './ports.ts';
import type { StoreRegistry } from './stores.ts';

export interface ImageManifestsOptions {
  catalog: Pick<Catalog, 'getImage'>;
  index: ManifestIndex;
  /** The chunks of the copies this site holds, kept in step with its stores' copies. */
  chunks: ChunkIndex;
  stores: StoreRegistry;
  hashers: HasherFactory;
  /** Where the bytes of images this site holds no copy of come from (an edge's parent, or the sites holding one). */
  elsewhere?: Pick<ParentImageSource, 'manifest' | 'manifestMismatched'>;
  /** Whether bytes being stored get their manifest in the same pass (`chunk_manifests`; default true). */
  whileStoring?: boolean;
  now?: () => number;
}

/** Manifests had from elsewhere that are remembered (the most recently had), and for how long, ms. */
const FETCHED_KEPT = 64;
const FETCHED_FOR_MS = 60_000;

/**
 * The chunk manifest of each active image's bytes (GET /outpost/v1/images/{id}/manifest): the
 * one recorded when the bytes were stored here (upload, import, cache fill), else computed now
 * from a copy this site holds — checked against the image's size and hashes on the way, and
 * recorded — else asked of where the bytes come from. A manifest had from elsewhere (the parent,
 * or a peer while the parent is away) is only as good as the site that sent it: it is used for a
 * minute and never recorded; what is recorded is the one computed from the bytes once a transfer
 * has verified them (size, md5, sha512), so a site that sent a wrong one cannot spoil the image
 * here for longer than that.
 */
export class ImageManifests {
  readonly #o: ImageManifestsOptions;
  /** Manifests had from elsewhere, by `{id}@{sha512}`, with when; oldest first. */
  readonly #fetched = new Map<string, { manifest: ChunkManifest; at: number }>();

  constructor(opts: ImageManifestsOptions) {
    this.#o = opts;
  }

  /** Whether a put of an image's bytes should build their manifest (PutOptions.manifest). */
  get whileStoring(): boolean {
    return this.#o.whileStoring ?? true;
  }

  /**
   * Records the manifest of bytes just stored for an image in one of this site's stores (their
   * sha512: the image's os_hash_value), and indexes the copy's chunks.
   */
  async record(imageId: string, sha512: string, manifest: ChunkManifest | undefined, store: string, opts: IoOptions = {}): Promise<void> {
    if (manifest === undefined) return;
    this.#fetched.delete(`${imageId}@${sha512}`);
    await this.#o.index.putManifest(imageId, sha512, manifest, opts);
    await this.#o.chunks.addHeldCopy(store, imageId, manifest, opts);
  }

  /**
   * A transfer checked the image's bytes chunk by chunk against the manifest had from elsewhere,
   * and they were not the image's as a whole: that manifest is forgotten (the next transfer asks
   * again) and where it came from is told (ParentImageSource.manifestMismatched).
   */
  manifestMismatched(imageId: string): void {
    for (const key of [...this.#fetched.keys()]) if (key.startsWith(`${imageId}@`)) this.#fetched.delete(key);
    this.#o.elsewhere?.manifestMismatched?.(imageId);
  }

  /** The image is gone (its copies in `stores` too). */
  async forget(imageId: string, stores: readonly string[], opts: IoOptions = {}): Promise<void> {
    await this.#o.index.deleteManifest(imageId, opts);
    for (const store of stores) await this.#o.chunks.removeHeldCopy(store, imageId, opts);
  }

  /**
   * For a transfer of the image's bytes to this site: its manifest, or undefined when none can be
   * had (an unknown image, one without data, a source that keeps none) — the transfer then takes
   * the bytes as one stream. A source that cannot be reached fails it.
   */
  async forTransfer(imageId: string, opts: IoOptions = {}): Promise<ChunkManifest | undefined> {
    const image = await this.#o.catalog.getImage(imageId, opts);
    if (image === undefined) return undefined;
    try {
      return await this.of(image, opts);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  /**
   * The manifest of an image with verified bytes (active or deactivated); NotFoundError when it
   * has none (`heldOnly`: when this site has none recorded and holds no copy to compute it from).
   */
  async of(image: Image, opts: HeldOnlyOptions = {}): Promise<ChunkManifest> {
    if ((image.status !== 'active' && image.status !== 'deactivated') || image.size === null || image.os_hash_value === null || image.checksum === null) {
      throw new NotFoundError(`Image ${image.id} has no data, so no chunk manifest.`);
    }
    const sha512 = image.os_hash_value;
    const known = await this.#o.index.getManifest(image.id, sha512, opts);
    if (known !== undefined) return known;
    const computed = await this.#fromLocalCopy(image, opts);
    if (computed !== undefined) {
      await this.#o.index.putManifest(image.id, sha512, computed, opts);
      return computed;
    }
    if (opts.heldOnly === true) throw new NotFoundError(`No copy of image ${image.id} is held here, so its chunk manifest is not known here.`);
    return this.#fromElsewhere(image, opts);
  }

  /** Reads a copy this site holds through the hashing threads; undefined when it holds none. */
  async #fromLocalCopy(image: Image, opts: IoOptions): Promise<ChunkManifest | undefined> {
    for (const location of image.locations) {
      if (!this.#o.stores.has(location.store)) continue;
      const blobs = this.#o.stores.blobs(location.store);
      if ((await blobs.stat(image.id, opts))?.size !== image.size) continue;
      const hasher = this.#o.hashers.create({ manifest: true });
      try {
        for await (const part of await blobs.get(image.id, opts)) await hasher.update(part as Uint8Array);
      } catch (error) {
        hasher.abort();
        throw error;
      }
      const { md5, sha512, manifest } = await hasher.digest();
      if (md5 !== image.checksum || sha512 !== image.os_hash_value) {
        throw new DataMismatchError(`The copy of image ${image.id} in store ${location.store} does not match the image's checksum and hash.`);
      }
      await this.#o.chunks.addHeldCopy(location.store, image.id, manifest!, opts);
      return manifest;
    }
    return undefined;
  }

  async #fromElsewhere(image: Image, opts: IoOptions): Promise<ChunkManifest> {
    if (this.#o.elsewhere === undefined) throw new NotFoundError(`No copy of image ${image.id} is held here, so its chunk manifest cannot be computed.`);
    const key = `${image.id}@${image.os_hash_value}`;
    const now = this.#o.now?.() ?? Date.now();
    const had = this.#fetched.get(key);
    if (had !== undefined && now - had.at < FETCHED_FOR_MS) return had.manifest;
    const manifest = validateManifest(await this.#o.elsewhere.manifest(image.id, opts), image.size!);
    this.#fetched.delete(key);
    this.#fetched.set(key, { manifest, at: now });
    if (this.#fetched.size > FETCHED_KEPT) this.#fetched.delete(this.#fetched.keys().next().value!);
    return manifest;
  }
}
