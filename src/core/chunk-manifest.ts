import { BadRequestError } from './errors.ts';
import { repr } from './image-validation.ts';

/**
 * The chunk manifest of an image: its bytes cut into content-defined chunks, each with its offset,
 * length and sha256, so a site can tell which chunks of an image it already holds in another copy
 * and fetch only the rest. Served as JSON at GET /outpost/v1/images/{id}/manifest.
 *
 * The same bytes give the same manifest on every site, forever: the algorithm name pins the whole
 * cut-point function (gear table, masks, normalisation), and the sizes pin its parameters. A
 * manifest whose algorithm or sizes differ from the local ones is still a valid description of
 * the image; it only shares no chunk boundaries with local manifests.
 *
 * A 0-byte image has no chunks (`chunks: []`): there is nothing to fetch or to hash.
 */

/**
 * FastCDC with normalised chunking (level 2) over a 32-bit gear hash whose table and masks are
 * Outpost's own (src/storage/hashing/fastcdc.ts); `v1` is that table and those masks. Anything that
 * changes a cut point must come with a new name.
 */
export const CHUNKING_ALGORITHM = 'fastcdc-gear32-v1';

/** Chunk sizes in bytes: every chunk but the last is `min` to `max` long, `avg` on average. */
export type ChunkSizes = { min: number; avg: number; max: number };
export type ChunkingParameters = ChunkSizes & { algorithm: typeof CHUNKING_ALGORITHM };

/** `zero: true` marks a chunk whose bytes are all zero (a hole: written sparse, never fetched). */
export type ManifestChunk = { offset: number; length: number; sha256: string; zero?: true };
export type ChunkManifest = { size: number; chunking: ChunkingParameters; chunks: ManifestChunk[] };

export const DEFAULT_CHUNK_SIZES: Readonly<ChunkSizes> = Object.freeze({ min: 64 * 1024, avg: 256 * 1024, max: 1024 * 1024 });

/** avg is a power of two within these bounds, so both masks fit a 32-bit hash (fastcdc.ts). */
const MIN_AVG = 64;
const MAX_MAX = 1024 * 1024 * 1024;

/**
 * What is wrong with these chunk sizes, or undefined when they are usable: positive integers,
 * min < avg < max <= 1 GiB, avg a power of two of at least 64.
 */
export function chunkSizesProblem({ min, avg, max }: ChunkSizes): string | undefined {
  for (const [name, v] of [['min', min], ['avg', avg], ['max', max]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) return `${name} must be a positive integer, not ${repr(v)}`;
  }
  if (!(min < avg && avg < max)) return `sizes must satisfy min < avg < max, not ${min}, ${avg}, ${max}`;
  if (avg < MIN_AVG || (avg & (avg - 1)) !== 0) return `avg must be a power of two of at least ${MIN_AVG}, not ${avg}`;
  if (max > MAX_MAX) return `max must be at most ${MAX_MAX}, not ${max}`;
  return undefined;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/**
 * The manifest `value` (parsed JSON from another site) as a typed manifest, or a BadRequestError
 * naming the first thing wrong: a field of the wrong type or not a non-negative integer, an
 * unknown algorithm, unusable sizes, a chunk of length 0, a sha256 that is not 64 lowercase hex
 * digits, a gap or an overlap between chunks, a chunk shorter than min (only the last may be) or
 * longer than max, chunks that do not add up to `size`, or a `size` other than `expectedSize`.
 * The result is a fresh object with the known fields only.
 */
export function validateManifest(value: unknown, expectedSize?: number): ChunkManifest {
  const fail = (problem: string): never => {
    throw new BadRequestError(`Invalid chunk manifest: ${problem}`);
  };
  if (!isObject(value)) return fail(`expected an object, not ${repr(value)}`);
  const { size, chunking, chunks } = value;
  if (!isCount(size)) return fail(`size must be a non-negative integer, not ${repr(size)}`);
  if (expectedSize !== undefined && size !== expectedSize) return fail(`size ${size} is not the image's size ${expectedSize}`);
  if (!isObject(chunking)) return fail(`chunking must be an object, not ${repr(chunking)}`);
  if (chunking.algorithm !== CHUNKING_ALGORITHM) {
    return fail(`unknown chunking algorithm ${repr(chunking.algorithm)} (known: '${CHUNKING_ALGORITHM}')`);
  }
  const sizes = { min: chunking.min, avg: chunking.avg, max: chunking.max } as ChunkSizes;
  const problem = chunkSizesProblem(sizes);
  if (problem !== undefined) return fail(`chunking ${problem}`);
  if (!Array.isArray(chunks)) return fail(`chunks must be an array, not ${repr(chunks)}`);

  const out: ManifestChunk[] = [];
  let end = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk: unknown = chunks[i];
    if (!isObject(chunk)) return fail(`chunk ${i} must be an object, not ${repr(chunk)}`);
    const { offset, length, sha256, zero } = chunk;
    if (!isCount(offset)) return fail(`chunk ${i} offset must be a non-negative integer, not ${repr(offset)}`);
    if (!isCount(length)) return fail(`chunk ${i} length must be a non-negative integer, not ${repr(length)}`);
    if (length === 0) return fail(`chunk ${i} has length 0`);
    if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) {
      return fail(`chunk ${i} sha256 must be 64 lowercase hex digits, not ${repr(sha256)}`);
    }
    if (zero !== undefined && zero !== true) return fail(`chunk ${i} zero must be true when present, not ${repr(zero)}`);
    if (offset > end) return fail(`gap before chunk ${i}: it starts at ${offset}, the chunks before it end at ${end}`);
    if (offset < end) return fail(`chunk ${i} overlaps the chunk before it: it starts at ${offset}, the chunks before it end at ${end}`);
    if (length > sizes.max) return fail(`chunk ${i} is ${length} bytes, longer than max ${sizes.max}`);
    if (length < sizes.min && i < chunks.length - 1) {
      return fail(`chunk ${i} is ${length} bytes, shorter than min ${sizes.min}, and is not the last chunk`);
    }
    end += length;
    out.push(zero ? { offset, length, sha256, zero } : { offset, length, sha256 });
  }
  if (end !== size) return fail(`the chunks add up to ${end} bytes, not size ${size}`);
  return { size, chunking: { algorithm: CHUNKING_ALGORITHM, ...sizes }, chunks: out };
}
