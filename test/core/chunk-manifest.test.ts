import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHUNKING_ALGORITHM, DEFAULT_CHUNK_SIZES, validateManifest, type ChunkManifest } from '../../src/core/chunk-manifest.ts';
import { BadRequestError } from '../../src/core/errors.ts';

const KiB = 1024;
const HASH_A = 'a'.repeat(64);
const HASH_B = '0123456789abcdef'.repeat(4);
const chunking = { algorithm: CHUNKING_ALGORITHM, ...DEFAULT_CHUNK_SIZES };

/** A valid manifest of three chunks (100 KiB, 300 KiB, then a 10 KiB last chunk), changed by `edit`. */
function manifest(edit: (m: any) => void = () => {}): any {
  const m = {
    size: 410 * KiB,
    chunking: { ...chunking },
    chunks: [
      { offset: 0, length: 100 * KiB, sha256: HASH_A },
      { offset: 100 * KiB, length: 300 * KiB, sha256: HASH_B, zero: true },
      { offset: 400 * KiB, length: 10 * KiB, sha256: HASH_A },
    ],
  };
  edit(m);
  return m;
}

function rejects(value: unknown, message: string, expectedSize?: number): void {
  assert.throws(() => validateManifest(value, expectedSize), (e: unknown) => {
    assert.ok(e instanceof BadRequestError, `a BadRequestError, not ${String(e)}`);
    assert.equal(e.message, `Invalid chunk manifest: ${message}`);
    return true;
  });
}

describe('validateManifest', () => {
  it('accepts a valid manifest and returns only its known fields', () => {
    const valid: ChunkManifest = manifest();
    assert.deepEqual(validateManifest(valid, 410 * KiB), valid);
    const extra = manifest((m) => { m.note = 'x'; m.chunking.extra = 1; m.chunks[0].extra = 2; });
    assert.deepEqual(validateManifest(extra), valid);
  });

  it('accepts a 0-byte image with no chunks, and an image shorter than min as one chunk', () => {
    assert.deepEqual(validateManifest({ size: 0, chunking, chunks: [] }, 0), { size: 0, chunking, chunks: [] });
    const tiny = { size: 5, chunking, chunks: [{ offset: 0, length: 5, sha256: HASH_A }] };
    assert.deepEqual(validateManifest(tiny, 5), tiny);
  });

  it('rejects what is not a manifest, or fields of the wrong type', () => {
    rejects(null, 'expected an object, not null');
    rejects([], 'expected an object, not []');
    rejects(manifest((m) => { m.size = '410'; }), "size must be a non-negative integer, not '410'");
    rejects(manifest((m) => { m.chunking = 'fastcdc'; }), "chunking must be an object, not 'fastcdc'");
    rejects(manifest((m) => { m.chunks = {}; }), 'chunks must be an array, not {}');
    rejects(manifest((m) => { m.chunks[1] = null; }), 'chunk 1 must be an object, not null');
  });

  it('rejects numbers that are not non-negative integers', () => {
    rejects(manifest((m) => { m.size = 1.5; }), 'size must be a non-negative integer, not 1.5');
    rejects(manifest((m) => { m.size = -1; }), 'size must be a non-negative integer, not -1');
    rejects(manifest((m) => { m.size = 2 ** 53; }), 'size must be a non-negative integer, not 9007199254740992');
    rejects(manifest((m) => { m.chunks[1].offset = 102400.5; }), 'chunk 1 offset must be a non-negative integer, not 102400.5');
    rejects(manifest((m) => { m.chunks[2].length = '10'; }), "chunk 2 length must be a non-negative integer, not '10'");
    rejects(manifest((m) => { m.chunking.min = 65536.5; }), 'chunking min must be a positive integer, not 65536.5');
  });

  it('rejects an unknown algorithm and unusable sizes', () => {
    rejects(manifest((m) => { m.chunking.algorithm = 'fastcdc-2016'; }), "unknown chunking algorithm 'fastcdc-2016' (known: 'fastcdc-gear32-v1')");
    rejects(manifest((m) => { delete m.chunking.algorithm; }), "unknown chunking algorithm undefined (known: 'fastcdc-gear32-v1')");
    rejects(manifest((m) => { m.chunking.avg = 200 * KiB; }), 'chunking avg must be a power of two of at least 64, not 204800');
    rejects(manifest((m) => { m.chunking.max = 128 * KiB; }), 'chunking sizes must satisfy min < avg < max, not 65536, 262144, 131072');
  });

  it('rejects a zero-length chunk, a bad sha256 and a zero mark other than true', () => {
    rejects(manifest((m) => { m.chunks[2].length = 0; }), 'chunk 2 has length 0');
    rejects(manifest((m) => { m.chunks[0].sha256 = HASH_A.toUpperCase(); }), `chunk 0 sha256 must be 64 lowercase hex digits, not '${HASH_A.toUpperCase()}'`);
    rejects(manifest((m) => { m.chunks[0].sha256 = HASH_A.slice(1); }), `chunk 0 sha256 must be 64 lowercase hex digits, not '${HASH_A.slice(1)}'`);
    rejects(manifest((m) => { delete m.chunks[0].sha256; }), 'chunk 0 sha256 must be 64 lowercase hex digits, not undefined');
    rejects(manifest((m) => { m.chunks[1].zero = false; }), 'chunk 1 zero must be true when present, not false');
  });

  it('rejects gaps and overlaps, naming where', () => {
    rejects(manifest((m) => { m.chunks[0].offset = 5; }), 'gap before chunk 0: it starts at 5, the chunks before it end at 0');
    rejects(manifest((m) => { m.chunks[2].offset += 1; }), 'gap before chunk 2: it starts at 409601, the chunks before it end at 409600');
    rejects(manifest((m) => { m.chunks[2].offset -= 100; }), 'chunk 2 overlaps the chunk before it: it starts at 409500, the chunks before it end at 409600');
    rejects(manifest((m) => { m.chunks.splice(1, 0, m.chunks[0]); }), 'chunk 1 overlaps the chunk before it: it starts at 0, the chunks before it end at 102400');
  });

  it('rejects chunks outside min..max; only the last may be shorter than min', () => {
    rejects(manifest((m) => { m.chunks[0].length = 10 * KiB; m.chunks[1].offset = 10 * KiB; m.chunks[1].length = 390 * KiB; }),
      'chunk 0 is 10240 bytes, shorter than min 65536, and is not the last chunk');
    rejects({ size: 2 * 1024 * KiB, chunking, chunks: [{ offset: 0, length: 2 * 1024 * KiB, sha256: HASH_A }] },
      'chunk 0 is 2097152 bytes, longer than max 1048576');
  });

  it('rejects chunks that do not add up to the size, and a size that is not the image\'s', () => {
    rejects(manifest((m) => { m.size += 1; }), 'the chunks add up to 419840 bytes, not size 419841');
    rejects(manifest((m) => { m.chunks.pop(); }), 'the chunks add up to 409600 bytes, not size 419840');
    rejects({ size: 10, chunking, chunks: [] }, 'the chunks add up to 0 bytes, not size 10');
    rejects(manifest(), "size 419840 is not the image's size 419841", 410 * KiB + 1);
  });
});
