import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChunkManifest, ManifestChunk } from '../core/chunk-manifest.ts';
import { DataMismatchError, NotFoundError } from '../core/errors.ts';
import type { BlobStore, ChunkIndex, IoOptions, SourceOptions, ParentImageBytes, ParentImageSource } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';
import { recorded, type TransferCounters, type TransferLog } from './transfer-log.ts';

export interface DeltaImageSourceOptions {
  /** Where the bytes come from (an edge's parent, or the sites holding a copy); ranges are asked of it. */
  upstream: ParentImageSource;
  /** The image's chunk manifest (checked), or undefined when none can be had: the image then comes as one stream. */
  manifestOf(imageId: string, opts?: IoOptions): Promise<ChunkManifest | undefined>;
  /** The chunks of the copies this site holds. */
  chunks: Pick<ChunkIndex, 'findChunk'>;
  /** This site's stores, by id (where held chunks are read). */
  blobs(storeId: string): BlobStore | undefined;
  /** Attempts of a range after the source broke off (a cut, a stall, a bad chunk), with backoff doubling from backoffMs. */
  attempts?: number;
  backoffMs?: number;
  /** Where whole-image transfers are recorded (GET /outpost/v1/transfers), under `sourceName`. */
  transfers: TransferLog;
  sourceName: string;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** A run of consecutive chunks taken the same way. */
type Segment = { kind: 'zero' | 'local' | 'fetch'; chunks: ManifestChunk[] };

const ZEROS = Buffer.alloc(1 << 20);

/** A transfer's options inside this source: told each site that sends bytes (a peer, a site holding a copy). */
type FetchOptions = SourceOptions & { sentBy?(site: string): void };

/**
 * Verified chunks ranges brought for running fills are kept in memory, up to this many bytes in
 * all for the site (the oldest dropped first: the fill then fetches those again).
 */
const KEPT_MAX_BYTES = 64 << 20;

/**
 * Ranges asked of the source at once: while one run of missing chunks is read, the next ones are
 * already asked for, so a delta of many short runs pays a round trip per few runs rather than per
 * run, and the link stays busy between them (each waiting answer is held back by TCP once the
 * socket's buffers are full, so asking early costs no memory here).
 */
const RANGES_IN_FLIGHT = 3;

/**
 * A fill breaks off its request to take kept chunks only for a run of at least this many bytes:
 * asking again costs a round trip and what the broken-off request had in flight, which a few
 * small chunks (a hypervisor's scattered reads) are not worth; those it fetches again.
 */
const SWITCH_MIN_BYTES = 4 << 20;

/**
 * Image bytes planned from the image's chunk manifest (issue 12): all-zero chunks are made here,
 * chunks a copy this site holds already has are copied from it, and only the rest is fetched
 * from the source — each maximal run of missing chunks as one `Range` request on the ordinary
 * `GET /v2/images/{id}/file`. Every chunk is checked against its sha256 before it is given out
 * (a held one that fails is fetched instead; a fetched one that fails is fetched again), and a
 * range the source breaks off part-way (a cut link, a stall) is asked again from the first chunk
 * not yet given, with backoff: a cut costs the chunk in flight, not the transfer. The bytes come
 * out in order, so a fill streams them to its clients as before, and the store's put still
 * verifies size, md5 and sha512 of the whole before anything is visible.
 *
 * A range asked while the image's fill runs (lazy boot: a hypervisor reading a disk the edge is
 * still fetching) is had as the whole chunks that cover it, each checked, and kept for the fill:
 * when the fill gets there it takes them rather than fetching them a second time (breaking off its
 * request and asking again after them, for a run of SWITCH_MIN_BYTES or more). A whole-image request without a manifest (a source
 * that has none), and any other range request, go to the source as they are.
 */
export class DeltaImageSource implements ParentImageSource {
  readonly #o: DeltaImageSourceOptions;
  /** Chunks ranges brought for running fills, by `{image id}@{offset}`, oldest first; their bytes in all. */
  readonly #kept = new Map<string, Buffer>();
  #keptBytes = 0;

  constructor(opts: DeltaImageSourceOptions) {
    this.#o = opts;
  }

  manifest(imageId: string, opts?: IoOptions): Promise<unknown> {
    return this.#o.upstream.manifest(imageId, opts);
  }

