import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_CHUNK_SIZES, type ChunkSizes } from '../../src/core/chunk-manifest.ts';
import { ContentDefinedChunker, gearTable } from '../../src/storage/hashing/fastcdc.ts';

/**
 * The content-defined chunker: the same bytes give the same chunks however they arrive, chunk
 * sizes keep to their bounds, and an edit changes only the chunks around it. The golden test pins
 * the cut-point function itself: if it fails, manifests no longer match across versions.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** `length` bytes that look random and are the same forever: AES-128-CTR of zeros, key from `seed`. */
function pseudoRandomBytes(seed: number, length: number): Uint8Array {
  const key = createHash('sha256').update(`outpost fastcdc test ${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return new Uint8Array(Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]));
}

/** Chunk ends of `bytes` fed in pieces that end at `splits` (any order, repeats give empty pieces). */
function chunkEnds(bytes: Uint8Array, sizes?: ChunkSizes, splits: number[] = []): number[] {
  const chunker = new ContentDefinedChunker(sizes);
  const ends: number[] = [];
  let from = 0;
  for (const to of [...splits].sort((a, b) => a - b)) {
    ends.push(...chunker.push(bytes.subarray(from, to)));
    from = to;
  }
  ends.push(...chunker.push(bytes.subarray(from)));
  const last = chunker.finish();
  if (last !== undefined) ends.push(last);
  return ends;
}

type Chunk = { offset: number; length: number; sha256: string };
function chunksOf(bytes: Uint8Array): Chunk[] {
  let offset = 0;
  return chunkEnds(bytes).map((end) => {
    const chunk = { offset, length: end - offset, sha256: createHash('sha256').update(bytes.subarray(offset, end)).digest('hex') };
    offset = end;
    return chunk;
  });
}

const key = (c: Chunk): string => `${c.length}:${c.sha256}`;

/** Random bytes, and kinds that stress the bounds: zeros with islands, a 4-letter alphabet, short periods. */
const data = fc.record({
  seed: fc.nat(),
  length: fc.nat({ max: 64 * KiB }),
  kind: fc.constantFrom('random', 'zeros with islands', 'four letters', 'periodic'),
}).map(({ seed, length, kind }) => {
  const random = pseudoRandomBytes(seed, length);
  switch (kind) {
    case 'random': return random;
    case 'zeros with islands': return random.map((b, i) => ((i >> 12) % 5 === 0 ? b : 0));
    case 'four letters': return random.map((b) => 0x61 + (b & 3));
    default: {
      const period = 1 + (random[0] ?? 0) % 64;
      return random.map((_, i) => random[i % period]);
    }
  }
});

/** Valid small sizes, so that 64 KiB of data has many chunks: avg 64 B to 4 KiB. */
const smallSizes: fc.Arbitrary<ChunkSizes> = fc.integer({ min: 6, max: 12 }).chain((bits) => {
  const avg = 2 ** bits;
  return fc.record({ min: fc.integer({ min: 1, max: avg - 1 }), avg: fc.constant(avg), max: fc.integer({ min: avg + 1, max: avg * 8 }) });
});

describe('ContentDefinedChunker', () => {
  it('pins its gear table, masks and cut points (golden: manifests must match across versions)', () => {
    const gear = gearTable();
    assert.deepEqual([gear[0], gear[1], gear[2], gear[127], gear[255]], [0xfe72baf7, 0xab32a9d8, 0x3a8e0183, 0x4c3cd87d, 0x6327aae0]);
    const tableHex = Array.from(gear, (v) => v.toString(16).padStart(8, '0')).join('');
    assert.equal(createHash('sha256').update(tableHex).digest('hex'), '73de2f057ec697b79ffddb21280c84e404d8628263f34c4e5a340ebbf12526d2');
    const chunker = new ContentDefinedChunker();
    assert.equal(chunker.maskBelowAvg >>> 0, 0xfffff000);
    assert.equal(chunker.maskFromAvg >>> 0, 0xffff0000);

    assert.deepEqual(chunkEnds(pseudoRandomBytes(1, 8 * MiB)), [
      273570, 603728, 897000, 1276431, 1579424, 1678772, 1949455, 2259058, 2649945, 2928299, 3305272, 3455777, 3785719,
      4096059, 4411393, 4626782, 4990025, 5323498, 5623889, 5945643, 6083175, 6391173, 6852105, 7147255, 7461900, 7730765,
      8040582, 8253794, 8388608,
    ]);
    const small = chunkEnds(pseudoRandomBytes(2, 256 * KiB), { min: 256, avg: 1024, max: 4096 });
    assert.equal(small.length, 234);
    assert.equal(createHash('sha256').update(small.join(',')).digest('hex'), 'a3fe42a2a5a6e9aa4b3ad7386c052f80940a6c4cede4994f5d64756b92974f3f');
    // A run of zeros never meets a mask: it is cut into chunks of max bytes.
    assert.deepEqual(chunkEnds(new Uint8Array(3.5 * MiB)), [1 * MiB, 2 * MiB, 3 * MiB, 3.5 * MiB]);
  });

  it('finds the same chunk ends however the stream is split into pieces', () => {
    fc.assert(fc.property(data, smallSizes, fc.array(fc.nat(), { maxLength: 20 }), (bytes, sizes, picks) => {
      const splits = picks.map((p) => p % (bytes.length + 1));
      assert.deepEqual(chunkEnds(bytes, sizes, splits), chunkEnds(bytes, sizes));
    }), { numRuns: 300 });
    const bytes = pseudoRandomBytes(3, 6 * MiB);
    fc.assert(fc.property(fc.array(fc.nat({ max: bytes.length }), { maxLength: 40 }), (splits) => {
      assert.deepEqual(chunkEnds(bytes, undefined, splits), chunkEnds(bytes));
    }), { numRuns: 20 });
  });

  it('keeps every chunk but the last within min..max bytes, the last within 1..max, covering the stream', () => {
    fc.assert(fc.property(data, smallSizes, (bytes, sizes) => {
      const ends = chunkEnds(bytes, sizes);
      assert.equal(ends.at(-1) ?? 0, bytes.length);
      ends.forEach((end, i) => {
        const length = end - (ends[i - 1] ?? 0);
        assert.ok(length <= sizes.max && length >= (i === ends.length - 1 ? 1 : sizes.min), `chunk ${i} of ${length} bytes`);
      });
    }), { numRuns: 300 });
    const ends = chunkEnds(pseudoRandomBytes(4, 16 * MiB));
    ends.slice(0, -1).forEach((end, i) => {
      const length = end - (ends[i - 1] ?? 0);
      assert.ok(length >= DEFAULT_CHUNK_SIZES.min && length <= DEFAULT_CHUNK_SIZES.max, `chunk ${i} of ${length} bytes`);
    });
  });

  it('is deterministic: the same bytes give the same chunks; an empty stream has none', () => {
    const bytes = pseudoRandomBytes(5, 4 * MiB);
    assert.deepEqual(chunkEnds(bytes), chunkEnds(Uint8Array.from(bytes)));
    assert.deepEqual(chunkEnds(new Uint8Array(0)), []);
    const chunker = new ContentDefinedChunker();
    assert.deepEqual(chunker.push(bytes.subarray(0, 1000)), []);
    assert.equal(chunker.finish(), 1000);
    assert.equal(chunker.finish(), undefined);
  });

  it('averages 256 KiB ± 25% on 64 MiB of random data', () => {
    const ends = chunkEnds(pseudoRandomBytes(6, 64 * MiB));
    const mean = (64 * MiB) / ends.length;
    assert.ok(mean >= 0.75 * 256 * KiB && mean <= 1.25 * 256 * KiB, `mean ${Math.round(mean)} bytes over ${ends.length} chunks`);
  });

  it('keeps at least 90% of the chunks when a few short runs are inserted into 16 MiB', () => {
    const original = pseudoRandomBytes(7, 16 * MiB);
    const before = chunksOf(original);
    const insertion = fc.record({ at: fc.nat({ max: original.length }), seed: fc.nat(), length: fc.integer({ min: 1, max: 100 }) });
    fc.assert(fc.property(fc.array(insertion, { minLength: 1, maxLength: 4 }), (insertions) => {
      const parts: Uint8Array[] = [];
      let from = 0;
      for (const { at, seed, length } of [...insertions].sort((a, b) => a.at - b.at)) {
        parts.push(original.subarray(from, at), pseudoRandomBytes(seed, length));
        from = at;
      }
      parts.push(original.subarray(from));
      const after = new Set(chunksOf(Buffer.concat(parts)).map(key));
      const kept = before.filter((c) => after.has(key(c))).length;
      assert.ok(kept >= 0.9 * before.length, `${kept} of ${before.length} chunks kept`);
    }), { numRuns: 15 });
  });

  it('keeps at least 85% of the bytes in shared chunks when 5% of the 1 MiB blocks of 80 MiB are rewritten', () => {
    const original = pseudoRandomBytes(8, 80 * MiB);
    const before = new Set(chunksOf(original).map(key));
    const blocks = original.length / MiB;
    fc.assert(fc.property(fc.uniqueArray(fc.nat({ max: blocks - 1 }), { minLength: blocks / 20, maxLength: blocks / 20 }), fc.nat(), (rewritten, seed) => {
      const edited = Uint8Array.from(original);
      for (const block of rewritten) edited.set(pseudoRandomBytes(seed + block, MiB), block * MiB);
      const shared = chunksOf(edited).filter((c) => before.has(key(c))).reduce((sum, c) => sum + c.length, 0);
      assert.ok(shared >= 0.85 * edited.length, `${shared} of ${edited.length} bytes in shared chunks`);
    }), { numRuns: 5 });
  });

  it('refuses unusable sizes', () => {
    for (const [sizes, message] of [
      [{ min: 256 * KiB, avg: 256 * KiB, max: MiB }, /min < avg < max/],
      [{ min: 64 * KiB, avg: 256 * KiB, max: 256 * KiB }, /min < avg < max/],
      [{ min: 64 * KiB, avg: 200 * KiB, max: MiB }, /avg must be a power of two/],
      [{ min: 0, avg: 256 * KiB, max: MiB }, /min must be a positive integer/],
      [{ min: 1.5, avg: 256 * KiB, max: MiB }, /min must be a positive integer/],
      [{ min: 64 * KiB, avg: 256 * KiB, max: 2048 * MiB }, /max must be at most/],
    ] as const) {
      assert.throws(() => new ContentDefinedChunker(sizes), (e: Error) => e instanceof RangeError && message.test(e.message));
    }
  });
});
