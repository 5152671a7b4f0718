import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DataMismatchError } from '../core/errors.ts';
import type { Image } from '../core/image.ts';
import { NO_METRICS, type BlobDigest, type BlobStore, type IoOptions, type Metrics, type ParentImageSource, type TransferPriority } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';
import { FillReadStream, ImageFill, type Batch } from './image-fill.ts';

export interface ImageFillsOptions {
  source: ParentImageSource;
  /**
   * Scratch directory for fills in progress. What a stopped process left there is offered to the
   * next fill of the same image (ParentImageSource.open's `partial`), and removed then, or at the
   * next start once older than LEFTOVER_MAX_AGE_MS.
   */
  spoolDir: string;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Where fills are counted as they end, committed or failed (default: nowhere). */
  metrics?: Metrics;
  /**
   * Told when bytes checked chunk by chunk against the source's manifest were not the image's as a
   * whole (size, md5, sha512): that manifest was wrong (ImageManifests.manifestMismatched).
   */
  onManifestMismatch?(imageId: string): void;
}

/** How long what an interrupted fill left in the spool is kept for the next fill of its image. */
const LEFTOVER_MAX_AGE_MS = 24 * 3600_000;

/** Whether `path` is a file written to within LEFTOVER_MAX_AGE_MS (a leftover still worth keeping). */
async function isFreshFile(path: string): Promise<boolean> {
  const s = await stat(path).catch(() => undefined);
  return s !== undefined && s.isFile() && Date.now() - s.mtimeMs <= LEFTOVER_MAX_AGE_MS;
}

/** What the starter of a fill hears of it. */
export interface FillEvents {
  committed(digest: BlobDigest): Promise<void>;
}

/** Where a fill commits the verified copy. */
export interface FillTarget {
  blobs: BlobStore;
  key: string;
  /** Build the copy's chunk manifest in the same pass (its digest then carries it). */
  manifest: boolean;
  /** Whom the fill is for (default `client`: a read started it). */
  priority?: TransferPriority;
}

/**
 * Whole images brought from a source into a store, one transfer per image however many clients
 * ask meanwhile (single flight), each client streamed the bytes as they arrive (ImageFill,
 * FillReadStream). The copy is committed by the store's verifying put (size, md5, sha512 of the
 * image), so nothing partial or wrong ever becomes visible; a fill that fails ends every waiting
 * client's response short.
 */
export class ImageFills {
  readonly #o: ImageFillsOptions;
  readonly #fills = new Map<string, ImageFill>();
  readonly #stop = new AbortController();
  /** Spools a stopped process left, by image: the received prefix of an interrupted fill. */
  readonly #leftovers: Map<string, string>;

  private constructor(opts: ImageFillsOptions, leftovers: Map<string, string>) {
    this.#o = opts;
    this.#leftovers = leftovers;
  }

  /**
   * Keeps what fills a crash interrupted left in the spool (nothing of them was ever visible), to
   * be offered to the next fill of the same image; removes what is older than a day.
   */
  static async create(opts: ImageFillsOptions): Promise<ImageFills> {
    await mkdir(opts.spoolDir, { recursive: true });
    const leftovers = new Map<string, string>();
    for (const name of await readdir(opts.spoolDir)) {
      const path = join(opts.spoolDir, name);
      const id = /^([0-9a-fA-F-]{36})\.[0-9a-f]+$/.exec(name)?.[1];
      if (id === undefined || !(await isFreshFile(path)) || leftovers.has(id)) {
        await rm(path, { recursive: true, force: true });
      } else {
        leftovers.set(id, path);
      }
    }
    return new ImageFills(opts, leftovers);
  }

