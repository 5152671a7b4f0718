import { unlink, type FileHandle } from 'node:fs/promises';
import type { Image } from '../core/image.ts';
import { isAllZero } from '../storage/hashing/is-all-zero.ts';
import { PumpedReadable, type Lent } from '../storage/pumped-readable.ts';
import { writeAll } from '../storage/write-all.ts';

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

/** Part of the image in memory: `buf[0, filled)` holds the image's bytes from `offset` on. */
export class Batch {
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
export class ImageFill {
  readonly image: Image;
  readonly path: string;
  readonly abort = new AbortController();
  /** Bytes received so far, all of them in the window or on the spool. */
  received = 0;
  /** Bytes on the spool so far (a prefix of the image). */
  spooled = 0;
  /** The batches in memory, in order, contiguous, the last one possibly still filling; the first starts at or before `spooled`. */
  readonly window: Batch[] = [];
  state: 'running' | 'committed' | 'failed' = 'running';
  /** Every byte arrived, is on the spool and matched the image's size, md5 and sha512 (the commit may still be running). */
  verified = false;
  error: Error | undefined;
  /** Clients following the fill; the last one out removes the spool once the fill has ended. */
  readers = 0;
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
  #released = false;
  /** The spool writes, in order: each starts when the previous one is done. */
  #spooling: Promise<void> = Promise.resolve();
  #spoolError: { error: unknown } | undefined;
  #unspooled = 0;
  #paceWake: (() => void) | undefined;
  readonly #free: Buffer[] = [];
  #wake: (() => void)[] = [];
  #soon = false;

  constructor(image: Image, path: string) {
    this.image = image;
    this.path = path;
    this.answered = this.#answer.promise;
    this.answered.catch(() => undefined); // a fill nobody waits on (a prefetch) may fail unobserved
  }

  /** The bytes are the image's: its clients may have the last of them. */
  verify(): void {
    this.verified = true;
    this.changed();
  }

  /** The parent has sent its answer (`error`: the reason it sends no bytes). Only the first call counts. */
  upstreamAnswered(error?: Error): void {
    if (error === undefined) this.#answer.resolve();
    else this.#answer.reject(error);
  }

  set spool(fh: FileHandle) {
    this.#spool = fh;
  }

  /**
   * Reads the spool at `position` into `into` (readers share the fill's handle, open for reading
   * and writing, so that the spool can be renamed into the store while they read it).
   */
  async readSpool(into: Buffer, length: number, position: number): Promise<number> {
    await this.opened;
    if (position + length > this.spooled) throw new Error(`bytes ${position}-${position + length - 1} of image ${this.image.id} are not on the spool yet`);
    const { bytesRead } = await this.#spool!.read(into, 0, length, position);
    // Below `spooled`, what the file does not reach yet is a hole left for zeros (seal).
    into.fill(0, bytesRead, length);
    return length;
  }

  /**
   * Once the fill has ended and no reader is left: closes the spool and removes it (unless the
   * store took it as the committed copy, which moved it). Idempotent.
   */
  async release(): Promise<void> {
    if (this.state === 'running' || this.readers > 0 || this.#released) return;
    this.#released = true;
    await this.#spool?.close().catch(() => undefined);
    await unlink(this.path).catch(() => undefined);
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
        // Zeros are left as a hole (reads give zeros): a spool the store takes as its copy stays sparse.
        for (let at = isAllZero(b.buf.subarray(0, b.filled)) ? b.filled : 0; at < b.filled; at += SPOOL_WRITE) {
          const length = Math.min(SPOOL_WRITE, b.filled - at);
          await writeAll(this.#spool!, b.buf, at, length, b.offset + at);
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

  /** Waits until every batch is on the spool, which then has the length of what was received; throws if a write failed. */
  async spoolDone(): Promise<void> {
    await this.#spooling;
    if (this.#spoolError !== undefined) throw this.#spoolError.error;
    await this.#spool!.truncate(this.received); // (a last hole, which no write extended the file over)
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

/**
 * A client's view of a fill: the bytes [start, end] as they arrive. The last byte is held back
 * until every byte is verified, so a fill that fails before that ends the response short (the
 * stream is destroyed with the fill's error); one whose commit fails after it does not. Bytes still in the fill's window are lent from it (released
 * once sent); older ones are read from the spool. Into an HTTP response without copies
 * (PumpedReadable).
 */
export class FillReadStream extends PumpedReadable {
  readonly #fill: ImageFill;
  readonly #last: number;
  #pos: number;
  #left = false;
  readonly #stop = new AbortController();

  constructor(fill: ImageFill, start: number, end: number, signal: AbortSignal | undefined) {
    super(SPOOL_READ, { highWaterMark: 1 << 20, signal });
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
      if (fill.state === 'failed' && !fill.verified) throw fill.error ?? new Error('the fill failed');
      const limit = fill.verified ? this.#last + 1 : Math.min(fill.received, this.#last);
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

  protected async next(buffer: (size: number) => Buffer): Promise<Lent | null> {
    const at = await this.#available();
    if (at === null) return null;
    const { batch } = at;
    if (batch !== undefined) {
      const bytes = batch.buf.subarray(this.#pos - batch.offset, at.to - batch.offset);
      this.#pos = at.to;
      return { bytes, release: () => this.#fill.sent(batch) };
    }
    const into = buffer(Math.min(SPOOL_READ, at.to - this.#pos));
    const bytesRead = await this.#fill.readSpool(into, Math.min(into.length, at.to - this.#pos), this.#pos);
    this.#pos += bytesRead;
    return { bytes: bytesRead === into.length ? into : into.subarray(0, bytesRead) };
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stop.abort();
    this.#leave();
    callback(error);
  }

  #leave(): void {
    if (this.#left) return;
    this.#left = true;
    this.#fill.readers--;
    void this.#fill.release();
  }
}
