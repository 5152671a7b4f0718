import { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { ChunkManifest } from '../core/chunk-manifest.ts';
import { BadRequestError, DataMismatchError, PayloadTooLargeError } from '../core/errors.ts';
import type {
  BlobDigest, BlobDriver, BlobStat, BlobStore, BlobWriter, GetOptions, Hasher, HasherFactory, IoOptions, PutOptions,
} from '../core/ports.ts';
import { abortableSource } from './abortable-source.ts';
import { checkBlobKey } from './blob-key.ts';
import { drainReadable } from './drain-readable.ts';

/**
 * Bytes gathered before they are hashed and written: the hashing threads and the driver's write
 * all read the same shared memory, so each byte is copied once on the event loop. Each batch costs
 * two messages to the hashing threads, their answers and a write: 4 MiB batches take ~0.2 CPU-s
 * per GiB less of the event loop than 1 MiB ones (docs/benchmarks.md).
 */
const BATCH = 4 << 20;
/** Batches being hashed or written at once (16 MiB per put); past it the source waits. */
const MAX_BATCHES = 4;
/**
 * How long the rest of an upload refused part-way (a full disk, the size cap) is read and thrown
 * away, so that its client reads the refusal (drainReadable's `linger`); then the connection is
 * reset. 30 s: nginx's lingering_time.
 */
const REQUEST_LINGER_MS = 30_000;

/**
 * A BlobStore made of a driver: every put is counted against its limits, hashed (size, md5,
 * sha512) and checked against what is expected before the driver's commit makes it visible;
 * anything that fails cancels the driver's write, so nothing is left behind. Reads, stats and
 * deletes go to the driver as they are.
 */
export class VerifyingBlobStore implements BlobStore {
  readonly #driver: BlobDriver;
  readonly #hashers: HasherFactory;

  constructor(driver: BlobDriver, hashers: HasherFactory) {
    this.#driver = driver;
    this.#hashers = hashers;
  }

  get id(): string {
    return this.#driver.id;
  }

  /**
   * Streams `data` to a driver write while size, md5 and sha512 are computed, and commits it once
   * every check passed. Each chunk is copied before the next one is pulled and never used
   * afterwards, so a source may reuse or release a chunk once the next one is asked for.
   *
   * A Node Readable (an HTTP request body) is read in flowing mode, each chunk taken as the stream
   * emits it, pausing the stream while the hashing threads or the driver catch up: no promise per
   * chunk. When it is the request itself (an http.IncomingMessage with no other reader), each
   * chunk is a buffer Node's HTTP parser allocated for it alone and handed to this reader only:
   * its memory is released as soon as it is copied, instead of piling up as external memory the
   * garbage collector frees only with full collections (docs/benchmarks.md). Any other source's
   * chunks are left as they are.
   */
  async put(key: string, data: AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<BlobDigest> {
    checkBlobKey(key);
    opts.signal?.throwIfAborted();
    // A stream that fails while the write is being opened (a client resetting its upload) must
    // not emit an 'error' nobody listens to, which would end the process: the guard hears it, and
    // the read below finds the stream already failed and rejects with its error.
    const guard = () => undefined;
    if (data instanceof Readable) data.on('error', guard);
    try {
      const target = opts.adopt !== undefined && this.#driver.adoptWriter !== undefined
        ? await this.#driver.adoptWriter(key, opts.adopt, opts)
        : await this.#driver.openWriter(key, opts);
      const writer = new HashedWriter(target, this.#hashers, opts);
      try {
        if (data instanceof Readable && data.listenerCount('readable') === 0) {
          const request = data instanceof IncomingMessage;
          await drainReadable(data, writer, { signal: opts.signal, release: request, linger: request ? REQUEST_LINGER_MS : 0 });
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
        const { md5, sha512, manifest } = await writer.finish();
        if (opts.expected !== undefined && (md5 !== opts.expected.md5 || sha512 !== opts.expected.sha512)) {
          throw new DataMismatchError(`The bytes of ${key} do not match the expected checksum and hash; nothing was stored.`);
        }
        opts.onVerified?.();
        await target.commit(opts);
        return { size, md5, sha512, ...(manifest === undefined ? {} : { manifest }) };
      } catch (error) {
        await writer.settle();
        await target.cancel();
        throw error;
      } finally {
        writer.release();
      }
    } finally {
      if (data instanceof Readable) data.off('error', guard);
    }
  }

  get(key: string, opts?: GetOptions): Promise<Readable> {
    return this.#driver.get(key, opts);
  }

  stat(key: string, opts?: IoOptions): Promise<BlobStat | undefined> {
    return this.#driver.stat(key, opts);
  }

  delete(key: string, opts?: IoOptions): Promise<void> {
    return this.#driver.delete(key, opts);
  }

  list(opts?: IoOptions): AsyncIterable<string> {
    return this.#driver.list(opts);
  }

  removePartial(opts?: IoOptions): Promise<number> {
    return this.#driver.removePartial(opts);
  }

  urlFor(key: string): string {
    return this.#driver.urlFor(key);
  }

  async close(): Promise<void> {
    await this.#driver.close?.();
  }
}

/**
 * Hashes and writes a stream of chunks. add() copies a chunk into a batch of shared memory (so the
 * caller may reuse or release the chunk as soon as add() returns); each full batch goes to the
 * hasher, which reads it in place (WorkerHasherFactory), and to the driver's writer, one write
 * after the other; the batch is filled again once both are done with it. The size checks run
 * before a chunk is taken. The batches are lent by the hashers' factory and given back by release().
 */
class HashedWriter {
  readonly #target: BlobWriter;
  readonly #hashers: HasherFactory;
  readonly #hasher: Hasher;
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
  #size = 0;

  constructor(target: BlobWriter, hashers: HasherFactory, opts: PutOptions) {
    this.#target = target;
    this.#hashers = hashers;
    this.#hasher = hashers.create({ manifest: opts.manifest === true });
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

  /** Hashes and writes what is left; waits for every write; the digest. */
  async finish(): Promise<{ md5: string; sha512: string; manifest?: ChunkManifest }> {
    if (this.#filled > 0) this.#dispatch();
    while (this.#error === undefined && this.#busy > 0) {
      await new Promise<void>((resolve) => { this.#wake = resolve; });
    }
    if (this.#error !== undefined) throw this.#error.error;
    return this.#hasher.digest();
  }

  /** After a failure: stops the hasher and waits until no write is running, before the write is cancelled. */
  async settle(): Promise<void> {
    this.#hasher.abort();
    await this.#writing.catch(() => undefined);
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
    const written = this.#writing.then(() => this.#target.write(bytes, this.#opts));
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
}