  async open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const { partial, forRunningFill, ...get } = opts;
    if (opts.start !== undefined || opts.end !== undefined) {
      // The fill has the manifest already; without one the range goes to the source as it is.
      const manifest = forRunningFill === true ? await this.#o.manifestOf(imageId, opts).catch(() => undefined) : undefined;
      if (manifest === undefined || manifest.size === 0) return this.#o.upstream.open(imageId, get);
      return this.#range(imageId, manifest, opts.start ?? 0, Math.min(opts.end ?? manifest.size - 1, manifest.size - 1), get);
    }
    const manifest = await this.#o.manifestOf(imageId, opts);
    if (manifest === undefined) {
      const plain = await this.#o.upstream.open(imageId, get);
      return { stream: recorded(plain.stream, this.#o.transfers.start(imageId, this.#o.sourceName, 'stream', 0), opts.signal, 'fetched') };
    }
    const received = partial === undefined ? undefined : await openPartial(partial);
    const transfer = this.#o.transfers.start(imageId, this.#o.sourceName, 'manifest', manifest.size);
    try {
      const plan = await this.#plan(manifest, received?.length ?? 0, opts);
      // The source's answer to the first range is had before this answers, so that "no data
      // there" and "unreachable" are said before any byte, as for a plain stream.
      const first = plan.find((s) => s.kind === 'fetch');
      const opened = first === undefined ? undefined : await this.#o.upstream.open(imageId, { ...rangeOf(first.chunks), signal: opts.signal, priority: opts.priority });
      return { stream: recorded(this.#bytes(imageId, plan, transfer.counts, opened, received, { ...opts, sentBy: (site) => transfer.sentBy(site) }), transfer, opts.signal), manifest };
    } catch (error) {
      transfer.end(error as Error);
      await received?.file.close();
      throw error;
    }
  }

  /**
   * The bytes [start, end] for a running fill: the chunks covering them — kept ones from memory,
   * all-zero ones made here, the rest fetched (each run as one range, its first asked before this
   * answers) and kept for the fill — each checked against its sha256, clipped to the range.
   */
  async #range(imageId: string, manifest: ChunkManifest, start: number, end: number, opts: SourceOptions): Promise<ParentImageBytes> {
    const segments: Segment[] = [];
    for (const chunk of manifest.chunks) {
      if (chunk.offset + chunk.length <= start || chunk.offset > end) continue;
      const kind = chunk.zero === true ? 'zero' : this.#kept.has(keptKey(imageId, chunk)) ? 'local' : 'fetch';
      const last = segments.at(-1);
      if (last?.kind === kind) last.chunks.push(chunk);
      else segments.push({ kind, chunks: [chunk] });
    }
    const first = segments.find((s) => s.kind === 'fetch');
    const opened = first === undefined ? undefined : await this.#o.upstream.open(imageId, { ...rangeOf(first.chunks), signal: opts.signal, priority: opts.priority });
    return { stream: this.#rangeBytes(imageId, segments, start, end, opened, opts) };
  }

  async *#rangeBytes(imageId: string, segments: Segment[], start: number, end: number, opened: ParentImageBytes | undefined, opts: SourceOptions): AsyncGenerator<Uint8Array> {
    const counts: TransferCounters = { reused: 0, zeros: 0, fetched: 0, refetched: 0, resumes: 0 };
    const clip = (chunk: ManifestChunk, bytes: Uint8Array) => bytes.subarray(Math.max(0, start - chunk.offset), Math.min(chunk.length, end - chunk.offset + 1));
    const first = opened;
    try {
      for (const segment of segments) {
        if (segment.kind === 'zero') {
          for (const c of segment.chunks) yield clip(c, c.length <= ZEROS.length ? ZEROS.subarray(0, c.length) : Buffer.alloc(c.length));
          continue;
        }
        // A kept chunk the fill took meanwhile is fetched after all.
        const kept = segment.kind === 'local' ? segment.chunks.map((c) => this.#kept.get(keptKey(imageId, c))) : [];
        if (segment.kind === 'local' && kept.every((b) => b !== undefined)) {
          for (const [i, c] of segment.chunks.entries()) yield clip(c, kept[i]!);
          continue;
        }
        let k = 0;
        let parts: Uint8Array[] = [];
        let have = 0;
        for await (const part of this.#fetched(imageId, segment.chunks, counts, opts, segment.kind === 'fetch' ? opened : undefined)) {
          parts.push(part);
          have += part.length;
          const chunk = segment.chunks[k]!;
          if (have < chunk.length) continue;
          const bytes = parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
          this.#keep(imageId, chunk, bytes);
          yield clip(chunk, bytes);
          parts = [];
          have = 0;
          k++;
        }
        if (segment.kind === 'fetch') opened = undefined;
      }
    } finally {
      // Left before the first fetched run was read (the client went away): its request ends too.
      await first?.stream[Symbol.asyncIterator]().return?.();
    }
  }

  /** Keeps a checked chunk for the image's running fill, dropping the oldest kept beyond KEPT_MAX_BYTES. */
  #keep(imageId: string, chunk: ManifestChunk, bytes: Buffer): void {
    const key = keptKey(imageId, chunk);
    if (this.#kept.has(key) || bytes.length > KEPT_MAX_BYTES) return;
    this.#kept.set(key, bytes);
    this.#keptBytes += bytes.length;
    for (const [k, b] of this.#kept) {
      if (this.#keptBytes <= KEPT_MAX_BYTES) break;
      this.#kept.delete(k);
      this.#keptBytes -= b.length;
    }
  }

  /** Bytes of the kept chunks from chunks[from] on, consecutively (counted up to SWITCH_MIN_BYTES). */
  #keptRun(imageId: string, chunks: readonly ManifestChunk[], from: number): number {
    let bytes = 0;
    for (let i = from; i < chunks.length && bytes < SWITCH_MIN_BYTES && this.#kept.has(keptKey(imageId, chunks[i]!)); i++) bytes += chunks[i]!.length;
    return bytes;
  }

  /** A kept chunk, taken (the fill has it from now on). */
  #take(imageId: string, chunk: ManifestChunk): Buffer | undefined {
    const key = keptKey(imageId, chunk);
    const bytes = this.#kept.get(key);
    if (bytes === undefined) return undefined;
    this.#kept.delete(key);
    this.#keptBytes -= bytes.length;
    return bytes;
  }

  /** Drops what is kept for an image whose fill ended. */
  #drop(imageId: string): void {
    for (const [k, b] of this.#kept) {
      if (!k.startsWith(`${imageId}@`)) continue;
      this.#kept.delete(k);
      this.#keptBytes -= b.length;
    }
  }

  /** Consecutive chunks grouped by how each is to be had (`received`: bytes of the image a partial file holds). */
  async #plan(manifest: ChunkManifest, received: number, opts: IoOptions): Promise<Segment[]> {
    const segments: Segment[] = [];
    for (const chunk of manifest.chunks) {
      const here = chunk.offset + chunk.length <= received || (await this.#o.chunks.findChunk(chunk.sha256, chunk.length, { ...opts, limit: 1 })).length > 0;
      const kind = chunk.zero === true ? 'zero' : here ? 'local' : 'fetch';
      const last = segments.at(-1);
      if (last?.kind === kind) last.chunks.push(chunk);
      else segments.push({ kind, chunks: [chunk] });
    }
    return segments;
  }

  async *#bytes(imageId: string, plan: Segment[], counts: TransferCounters, opened: ParentImageBytes | undefined, received: Received | undefined, opts: FetchOptions): AsyncGenerator<Uint8Array> {
    try {
      yield* this.#planned(imageId, plan, counts, opened, received, opts);
    } finally {
      this.#drop(imageId);
      await received?.file.close().catch(() => undefined);
    }
  }

  async *#planned(imageId: string, plan: Segment[], counts: TransferCounters, opened: ParentImageBytes | undefined, received: Received | undefined, opts: FetchOptions): AsyncGenerator<Uint8Array> {
    const { signal } = opts;
    const started = Date.now();
    const ahead = new RangesAhead(plan.filter((s) => s.kind === 'fetch').slice(opened === undefined ? 0 : 1),
      (chunks) => this.#o.upstream.open(imageId, { ...rangeOf(chunks), signal, priority: opts.priority }));
    try {
      yield* this.#segments(imageId, plan, ahead, counts, opened, received, opts);
    } finally {
      await ahead.close();
    }
    const { reused, zeros, fetched, refetched, resumes } = counts;
    this.#o.log.info({ image: imageId, reused, zeros, fetched, refetched, resumes, ms: Date.now() - started }, 'transferred an image by its chunk manifest');
  }

  async *#segments(imageId: string, plan: Segment[], ahead: RangesAhead, counts: TransferCounters, opened: ParentImageBytes | undefined, received: Received | undefined, opts: FetchOptions): AsyncGenerator<Uint8Array> {
    const { signal } = opts;
    for (const segment of plan) {
      if (segment.kind === 'zero') {
        for (const c of segment.chunks) {
          for (let left = c.length; left > 0; left -= ZEROS.length) yield ZEROS.subarray(0, Math.min(left, ZEROS.length));
          counts.zeros += c.length;
        }
      } else if (segment.kind === 'local') {
        const missing: ManifestChunk[] = [];
        for (const c of segment.chunks) {
          const bytes = await this.#fromPartial(c, received) ?? await this.#held(c, signal);
          if (bytes === undefined) {
            missing.push(c);
            continue;
          }
          if (missing.length > 0) yield* this.#fetched(imageId, missing.splice(0), counts, opts);
          counts.reused += c.length;
          yield bytes;
        }
        if (missing.length > 0) yield* this.#fetched(imageId, missing, counts, opts);
      } else {
        // The first run was opened before the transfer answered; each later one was asked for ahead.
        const asked = opened ?? await ahead.next();
        opened = undefined;
        yield* this.#fetched(imageId, segment.chunks, counts, opts, asked);
      }
    }
  }