  /** Removes what interrupted fills left in the spool that is older than a day; how many. */
  async removeStaleLeftovers(opts: IoOptions = {}): Promise<number> {
    let removed = 0;
    for (const [id, path] of [...this.#leftovers]) {
      opts.signal?.throwIfAborted();
      if (await isFreshFile(path)) continue;
      this.#leftovers.delete(id);
      await rm(path, { force: true });
      removed++;
    }
    return removed;
  }

  /** The running fill of an image. */
  get(imageId: string): ImageFill | undefined {
    return this.#fills.get(imageId);
  }

  /** The running fills. */
  running(): ImageFill[] {
    return [...this.#fills.values()];
  }

  /**
   * Starts the fill of `image` (active, with size and both hashes) into `target`. `committed`
   * runs once the copy is in the store, with its digest (and chunk manifest), before the fill
   * counts as committed (its error fails the fill).
   */
  start(image: Image, target: FillTarget, on: FillEvents): ImageFill {
    const fill = new ImageFill(image, join(this.#o.spoolDir, `${image.id}.${randomBytes(6).toString('hex')}`));
    this.#fills.set(image.id, fill);
    // Open for reading too: the fill's clients read the spool through this handle (ImageFill.readSpool).
    fill.opened = open(fill.path, 'w+').then((fh) => {
      fill.spool = fh;
    });
    fill.opened.catch(() => undefined);
    fill.ended = this.#run(fill, target, on).finally(async () => {
      if (this.#fills.get(image.id) === fill) this.#fills.delete(image.id);
      fill.changed();
      await fill.release();
    });
    return fill;
  }

  /**
   * A client of the fill: the bytes [start, end] as they arrive, once the source has answered
   * (rejects with its reason when it sends none: NotFoundError, ServiceUnavailableError).
   */
  async read(fill: ImageFill, start: number, end: number, signal?: AbortSignal): Promise<Readable> {
    const reader = new FillReadStream(fill, start, end, signal);
    try {
      await fill.answered;
    } catch (error) {
      reader.destroy();
      throw error;
    }
    return reader;
  }

  /**
   * The bytes [start, end] straight from the source, not waiting for a fill; while the image's
   * fill runs, the source keeps them for it (`forRunningFill`), so they cross the link once.
   */
  async passThrough(imageId: string, start: number, end: number, opts: IoOptions = {}): Promise<Readable> {
    const { stream } = await this.#o.source.open(imageId, { start, end, signal: opts.signal, forRunningFill: this.#fills.has(imageId) });
    return Readable.from(stream, { objectMode: false });
  }

  /** Stops every fill and waits for them to end. */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.all([...this.#fills.values()].map((f) => f.ended));
  }

  async #run(fill: ImageFill, target: FillTarget, on: FillEvents): Promise<void> {
    const { image } = fill;
    // Aborted with the store's error when the copy cannot be written (a full disk), before the
    // source's bytes are let go: its transfer record then says why it stopped (transfer-log's `recorded`).
    const failed = new AbortController();
    const signal = AbortSignal.any([fill.abort.signal, this.#stop.signal, failed.signal]);
    const started = Date.now();
    try {
      await fill.opened;
      const partial = this.#leftovers.get(image.id);
      const upstream = await this.#o.source.open(image.id, { signal, partial, priority: target.priority });
      fill.upstreamAnswered();
      // The store is fed whole batches: each is taken (copied) by put before it asks for the
      // next one, and the upstream is read only as fast as the store and the spool take it.
      // Read by hand, so that put stopping early does not let go of the source (below does).
      const reading = upstream.stream[Symbol.asyncIterator]();
      /** The source gave every byte (each chunk checked, with a manifest): a mismatch after is the whole image's. */
      let whole = false;
      async function* batches(): AsyncGenerator<Uint8Array> {
        const full: Batch[] = [];
        for (let next = await reading.next(); next.done !== true; next = await reading.next()) {
          const chunk = next.value;
          fill.take(chunk, (b) => full.push(b));
          fill.changedSoon();
          for (let b = full.shift(); b !== undefined; b = full.shift()) {
            yield b.buf.subarray(0, b.filled);
            fill.stored(b);
            await fill.paced();
          }
        }
        whole = true;
        const last = fill.last();
        if (last !== undefined) {
          fill.seal(last);
          yield last.buf.subarray(0, last.filled);
          fill.stored(last);
        }
        await fill.spoolDone();
      }
      let digest: BlobDigest;
      try {
        // Bytes checked chunk by chunk against a manifest have that manifest: no need to build it again.
        digest = await target.blobs.put(target.key, batches(), {
          signal, expectedSize: image.size!, expected: { md5: image.checksum!, sha512: image.os_hash_value! }, manifest: target.manifest && upstream.manifest === undefined,
          // The spool holds the same bytes in order: a store that can take it as the copy need not write them again.
          adopt: fill.path,
          // Its clients have the last byte once the bytes are the image's, not after the commit
          // (an fdatasync, the chunk index): a commit that fails then keeps no copy, but what the
          // clients were sent was verified.
          onVerified: () => fill.verify(),
        });
      } catch (error) {
        failed.abort(error);
        if (error instanceof DataMismatchError && whole && upstream.manifest !== undefined) this.#o.onManifestMismatch?.(image.id);
        throw error;
      } finally {
        // Lets go of the source (a no-op once it has ended); what closing it throws is not the fill's outcome.
        await Promise.resolve(reading.return?.()).catch(() => undefined);
      }
      if (signal.aborted) {
        // Stopped while the copy was being committed (the image deleted meanwhile, the site
        // closing): the copy is not kept.
        await target.blobs.delete(target.key).catch(() => undefined);
        signal.throwIfAborted();
      }
      await on.committed({ ...digest, manifest: digest.manifest ?? upstream.manifest });
      if (partial !== undefined) {
        this.#leftovers.delete(image.id);
        await rm(partial, { force: true });
      }
      fill.state = 'committed';
      (this.#o.metrics ?? NO_METRICS).count('outpost_fills_total', { outcome: 'committed' });
      this.#o.log.info({ image: image.id, size: image.size, ms: Date.now() - started }, 'cached a verified copy from the parent');
    } catch (error) {
      fill.state = 'failed';
      (this.#o.metrics ?? NO_METRICS).count('outpost_fills_total', { outcome: 'failed' });
      fill.error = error as Error;
      fill.upstreamAnswered(error as Error);
      this.#o.log.warn({ image: image.id, err: describeError(error) }, 'could not cache the image: nothing was kept');
    }
  }
}
