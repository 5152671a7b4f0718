import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHUNKING_ALGORITHM, type ChunkManifest } from '../../src/core/chunk-manifest.ts';
import type { ChunkIndex, ManifestIndex } from '../../src/core/ports.ts';

export interface ManifestIndexHandle {
  index: ManifestIndex;
  cleanup(): Promise<void>;
}

const SHA_A = 'a'.repeat(128);
const SHA_B = 'b'.repeat(128);

function manifest(size: number): ChunkManifest {
  return {
    size,
    chunking: { algorithm: CHUNKING_ALGORITHM, min: 65536, avg: 262144, max: 1048576 },
    chunks: size === 0 ? [] : [{ offset: 0, length: size, sha256: 'c'.repeat(64) }],
  };
}

/** The ManifestIndex port: manifests by image, answered only for the bytes (sha512) they describe. */
export function manifestIndexConformance(name: string, open: () => Promise<ManifestIndexHandle>): void {
  describe(`ManifestIndex conformance: ${name}`, () => {
    it('keeps a manifest by image and answers it for the same sha512 only', async () => {
      const { index, cleanup } = await open();
      try {
        assert.equal(await index.getManifest('img-1', SHA_A), undefined);
        await index.putManifest('img-1', SHA_A, manifest(1000));
        assert.deepEqual(await index.getManifest('img-1', SHA_A), manifest(1000));
        assert.equal(await index.getManifest('img-1', SHA_B), undefined, 'other bytes: no manifest');
        assert.equal(await index.getManifest('img-2', SHA_A), undefined);
      } finally {
        await cleanup();
      }
    });

    it('replaces an image\'s manifest, and deletes it (deleting an absent one is not an error)', async () => {
      const { index, cleanup } = await open();
      try {
        await index.putManifest('img-1', SHA_A, manifest(10));
        await index.putManifest('img-1', SHA_B, manifest(0));
        assert.equal(await index.getManifest('img-1', SHA_A), undefined);
        assert.deepEqual(await index.getManifest('img-1', SHA_B), manifest(0));
        await index.deleteManifest('img-1');
        await index.deleteManifest('img-1');
        assert.equal(await index.getManifest('img-1', SHA_B), undefined);
      } finally {
        await cleanup();
      }
    });
  });
}

export interface ChunkIndexHandle {
  index: ChunkIndex;
  cleanup(): Promise<void>;
}

/** The ChunkIndex port: the chunks of held copies by sha256 and length, in step with the copies. */
export function chunkIndexConformance(name: string, open: () => Promise<ChunkIndexHandle>): void {
  const h = (c: string) => c.repeat(64);
  const held: ChunkManifest = {
    size: 300,
    chunking: { algorithm: CHUNKING_ALGORITHM, min: 65536, avg: 262144, max: 1048576 },
    chunks: [{ offset: 0, length: 100, sha256: h('1') }, { offset: 100, length: 100, sha256: h('0'), zero: true }, { offset: 200, length: 100, sha256: h('2') }],
  };
  describe(`ChunkIndex conformance: ${name}`, () => {
    it('finds the chunks of held copies by sha256 and length, zero chunks left out; removing a copy forgets its chunks', async () => {
      const { index, cleanup } = await open();
      try {
        await index.addHeldCopy('a', 'img-1', held);
        await index.addHeldCopy('b', 'img-2.cached', { ...held, chunks: [held.chunks[2]!] });
        assert.deepEqual(await index.findChunk(h('1'), 100), [{ store: 'a', key: 'img-1', offset: 0, length: 100 }]);
        assert.deepEqual(await index.findChunk(h('1'), 99), [], 'the length must match too');
        assert.deepEqual(await index.findChunk(h('0'), 100), [], 'zero chunks are never copied');
        const two = await index.findChunk(h('2'), 100);
        assert.deepEqual(two.map((c) => `${c.store}/${c.key}@${c.offset}`).sort(), ['a/img-1@200', 'b/img-2.cached@200']);
        assert.equal((await index.findChunk(h('2'), 100, { limit: 1 })).length, 1);
        await index.removeHeldCopy('a', 'img-1');
        assert.deepEqual(await index.findChunk(h('1'), 100), []);
        assert.deepEqual((await index.findChunk(h('2'), 100)).map((c) => c.key), ['img-2.cached']);
        await index.addHeldCopy('b', 'img-2.cached', { ...held, chunks: [held.chunks[0]!] });
        assert.deepEqual(await index.findChunk(h('2'), 100), [], 'indexing a blob again replaces its chunks');
      } finally {
        await cleanup();
      }
    });
  });
}
