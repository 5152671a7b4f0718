import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ForbiddenError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import { CONFLICT_PROPERTY, OfflineReconciliation, ORIGIN_PROPERTY, PENDING_PROPERTY } from '../../src/core/offline-writes.ts';

const SITE = { projectId: 'service', userId: 'site-edge-1', roles: ['service'], isAdmin: false };
const MEMBER = { projectId: 'p', userId: 'u', roles: ['member'], isAdmin: false };
const log = { warn() {}, info() {} };

/** An image as edge-1 made it while cut off: its bytes in edge-1's store, pending there. */
function madeAtEdge(overrides: Partial<Image> = {}): Image {
  return {
    id: randomUUID(), name: 'made-offline', status: 'active', visibility: 'private', protected: false, os_hidden: false,
    checksum: 'c'.repeat(32), os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 10, virtual_size: 10, disk_format: 'raw',
    container_format: 'bare', min_disk: 0, min_ram: 0, owner: 'p', created_at: '2026-12-06T10:00:00.000Z', updated_at: '2026-12-06T10:01:00.000Z',
    tags: ['t'], properties: { [ORIGIN_PROPERTY]: 'edge-1', [PENDING_PROPERTY]: 'true', color: 'blue' },
    locations: [{ store: 'edge-1', url: 'file:///edge-1/x' }], ...overrides,
  };
}

describe('OfflineReconciliation: the rules for an edge\'s writes made while cut off', () => {
  let dir: string;
  let catalog: SqlCatalog;
  let rec: OfflineReconciliation;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-reconcile-'));
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    rec = new OfflineReconciliation(catalog, log);
    for (const id of ['edge-1', 'edge-2']) {
      await catalog.upsertSite({
        id, parent: 'central', labels: {}, public_url: `http://${id}.test`, stores: [id], version: '1',
        registered_at: '2026-12-06T09:00:00.000Z', last_contact: '2026-12-06T09:00:00.000Z', lag_changes: 0,
      });
    }
  });
  after(async () => {
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an image central never had is created as the edge has it, located in its store, without the pending mark; sent again, nothing changes', async () => {
    const edge = madeAtEdge();
    const first = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null });
    assert.equal(first.result, 'created');
    const stored = (await catalog.getImage(edge.id))!;
    assert.deepEqual([stored.status, stored.owner, stored.properties.color, stored.properties[ORIGIN_PROPERTY], stored.properties[PENDING_PROPERTY], stored.locations.map((l) => l.store)],
      ['active', 'p', 'blue', 'edge-1', undefined, ['edge-1']]);
    assert.equal((await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null })).result, 'unchanged');
  });

  it('changes made on central\'s version as it stood are applied; a delete too', async () => {
    const edge = madeAtEdge();
    await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null });
    const changed = { ...edge, properties: { ...edge.properties, color: 'green' }, updated_at: '2026-12-06T10:02:00.000Z' };
    const answer = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: changed, base_updated_at: edge.updated_at });
    assert.deepEqual([answer.result, answer.image?.properties.color], ['updated', 'green']);
    assert.equal((await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: null, base_updated_at: changed.updated_at })).result, 'deleted');
    assert.equal(await catalog.getImage(edge.id), undefined);
  });

  it('central wins over an image changed (or deleted) at central meanwhile, and says so in the image', async () => {
    const edge = madeAtEdge();
    await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null });
    await catalog.updateImage(edge.id, (i) => ({ ...i, properties: { ...i.properties, color: 'red' }, updated_at: '2026-12-06T10:03:00.000Z' }));
    const changed = { ...edge, properties: { ...edge.properties, color: 'green' }, updated_at: '2026-12-06T10:04:00.000Z' };
    const answer = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: changed, base_updated_at: edge.updated_at });
    assert.equal(answer.result, 'conflict');
    assert.equal(answer.image?.properties.color, 'red');
    assert.match(answer.image?.properties[CONFLICT_PROPERTY] ?? '', /^edge-1 changed this image while cut off \(at 2026-12-06T10:04:00.000Z\); central's version, changed at 2026-12-06T10:03:00.000Z, was kept$/);
    await catalog.deleteImage(edge.id);
    const gone = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: changed, base_updated_at: '2026-12-06T10:03:00.000Z' });
    assert.deepEqual([gone.result, gone.image], ['conflict', null]);
    assert.match(gone.conflict ?? '', /was deleted at central while edge-1 was cut off/);
  });

  it('an answer the edge did not get: central holding a version the edge sent before is not a conflict, and takes the newer one', async () => {
    const edge = madeAtEdge();
    // Created at central, but the edge never heard (the link broke before the answer): its mark has no base.
    await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null });
    const later = { ...edge, name: 'renamed while cut off again', updated_at: '2026-12-06T10:05:00.000Z' };
    const answer = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: later, base_updated_at: null, sent_updated_at: [edge.updated_at] });
    assert.deepEqual([answer.result, answer.image?.name, answer.image?.updated_at], ['updated', 'renamed while cut off again', later.updated_at]);
    // Without the versions it sent, the same call would have been taken for a change on both sides.
    const third = { ...later, name: 'third', updated_at: '2026-12-06T10:06:00.000Z' };
    assert.equal((await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: third, base_updated_at: null })).result, 'conflict');
  });

  it('locations central recorded (a copy at another site) stay: only those the edge adds must be in its stores', async () => {
    const edge = madeAtEdge();
    await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: edge, base_updated_at: null });
    const copied = await catalog.updateImage(edge.id, (i) => ({ ...i, locations: [...i.locations, { store: 'edge-2', url: 'file:///edge-2/x' }], updated_at: '2026-12-06T10:07:00.000Z' }));
    const renamed = { ...copied, name: 'renamed at edge-1', updated_at: '2026-12-06T10:08:00.000Z' };
    const answer = await rec.reconcile(SITE, edge.id, { site: 'edge-1', image: renamed, base_updated_at: copied.updated_at });
    assert.deepEqual([answer.result, answer.image?.name, answer.image?.locations.map((l) => l.store)], ['updated', 'renamed at edge-1', ['edge-1', 'edge-2']]);
    const sneaked = { ...renamed, locations: [...renamed.locations, { store: 'edge-2', url: 'file:///edge-2/other' }], updated_at: '2026-12-06T10:09:00.000Z' };
    await assert.rejects(rec.reconcile(SITE, edge.id, { site: 'edge-1', image: sneaked, base_updated_at: renamed.updated_at }), /bytes must be in the stores of site edge-1 or of a site below it/);
  });

  it('refuses another site\'s image, bytes outside the site\'s stores, and callers that are not sites or administrators', async () => {
    const edge = madeAtEdge();
    await assert.rejects(rec.reconcile(SITE, edge.id, { site: 'edge-2', image: edge, base_updated_at: null }), (e) => e instanceof ForbiddenError && /not created at site edge-2/.test(e.message));
    const elsewhere = madeAtEdge({ locations: [{ store: 'edge-2', url: 'file:///edge-2/x' }] });
    await assert.rejects(rec.reconcile(SITE, elsewhere.id, { site: 'edge-1', image: elsewhere, base_updated_at: null }), /bytes must be in the stores of site edge-1 or of a site below it/);
    await assert.rejects(rec.reconcile(MEMBER, edge.id, { site: 'edge-1', image: edge, base_updated_at: null }), ForbiddenError);
    await assert.rejects(rec.reconcile(SITE, edge.id, { site: 'edge-1', image: { ...edge, id: randomUUID() }, base_updated_at: null }), /the image named in the path/);
    assert.equal(await catalog.getImage(edge.id), undefined, 'nothing was created');
  });
});
