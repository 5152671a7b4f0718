import { createHash } from 'node:crypto';
import type { ChunkManifest } from '../core/chunk-manifest.ts';
import { DataMismatchError, NotFoundError } from '../core/errors.ts';
import type { Image } from '../core/image.ts';
import type { Catalog, IoOptions, ManifestIndex, ParentImageBytes, ParentImageSource, SourceOptions } from '../core/ports.ts';
import type { StoreRegistry } from '../core/stores.ts';
import { recorded, type TransferLog } from './transfer-log.ts';

export interface StoreImageSourceOptions {
  /** The site's catalog: the image (its locations, size and hashes). */
  catalog: Pick<Catalog, 'getImage'>;
  /** The site's own stores: a copy located in one of them is read from there. */
  stores: StoreRegistry;
  /** The manifests this site recorded: a whole image is checked chunk by chunk against its own. */
  manifests: Pick<ManifestIndex, 'getManifest'>;
  /** Where the bytes of images none of the site's stores holds come from (central: the sites holding a copy). */
  elsewhere: ParentImageSource;
  /** Where whole-image reads are recorded (GET /outpost/v1/transfers), as from `store ID`. */
  transfers: TransferLog;
}

/**
 * Central's source of image bytes for its cache and its placement agent: an image located in one
 * of the site's own stores (a directory, an S3 bucket) is read from there — the copy of highest
 * store weight whose size is the image's — and anything else is asked of `elsewhere`. A whole
 * image read from a store is checked chunk by chunk against the chunk manifest recorded for its
 * bytes (when there is one; the manifest is then handed on, so the fill need not build it again);
 * the fill's verifying put still checks size, md5 and sha512 before its copy becomes visible, as
 * for every fill.
 */
export class StoreImageSource implements ParentImageSource {
  readonly #o: StoreImageSourceOptions;

  constructor(opts: StoreImageSourceOptions) {
    this.#o = opts;
  }

  manifest(imageId: string, opts?: IoOptions): Promise<unknown> {
    return this.#o.elsewhere.manifest(imageId, opts);
  }

  async open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const image = await this.#o.catalog.getImage(imageId, opts);
    const store = image === undefined ? undefined : await this.#heldIn(image, opts);
    if (image === undefined || store === undefined) return this.#o.elsewhere.open(imageId, opts);
    const blobs = this.#o.stores.blobs(store);
    const { start, end, signal } = opts;
    if (start !== undefined || end !== undefined) return { stream: await blobs.get(imageId, { start, end, signal }) };
    const manifest = image.os_hash_value === null ? undefined : await this.#o.manifests.getManifest(imageId, image.os_hash_value, opts);
    const usable = manifest !== undefined && manifest.size === image.size ? manifest : undefined;
    const stream = await blobs.get(imageId, { signal });
    const transfer = this.#o.transfers.start(imageId, `store ${store}`, usable === undefined ? 'stream' : 'manifest', image.size ?? 0);
    return {
      stream: recorded(usable === undefined ? stream : checked(imageId, stream, usable), transfer, signal, 'reused'),
      ...(usable === undefined ? {} : { manifest: usable }),
    };
  }

  /** The store of the site's own holding a whole copy of the image (highest weight first), if any. */
  async #heldIn(image: Image, opts: IoOptions): Promise<string | undefined> {
    if ((image.status !== 'active' && image.status !== 'deactivated') || image.size === null) return undefined;
    const here = image.locations.map((l) => l.store).filter((s) => this.#o.stores.has(s))
      .sort((a, b) => this.#o.stores.weight(b) - this.#o.stores.weight(a));
    for (const store of here) {
      try {
        if ((await this.#o.stores.blobs(store).stat(image.id, opts))?.size === image.size) return store;
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
      }
    }
    return undefined;
  }
}

/** The bytes as they come, each chunk's sha256 checked once it is complete (DataMismatchError at the first that fails). */
async function* checked(imageId: string, stream: AsyncIterable<Uint8Array>, manifest: ChunkManifest): AsyncGenerator<Uint8Array> {
  let next = 0;
  let have = 0;
  let hash = createHash('sha256');
  for await (const piece of stream) {
    for (let at = 0; at < piece.length;) {
      const chunk = manifest.chunks[next];
      if (chunk === undefined) throw new DataMismatchError(`The stored copy of image ${imageId} is longer than its chunk manifest.`);
      const take = Math.min(chunk.length - have, piece.length - at);
      hash.update(at === 0 && take === piece.length ? piece : piece.subarray(at, at + take));
      have += take;
      at += take;
      if (have < chunk.length) continue;
      if (hash.digest('hex') !== chunk.sha256) throw new DataMismatchError(`Chunk at ${chunk.offset} of the stored copy of image ${imageId} did not match its sha256.`);
      hash = createHash('sha256');
      have = 0;
      next++;
    }
    yield piece;
  }
  if (next < manifest.chunks.length) throw new DataMismatchError(`The stored copy of image ${imageId} is shorter than its chunk manifest.`);
}
