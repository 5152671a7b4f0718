// ImageManifests on real adapters: a SQLite catalog as the manifest index, stores on the memory
// driver, the hashing threads.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { validateManifest } from '../../src/core/chunk-manifest.ts';
import { DataMismatchError, NotFoundError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import { ImageManifests } from '../../src/core/image-manifests.ts';
import { StoreRegistry } from '../../src/core/stores.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { bytesOf } from '../helpers/glance-client.ts';

function activeImage(id: string, data: Uint8Array, store: string): Image {
  return {
    id, name: id, status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: createHash('md5').update(data).digest('hex'), os_hash_algo: 'sha512', os_hash_value: createHash('sha512').update(data).digest('hex'),
    size: data.length, virtual_size: data.length, disk_format: 'raw', container_format: 'bare', min_disk: 0, min_ram: 0, owner: null,
    created_at: '2026-12-05T00:00:00Z', updated_at: '2026-12-05T00:00:00Z', tags: [], properties: {}, locations: [{ store, url: `memory://${store}/${id}` }],
  };
}

async function* once(bytes: Uint8Array) {
  yield bytes;
}

describe('ImageManifests', () => {
  const hashers = new WorkerHasherFactory();
  let dir: string;
  let catalog: SqlCatalog;
  let stores: StoreRegistry;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-manifests-'));
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    stores = new StoreRegistry([{ info: { id: 'a', type: 'file', description: '', weight: 0, readOnly: false, properties: {} }, blobs: new VerifyingBlobStore(new MemoryBlobDriver('a'), hashers) }]);
  });
  after(async () => {
    await catalog.close();
    await hashers.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('computes the manifest of an image stored before manifests existed from its copy, once, and records it', async () => {
    const data = bytesOf(3 << 20, 31);
    await stores.blobs('a').put('old-image', once(data));
    const image = activeImage('old-image', data, 'a');
    const manifests = new ImageManifests({ catalog, index: catalog, chunks: catalog, stores, hashers });
    const manifest = validateManifest(await manifests.of(image), data.length);
    assert.equal(manifest.chunks.map((c) => c.length).reduce((a, b) => a + b, 0), data.length);
    assert.deepEqual(await catalog.getManifest('old-image', image.os_hash_value!), manifest, 'recorded');
    const first = manifest.chunks[0]!;
    assert.deepEqual(await catalog.findChunk(first.sha256, first.length), [{ store: 'a', key: 'old-image', offset: 0, length: first.length }], 'the copy\'s chunks are indexed');
    // Recorded: answered without the copy now.
    await stores.blobs('a').delete('old-image');
    assert.deepEqual(await manifests.of(image), manifest);
  });

  it('refuses to describe a copy whose bytes are not the image\'s', async () => {
    const data = bytesOf(100_000, 32);
    await stores.blobs('a').put('swapped', once(bytesOf(100_000, 33)));
    const manifests = new ImageManifests({ catalog, index: catalog, chunks: catalog, stores, hashers });
    await assert.rejects(manifests.of(activeImage('swapped', data, 'a')), DataMismatchError);
    assert.equal(await catalog.getManifest('swapped', activeImage('swapped', data, 'a').os_hash_value!), undefined);
  });

  it('asks where the bytes come from when no copy is held, and refuses a manifest that does not add up', async () => {
    const data = bytesOf(500_000, 34);
    const image = { ...activeImage('remote', data, 'elsewhere') };
    const good = await stores.blobs('a').put('scratch', once(data), { manifest: true });
    const asked: string[] = [];
    let now = 0;
    const honest = new ImageManifests({
      catalog, index: catalog, chunks: catalog, stores, hashers, now: () => now, elsewhere: { manifest: async (id) => { asked.push(id); return good.manifest; } },
    });
    assert.deepEqual(await honest.of(image), good.manifest);
    now += 59_000;
    assert.deepEqual(await honest.of(image), good.manifest);
    assert.deepEqual(asked, ['remote'], 'asked once for a minute');
    assert.equal(await catalog.getManifest('remote', image.os_hash_value!), undefined, 'another site\'s word is not recorded');
    now += 2000;
    await honest.of(image);
    assert.deepEqual(asked, ['remote', 'remote'], 'asked again after a minute');
    // Once the bytes are here and verified, the manifest computed from them is recorded.
    await honest.record('remote', image.os_hash_value!, good.manifest, 'a');
    await honest.of(image);
    assert.deepEqual(asked, ['remote', 'remote']);

    const liar = new ImageManifests({ catalog, index: catalog, chunks: catalog, stores, hashers, elsewhere: { manifest: async () => ({ ...good.manifest, size: 1 }) } });
    await assert.rejects(liar.of({ ...image, id: 'remote-2' }), /size|total|add up/i);
    const none = new ImageManifests({ catalog, index: catalog, chunks: catalog, stores, hashers });
    await assert.rejects(none.of({ ...image, id: 'remote-3' }), NotFoundError);
    await assert.rejects(none.of({ ...image, id: 'queued', status: 'queued' }), NotFoundError);
  });

  it('forgets a manifest had from elsewhere once the bytes checked against it were not the image\'s, and says so where it came from', async () => {
    const data = bytesOf(400_000, 35);
    const image = activeImage('misdescribed', data, 'elsewhere');
    const good = await stores.blobs('a').put('scratch-2', once(data), { manifest: true });
    const asked: string[] = [];
    const told: string[] = [];
    const manifests = new ImageManifests({
      catalog, index: catalog, chunks: catalog, stores, hashers,
      elsewhere: { manifest: async (id) => { asked.push(id); return good.manifest; }, manifestMismatched: (id) => told.push(id) },
    });
    await manifests.of(image);
    await manifests.of(image);
    assert.deepEqual(asked, ['misdescribed'], 'kept for a minute');
    manifests.manifestMismatched('misdescribed');
    assert.deepEqual(told, ['misdescribed']);
    await manifests.of(image);
    assert.deepEqual(asked, ['misdescribed', 'misdescribed'], 'asked again at once');
  });
});
