import { DEFAULT_CHUNK_SIZES, chunkSizesProblem, type ChunkSizes } from '../../core/chunk-manifest.ts';

/**
 * Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016; IEEE TPDS 2020) with
 * normalised chunking, the cut-point function named 'fastcdc-gear32-v1' in chunk manifests
 * (src/core/chunk-manifest.ts). Manifests of the same bytes must match on every site and across
 * versions, so the gear table, the masks and the rules below are frozen: changing any of them
 * changes cut points and needs a new algorithm name (test/storage/fastcdc.test.ts pins them).
 *
 * The cut-point function. Within a chunk, byte k (0-based) may end the chunk when k + 1 >= min:
 * - Cut-point skipping: the first min - 1 bytes of a chunk are never hashed; the gear hash starts
 *   from 0 at byte min - 1, so the shortest chunk a hash can end is exactly `min` bytes.
 * - Gear hash on 32 bits: h = (h << 1) + GEAR[byte] (mod 2^32), after each hashed byte.
 * - Normalised chunking, level 2: while the chunk would be shorter than `avg`, it ends after the
 *   byte when the top log2(avg) + 2 bits of h are all zero (probability 1/(4 avg) per byte: rarely
 *   before avg); from `avg` on, when the top log2(avg) - 2 bits are (probability 4/avg: soon after).
 *   On random data with the defaults, 17% of chunks end before avg and the mean is about 290 KiB.
 * - A chunk that reaches `max` bytes ends there.
 * - The last chunk ends with the stream, whatever its length.
 *
 * Why the top bits: bit j of a shift-and-add hash depends only on the last j + 1 bytes (older
 * bytes have been shifted out above it), so bit 31 is the only one that sees a full 32-byte
 * window and the low bits see almost nothing. A mask made of the top bits makes the decision
 * depend on the last 32 bytes (FastCDC spreads its mask bits over a 64-bit hash for the same
 * reason: to widen the window that decides a cut).
 * With the defaults (avg 256 KiB = 2^18): before avg the top 20 bits (0xfffff000), after it the top
 * 16 (0xffff0000); the looser mask is a subset of the stricter one.
 *
 * All-zero bytes: h settles at -GEAR[0] mod 2^32 after 32 zeros, whose top 16 bits are not zero
 * for this table, so a run of zeros is cut into `max`-long chunks (the test pins this too).
 */

/** Seed of the gear table: the ASCII bytes "OUTP". Never change it (see above). */
const GEAR_SEED = 0x4f555450;
const GOLDEN_GAMMA = 0x9e3779b9;

/**
 * The 256-entry gear table, from a counter-based generator: entry i is MurmurHash3's 32-bit
 * finaliser (fmix32) of GEAR_SEED + (i + 1) * 0x9e3779b9 (mod 2^32), the golden-ratio Weyl
 * sequence SplitMix uses. Deterministic and tiny, so every site computes the same table.
 */
export function gearTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let x = (GEAR_SEED + Math.imul(i + 1, GOLDEN_GAMMA)) | 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    x ^= x >>> 16;
    table[i] = x;
  }
  return table;
}

/** The top `bits` bits of a 32-bit word, as a signed 32-bit integer. */
function topBits(bits: number): number {
  return (-1 << (32 - bits)) | 0;
}

/**
 * Finds the chunk boundaries of a byte stream fed to it in pieces of any size. The boundaries do
 * not depend on how the stream is split into pieces. One instance per stream; not thread-safe
 * (it is meant to live on a hashing worker thread, next to md5 and sha512).
 */
export class ContentDefinedChunker {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  /** Stricter mask, used while a chunk is shorter than avg; looser mask from avg on. */
  readonly maskBelowAvg: number;
  readonly maskFromAvg: number;
  readonly #gear: Int32Array;
  /** Gear hash of the current chunk's hashed bytes (0 before its byte min - 1). */
  #hash = 0;
  /** Stream offset where the current chunk starts. */
  #chunkStart = 0;
  /** Bytes pushed so far. */
  #length = 0;

  /** Throws a RangeError when the sizes are unusable (see chunkSizesProblem). */
  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    const problem = chunkSizesProblem(sizes);
    if (problem !== undefined) throw new RangeError(`Chunk sizes: ${problem}`);
    ({ min: this.min, avg: this.avg, max: this.max } = sizes);
    const bits = Math.log2(sizes.avg);
    this.maskBelowAvg = topBits(bits + 2);
    this.maskFromAvg = topBits(bits - 2);
    this.#gear = new Int32Array(gearTable().buffer);
  }

  /**
   * Feeds the next bytes of the stream; returns the stream offsets (ascending) of the chunk ends
   * found so far that were not returned before. A chunk end is the offset just after its last
   * byte, so the first chunk is [0, cuts[0]). The piece is only read during the call.
   */
  push(piece: Uint8Array): number[] {
    const cuts: number[] = [];
    const gear = this.#gear;
    const maskS = this.maskBelowAvg;
    const maskL = this.maskFromAvg;
    const n = piece.length;
    const base = this.#length;
    // Offsets below are relative to piece[0]; the current chunk may have started before it.
    let start = this.#chunkStart - base;
    let h = this.#hash;
    let i = 0;
    for (;;) {
      const firstHashed = start + this.min - 1;
      if (i < firstHashed) i = firstHashed;
      // One region at a time: before avg (strict mask), then from avg to max (loose mask).
      const avgAt = start + this.avg - 1;
      const lastAt = start + this.max - 1;
      const mask = i < avgAt ? maskS : maskL;
      const end = Math.min(n, i < avgAt ? avgAt : lastAt);
      let found = false;
      // Unrolled by four: one loop test per four bytes (FastCDC 2020 rolls two bytes a step to the
      // same end). About 1.7 GB/s on one core here, against 1.2 GB/s for the plain loop.
      for (const end4 = end - 3; i < end4; i += 4) {
        h = ((h << 1) + gear[piece[i]]) | 0;
        if ((h & mask) === 0) { found = true; break; }
        h = ((h << 1) + gear[piece[i + 1]]) | 0;
        if ((h & mask) === 0) { i += 1; found = true; break; }
        h = ((h << 1) + gear[piece[i + 2]]) | 0;
        if ((h & mask) === 0) { i += 2; found = true; break; }
        h = ((h << 1) + gear[piece[i + 3]]) | 0;
        if ((h & mask) === 0) { i += 3; found = true; break; }
      }
      if (!found) {
        for (; i < end; i++) {
          h = ((h << 1) + gear[piece[i]]) | 0;
          if ((h & mask) === 0) { found = true; break; }
        }
      }
      // Without a hash cut: the bytes pushed so far are used up, or the region from avg on comes
      // next, or byte i is the chunk's byte max - 1, where the longest chunk ends.
      if (!found) {
        if (i >= n) break;
        if (i < lastAt) continue;
      }
      i++;
      cuts.push(base + i);
      start = i;
      h = 0;
    }
    this.#hash = h;
    this.#chunkStart = base + start;
    this.#length = base + n;
    return cuts;
  }

  /**
   * Ends the stream: returns its length, the end of its last chunk, when bytes were pushed after
   * the last chunk end push returned; undefined otherwise (an empty stream has no chunks).
   */
  finish(): number | undefined {
    if (this.#length === this.#chunkStart) return undefined;
    this.#chunkStart = this.#length;
    this.#hash = 0;
    return this.#length;
  }
}
