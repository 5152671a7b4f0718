import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after } from 'node:test';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { blobStoreConformance } from './blob-store-conformance.ts';

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
