import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { SiteInventories } from '../../src/core/site-inventory.ts';

const SITE_SERVICE = { projectId: 'service', userId: 'site-edge-1', roles: ['service'], isAdmin: false };
const MINUTE = 60_000;

describe('SiteInventories: a site\'s times are read on central\'s clock', () => {
  let dir: string;
  let catalog: SqlCatalog;
  const now = new Date('2026-12-05T12:00:00.000Z');
  let inventories: SiteInventories;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-inventory-'));
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    inventories = new SiteInventories(catalog, catalog, () => now);
    await catalog.upsertSite({
      id: 'edge-1', parent: 'central', labels: {}, public_url: 'http://edge-1.test', stores: ['edge-1'], version: '1',
      registered_at: now.toISOString(), last_contact: now.toISOString(), lag_changes: 0,
    });
  });
  after(async () => {
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A report from a site whose clock is `behindMs` behind central's, with a copy failed `agoMs` before it was sent. */
  const reportFailure = (image: string, behindMs: number, agoMs: number) => {
    const siteNow = now.getTime() - behindMs;
    return inventories.report(SITE_SERVICE, 'edge-1', {
      images: [], sent_at: new Date(siteNow).toISOString(),
      placements: [{ image_id: image, state: 'failed', reason: 'sha512 mismatch', since: new Date(siteNow - agoMs).toISOString(), bytes_done: null, bytes_per_second: null }],
    });
  };

  it('a failure since the task began counts though the site\'s clock is 10 minutes slow; one from before does not', async () => {
    const taskStarted = new Date(now.getTime() - 5000).toISOString();
    await reportFailure('fresh', 10 * MINUTE, 1000);
    assert.deepEqual([...await inventories.copyFailures('fresh', ['edge-1'], taskStarted)], [['edge-1', 'site edge-1: sha512 mismatch']]);
    await reportFailure('old', 10 * MINUTE, MINUTE);
    assert.equal((await inventories.copyFailures('old', ['edge-1'], taskStarted)).size, 0);
    // A clock 10 minutes fast: a failure from before the task must not pass for a new one.
    await reportFailure('old', -10 * MINUTE, MINUTE);
    assert.equal((await inventories.copyFailures('old', ['edge-1'], taskStarted)).size, 0);
    const shown = (await inventories.get('edge-1')) as { placements: { since: string }[] };
    assert.equal(shown.placements[0]!.since, new Date(now.getTime() - MINUTE).toISOString(), 'stored on central\'s clock');
  });

  it('refuses a sent_at that is not a time', async () => {
    await assert.rejects(inventories.report(SITE_SERVICE, 'edge-1', { images: [], sent_at: 'yesterday' }), /sent_at must be a time/);
  });
});
