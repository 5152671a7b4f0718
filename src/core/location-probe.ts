import { createHash, type Hash } from 'node:crypto';
import { BadRequestError, NotFoundError, OutpostError } from './errors.ts';
import type { Image } from './image.ts';
import type { LocationProbe } from './image-locations.ts';
import type { HasherFactory, IoOptions, RemoteSource } from './ports.ts';
import type { StoreRegistry } from './stores.ts';
import { HEADER_BYTES, inspectVirtualSize } from './virtual-size.ts';

export interface LocationProberOptions {
  /** This site's stores: a location in one of them is the copy its URL for the image names. */
  stores: StoreRegistry;
  /** http(s) locations are reached through the import filter of web-download (SSRF protection). */
  remote: RemoteSource;
  hashers: HasherFactory;
  /** Glance's `image_size_cap`: bytes read to hash a location are capped at it. */
  imageSizeCap: number;
}

/** Where a location's URL points, known without I/O. */
export type LocationTarget = { kind: 'store'; store: string } | { kind: 'url' } | { kind: 'invalid'; error: OutpostError };

/** A location's bytes, read whole: size, md5, sha512, and the hash of another algorithm when asked for. */
export interface LocationDigest {
  size: number;
  md5: string;
  sha512: string;
  virtualSize: number | null;
  /** By algorithm: md5 and sha512, and `algo` of digest() when it is another. */
  hashes: Record<string, string>;
}

/**
 * What is at a location's URL (glance/location.py `_check_location_uri`, for Outpost's two kinds
 * of location): the URL one of this site's stores gives the image's copy (`BlobStore.urlFor`),
 * whose bytes are read and hashed; or an http(s) URL, which must pass the import filter and
 * answer with its size. Any other URL — `file://` elsewhere, `swift://`, a store this site does
 * not have — is "Invalid location" (400), as Glance says for a scheme it does not know or
 * restricts (`file`, `filesystem`, `swift+config`).
 */
export class LocationProber {
  readonly #o: LocationProberOptions;

  constructor(opts: LocationProberOptions) {
    this.#o = opts;
  }

  /** Where `url` points for image `imageId`, without I/O (the import filter's static checks included). */
  target(imageId: string, url: string): LocationTarget {
    const store = this.#o.stores.list().find((s) => this.#o.stores.blobs(s.id).urlFor(imageId) === url);
    if (store !== undefined) return { kind: 'store', store: store.id };
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return { kind: 'invalid', error: new BadRequestError('Invalid location') };
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return { kind: 'invalid', error: new BadRequestError('Invalid location') };
    try {
      this.#o.remote.check(url, 'a location');
    } catch (error) {
      if (error instanceof OutpostError) return { kind: 'invalid', error };
      throw error;
    }
    return { kind: 'url' };
  }

  /**
   * What is at `url` for a PATCH of `image`: a store's copy is read whole and hashed (so that it
   * is known to be the image's bytes); an http(s) URL is asked for its size (a GET whose body is
   * not read, as glance_store's http store asks for the size). Never rejects for the URL's sake:
   * a URL that is not a location is `invalid`, with the error the patch answers with.
   */
  async probe(image: Image, url: string, opts: IoOptions = {}): Promise<LocationProbe> {
    const target = this.target(image.id, url);
    if (target.kind === 'invalid') return target;
    if (target.kind === 'store') {
      const stat = await this.#o.stores.blobs(target.store).stat(image.id, opts);
      if (stat === undefined || stat.size === 0) return { kind: 'invalid', error: new BadRequestError('Invalid location') };
      const d = await this.digest(image, url, opts);
      return { kind: 'store', store: target.store, size: d.size, md5: d.md5, sha512: d.sha512, virtualSize: d.virtualSize };
    }
    let size: number | undefined;
    try {
      size = await this.#o.remote.size(url, opts);
    } catch (error) {
      opts.signal?.throwIfAborted();
      return { kind: 'invalid', error: new BadRequestError(`Invalid location: ${(error as Error).message}`) };
    }
    if (size === undefined || !Number.isSafeInteger(size) || size <= 0) {
      return { kind: 'invalid', error: new BadRequestError(`Invalid location: ${url} announces no size (Content-Length)`) };
    }
    return { kind: 'url', size };
  }

  /**
   * Reads every byte at the location (a store's copy, or the URL through the import filter, at
   * most image_size_cap bytes) and hashes it: md5 and sha512 on the hashing threads, and `algo`
   * too when it is another (POST /locations' validation_data may name sha1 or sha256). The
   * image's virtual size is read from its first bytes.
   */
  async digest(image: Image, url: string, opts: IoOptions & { algo?: string } = {}): Promise<LocationDigest> {
    const target = this.target(image.id, url);
    if (target.kind === 'invalid') throw target.error;
    const body = target.kind === 'store'
      ? await this.#o.stores.blobs(target.store).get(image.id, opts)
      : (await this.#o.remote.open(url, { signal: opts.signal, maxSize: this.#o.imageSizeCap })).body;
    const hasher = this.#o.hashers.create();
    const extra: Hash | undefined = opts.algo === undefined || opts.algo === 'md5' || opts.algo === 'sha512' ? undefined : createHash(opts.algo);
    let size = 0;
    let head = new Uint8Array(0);
    try {
      for await (const chunk of body) {
        const bytes = chunk as Uint8Array;
        size += bytes.length;
        if (size > this.#o.imageSizeCap) throw new BadRequestError(`${url} holds more than image_size_cap (${this.#o.imageSizeCap} bytes).`);
        if (head.length < HEADER_BYTES) head = Buffer.concat([head, bytes.subarray(0, HEADER_BYTES - head.length)]);
        extra?.update(bytes);
        await hasher.update(bytes);
      }
    } catch (error) {
      hasher.abort();
      if (error instanceof NotFoundError) throw new BadRequestError('Invalid location');
      throw error;
    }
    const { md5, sha512 } = await hasher.digest();
    const hashes: Record<string, string> = { md5, sha512 };
    if (extra !== undefined) hashes[opts.algo!] = extra.digest('hex');
    return { size, md5, sha512, virtualSize: inspectVirtualSize(image.disk_format, head, size), hashes };
  }
}
