import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ADMIN_CONTEXT } from '../../src/core/context.ts';
import { ConflictError } from '../../src/core/errors.ts';
import { ImageService } from '../../src/core/image-service.ts';
import { ImportService, type ImportRunner } from '../../src/core/import-service.ts';
import { StoreRegistry } from '../../src/core/stores.ts';
import type { ImportTask } from '../../src/core/task.ts';
import { TaskRuns } from '../../src/core/task-runs.ts';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { tempDir } from '../helpers/site.ts';

let dir: string;
let catalog: SqlCatalog;
const hashers = new WorkerHasherFactory();
let clock = Date.parse('2026-11-21T00:00:00Z');
const now = () => new Date(clock);
let images: ImageService;
let imports: ImportService;

before(async () => {
  dir = await tempDir();
  catalog = await openCatalog(join(dir, 'catalog.sqlite'));
  const store = async (id: string) => ({
    info: { id, type: 'file' as const, description: '', weight: 0, readOnly: false, properties: {} },
    blobs: new VerifyingBlobStore(await FileBlobDriver.create({ id, root: join(dir, id), sync: false }), hashers),
  });
  const stores = new StoreRegistry([await store('a'), await store('b'), await store('c')]);
  const staging = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'staging', root: join(dir, 'staging'), sync: false }), hashers);
  images = new ImageService({ catalog, stores, limits: { defaultLimit: 25, maxLimit: 1000 }, imageSizeCap: 1 << 30, now });
  // The tasks run, and never make progress: what a hung import looks like from outside.
  const stuckRunner: ImportRunner = new TaskRuns<ImportTask>({ type: 'api_image_import', run: async () => undefined, catalog, log: { warn() {} }, now });
  imports = new ImportService({
    catalog, stores, images, staging, runner: stuckRunner, methods: ['copy-image'], checkUri: () => undefined,
    imageSizeCap: 1 << 30, now,
  });
});
after(async () => {
  await catalog.close();
  await hashers.close();
  await rm(dir, { recursive: true, force: true });
});

it('a lock whose task made no progress for an hour is taken over, and the old task ends superseded', async () => {
  const image = await images.create(ADMIN_CONTEXT, { name: 'locked', disk_format: 'raw', container_format: 'bare' });
  await images.upload(ADMIN_CONTEXT, image.id, (async function* () { yield Buffer.from('bytes'); })());

  const first = await imports.start(ADMIN_CONTEXT, image.id, { method: { name: 'copy-image' }, stores: ['b'] }, { requestId: 'req-1' });
  assert.ok(first !== undefined);
  let current = await images.get(ADMIN_CONTEXT, image.id);
  assert.equal(current.properties.os_glance_import_task, first.id);
  assert.equal(current.properties.os_glance_importing_to_stores, 'b');

  clock += 30 * 60_000;
  await assert.rejects(
    imports.start(ADMIN_CONTEXT, image.id, { method: { name: 'copy-image' }, stores: ['c'] }, { requestId: 'req-2' }),
    (e) => e instanceof ConflictError && /active task/.test(e.message),
  );

  clock += 31 * 60_000;
  const second = await imports.start(ADMIN_CONTEXT, image.id, { method: { name: 'copy-image' }, stores: ['c'] }, { requestId: 'req-3' });
  assert.ok(second !== undefined);
  current = await images.get(ADMIN_CONTEXT, image.id);
  assert.equal(current.properties.os_glance_import_task, second.id);
  assert.equal(current.properties.os_glance_importing_to_stores, 'c', 'the stale task\'s store is no longer listed as importing');
  const old = await catalog.getTask(first.id);
  assert.equal(old?.status, 'failure');
  assert.match(old?.message ?? '', /Superseded.*no progress for 60 minutes/);
  assert.ok(old?.expires_at !== null);
});
