import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { BadRequestError, NotFoundError, PayloadTooLargeError } from '../core/errors.ts';
import type { BlobDigest, BlobStat, BlobStore, GetOptions, HasherFactory, IoOptions, PutOptions } from '../core/ports.ts';

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const TMP_DIR = '.incomplete';

export interface FileBlobStoreOptions {
  id: string;
  root: string;
  hashers: HasherFactory;
  /** fdatasync before commit, so a committed copy survives a power cut (default true). */
  sync?: boolean;
}

/**
 * BlobStore on a local directory: `<root>/<key>` holds committed bytes; writes go to
 * `<root>/.incomplete/<key>.<random>` and are renamed into place only after every byte arrived
 * and was hashed. Partial files are removed on error and abort, and at start.
 */
export class FileBlobStore implements BlobStore {
  readonly id: string;
  readonly #root: string;
  readonly #hashers: HasherFactory;
  readonly #sync: boolean;

  private constructor(opts: FileBlobStoreOptions) {
    this.id = opts.id;
    this.#root = resolve(opts.root);
    this.#hashers = opts.hashers;
    this.#sync = opts.sync ?? true;
  }

  /** Creates the directories and removes incomplete files a crash may have left. */
  static async create(opts: FileBlobStoreOptions): Promise<FileBlobStore> {
    const store = new FileBlobStore(opts);
    await rm(join(store.#root, TMP_DIR), { recursive: true, force: true });
    await mkdir(join(store.#root, TMP_DIR), { recursive: true });
    return store;
  }

  #path(key: string): string {
    if (!KEY_RE.test(key) || key.includes('..')) throw new BadRequestError(`Invalid blob key: ${JSON.stringify(key)}`);
    return join(this.#root, key);
  }

  urlFor(key: string): string {
    return pathToFileURL(this.#path(key)).href;
  }

  async put(key: string, data: AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<BlobDigest> {
    const finalPath = this.#path(key);
    opts.signal?.throwIfAborted();
    const tmpPath = join(this.#root, TMP_DIR, `${key}.${randomBytes(6).toString('hex')}`);
    const file = await open(tmpPath, 'wx');
    const hasher = this.#hashers.create();
    let size = 0;
    try {
      for await (const chunk of data) {
        opts.signal?.throwIfAborted();
        size += chunk.length;
        if (opts.maxSize !== undefined && size > opts.maxSize) {
          throw new PayloadTooLargeError(`Image exceeds the storage quota: more than ${opts.maxSize} bytes.`);
        }
        if (opts.expectedSize !== undefined && size > opts.expectedSize) {
          throw new BadRequestError(`Image size mismatch: more than the declared ${opts.expectedSize} bytes arrived.`);
        }
        await Promise.all([hasher.update(chunk), file.write(chunk)]);
      }
      opts.signal?.throwIfAborted();
      if (opts.expectedSize !== undefined && size !== opts.expectedSize) {
        throw new BadRequestError(`Image size mismatch: ${size} bytes arrived, ${opts.expectedSize} were declared.`);
      }
      const { md5, sha512 } = await hasher.digest();
      if (this.#sync) await file.datasync();
      await file.close();
      await rename(tmpPath, finalPath);
      return { size, md5, sha512 };
    } catch (error) {
      hasher.abort();
      await file.close().catch(() => undefined);
      await rm(tmpPath, { force: true });
      throw error;
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    const s = await this.stat(key, opts);
    if (s === undefined) throw new NotFoundError(`Image data for ${key} not found in store ${this.id}`);
    return createReadStream(path, {
      start: opts.start ?? 0,
      end: opts.end,
      highWaterMark: 1 << 20,
      signal: opts.signal,
    });
  }

  async stat(key: string, opts: IoOptions = {}): Promise<BlobStat | undefined> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    try {
      const s = await stat(path);
      return s.isFile() ? { size: s.size } : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    await rm(path, { force: true });
  }

  async *list(opts: IoOptions = {}): AsyncIterable<string> {
    for (const entry of await readdir(this.#root, { withFileTypes: true })) {
      opts.signal?.throwIfAborted();
      if (entry.isFile() && KEY_RE.test(entry.name)) yield entry.name;
    }
  }
}