  /** A chunk from what an interrupted transfer of the image received, checked; undefined if it is not there intact. */
  async #fromPartial(chunk: ManifestChunk, received: Received | undefined): Promise<Buffer | undefined> {
    if (received === undefined || chunk.offset + chunk.length > received.length) return undefined;
    const bytes = Buffer.allocUnsafe(chunk.length);
    const { bytesRead } = await received.file.read(bytes, 0, chunk.length, chunk.offset);
    return bytesRead === chunk.length && sha256(bytes) === chunk.sha256 ? bytes : undefined;
  }

  /** A chunk from a copy this site holds, checked; undefined if no held copy gives it intact. */
  async #held(chunk: ManifestChunk, signal: AbortSignal | undefined): Promise<Buffer | undefined> {
    for (const place of await this.#o.chunks.findChunk(chunk.sha256, chunk.length, { signal })) {
      const blobs = this.#o.blobs(place.store);
      if (blobs === undefined) continue;
      try {
        const parts: Buffer[] = [];
        for await (const part of await blobs.get(place.key, { start: place.offset, end: place.offset + place.length - 1, signal })) parts.push(part as Buffer);
        const bytes = Buffer.concat(parts);
        if (bytes.length === chunk.length && sha256(bytes) === chunk.sha256) return bytes;
      } catch (error) {
        signal?.throwIfAborted();
        this.#o.log.warn({ store: place.store, key: place.key, err: describeError(error) }, 'a held chunk could not be read; fetching it instead');
      }
    }
    return undefined;
  }

  /**
   * Consecutive chunks from the source, as one range, each checked as it completes. A range the
   * source breaks off is asked again from the first chunk not yet given; a chunk that fails its
   * check is asked again (attempts times at most, as a break-off).
   */
  async *#fetched(imageId: string, chunks: ManifestChunk[], counts: TransferCounters, opts: FetchOptions, opened?: ParentImageBytes): AsyncGenerator<Uint8Array> {
    const { signal, priority } = opts;
    const attempts = this.#o.attempts ?? 5;
    const backoffMs = this.#o.backoffMs ?? 500;
    let next = 0;
    for (let failures = 0; next < chunks.length;) {
      // Chunks a range brought for this transfer meanwhile are taken rather than fetched.
      for (let kept = this.#take(imageId, chunks[next]!); kept !== undefined; kept = next < chunks.length ? this.#take(imageId, chunks[next]!) : undefined) {
        counts.fetched += kept.length;
        next++;
        yield kept;
      }
      if (next >= chunks.length) break;
      if (next > 0 && opened !== undefined) {
        await opened.stream[Symbol.asyncIterator]().return?.();
        opened = undefined;
      }
      // The pieces of the chunk being received, hashed as they come and given out (as they are,
      // without a copy) once the whole chunk matched.
      let pending: Uint8Array[] = [];
      let hash = createHash('sha256');
      let have = 0;
      let switched = false;
      try {
        const { stream, from } = opened ?? await this.#o.upstream.open(imageId, { ...rangeOf(chunks.slice(next)), signal, priority });
        opened = undefined;
        if (from !== undefined) opts.sentBy?.(from);
        for await (const piece of stream) {
          for (let at = 0; at < piece.length;) {
            const chunk = chunks[next];
            if (chunk === undefined) throw new DataMismatchError(`The source sent more bytes of image ${imageId} than asked.`);
            const take = Math.min(chunk.length - have, piece.length - at);
            const part = at === 0 && take === piece.length ? piece : piece.subarray(at, at + take);
            hash.update(part);
            pending.push(part);
            have += take;
            at += take;
            if (have < chunk.length) continue;
            const parts = pending;
            const matched = hash.digest('hex') === chunk.sha256;
            pending = [];
            hash = createHash('sha256');
            have = 0;
            if (!matched) {
              counts.refetched += chunk.length;
              // A source asking several sites asks the one that sent it no more (the retry goes elsewhere).
              if (from !== undefined) this.#o.upstream.distrust?.(imageId, from);
              throw new DataMismatchError(`Chunk at ${chunk.offset} of image ${imageId} did not match its sha256${from === undefined ? '' : ` (sent by site ${from})`}.`);
            }
            counts.fetched += chunk.length;
            next++;
            failures = 0;
            yield* parts;
            // A range brought the next chunks meanwhile: this request stops here (the rest of it
            // is asked again after the kept chunks).
            if (this.#keptRun(imageId, chunks, next) >= SWITCH_MIN_BYTES) {
              switched = true;
              break;
            }
          }
          if (switched) break;
        }
        if (switched) continue;
        if (next < chunks.length) throw new Error(`the source ended the range of image ${imageId} at ${chunks[next]!.offset + have}`);
      } catch (error) {
        signal?.throwIfAborted();
        counts.refetched += have;
        // The source has no data (any more): asking again will not change that.
        if (error instanceof NotFoundError || ++failures >= attempts) throw error;
        counts.resumes++;
        this.#o.log.warn({ image: imageId, at: chunks[next]!.offset, attempt: failures, err: describeError(error) }, 'the transfer broke off; asking again from the first chunk not yet verified');
        await sleep(backoffMs * 2 ** (failures - 1), undefined, { signal });
      }
    }
  }
}

