import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ServerResponse } from 'node:http';
import { Readable, type Writable } from 'node:stream';
import { NotFoundError, PayloadTooLargeError } from '../core/errors.ts';
import type { Image } from '../core/image.ts';
import type { BlobStore, CacheEntry, CacheIndex, IoOptions, ParentImageSource } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';

export interface PullThroughImagesOptions {
  /** The site's id, for messages. */
  site: string;
  index: CacheIndex;
  /** Where verified copies are kept, under `cacheKey(image id)` (the site's default store). */
  blobs: BlobStore;
  source: ParentImageSource;
  /** Scratch directory for fills in progress; emptied at start. */
  spoolDir: string;
  /** Bytes the cached copies may take together (`cache_max_bytes`). */
  budgetBytes: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  now?: () => Date;
}

/**
 * The fill gathers upstream bytes in buffers of this size: each is one write to the spool, one
 * chunk for the store's put, and what followers that keep up are sent from, without a copy.
 */
const BATCH = 1 << 20;
/** Batches not yet on the spool before the fill stops reading upstream until the spool catches up. */
const MAX_UNSPOOLED = 8;
/** Batches already spooled and stored kept in memory for followers a little behind. */
const KEPT = 4;
/**
 * Largest single write to the spool, as FileBlobDriver's WRITE_MAX: larger writes let the page
 * cache take large folios, which on the VM measured were sometimes memory the host had to fault in
 * again (`dd` of 1 GiB: 0.2 CPU-s 256 KiB at a time, up to 2.1 s 1-4 MiB at a time).
 */
const SPOOL_WRITE = 256 << 10;
/** Spare batches a fill keeps for reuse. */
const MAX_FREE = MAX_UNSPOOLED + KEPT;
/** Bytes a follower reads from the spool at a time, into buffers of its own. */
const SPOOL_READ = 512 << 10;
/** Writes a follower may have given its response and not seen done. */
const MAX_SENDS = 2;

/** Part of the image in memory: `buf[0, filled)` holds the image's bytes from `offset` on. */
class Batch {
  readonly buf: Buffer;
  readonly offset: number;
  filled = 0;
  spooled = false;
  /** The store's put has taken it (copied it). */
  stored = false;
  /** No longer in the fill's window: its buffer is reused once no follower is sending from it. */
  retired = false;
  /** Followers' writes from it that the socket is not done with. */
  sends = 0;

  constructor(buf: Buffer, offset: number) {
    this.buf = buf;
    this.offset = offset;
  }
}

/**
 * One upstream transfer of one image, shared by every client that asks for it meanwhile (single
 * flight). The bytes are gathered in batches, which go to a spool file and into the store, whose
 * put verifies size, md5 and sha512 before it commits. The newest batches stay in memory
 * (`window`): followers that keep up are sent them as they are; others read the spool.
 */
class Fill {
  readonly image: Image;
  readonly path: string;
  readonly pin: { until: string | null } | undefined;
  readonly abort = new AbortController();
  /** Bytes received so far, all of them in the window or on the spool. */
  received = 0;
  /** Bytes on the spool so far (a prefix of the image). */
  spooled = 0;
  /** The batches in memory, in order, contiguous, the last one possibly still filling; the first starts at or before `spooled`. */
  readonly window: Batch[] = [];
  state: 'running' | 'committed' | 'failed' = 'running';
  error: Error | undefined;
  /** Clients following the fill; the last one out removes the spool once the fill has ended. */
  readers = 0;
  /** Clients that joined the fill (every one but the one whose GET started it): the copy's hits once committed. */
  hits = 0;
  /** Resolves once the spool file exists. */
  opened: Promise<void> = Promise.resolve();
  /** Resolves when the fill has ended, committed or not. */
  ended: Promise<void> = Promise.resolve();
  /**
   * Settles once the parent has answered the fill's request: resolves when it sends the bytes,
   * rejects with the reason it does not (no data there, unreachable), so that a client's answer
   * can say so before it begins.
   */
  readonly answered: Promise<void>;
  readonly #answer = Promise.withResolvers<void>();
  #spool: FileHandle | undefined;
  /** The spool writes, in order: each starts when the previous one is done. */
  #spooling: Promise<void> = Promise.resolve();
  #spoolError: { error: unknown } | undefined;
  #unspooled = 0;
  #paceWake: (() => void) | undefined;
  readonly #free: Buffer[] = [];
  #wake: (() => void)[] = [];
  #soon = false;

