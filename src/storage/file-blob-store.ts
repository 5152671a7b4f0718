import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { BadRequestError, DataMismatchError, NotFoundError, PayloadTooLargeError } from '../core/errors.ts';
import type { BlobDigest, BlobStat, BlobStore, GetOptions, HasherFactory, IoOptions, PutOptions } from '../core/ports.ts';
import { abortableSource } from './abortable-source.ts';
import { BlobReadStream } from './blob-read-stream.ts';

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const TMP_DIR = '.incomplete';
/** Bytes gathered before one write: a few large writes rather than one per network chunk. */
const WRITE_BATCH = 1 << 20;
/** With sync on, start an fdatasync every this many bytes, so little is left for the last one. */
const SYNC_EVERY = 64 << 20;

/**
 * Writes chunks to a file through two reused buffers: one is written while the other fills. The
 * chunks are copied, so a producer may reuse its buffers as soon as add() returns.
 */
class BatchedWriter {
  readonly #file: FileHandle;
  readonly #sync: boolean;
  #filling: Buffer = Buffer.allocUnsafeSlow(WRITE_BATCH);
  #spare: Buffer | undefined;
  #filled = 0;
  #writing: Promise<void> = Promise.resolve();
  #syncing: Promise<void> | undefined;
  #written = 0;
  #syncedAt = 0;

  constructor(file: FileHandle, sync: boolean) {
    this.#file = file;
    this.#sync = sync;
  }

  async add(chunk: Uint8Array): Promise<void> {
    for (let offset = 0; offset < chunk.length;) {
      const n = Math.min(WRITE_BATCH - this.#filled, chunk.length - offset);
      this.#filling.set(chunk.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === WRITE_BATCH) await this.#flush();
    }
  }

  /** Writes what is left and waits for every write and background sync. */
  async finish(): Promise<void> {
    if (this.#filled > 0) await this.#flush();
    await this.#writing;
    await this.#syncing;
  }

  /** Waits until no write or sync is running (after a failure, before the file is closed). */
  async settle(): Promise<void> {
    await this.#writing.catch(() => undefined);
    await this.#syncing?.catch(() => undefined);
  }

  async #flush(): Promise<void> {
    await this.#writing; // the previous write is done with the spare buffer (or failed: throw)
    const full = this.#filling;
    const length = this.#filled;
    this.#filling = this.#spare ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
    this.#spare = full;
    this.#filled = 0;
    this.#writing = this.#write(full, length);
    this.#writing.catch(() => undefined); // observed by the next flush, finish or settle
  }

  async #write(buffer: Buffer, length: number): Promise<void> {
    const { bytesWritten } = await this.#file.write(buffer, 0, length);
    if (bytesWritten !== length) throw new Error(`short write: ${bytesWritten} of ${length} bytes`);
    this.#written += length;
    if (this.#sync && this.#syncing === undefined && this.#written - this.#syncedAt >= SYNC_EVERY) {
      this.#syncedAt = this.#written;
      const syncing: Promise<void> = this.#file.datasync().finally(() => {
        if (this.#syncing === syncing) this.#syncing = undefined;
      });
      this.#syncing = syncing;
      syncing.catch(() => undefined); // observed by finish or settle
    }
  }
}

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
    const writer = new BatchedWriter(file, this.#sync);
    let size = 0;
    try {
      for await (const chunk of abortableSource(data, opts.signal)) {
        opts.signal?.throwIfAborted();
        size += chunk.length;
        if (opts.maxSize !== undefined && size > opts.maxSize) {
          throw new PayloadTooLargeError(`Image exceeds the storage quota: more than ${opts.maxSize} bytes.`);
        }
        if (opts.expectedSize !== undefined && size > opts.expectedSize) {
          throw new BadRequestError(`Image size mismatch: more than the declared ${opts.expectedSize} bytes arrived.`);
        }
        await Promise.all([hasher.update(chunk), writer.add(chunk)]);
      }
      opts.signal?.throwIfAborted();
      if (opts.expectedSize !== undefined && size !== opts.expectedSize) {
        throw new BadRequestError(`Image size mismatch: ${size} bytes arrived, ${opts.expectedSize} were declared.`);
      }
      await writer.finish();
      const { md5, sha512 } = await hasher.digest();
      if (opts.expected !== undefined && (md5 !== opts.expected.md5 || sha512 !== opts.expected.sha512)) {
        throw new DataMismatchError(`The bytes of ${key} do not match the expected checksum and hash; nothing was stored.`);
      }
      if (this.#sync) await file.datasync();
      await file.close();
      await rename(tmpPath, finalPath);
      return { size, md5, sha512 };
    } catch (error) {
      hasher.abort();
      await writer.settle();
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
    return new BlobReadStream(path, opts.start ?? 0, opts.end, opts.signal);
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