/**
 * The runs of chunks a transfer fetches, in order, each asked of the source up to
 * RANGES_IN_FLIGHT - 1 runs ahead of its turn (with the run being read, RANGES_IN_FLIGHT in all).
 * An ask that failed gives undefined: the run is then asked again in its turn, as after a cut.
 */
class RangesAhead {
  readonly #runs: readonly Segment[];
  readonly #open: (chunks: ManifestChunk[]) => Promise<ParentImageBytes>;
  readonly #asked: Promise<ParentImageBytes | undefined>[] = [];
  #next = 0;

  /** Asks for the first runs at once (the one before them, if any, is being read). */
  constructor(runs: readonly Segment[], open: (chunks: ManifestChunk[]) => Promise<ParentImageBytes>) {
    this.#runs = runs;
    this.#open = open;
    this.#fill();
  }

  /** The answer to the next run (asking for it now if it was not yet), and the runs after it asked for. */
  async next(): Promise<ParentImageBytes | undefined> {
    this.#fill();
    const asked = this.#asked.shift();
    this.#next++;
    this.#fill();
    return asked;
  }

  /** Ends the requests of the runs asked for and never read (the transfer stopped). */
  async close(): Promise<void> {
    for (const asked of this.#asked.splice(0)) await (await asked)?.stream[Symbol.asyncIterator]().return?.();
  }

  #fill(): void {
    while (this.#asked.length < RANGES_IN_FLIGHT - 1 && this.#next + this.#asked.length < this.#runs.length) {
      this.#asked.push(this.#open(this.#runs[this.#next + this.#asked.length]!.chunks).catch(() => undefined));
    }
  }
}

/** What an earlier, interrupted transfer received: a file holding a prefix of the image. */
interface Received {
  file: FileHandle;
  length: number;
}

async function openPartial(path: string): Promise<Received | undefined> {
  try {
    const file = await open(path, 'r');
    return { file, length: (await file.stat()).size };
  } catch {
    return undefined; // gone: nothing to take from it
  }
}

function keptKey(imageId: string, chunk: ManifestChunk): string {
  return `${imageId}@${chunk.offset}`;
}

/** The byte range [start, end] of consecutive chunks. */
function rangeOf(chunks: readonly ManifestChunk[]): { start: number; end: number } {
  const last = chunks.at(-1)!;
  return { start: chunks[0]!.offset, end: last.offset + last.length - 1 };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
