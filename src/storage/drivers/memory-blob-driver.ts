import { Readable } from 'node:stream';
import { NotFoundError } from '../../core/errors.ts';
import type { BlobDriver, BlobStat, BlobWriter, GetOptions, IoOptions } from '../../core/ports.ts';
import { checkBlobKey } from '../blob-key.ts';

/** Piece size of the streams get() returns. */
const READ_PIECE = 256 << 10;

/**
 * Bytes in this process's memory: committed blobs by key, and the writes in progress. For tests
 * and for a site that must keep nothing on disk; everything is lost when the process ends.
 */
export class MemoryBlobDriver implements BlobDriver {
  readonly id: string;
  readonly #blobs = new Map<string, Buffer>();
  /** Writes in progress (or left by a writer that never ended), by name: `<key>.<n>`. */
  readonly #partial = new Map<string, Buffer[]>();
  /** Names of the writes this object's writers hold open. */
  readonly #open = new Set<string>();
  #nextWrite = 1;

  constructor(id: string) {
    this.id = id;
  }

  urlFor(key: string): string {
    return `memory://${encodeURIComponent(this.id)}/${checkBlobKey(key)}`;
  }

  async openWriter(key: string, opts: IoOptions = {}): Promise<BlobWriter> {
    checkBlobKey(key);
    opts.signal?.throwIfAborted();
    const name = `${key}.${this.#nextWrite++}`;
    const parts: Buffer[] = [];
    this.#partial.set(name, parts);
    this.#open.add(name);
    let written = 0;
    const end = () => {
      this.#partial.delete(name);
      this.#open.delete(name);
    };
    return {
      get written() { return written; },
      write: async (bytes, o = {}) => {
        o.signal?.throwIfAborted();
        if (!this.#open.has(name)) throw new Error(`the write of ${key} has ended`);
        parts.push(Buffer.from(bytes)); // a copy: the caller reuses its memory
        written += bytes.length;
      },
      commit: async (o = {}) => {
        o.signal?.throwIfAborted();
        if (!this.#open.has(name)) throw new Error(`the write of ${key} has ended`);
        this.#blobs.set(key, Buffer.concat(parts));
        end();
      },
      cancel: async () => end(),
    };
  }

  /** Leaves a partial write of `key` as a writer that never ended would (what removePartial() removes). */
  leavePartial(key: string): void {
    this.#partial.set(`${checkBlobKey(key)}.${this.#nextWrite++}`, [Buffer.from('half of it')]);
  }

  /** Names of the committed blobs and of the partial writes (for the conformance suite's residue check). */
  names(): string[] {
    return [...this.#blobs.keys(), ...[...this.#partial.keys()].map((n) => `.incomplete/${n}`)].sort();
  }

  async removePartial(opts: IoOptions = {}): Promise<number> {
    let removed = 0;
    for (const name of [...this.#partial.keys()]) {
      opts.signal?.throwIfAborted();
      if (this.#open.has(name)) continue;
      this.#partial.delete(name);
      removed++;
    }
    return removed;
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    checkBlobKey(key);
    opts.signal?.throwIfAborted();
    const blob = this.#blobs.get(key);
    if (blob === undefined) throw new NotFoundError(`Image data for ${key} not found in store ${this.id}`);
    const start = opts.start ?? 0;
    const end = Math.min(opts.end ?? blob.length - 1, blob.length - 1);
    function* pieces(): Generator<Buffer> {
      for (let at = start; at <= end; at += READ_PIECE) yield blob!.subarray(at, Math.min(at + READ_PIECE, end + 1));
    }
    return Readable.from(pieces(), { objectMode: false, signal: opts.signal });
  }

  async stat(key: string, opts: IoOptions = {}): Promise<BlobStat | undefined> {
    checkBlobKey(key);
    opts.signal?.throwIfAborted();
    const blob = this.#blobs.get(key);
    return blob === undefined ? undefined : { size: blob.length };
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    checkBlobKey(key);
    opts.signal?.throwIfAborted();
    this.#blobs.delete(key);
  }

  async *list(opts: IoOptions = {}): AsyncIterable<string> {
    for (const key of [...this.#blobs.keys()]) {
      opts.signal?.throwIfAborted();
      yield key;
    }
  }
}
