import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ADMIN_CONTEXT } from '../../src/core/context.ts';
import { ConflictError, ForbiddenError, NotFoundError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import type { Site } from '../../src/core/ports.ts';
import { SiteRemoval } from '../../src/core/site-removal.ts';
import { tempDir } from '../helpers/site.ts';

let dir: string;
let catalog: SqlCatalog;
const warnings: object[] = [];
const revoked: string[] = [];
let removal: SiteRemoval;

const site = (id: string, parent: string | null, stores = [id]): Site => ({
  id, parent, labels: {}, stores, public_url: `http://${id}.test`, version: '', registered_at: '2026-01-01T00:00:00.000Z',
  last_contact: '2026-01-01T00:00:00.000Z', lag_changes: null,
});
const image = (status: Image['status'], stores: string[]): Image => ({
  id: randomUUID(), name: stores.join('+'), status, visibility: 'public', protected: false, os_hidden: false, checksum: 'c'.repeat(32),
  os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 10, virtual_size: 10, disk_format: 'raw', container_format: 'bare',
  min_disk: 0, min_ram: 0, owner: null, created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z', tags: [],
  properties: {}, locations: stores.map((store) => ({ store, url: `file:///${store}/x` })),
});

before(async () => {
  dir = await tempDir();
  catalog = await openCatalog(join(dir, 'catalog.sqlite'));
  for (const s of [site('central', null), site('edge-1', 'central', ['edge-1', 'edge-1-bulk']), site('far-1', 'edge-1')]) await catalog.upsertSite(s);
  removal = new SiteRemoval({
    catalog, inventories: catalog,
    revokeCredentials: async (_ctx, id) => { revoked.push(id); return true; },
    log: { warn: (obj) => { warnings.push(obj); }, info: () => undefined },
  });
});
after(async () => {
  await catalog.close();
  await rm(dir, { recursive: true, force: true });
});

it('refuses a non-admin (403), an unknown site (404), central (409) and a site with children (409 naming them)', async () => {
  await assert.rejects(removal.remove({ ...ADMIN_CONTEXT, isAdmin: false, roles: ['service'] }, 'far-1'), ForbiddenError);
  await assert.rejects(removal.remove(ADMIN_CONTEXT, 'nowhere'), NotFoundError);
  await assert.rejects(removal.remove(ADMIN_CONTEXT, 'central'), ConflictError);
  await assert.rejects(removal.remove(ADMIN_CONTEXT, 'edge-1'), { name: 'ConflictError', message: /child sites \(far-1\)/ });
  assert.deepEqual(revoked, []);
  assert.equal((await catalog.listSites()).length, 3);
});

it('drops the site, its inventory and its stores\' locations; an image left without a copy is queued, without data', async () => {
  const kept = image('active', ['central', 'edge-1']);
  const lost = image('active', ['edge-1-bulk']);
  const lostDeactivated = image('deactivated', ['edge-1']);
  const elsewhere = image('active', ['central']);
  for (const i of [kept, lost, lostDeactivated, elsewhere]) await catalog.createImage(i);
  await catalog.putInventory({ site: 'edge-1', reported_at: '2026-01-02T00:00:00.000Z', images: [
    { image_id: elsewhere.id, store: 'edge-1', size: 10, state: 'cached', since: '2026-01-02T00:00:00.000Z', hits: 1, last_accessed: null },
  ] });
  await removal.remove(ADMIN_CONTEXT, 'far-1');
  const report = await removal.remove(ADMIN_CONTEXT, 'edge-1');
  assert.deepEqual(report, {
    site: 'edge-1', stores: ['edge-1', 'edge-1-bulk'], credential_revoked: true,
    images_with_copy_removed: [kept.id], images_without_copy: [lost.id, lostDeactivated.id].sort(),
  });
  assert.deepEqual(revoked, ['far-1', 'edge-1']);
  assert.deepEqual((await catalog.listSites()).map((s) => s.id), ['central']);
  assert.equal(await catalog.getInventory('edge-1'), undefined);
  assert.deepEqual(await catalog.storesHolding([elsewhere.id]), new Map());
  const after = async (i: Image) => {
    const g = (await catalog.getImage(i.id))!;
    return [g.status, g.size, g.checksum, g.os_hash_value, g.locations.map((l) => l.store)];
  };
  assert.deepEqual(await after(kept), ['active', 10, 'c'.repeat(32), 'f'.repeat(128), ['central']]);
  assert.deepEqual(await after(lost), ['queued', null, null, null, []]);
  assert.deepEqual(await after(lostDeactivated), ['queued', null, null, null, []]);
  assert.deepEqual(await after(elsewhere), ['active', 10, 'c'.repeat(32), 'f'.repeat(128), ['central']]);
  assert.deepEqual(warnings, [{ site: 'edge-1', images: report.images_without_copy }]);
  // The removal is in the change log, so it replicates.
  const changes = await catalog.changesSince(0, 1000);
  assert.deepEqual(changes.filter((c) => c.entity === 'site' && c.op === 'delete').map((c) => c.id), ['far-1', 'edge-1']);
});