  constructor(image: Image, path: string, pin: { until: string | null } | undefined) {
    this.image = image;
    this.path = path;
    this.pin = pin;
    this.answered = this.#answer.promise;
    this.answered.catch(() => undefined); // a fill nobody waits on (a prefetch) may fail unobserved
  }

  /** The parent has sent its answer (`error`: the reason it sends no bytes). Only the first call counts. */
  upstreamAnswered(error?: Error): void {
    if (error === undefined) this.#answer.resolve();
    else this.#answer.reject(error);
  }

  set spool(fh: FileHandle) {
    this.#spool = fh;
  }

  /** Resolves at the next change (bytes received or spooled, the end of the fill) or when `signal` aborts. */
  next(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#wake.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** changed() once this turn of the event loop has taken what the socket had (bytes received). */
  changedSoon(): void {
    if (this.#soon) return;
    this.#soon = true;
    setImmediate(() => {
      this.#soon = false;
      this.changed();
    });
  }

  changed(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const f of wake) f();
  }

  /** The batch holding byte `pos`, if it is in memory. */
  batchAt(pos: number): Batch | undefined {
    const w = this.window;
    if (w.length === 0 || pos < w[0].offset) return undefined;
    const b = w[Math.min(w.length - 1, Math.floor((pos - w[0].offset) / BATCH))];
    return pos < b.offset + b.filled ? b : undefined;
  }

  /**
   * Takes the bytes of an upstream chunk into the window. Calls `full` with each batch that
   * fills up (already on its way to the spool), before the rest of the chunk is taken.
   */
  take(chunk: Uint8Array, full: (b: Batch) => void): void {
    for (let at = 0; at < chunk.length;) {
      let b = this.window.at(-1);
      if (b === undefined || b.filled === BATCH) {
        b = new Batch(this.#free.pop() ?? Buffer.allocUnsafeSlow(BATCH), this.received);
        this.window.push(b);
      }
      const n = Math.min(BATCH - b.filled, chunk.length - at);
      b.buf.set(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n), b.filled);
      b.filled += n;
      this.received += n;
      at += n;
      if (b.filled === BATCH) {
        this.seal(b);
        full(b);
      }
    }
  }

  /** The batch still filling, if it holds bytes (at the end of the upstream body). */
  last(): Batch | undefined {
    const b = this.window.at(-1);
    return b !== undefined && b.filled > 0 && b.filled < BATCH ? b : undefined;
  }

  /** Queues the batch's spool write. */
  seal(b: Batch): void {
    this.#unspooled++;
    this.#spooling = this.#spooling.then(async () => {
      if (this.#spoolError !== undefined) return;
      try {
        for (let at = 0; at < b.filled; at += SPOOL_WRITE) {
          const length = Math.min(SPOOL_WRITE, b.filled - at);
          const { bytesWritten } = await this.#spool!.write(b.buf, at, length, b.offset + at);
          if (bytesWritten !== length) throw new Error(`short write to the spool: ${bytesWritten} of ${length} bytes`);
        }
      } catch (error) {
        this.#spoolError = { error };
        return;
      } finally {
        this.#unspooled--;
        this.#paceWake?.();
      }
      b.spooled = true;
      this.spooled = b.offset + b.filled;
      this.#retire();
      this.changed();
    });
  }

  /** The store has taken the batch. */
  stored(b: Batch): void {
    b.stored = true;
    this.#retire();
  }

