import assert from 'node:assert/strict';
import { readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ADMIN_CONTEXT } from '../../src/core/context.ts';
import type { Image } from '../../src/core/image.ts';
import { ImageService } from '../../src/core/image-service.ts';
import { StartupRecovery } from '../../src/core/startup-recovery.ts';
import { StoreRegistry } from '../../src/core/stores.ts';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { eventually } from '../helpers/multi-site.ts';
import { tempDir } from '../helpers/site.ts';

const once = (bytes: string) => (async function* () { yield Buffer.from(bytes); })();

/**
 * The states a stop can leave an image in, made directly in a real catalog and real stores (as a
 * process killed at that point leaves them), and what StartupRecovery makes of them.
 */
describe('StartupRecovery', () => {
  let dir: string;
  let catalog: SqlCatalog;
  let stores: StoreRegistry;
  let staging: VerifyingBlobStore;
  let images: ImageService;
  const hashers = new WorkerHasherFactory();
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (_: object, msg: string) => { warnings.push(msg); } };
  const recovery = (ownsCatalog: boolean) => new StartupRecovery({ catalog, stores, staging, ownsCatalog, tasks: { recover: async () => 0 }, log, pageSize: 2 });

  before(async () => {
    dir = await tempDir();
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    const store = async (id: string) => ({
      info: { id, type: 'file' as const, description: '', weight: 0, readOnly: false, properties: { data_dir: join(dir, id) } },
      blobs: new VerifyingBlobStore(await FileBlobDriver.create({ id, root: join(dir, id), sync: false }), hashers),
    });
    stores = new StoreRegistry([await store('a'), await store('b')]);
    staging = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'staging', root: join(dir, 'staging'), sync: false }), hashers);
    images = new ImageService({ catalog, stores, limits: { defaultLimit: 25, maxLimit: 1000 }, imageSizeCap: 1 << 30, staging });
  });
  after(async () => {
    await catalog.close();
    await hashers.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A raw/bare image put in `status` with `changes`, as a stop left it. */
  async function left(status: Image['status'], changes: Partial<Image> = {}): Promise<Image> {
    const image = await images.create(ADMIN_CONTEXT, { disk_format: 'raw', container_format: 'bare' });
    return catalog.updateImage(image.id, (c) => ({ ...c, status, ...changes }));
  }

  it('returns saving, importing and half-staged images to queued with their bytes; leaves the others alone', async () => {
    const saving = await left('saving');
    await stores.blobs('b').put(saving.id, once('committed, location never recorded'));
    const importing = await left('importing', {
      size: 4, locations: [{ store: 'a', url: 'file:///a' }],
      properties: { os_glance_import_task: 'gone-task', os_glance_importing_to_stores: 'a,b', os_glance_failed_import: '' },
    });
    await stores.blobs('a').put(importing.id, once('half'));
    await staging.put(importing.id, once('staged'));
    const halfStaged = await left('uploading');
    await staging.put(halfStaged.id, once('staged, size never recorded'));
    const staged = await left('uploading', { size: 6 });
    await staging.put(staged.id, once('staged'));
    const active = await images.create(ADMIN_CONTEXT, { disk_format: 'raw', container_format: 'bare' });
    await images.upload(ADMIN_CONTEXT, active.id, once('active'));
    const queued = await images.create(ADMIN_CONTEXT, { disk_format: 'raw', container_format: 'bare' });

    // An edge only cleans its own bytes: the replica is central's.
    const edge = recovery(false);
    await edge.recover();
    await edge.close();
    assert.equal((await catalog.getImage(saving.id))?.status, 'saving');

    const reverted = await recovery(true).revertInterrupted();
    assert.deepEqual(reverted.sort(), [saving.id, importing.id, halfStaged.id].sort());
    for (const id of reverted) {
      const image = (await catalog.getImage(id))!;
      assert.equal(image.status, 'queued');
      assert.equal(image.size, null);
      assert.deepEqual(image.locations, []);
      assert.equal(await stores.blobs('a').stat(id), undefined);
      assert.equal(await stores.blobs('b').stat(id), undefined);
      assert.equal(await staging.stat(id), undefined);
    }
    const imp = (await catalog.getImage(importing.id))!;
    assert.equal(imp.properties.os_glance_import_task, undefined, 'the lock is released');
    assert.equal(imp.properties.os_glance_importing_to_stores, '');
    assert.equal(imp.properties.os_glance_failed_import, 'a,b');
    assert.equal((await catalog.getImage(staged.id))?.status, 'uploading', 'a complete stage can still be imported');
    assert.equal((await staging.stat(staged.id))?.size, 6);
    assert.equal((await catalog.getImage(active.id))?.status, 'active');
    assert.equal((await stores.blobs('a').stat(active.id))?.size, 6);
    assert.equal((await catalog.getImage(queued.id))?.status, 'queued');
    // A client can upload again.
    assert.equal((await images.upload(ADMIN_CONTEXT, saving.id, once('again'))).status, 'active');
  });

  it('at an edge, returns to queued the uploads kill -9 cut short among the images it wrote while cut off, and no other', async () => {
    const offline = await left('saving');
    await stores.blobs('a').put(offline.id, once('committed, location never recorded'));
    await catalog.markOffline(offline.id, null);
    const centrals = await left('saving');
    const edge = new StartupRecovery({ catalog, stores, staging, ownsCatalog: false, offline: catalog, tasks: { recover: async () => 0 }, log });
    await edge.recover();
    await edge.close();
    assert.equal((await catalog.getImage(offline.id))?.status, 'queued');
    assert.equal(await stores.blobs('a').stat(offline.id), undefined);
    assert.ok(warnings.some((w) => w.includes(offline.id)));
    assert.equal((await catalog.getImage(centrals.id))?.status, 'saving', 'central recovers its own');
    await catalog.unmarkOffline(offline.id);
  });

  it('removes partial writes in every store and the staging area, and nothing committed', async () => {
    const kept = await images.create(ADMIN_CONTEXT, { disk_format: 'raw', container_format: 'bare' });
    await images.upload(ADMIN_CONTEXT, kept.id, once('kept'));
    for (const d of ['a', 'b', 'staging']) await writeFile(join(dir, d, '.incomplete', `${kept.id}.dead01`), 'partial');
    assert.equal(await recovery(false).removePartials(), 3);
    assert.equal((await stores.blobs('a').stat(kept.id))?.size, 4);
  });

  it('where nodes share the stores, leaves another node\'s fresh partial write alone and removes it once idle past the grace period, also while running', async () => {
    const root = join(dir, 'shared-store');
    const sharedStores = new StoreRegistry([{
      info: { id: 'shared', type: 'file' as const, description: '', weight: 0, readOnly: false, properties: { data_dir: root } },
      blobs: new VerifyingBlobStore(await FileBlobDriver.create({ id: 'shared', root, sync: false, partialGraceMs: 60_000 }), hashers),
    }]);
    const running = join(root, '.incomplete', 'img-running.0a0a0a');
    const dead = join(root, '.incomplete', 'img-dead.0b0b0b');
    await writeFile(running, 'another node is writing');
    await writeFile(dead, 'a node that stopped wrote this');
    const idle = new Date(Date.now() - 120_000);
    await utimes(dead, idle, idle);
    const shared = new StartupRecovery({
      catalog, stores: sharedStores, staging, ownsCatalog: false, tasks: { recover: async () => 0 }, log, shared: { reapEveryMs: 50 },
    });
    try {
      await shared.recover();
      assert.deepEqual(await readdir(join(root, '.incomplete')), ['img-running.0a0a0a'], 'at start: the dead write goes, the running one stays');
      await utimes(running, idle, idle); // that node stopped too
      await eventually('the periodic reap removes it', 10_000, async () => (await readdir(join(root, '.incomplete'))).length === 0);
    } finally {
      await shared.close();
    }
  });

  it('finds the recorded copies that are not in their store, or not of the image\'s size', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const image = await images.create(ADMIN_CONTEXT, { disk_format: 'raw', container_format: 'bare' });
      await images.upload(ADMIN_CONTEXT, image.id, once(`image ${i}`));
      ids.push(image.id);
    }
    await stores.blobs('a').delete(ids[1]);
    await writeFile(join(dir, 'a', ids[3]), 'truncated');
    warnings.length = 0;
    const report = await recovery(false).checkCopies();
    assert.deepEqual(report.missing.get('a')?.sort(), [ids[1], ids[3]].sort());
    assert.equal(report.missing.size, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /^2 image\(s\) recorded in store a have no data there/);
    assert.match(warnings[0], /point store a back at its old path/);
  });
});
