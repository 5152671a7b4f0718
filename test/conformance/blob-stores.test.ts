import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after } from 'node:test';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { S3BlobDriver } from '../../src/storage/drivers/s3-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { blobStoreConformance } from './blob-store-conformance.ts';
import { createTestBucket, s3Skip } from '../helpers/s3.ts';

// The BlobStore conformance suite, run against every driver under the verifying store.

const hashers = new WorkerHasherFactory();
after(() => hashers.close());

/** Every file under `dir` (recursively), relative to `dir`, sorted; `skip` (absolute) is left out. */
async function filesUnder(dir: string, skip?: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name))
    .filter((p) => skip === undefined || relative(skip, p).startsWith('..'))
    .map((p) => relative(dir, p))
    .sort();
}

// The store lives at <sandbox>/a/store, so '../x' and '../../x' land inside the sandbox if they escape.
blobStoreConformance('VerifyingBlobStore over FileBlobDriver', async () => {
  const sandbox = await mkdtemp(join(tmpdir(), 'outpost-blobs-'));
  const root = join(sandbox, 'a', 'store');
  await mkdir(root, { recursive: true });
  await writeFile(join(sandbox, 'a', 'neighbour'), 'do not touch');
  const store = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'conformance', root }), hashers);
  return {
    store,
    residue: () => filesUnder(root),
    surroundings: () => filesUnder(sandbox, root),
    leavePartial: (key) => writeFile(join(root, '.incomplete', `${key}.dead01`), 'half of it'),
    cleanup: () => rm(sandbox, { recursive: true, force: true }),
  };
});

blobStoreConformance('VerifyingBlobStore over MemoryBlobDriver', async () => {
  const driver = new MemoryBlobDriver('conformance');
  return {
    store: new VerifyingBlobStore(driver, hashers),
    residue: async () => driver.names(),
    leavePartial: async (key) => driver.leavePartial(key),
    cleanup: async () => undefined,
  };
});

// A bucket of its own per test, the store under a prefix, so that a key that escaped it would
// show among the surroundings (the objects outside the prefix). No grace period for incomplete
// uploads: the removePartial tests leave some just before they remove them.
blobStoreConformance('VerifyingBlobStore over S3BlobDriver (Swift s3api)', async () => {
  const bucket = await createTestBucket();
  const prefix = 'a/store/';
  await bucket.put('a/neighbour', 'do not touch');
  const driver = await S3BlobDriver.create(bucket.driverOptions('conformance', { prefix: 'a/store', partialGraceMs: 0 }));
  return {
    store: new VerifyingBlobStore(driver, hashers),
    residue: async () => [
      ...(await bucket.objects(prefix)).map((name) => name.slice(prefix.length)),
      ...(await bucket.uploads(prefix)).map((u) => `.incomplete/${u.key.slice(prefix.length)}.${u.uploadId}`),
    ].sort(),
    surroundings: async () => (await bucket.objects()).filter((name) => !name.startsWith(prefix)),
    leavePartial: async (key) => { await bucket.leavePartial(prefix + key); },
    cleanup: async () => {
      await driver.close();
      await bucket.remove();
    },
  };
}, { skip: s3Skip || undefined });
