import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHUNKING_ALGORITHM, type ChunkManifest } from '../../src/core/chunk-manifest.ts';
import type { ManifestIndex } from '../../src/core/ports.ts';

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
