import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { BadRequestError, DataMismatchError, NotFoundError, PayloadTooLargeError } from '../core/errors.ts';
import type { BlobDigest, BlobStat, BlobStore, GetOptions, Hasher, HasherFactory, IoOptions, PutOptions } from '../core/ports.ts';
import { abortableSource } from './abortable-source.ts';
import { BlobReadStream } from './blob-read-stream.ts';
import { drainReadable } from './drain-readable.ts';

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const TMP_DIR = '.incomplete';
/**
 * Bytes gathered before they are hashed and written: the hashing threads and the file write all
 * read the same shared memory, so each byte is copied once on the event loop. Each batch costs
 * two messages to the hashing threads, their answers and a write: 4 MiB batches take ~0.2 CPU-s
 * per GiB less of the event loop than 1 MiB ones (docs/benchmarks.md).
 */
const BATCH = 4 << 20;
/** Batches being hashed or written at once (16 MiB per upload); past it the source waits. */
const MAX_BATCHES = 4;
/**
 * Largest single write. The page cache takes a write in folios as large as the write allows, and
 * on the VM measured large folios often come from memory the host must fault in again: writing
 * 1 GiB with dd cost 0.2-0.3 CPU-s of system time 64-256 KiB at a time (every run), but 1.2-3.1
 * CPU-s in half the runs 512 KiB-4 MiB at a time (docs/benchmarks.md).
 */
const WRITE_MAX = 256 << 10;
/** With sync on, start an fdatasync every this many bytes, so little is left for the last one. */
const SYNC_EVERY = 64 << 20;

/**
 * Hashes and writes a stream of chunks. add() copies a chunk into a batch of shared memory (so the
 * caller may reuse or release the chunk as soon as add() returns); each full batch goes to the
 * hasher, which reads it in place (WorkerHasherFactory), and to the file, one write after the
 * other; the batch is filled again once both are done with it. The size checks run before a
 * chunk is taken. The batches are lent by the hashers' factory and given back by release().
 */
class HashedFileWriter {
  readonly #file: FileHandle;
  readonly #hashers: HasherFactory;
  readonly #hasher: Hasher;
  readonly #sync: boolean;
  readonly #opts: PutOptions;
  /** Batches ready to be filled again. */
  readonly #free: Buffer[] = [];
  #filling: Buffer | undefined;
  #filled = 0;
  /** Batches being hashed or written. */
  #busy = 0;
  /** Resolved when a batch comes back, or when the writer fails. */
  #wake: (() => void) | undefined;
  #error: { error: unknown } | undefined;
  /** The writes, in order: each starts when the previous one is done. */
  #writing: Promise<void> = Promise.resolve();
  #syncing: Promise<void> | undefined;
  #written = 0;
  #syncedAt = 0;
  #size = 0;

  constructor(file: FileHandle, hashers: HasherFactory, sync: boolean, opts: PutOptions) {
    this.#file = file;
    this.#hashers = hashers;
    this.#hasher = hashers.create();
    this.#sync = sync;
    this.#opts = opts;
  }