  /** Waits while too many batches are still to be spooled; throws if a spool write failed. */
  async paced(): Promise<void> {
    while (this.#unspooled >= MAX_UNSPOOLED && this.#spoolError === undefined) {
      await new Promise<void>((resolve) => { this.#paceWake = resolve; });
      this.#paceWake = undefined;
    }
    if (this.#spoolError !== undefined) throw this.#spoolError.error;
  }

  /** Waits until every batch is on the spool; throws if a write failed. */
  async spoolDone(): Promise<void> {
    await this.#spooling;
    if (this.#spoolError !== undefined) throw this.#spoolError.error;
  }

  /** A follower's write from `b` is done with its bytes. */
  sent(b: Batch): void {
    b.sends--;
    if (b.retired && b.sends === 0) this.#recycle(b);
  }

  /** Moves the oldest batches out of the window once spooled and stored, keeping KEPT of them (and any not done). */
  #retire(): void {
    const w = this.window;
    while (w.length > KEPT && w[0].spooled && w[0].stored) {
      const b = w.shift()!;
      b.retired = true;
      if (b.sends === 0) this.#recycle(b);
    }
  }

  #recycle(b: Batch): void {
    if (this.#free.length < MAX_FREE && this.state === 'running') this.#free.push(b.buf);
  }
}

/** What GET /v2/cache shows (glance/api/v2/cached_images.py), plus Outpost's pins. */
export interface CacheListing {
  cached_images: { image_id: string; hits: number; last_accessed: number; last_modified: number; size: number }[];
  queued_images: string[];
}

/**
 * An edge site's image bytes: copies it holds are served from its store; a miss is fetched from
 * the parent once, however many clients ask at the same time, and streamed to all of them as it
 * arrives while it is written to the store. A copy becomes visible only once its size, md5 and
 * sha512 match the image; a fill that fails (corrupt bytes, a cut link) commits nothing and ends
 * every waiting client's response before its last byte, so no client can take a partial or wrong
 * image for a whole one.
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
  readonly #fills = new Map<string, Fill>();
  readonly #stop = new AbortController();

  private constructor(opts: PullThroughImagesOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Empties the spool (fills a crash interrupted are simply gone: nothing of them was ever
   * visible) and loads the index, dropping entries whose copy is missing.
   */
  static async create(opts: PullThroughImagesOptions): Promise<PullThroughImages> {
    const cache = new PullThroughImages(opts);
    await rm(opts.spoolDir, { recursive: true, force: true });
    await mkdir(opts.spoolDir, { recursive: true });
    for (const entry of await opts.index.listCacheEntries()) {
      const stat = await opts.blobs.stat(cacheKey(entry.image_id));
      if (stat?.size === entry.size) cache.#entries.set(entry.image_id, entry);
      else await opts.index.deleteCacheEntry(entry.image_id);
    }
    return cache;
  }

  /**
   * The bytes [start, end] of an image: from the held copy, from the fill in progress, or from a
   * new fill (a whole-image read) or straight from the parent (a range, an image the budget
   * cannot admit, or a deactivated image — only an active one is cached). Whether the caller may
   * have a deactivated image's bytes (admins only) is ImageService.download's to decide.
   */
  async open(image: Image, start: number, end: number, opts: IoOptions = {}): Promise<Readable> {
    const id = image.id;
    if (!this.#fills.has(id) && this.#entries.has(id)) {
      try {
        const stream = await this.#o.blobs.get(cacheKey(id), { start, end, signal: opts.signal });
        this.#touch(id);
        return stream;
      } catch (error) {
        if (!(error instanceof NotFoundError)) throw error;
        this.#forget(id); // the copy went missing behind our back: fetch it again
      }
    }
    let fill = this.#fills.get(id);
    if (fill === undefined) {
      const whole = start === 0 && end === (image.size ?? 0) - 1;
      if (!whole || !verifiable(image) || !this.#makeRoom(image.size!)) {
        if (whole && verifiable(image)) this.#o.log.warn({ image: id, size: image.size }, 'image passed through without caching: the cache budget is held by pinned copies');
        return this.#passThrough(id, start, end, opts);
      }
      fill = this.#startFill(image, undefined);
    } else if (this.#entries.has(id)) {
      this.#touch(id); // the fill has just committed
    } else {
      fill.hits++;
    }
    const reader = new FillReadStream(fill, start, end, opts.signal);
    try {
      await fill.answered;
    } catch (error) {
      reader.destroy();
      throw error;
    }
    return reader;
  }

  /** PUT /v2/cache/{id}: fetch a copy now unless one is held or coming. */
  prefetch(image: Image): void {
    if (this.#entries.has(image.id) || this.#fills.has(image.id)) return;
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
      queued_images: [...this.#fills.keys()],
    };
  }

  /** Per image, this cache's store if it holds a verified copy (what an edge adds to an image's `stores`). */
  async storesHolding(imageIds: readonly string[]): Promise<Map<string, string[]>> {
    return new Map(imageIds.filter((id) => this.#entries.has(id)).map((id) => [id, [this.#o.blobs.id]]));
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
    const fill = this.#fills.get(imageId);
    if (fill !== undefined && fill.readers === 0) fill.abort.abort();
    const held = this.#entries.has(imageId);
    if (held) await this.#drop(imageId);
    return held || fill !== undefined;
  }

  /** DELETE /v2/cache: `cache` drops every copy, `queue` stops idle fills, `both` does both. */
  async clear(target: 'cache' | 'queue' | 'both'): Promise<void> {
    if (target !== 'cache') for (const fill of this.#fills.values()) if (fill.readers === 0) fill.abort.abort();
    if (target !== 'queue') for (const id of [...this.#entries.keys()]) await this.#drop(id);
  }

  /**
   * The image was deleted (or can no longer be served): its copy is dropped and a fill in
   * progress is stopped, ending its clients' responses.
   */
  async invalidate(imageId: string): Promise<void> {
    this.#fills.get(imageId)?.abort.abort();
    if (this.#entries.has(imageId)) {
      await this.#drop(imageId);
      this.#o.log.info({ image: imageId }, 'dropped the cached copy of a deleted image');
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.all([...this.#fills.values()].map((f) => f.ended));
  }

  // -- internals ---------------------------------------------------------------------------------

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

  /** Bytes taken by copies and fills (only pinned copies and fills when `pinnedOnly`). */
  #used(pinnedOnly: boolean): number {
    let used = 0;
    for (const e of this.#entries.values()) if (!pinnedOnly || this.#isPinned(e)) used += e.size;
    for (const f of this.#fills.values()) used += f.image.size ?? 0;
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
      void this.#drop(victim.image_id).catch((error: Error) => this.#o.log.warn({ image: victim.image_id, err: describeError(error) }, 'could not remove an evicted copy'));
    }
    return used + size <= this.#o.budgetBytes;
  }

  #isPinned(e: CacheEntry): boolean {
    return e.pinned && (e.pinned_until === null || Date.parse(e.pinned_until) > this.#now().getTime());
  }

  async #drop(imageId: string): Promise<void> {
    this.#entries.delete(imageId);
    await this.#o.index.deleteCacheEntry(imageId);
    await this.#o.blobs.delete(cacheKey(imageId));
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

  #startFill(image: Image, pin: { until: string | null } | undefined): Fill {
    const fill = new Fill(image, join(this.#o.spoolDir, `${image.id}.${randomBytes(6).toString('hex')}`), pin);
    this.#fills.set(image.id, fill);
    let spool: FileHandle | undefined;
    fill.opened = open(fill.path, 'w').then((fh) => {
      spool = fh;
      fill.spool = fh;
    });
    fill.opened.catch(() => undefined);
    fill.ended = this.#runFill(fill).finally(async () => {
      if (this.#fills.get(image.id) === fill) this.#fills.delete(image.id);
      fill.changed();
      await spool?.close().catch(() => undefined);
      if (fill.readers === 0) await unlink(fill.path).catch(() => undefined);
    });
    return fill;
  }

  async #runFill(fill: Fill): Promise<void> {
    const { image } = fill;
    const signal = AbortSignal.any([fill.abort.signal, this.#stop.signal]);
    const started = Date.now();
    try {
      await fill.opened;
      const upstream = await this.#o.source.open(image.id, { signal });
      fill.upstreamAnswered();
      // The store is fed whole batches: each is taken (copied) by put before it asks for the
      // next one, and the upstream is read only as fast as the store and the spool take it.
      const { stream } = upstream;
      async function* batches(): AsyncGenerator<Uint8Array> {
        const full: Batch[] = [];
        for await (const chunk of stream) {
          fill.take(chunk, (b) => full.push(b));
          fill.changedSoon();
          for (let b = full.shift(); b !== undefined; b = full.shift()) {
            yield b.buf.subarray(0, b.filled);
            fill.stored(b);
            await fill.paced();
          }
        }
        const last = fill.last();
        if (last !== undefined) {
          fill.seal(last);
          yield last.buf.subarray(0, last.filled);
          fill.stored(last);
        }
        await fill.spoolDone();
      }
      await this.#o.blobs.put(cacheKey(image.id), batches(), {
        signal, expectedSize: image.size!, expected: { md5: image.checksum!, sha512: image.os_hash_value! },
      });
      const now = this.#now().toISOString();
      const entry: CacheEntry = {
        image_id: image.id, size: image.size!, cached_at: now, last_accessed: now, hits: fill.hits,
        pinned: fill.pin !== undefined, pinned_until: fill.pin?.until ?? null,
      };
      this.#entries.set(image.id, entry);
      await this.#o.index.putCacheEntry(entry);
      fill.state = 'committed';
      this.#o.log.info({ image: image.id, size: image.size, ms: Date.now() - started }, 'cached a verified copy from the parent');
    } catch (error) {
      fill.state = 'failed';
      fill.error = error as Error;
      fill.upstreamAnswered(error as Error);
      this.#o.log.warn({ image: image.id, err: describeError(error) }, 'could not cache the image: nothing was kept');
    }
  }

  async #passThrough(imageId: string, start: number, end: number, opts: IoOptions): Promise<Readable> {
    const { stream } = await this.#o.source.open(imageId, { start, end, signal: opts.signal });
    return Readable.from(stream, { objectMode: false });
  }
}

/**
 * A client's view of a fill: the bytes [start, end] as they arrive. The last byte is held back
 * until the copy is verified, so a fill that fails ends the response short (the stream is
 * destroyed with the fill's error). Bytes still in the fill's window are sent from it; older ones
 * are read from the spool.
 *
 * Any consumer gets buffers of its own (copies, or fresh reads of the spool). Piped into an
 * http.ServerResponse (what fastify's reply.send does with a stream), it writes the window's
 * bytes as they are, and spool reads from two buffers of its own, each kept from reuse until the
 * response's write callback says the socket is done with it: no allocation per chunk sent.
 */
class FillReadStream extends Readable {
  readonly #fill: Fill;
  readonly #last: number;
  #pos: number;
  #file: FileHandle | undefined;
  #pumping = false;
  #left = false;
  readonly #stop = new AbortController();

  constructor(fill: Fill, start: number, end: number, signal: AbortSignal | undefined) {
    super({ highWaterMark: 1 << 20, signal });
    this.#fill = fill;
    this.#pos = start;
    this.#last = end;
    fill.readers++;
  }

  /**
   * Waits until bytes at the current position may be sent and says where they are, up to which
   * position (exclusive): a batch in memory, held for the caller (`fill.sent(batch)` releases
   * it), or the spool. null once every byte was given.
   */
  async #available(): Promise<{ batch: Batch | undefined; to: number } | null> {
    const fill = this.#fill;
    for (;;) {
      if (this.#pos > this.#last) return null;
      this.#stop.signal.throwIfAborted();
      if (fill.state === 'failed') throw fill.error ?? new Error('the fill failed');
      const limit = fill.state === 'committed' ? this.#last + 1 : Math.min(fill.received, this.#last);
      if (this.#pos < limit) {
        const batch = fill.batchAt(this.#pos);
        if (batch !== undefined) {
          batch.sends++;
          return { batch, to: Math.min(limit, batch.offset + batch.filled) };
        }
        if (this.#pos < fill.spooled) return { batch: undefined, to: Math.min(limit, fill.spooled) };
      }
      await fill.next(this.#stop.signal);
    }
  }

  /** The bytes of a batch from the current position to `to`, moving past them. */
  #view(batch: Batch, to: number): Buffer {
    const bytes = batch.buf.subarray(this.#pos - batch.offset, to - batch.offset);
    this.#pos = to;
    return bytes;
  }

  /** Reads the spool at the current position into `buffer` (up to `to`); the bytes read. */
  async #readSpool(buffer: Buffer, to: number): Promise<Buffer> {
    await this.#fill.opened;
    this.#file ??= await open(this.#fill.path, 'r');
    const { bytesRead } = await this.#file.read(buffer, 0, Math.min(buffer.length, to - this.#pos), this.#pos);
    if (bytesRead === 0) throw new Error(`the spool of image ${this.#fill.image.id} ended at ${this.#pos}`);
    this.#pos += bytesRead;
    return bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
  }

  override _read(): void {
    if (this.#pumping) return;
    this.#available().then(async (at) => {
      if (at === null) return this.push(null);
      if (at.batch === undefined) return this.push(await this.#readSpool(Buffer.allocUnsafeSlow(Math.min(SPOOL_READ, at.to - this.#pos)), at.to));
      const copy = Buffer.from(this.#view(at.batch, at.to));
      this.#fill.sent(at.batch);
      return this.push(copy);
    }).catch((error: Error) => this.destroy(error));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stop.abort();
    this.#leave();
    const file = this.#file;
    this.#file = undefined;
    if (file === undefined) callback(error);
    else file.close().then(() => callback(error), (e: Error) => callback(error ?? e));
  }

  #leave(): void {
    if (this.#left) return;
    this.#left = true;
    const fill = this.#fill;
    fill.readers--;
    if (fill.state !== 'running' && fill.readers === 0) void unlink(fill.path).catch(() => undefined);
  }

  /** Piped into a response before anything was read: the pump sends it, with no copies. */
  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    const untouched = !this.#pumping && this.readableFlowing === null && this.readableLength === 0;
    if (!untouched || !(destination instanceof ServerResponse)) return super.pipe(destination, options);
    this.#pumping = true;
    void this.#pump(destination, options?.end !== false);
    return destination;
  }

  async #pump(destination: ServerResponse, end: boolean): Promise<void> {
    const dest = destination as ServerResponse & Writable;
    const fill = this.#fill;
    const free: Buffer[] = [];
    let sending = 0;
    let wake: (() => void) | undefined;
    const wakeUp = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const until = async (ready: () => boolean) => {
      while (!ready() && !this.destroyed) await new Promise<void>((resolve) => { wake = resolve; });
    };
    const onClose = () => {
      if (!dest.writableFinished) this.destroy();
      wakeUp();
    };
    dest.once('close', onClose);
    dest.on('drain', wakeUp);
    try {
      for (;;) {
        await until(() => sending < MAX_SENDS);
        const at = await this.#available();
        if (at === null) break;
        let bytes: Buffer;
        let done: () => void;
        if (at.batch !== undefined) {
          const { batch } = at;
          bytes = this.#view(batch, at.to);
          done = () => fill.sent(batch);
        } else {
          // Fewer than MAX_SENDS buffers are being sent, so one is free once MAX_SENDS exist.
          const buffer = free.pop() ?? Buffer.allocUnsafeSlow(SPOOL_READ);
          bytes = await this.#readSpool(buffer, at.to);
          done = () => free.push(buffer);
        }
        await until(() => !dest.writableNeedDrain || sending === 0);
        if (this.destroyed) {
          done();
          return;
        }
        sending++;
        dest.write(bytes, () => {
          done();
          sending--;
          wakeUp();
        });
      }
      if (end) dest.end();
      this.push(null);
      this.resume();
    } catch (error) {
      if (!this.destroyed) this.destroy(error as Error);
    } finally {
      dest.off('close', onClose);
      dest.off('drain', wakeUp);
    }
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
