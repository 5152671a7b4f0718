import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChunkManifest } from '../../src/core/chunk-manifest.ts';
import { DataMismatchError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import type { ParentImageBytes, ParentImageSource } from '../../src/core/ports.ts';
import { StoreRegistry } from '../../src/core/stores.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { StoreImageSource } from '../../src/transfer/store-image-source.ts';
import { TransferLog } from '../../src/transfer/transfer-log.ts';
import { bytesOf } from '../helpers/glance-client.ts';

const MiB = 1 << 20;
const ID = '00000000-0000-4000-8000-000000000001';

/** Where bytes the stores do not hold come from: answers with a marker, and counts the asks. */
class Elsewhere implements ParentImageSource {
  asks = 0;
  async manifest(): Promise<unknown> {
    return { asked: 'elsewhere' };
  }
  async open(): Promise<ParentImageBytes> {
    this.asks++;
    return { stream: streamOf(Buffer.from('from elsewhere')) };
  }
}

/** The bytes as a stream (what put and a source take). */
async function* streamOf(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

/**
 * StoreImageSource (central's fills): an image located in one of the site's own stores is read
 * from there, checked chunk by chunk against its recorded manifest; anything else is asked of
 * the source behind it.
 */
describe('StoreImageSource', () => {
  const hashers = new WorkerHasherFactory();
  const data = bytesOf(3 * MiB + 11, 91);
  let stores: StoreRegistry;
  let manifest: ChunkManifest;
  let image: Image;
  let elsewhere: Elsewhere;
  let transfers: TransferLog;
  let source: StoreImageSource;
  const manifests = new Map<string, ChunkManifest>();

  before(async () => {
    const store = (id: string, weight: number) => ({
      info: { id, type: 'file' as const, description: '', weight, readOnly: false, properties: {} },
      blobs: new VerifyingBlobStore(new MemoryBlobDriver(id), hashers),
    });
    stores = new StoreRegistry([store('fast', 10), store('slow', 0)]);
    const digest = await stores.blobs('fast').put(ID, streamOf(data), { manifest: true });
    await stores.blobs('slow').put(ID, streamOf(data));
    manifest = digest.manifest!;
    assert.ok(manifest.chunks.length > 3);
    image = {
      id: ID, name: 'x', status: 'active', visibility: 'public', protected: false, os_hidden: false,
      checksum: digest.md5, os_hash_algo: 'sha512', os_hash_value: digest.sha512, size: data.length, virtual_size: data.length,
      disk_format: 'raw', container_format: 'bare', min_disk: 0, min_ram: 0, owner: null, created_at: '', updated_at: '', tags: [], properties: {},
      locations: [{ store: 'slow', url: 'file:///slow' }, { store: 'fast', url: 'file:///fast' }, { store: 'edge-1', url: 'file:///edge' }],
    } as Image;
    manifests.set(`${ID}@${digest.sha512}`, manifest);
  });
  after(async () => {
    await hashers.close();
  });

  const build = (current: () => Image | undefined) => {
    elsewhere = new Elsewhere();
    transfers = new TransferLog();
    source = new StoreImageSource({
      catalog: { getImage: async () => current() },
      stores,
      manifests: { getManifest: async (id, sha512) => manifests.get(`${id}@${sha512}`) },
      elsewhere,
      transfers,
    });
  };

  it('reads a whole image from the store of highest weight, checked against its manifest (handed on), and records the transfer', async () => {
    build(() => image);
    const opened = await source.open(ID);
    assert.deepEqual(opened.manifest, manifest);
    assert.ok((await collect(opened.stream)).equals(data));
    assert.equal(elsewhere.asks, 0);
    const [record] = transfers.list();
    assert.deepEqual([record!.source, record!.method, record!.state, record!.reused, record!.fetched], ['store fast', 'manifest', 'done', data.length, 0]);
  });

  it('reads a range from the store as it is', async () => {
    build(() => image);
    const opened = await source.open(ID, { start: 100, end: 199 });
    assert.ok((await collect(opened.stream)).equals(data.subarray(100, 200)));
    assert.equal(opened.manifest, undefined);
  });

  it('fails on a stored copy whose chunk does not match the manifest', async () => {
    const bad = Buffer.from(data);
    bad[2 * MiB] ^= 0xff;
    const corrupt = new StoreRegistry([{
      info: { id: 'fast', type: 'file', description: '', weight: 0, readOnly: false, properties: {} },
      blobs: new VerifyingBlobStore(new MemoryBlobDriver('fast'), hashers),
    }]);
    await corrupt.blobs('fast').put(ID, streamOf(bad));
    const checked = new StoreImageSource({
      catalog: { getImage: async () => image }, stores: corrupt, manifests: { getManifest: async (id, sha512) => manifests.get(`${id}@${sha512}`) },
      elsewhere: new Elsewhere(), transfers: new TransferLog(),
    });
    await assert.rejects(collect((await checked.open(ID)).stream), (error: Error) => error instanceof DataMismatchError && /did not match its sha256/.test(error.message));
  });

  it('without a recorded manifest, streams the copy unchecked (the fill builds the manifest and verifies md5 and sha512)', async () => {
    build(() => ({ ...image, os_hash_value: 'f'.repeat(128) }));
    const opened = await source.open(ID);
    assert.equal(opened.manifest, undefined);
    assert.ok((await collect(opened.stream)).equals(data));
    assert.equal(transfers.list()[0]!.method, 'stream');
  });

  it('asks elsewhere for an image none of its stores holds whole: held at another site only, of another size, unknown', async () => {
    for (const current of [
      { ...image, locations: [{ store: 'edge-1', url: 'file:///edge' }] },
      { ...image, size: data.length + 1 },
      undefined,
    ]) {
      build(() => current);
      assert.equal((await collect((await source.open(ID)).stream)).toString(), 'from elsewhere');
      assert.equal(elsewhere.asks, 1);
      assert.deepEqual(await source.manifest(ID), { asked: 'elsewhere' });
    }
  });
});
