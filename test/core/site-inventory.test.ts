import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { SiteInventories } from '../../src/core/site-inventory.ts';
import { MAX_REPORTED_TRANSFERS, type TransferRecord } from '../../src/core/site-report.ts';
import { InventoryReporter } from '../../src/replication/inventory-reporter.ts';

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

  /** A transfer record as a site's TransferLog lists it. */
  const transfer = (image: string, state: 'running' | 'done' | 'failed', startedAt: string, endedAt: string | null, extra: object = {}) => ({
    image_id: image, source: 'http://central.test', method: 'manifest', state, planned: 100, reused: 60, zeros: 0, fetched: 40, refetched: 0, resumes: 0,
    bytes_per_second: 10, started_at: startedAt, ended_at: endedAt, error: state === 'failed' ? 'sha512 mismatch' : null, ...extra,
  });

  it('every site\'s transfers, with the site: running ones first, then ended ones newest first, on central\'s clock; filtered by image, site, state', async () => {
    const siteNow = now.getTime() - 10 * MINUTE;
    const at = (agoMs: number) => new Date(siteNow - agoMs).toISOString();
    await inventories.report(SITE_SERVICE, 'edge-1', {
      images: [], sent_at: new Date(siteNow).toISOString(),
      transfers: [transfer('a', 'running', at(1000), null), transfer('b', 'done', at(9000), at(5000)), transfer('c', 'failed', at(9000), at(2000))],
      audit: { last_at: at(0), last_mismatch: ['images'], repairs: 2 },
    });
    const local = { site: 'central', reported_at: now.toISOString(), images: [], transfers: [transfer('b', 'done', new Date(now.getTime() - 4000).toISOString(), new Date(now.getTime() - 3000).toISOString()) as never] };
    const all = await inventories.transfers(local, {});
    assert.deepEqual(all.map((t) => [t.site, t.image_id, t.state]), [['edge-1', 'a', 'running'], ['edge-1', 'c', 'failed'], ['central', 'b', 'done'], ['edge-1', 'b', 'done']]);
    assert.equal(all[0]!.started_at, new Date(now.getTime() - 1000).toISOString(), 'moved onto central\'s clock');
    assert.deepEqual((await inventories.transfers(local, { image: 'b' })).map((t) => t.site), ['central', 'edge-1']);
    assert.deepEqual((await inventories.transfers(local, { site: 'edge-1', state: 'failed' })).map((t) => [t.image_id, t.error]), [['c', 'sha512 mismatch']]);
    assert.deepEqual((await inventories.transfers(local, { site: 'central' })).map((t) => t.image_id), ['b']);
    const summary = (await inventories.summaries(local)).find((x) => x.site === 'edge-1')!;
    assert.deepEqual([summary.transfers, summary.audit], [{ running: 1, failed: 1 }, { last_at: new Date(now.getTime()).toISOString(), last_mismatch: ['images'], repairs: 2 }]);
  });

  it('refuses a transfer or an audit that does not make sense, naming the field', async () => {
    const send = (extra: object) => inventories.report(SITE_SERVICE, 'edge-1', { images: [], ...extra });
    await assert.rejects(send({ transfers: {} }), /transfers must be a list/);
    await assert.rejects(send({ transfers: [transfer('a', 'running', now.toISOString(), null, { fetched: -1 })] }), /Transfer 0: fetched must be a whole number/);
    await assert.rejects(send({ transfers: [transfer('a', 'done', now.toISOString(), null)] }), /Transfer 0: ended_at must be a time once the transfer ended/);
    await assert.rejects(send({ transfers: [transfer('a', 'paused' as never, now.toISOString(), null)] }), /Transfer 0: state must be one of running, done, failed/);
    await assert.rejects(send({ audit: { repairs: 'many' } }), /audit.repairs must be a whole number/);
    await assert.rejects(send({ audit: { repairs: 1, last_mismatch: 'images' } }), /audit.last_mismatch must be a list/);
  });

  it('a site with more transfers than a report carries sends its running ones first, and central takes the report', async () => {
    const many = Array.from({ length: MAX_REPORTED_TRANSFERS + 50 }, (_, i) => transfer(`img-${i}`, 'running', now.toISOString(), null) as TransferRecord);
    const reporter = new InventoryReporter({
      catalog, storeIds: ['edge-1'], cacheStore: 'edge-1-cache', cache: { entries: () => [] }, transfers: () => many,
      send: async () => undefined, log: { warn() {} },
    });
    const report = await reporter.report();
    assert.deepEqual(report.transfers?.map((t) => t.image_id), many.slice(0, MAX_REPORTED_TRANSFERS).map((t) => t.image_id));
    await inventories.report(SITE_SERVICE, 'edge-1', report);
    await assert.rejects(inventories.report(SITE_SERVICE, 'edge-1', { images: [], transfers: many }), /transfers must be a list of at most 200/);
  });

  it('refuses a sent_at that is not a time', async () => {
    await assert.rejects(inventories.report(SITE_SERVICE, 'edge-1', { images: [], sent_at: 'yesterday' }), /sent_at must be a time/);
  });
});
