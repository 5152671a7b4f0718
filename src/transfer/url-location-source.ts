import { createHash } from 'node:crypto';
import { DataMismatchError, ServiceUnavailableError } from '../core/errors.ts';
import { isUrlLocation, type Image } from '../core/image.ts';
import type { Catalog, IoOptions, ParentImageBytes, ParentImageSource, RemoteSource, SourceOptions } from '../core/ports.ts';

export interface UrlLocationSourceOptions {
  /** The site's catalog: the image's locations, size and hashes. */
  catalog: Pick<Catalog, 'getImage'>;
  /** How http(s) locations are read: through the import filter of web-download (SSRF protection). */
  remote: RemoteSource;
  /** Where the bytes of images with a copy in a store come from (central: the sites holding one). */
  next: ParentImageSource;
}

/**
 * Central's source of the bytes of images located at http(s) URLs (the locations API): such a
 * URL is a read-only source the bytes are downloaded from when no store of the region holds them
 * — a copy in a store is asked of `next` first. Its bytes are never taken on trust: the URL must
 * announce the image's size and give exactly that many bytes, and a read of the whole image is
 * checked against the image's md5 and sha512 (when it has them) before its last byte is given, so
 * a URL serving other bytes ends the answer short with DataMismatchError instead of passing them
 * off as the image. A fill (a whole image read without a range) is checked by the cache's
 * verifying put the same way; a range of an image with a chunk manifest is checked chunk by chunk
 * by DeltaImageSource; a range read otherwise is checked for its length only.
 */
export class UrlLocationSource implements ParentImageSource {
  readonly #o: UrlLocationSourceOptions;

  constructor(opts: UrlLocationSourceOptions) {
    this.#o = opts;
  }

  manifest(imageId: string, opts?: IoOptions): Promise<unknown> {
    return this.#o.next.manifest(imageId, opts);
  }

  // Manifests and checked chunks come from `next` (a URL has neither): what is said of them goes there.
  distrust(imageId: string, from: string): void {
    this.#o.next.distrust?.(imageId, from);
  }

  manifestMismatched(imageId: string): void {
    this.#o.next.manifestMismatched?.(imageId);
  }

  async open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const image = await this.#o.catalog.getImage(imageId, opts);
    const urls = image?.locations.filter(isUrlLocation).map((l) => l.url) ?? [];
    if (image === undefined || urls.length === 0 || image.size === null) return this.#o.next.open(imageId, opts);
    let last: Error | undefined;
    if (image.locations.some((l) => !isUrlLocation(l))) {
      try {
        return await this.#o.next.open(imageId, opts);
      } catch (error) {
        opts.signal?.throwIfAborted();
        last = error as Error;
      }
    }
    for (const url of urls) {
      try {
        return await this.#fromUrl(image, url, opts);
      } catch (error) {
        opts.signal?.throwIfAborted();
        last = error as Error;
      }
    }
    throw new ServiceUnavailableError(`No location of image ${imageId} could be read: ${last?.message ?? 'none answered'}`);
  }

  /** The bytes [start, end] (default: all) from `url`, checked as the class says. */
  async #fromUrl(image: Image, url: string, opts: SourceOptions): Promise<ParentImageBytes> {
    const size = image.size!;
    const start = opts.start ?? 0;
    const end = Math.min(opts.end ?? size - 1, size - 1);
    const { body, size: announced } = await this.#o.remote.open(url, { signal: opts.signal, start });
    if (announced !== undefined && announced !== size - start) {
      throw new DataMismatchError(`${url} has ${announced + start} bytes; image ${image.id} has ${size}.`);
    }
    const whole = start === 0 && end === size - 1;
    const hashes = whole && image.checksum !== null && image.os_hash_value !== null && image.os_hash_algo === 'sha512'
      ? { md5: image.checksum, sha512: image.os_hash_value } : undefined;
    return { stream: checked(image, url, body, start, end, hashes) };
  }
}

/**
 * The bytes [start, end] of `body` (which begins at `start`): exactly that many, none beyond the
 * image's end, and — `expected` — of the image's md5 and sha512; the last piece is held back
 * until all of that is known, so a mismatch ends the stream with DataMismatchError short of it.
 */
async function* checked(image: Image, url: string, body: AsyncIterable<Uint8Array>, start: number, end: number, expected?: { md5: string; sha512: string }): AsyncGenerator<Uint8Array> {
  const want = end - start + 1;
  const toEnd = end === image.size! - 1;
  const md5 = expected === undefined ? undefined : createHash('md5');
  const sha512 = expected === undefined ? undefined : createHash('sha512');
  let given = 0;
  let pending: Uint8Array | undefined;
  for await (const piece of body) {
    let bytes = piece;
    if (given + bytes.length > want) {
      if (toEnd) throw new DataMismatchError(`${url} holds more than the ${image.size} bytes of image ${image.id}.`);
      bytes = bytes.subarray(0, want - given);
    }
    md5?.update(bytes);
    sha512?.update(bytes);
    if (pending !== undefined) yield pending;
    pending = bytes;
    given += bytes.length;
    if (given === want && !toEnd) break;
  }
  if (given < want) throw new DataMismatchError(`${url} ended after ${start + given} bytes; image ${image.id} has ${image.size}.`);
  if (expected !== undefined && (md5!.digest('hex') !== expected.md5 || sha512!.digest('hex') !== expected.sha512)) {
    throw new DataMismatchError(`The bytes at ${url} do not match the checksum and hash of image ${image.id}: they are not served.`);
  }
  if (pending !== undefined) yield pending;
}
