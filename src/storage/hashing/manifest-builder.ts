import { createHash, type Hash } from 'node:crypto';
import { CHUNKING_ALGORITHM, DEFAULT_CHUNK_SIZES, type ChunkManifest, type ChunkSizes, type ManifestChunk } from '../../core/chunk-manifest.ts';
import { ContentDefinedChunker } from './fastcdc.ts';
import { isAllZero } from './is-all-zero.ts';

/**
 * The chunk manifest of a byte stream, built in one pass as the bytes go by: content-defined
 * chunk boundaries (ContentDefinedChunker), the sha256 of each chunk, and whether it is all
 * zeros (`zero: true`: a transfer writes it as a hole and never moves it).
 */
export class ManifestBuilder {
  readonly #sizes: ChunkSizes;
  readonly #chunker: ContentDefinedChunker;
  readonly #chunks: ManifestChunk[] = [];
  #hash: Hash = createHash('sha256');
  #chunkStart = 0;
  #zero = true;
  #length = 0;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    this.#sizes = { min: sizes.min, avg: sizes.avg, max: sizes.max };
    this.#chunker = new ContentDefinedChunker(this.#sizes);
  }

  /** Takes the next bytes of the stream (read, not kept). */
  update(bytes: Uint8Array): void {
    let at = 0;
    for (const end of this.#chunker.push(bytes)) {
      this.#take(bytes.subarray(at, end - this.#length));
      at = end - this.#length;
      this.#cut(end);
    }
    this.#take(bytes.subarray(at));
    this.#length += bytes.length;
  }

  /** The manifest of everything taken. */
  finish(): ChunkManifest {
    const end = this.#chunker.finish();
    if (end !== undefined) this.#cut(end);
    return {
      size: this.#length,
      chunking: { algorithm: CHUNKING_ALGORITHM, ...this.#sizes },
      chunks: this.#chunks,
    };
  }

  #take(part: Uint8Array): void {
    if (part.length === 0) return;
    this.#hash.update(part);
    if (this.#zero && !isAllZero(part)) this.#zero = false;
  }

  #cut(end: number): void {
    const chunk: ManifestChunk = { offset: this.#chunkStart, length: end - this.#chunkStart, sha256: this.#hash.digest('hex') };
    if (this.#zero) chunk.zero = true;
    this.#chunks.push(chunk);
    this.#chunkStart = end;
    this.#hash = createHash('sha256');
    this.#zero = true;
  }
}