  /** Bytes taken so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Takes a chunk (copied before this returns). False when the caller should wait for ready()
   * before the next one: as many batches as allowed are being hashed or written.
   */
  add(chunk: Uint8Array): boolean {
    if (this.#error !== undefined) throw this.#error.error;
    this.#size += chunk.length;
    const { maxSize, expectedSize } = this.#opts;
    if (maxSize !== undefined && this.#size > maxSize) {
      throw new PayloadTooLargeError(`Image exceeds the storage quota: more than ${maxSize} bytes.`);
    }
    if (expectedSize !== undefined && this.#size > expectedSize) {
      throw new BadRequestError(`Image size mismatch: more than the declared ${expectedSize} bytes arrived.`);
    }
    for (let offset = 0; offset < chunk.length;) {
      // Past MAX_BATCHES only while one large chunk is taken: its caller waits afterwards.
      this.#filling ??= this.#free.pop() ?? this.#hashers.lend(BATCH);
      const n = Math.min(BATCH - this.#filled, chunk.length - offset);
      // Buffer#fill with a buffer as long as the range is one memcpy; TypedArray#set into shared
      // memory is V8's relaxed atomic copy, about 3× the CPU (0.08 against 0.03 s per GiB).
      this.#filling.fill(offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n), this.#filled, this.#filled + n);
      this.#filled += n;
      offset += n;
      if (this.#filled === BATCH) this.#dispatch();
    }
    return this.#busy < MAX_BATCHES;
  }

  /** Resolves when add() may be called again; rejects if a write failed. */
  async ready(): Promise<void> {
    while (this.#error === undefined && this.#busy >= MAX_BATCHES) {
      await new Promise<void>((resolve) => { this.#wake = resolve; });
    }
    if (this.#error !== undefined) throw this.#error.error;
  }

  /** Hashes and writes what is left; waits for every write and background sync; the digest. */
  async finish(): Promise<{ md5: string; sha512: string }> {
    if (this.#filled > 0) this.#dispatch();
    while (this.#error === undefined && this.#busy > 0) {
      await new Promise<void>((resolve) => { this.#wake = resolve; });
    }
    await this.#syncing;
    if (this.#error !== undefined) throw this.#error.error;
    return this.#hasher.digest();
  }

  /** After a failure: stops the hasher and waits until no write or sync is running, before the file is closed. */
  async settle(): Promise<void> {
    this.#hasher.abort();
    await this.#writing.catch(() => undefined);
    await this.#syncing;
  }

  /** After finish() or settle(): gives the batches back (one still being written after a failure is left to the garbage collector). */
  release(): void {
    if (this.#filling !== undefined) this.#free.push(this.#filling);
    this.#filling = undefined;
    for (const batch of this.#free.splice(0)) this.#hashers.giveBack(batch);
  }

  #dispatch(): void {
    const batch = this.#filling!;
    const bytes = batch.subarray(0, this.#filled);
    this.#filling = undefined;
    this.#filled = 0;
    this.#busy++;
    const hashed = this.#hasher.update(bytes);
    const written = this.#writing.then(() => this.#write(bytes));
    this.#writing = written;
    Promise.all([hashed, written]).then(() => {
      this.#busy--;
      if (this.#free.length < MAX_BATCHES) this.#free.push(batch);
      else this.#hashers.giveBack(batch); // (an extra one a large chunk needed)
      this.#notify();
    }, (error: unknown) => {
      this.#error ??= { error };
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #write(bytes: Buffer): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      const length = Math.min(WRITE_MAX, bytes.length - offset);
      const { bytesWritten } = await this.#file.write(bytes, offset, length);
      if (bytesWritten !== length) throw new Error(`short write: ${bytesWritten} of ${length} bytes`);
      offset += length;
    }
    this.#written += bytes.length;
    if (this.#sync && this.#syncing === undefined && this.#written - this.#syncedAt >= SYNC_EVERY) {
      this.#syncedAt = this.#written;
      // A failed background sync fails the upload: Linux reports a writeback error to one
      // fdatasync only, so the last one, before the commit, might not see it again.
      const syncing: Promise<void> = this.#file.datasync().then(() => {
        if (this.#syncing === syncing) this.#syncing = undefined;
      }, (error: unknown) => {
        this.#error ??= { error };
        this.#notify();
      });
      this.#syncing = syncing;
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
 * and was hashed. Partial files are removed on error and abort, and by removePartial() (at start).
 */
export class FileBlobStore implements BlobStore {
  readonly id: string;
  readonly #root: string;
  readonly #hashers: HasherFactory;
  readonly #sync: boolean;
  /** Names (under TMP_DIR) of the temporary files this object's puts are writing. */
  readonly #writing = new Set<string>();

  private constructor(opts: FileBlobStoreOptions) {
    this.id = opts.id;
    this.#root = resolve(opts.root);
    this.#hashers = opts.hashers;
    this.#sync = opts.sync ?? true;
  }

  /**
   * Creates the directories (new ones 0700: image bytes are the service user's alone); what a
   * crash left in them goes with removePartial().
   */
  static async create(opts: FileBlobStoreOptions): Promise<FileBlobStore> {
    const store = new FileBlobStore(opts);
    await mkdir(join(store.#root, TMP_DIR), { recursive: true, mode: 0o700 });
    return store;
  }

  /** Removes every file under TMP_DIR but the ones this object's puts are writing. */
  async removePartial(opts: IoOptions = {}): Promise<number> {
    let removed = 0;
    for (const name of await readdir(join(this.#root, TMP_DIR))) {
      opts.signal?.throwIfAborted();
      if (this.#writing.has(name)) continue;
      await rm(join(this.#root, TMP_DIR, name), { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  #path(key: string): string {
    if (!KEY_RE.test(key) || key.includes('..')) throw new BadRequestError(`Invalid blob key: ${JSON.stringify(key)}`);
    return join(this.#root, key);
  }

  urlFor(key: string): string {
    return pathToFileURL(this.#path(key)).href;
  }

  /**
   * Streams `data` into a temporary file while size, md5 and sha512 are computed, then renames it
   * into place. Each chunk is copied before the next one is pulled and never used afterwards, so
   * a source may reuse or release a chunk once the next one is asked for.
   *
   * A Node Readable (an HTTP request body) is read in flowing mode, each chunk taken as the stream
   * emits it, pausing the stream while the hashing threads or the disk catch up: no promise per
   * chunk. When it is the request itself (an http.IncomingMessage with no other reader), each
   * chunk is a buffer Node's HTTP parser allocated for it alone and handed to this reader only:
   * its memory is released as soon as it is copied, instead of piling up as external memory the
   * garbage collector frees only with full collections (docs/benchmarks.md). Any other source's
   * chunks are left as they are.
   */
  async put(key: string, data: AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<BlobDigest> {
    const finalPath = this.#path(key);
    opts.signal?.throwIfAborted();
    const tmpName = `${key}.${randomBytes(6).toString('hex')}`;
    const tmpPath = join(this.#root, TMP_DIR, tmpName);
    this.#writing.add(tmpName);
    // A stream that fails while the file is being opened (a client resetting its upload) must not
    // emit an 'error' nobody listens to, which would end the process: the guard hears it, and the
    // read below finds the stream already failed and rejects with its error.
    const guard = () => undefined;
    if (data instanceof Readable) data.on('error', guard);
    try {
      return await this.#write(tmpPath, finalPath, key, data, opts);
    } finally {
      this.#writing.delete(tmpName);
      if (data instanceof Readable) data.off('error', guard);
    }
  }

  async #write(tmpPath: string, finalPath: string, key: string, data: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<BlobDigest> {
    const file = await open(tmpPath, 'wx');
    const writer = new HashedFileWriter(file, this.#hashers, this.#sync, opts);
    try {
      if (data instanceof Readable && data.listenerCount('readable') === 0) {
        await drainReadable(data, writer, { signal: opts.signal, release: data instanceof IncomingMessage });
      } else {
        for await (const chunk of abortableSource(data, opts.signal)) {
          opts.signal?.throwIfAborted();
          if (!writer.add(chunk)) await writer.ready();
        }
      }
      opts.signal?.throwIfAborted();
      const { size } = writer;
      if (opts.expectedSize !== undefined && size !== opts.expectedSize) {
        throw new BadRequestError(`Image size mismatch: ${size} bytes arrived, ${opts.expectedSize} were declared.`);
      }
      const { md5, sha512 } = await writer.finish();
      if (opts.expected !== undefined && (md5 !== opts.expected.md5 || sha512 !== opts.expected.sha512)) {
        throw new DataMismatchError(`The bytes of ${key} do not match the expected checksum and hash; nothing was stored.`);
      }
      if (this.#sync) await file.datasync();
      await file.close();
      await rename(tmpPath, finalPath);
      return { size, md5, sha512 };
    } catch (error) {
      await writer.settle();
      await file.close().catch(() => undefined);
      await rm(tmpPath, { force: true });
      throw error;
    } finally {
      writer.release();
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
