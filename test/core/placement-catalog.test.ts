import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import type { Image } from '../../src/core/image.ts';
import { policyRecord, validatePolicy } from '../../src/core/placement-policy.ts';
import type { Site } from '../../src/core/ports.ts';
import { PlacementCatalog } from '../../src/placement/placement-catalog.ts';
import { tempDir } from '../helpers/site.ts';

const AT = '2026-01-01T00:00:00.000Z';
const site = (id: string, labels: Record<string, string>, lastContact = AT): Site => ({
  id, parent: 'central', labels, stores: [id], public_url: `http://${id}.test`, version: '', registered_at: AT, last_contact: lastContact, lag_changes: null,
});
const image = (name: string): Image => ({
  id: randomUUID(), name, status: 'active', visibility: 'public', protected: false, os_hidden: false, checksum: 'c'.repeat(32),
  os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 10, virtual_size: 10, disk_format: 'raw', container_format: 'bare',
  min_disk: 0, min_ram: 0, owner: null, created_at: AT, updated_at: AT, tags: [], properties: {}, locations: [{ store: 'central', url: 'file:///c/x' }],
});

describe('PlacementCatalog (SQLite catalog)', () => {
  let dir: string;
  let catalog: SqlCatalog;
  let snapshots = 0;
  let mirror: PlacementCatalog;

  before(async () => {
    dir = await tempDir();
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    // The real catalog, counting the whole reads.
    const changeLog = {
      lastSeq: catalog.lastSeq.bind(catalog), firstSeq: catalog.firstSeq.bind(catalog), changesSince: catalog.changesSince.bind(catalog),
      snapshot: async (...args: Parameters<SqlCatalog['snapshot']>) => { snapshots++; return catalog.snapshot(...args); },
    };
    mirror = new PlacementCatalog({ changeLog, reloadAfter: 50 });
  });
  after(async () => {
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the catalog once, then follows its changes: images, policies and sites as the catalog holds them', async () => {
    const a = image('a');
    await catalog.createImage(a);
    await catalog.upsertSite(site('eu-1', { region: 'eu' }));
    const first = await mirror.read();
    assert.deepEqual([...first.images.keys()], [a.id]);
    assert.equal(snapshots, 1);

    const b = image('b');
    await catalog.createImage(b);
    await catalog.updateImage(a.id, (i) => ({ ...i, tags: ['golden'] }));
    await catalog.deleteImage(b.id);
    const policy = policyRecord(randomUUID(), validatePolicy({ name: 'golden', images: { tags: ['golden'] }, sites: { labels: 'region=eu' }, mode: 'replicate' }, new Set()), AT, AT);
    await catalog.upsertPolicy(policy);
    const next = await mirror.read();
    assert.equal(snapshots, 1, 'followed the change log');
    assert.equal(next.seq, await catalog.lastSeq());
    assert.deepEqual([...next.images.values()], [await catalog.getImage(a.id)]);
    assert.deepEqual([...next.policies.values()], [policy]);
    assert.ok(next.version > first.version);

    // Concurrent reads agree and see every change made before them.
    const c = image('c');
    await catalog.createImage(c);
    const both = await Promise.all([mirror.read(), mirror.read()]);
    for (const s of both) assert.deepEqual([...s.images.keys()].sort(), [a.id, c.id].sort());
  });

  it('a site refreshing its registration changes nothing placement computes from; a label change does', async () => {
    const before = (await mirror.read()).version;
    await catalog.upsertSite(site('eu-1', { region: 'eu' }, '2026-06-01T00:00:00.000Z'));
    const refreshed = await mirror.read();
    assert.equal(refreshed.version, before);
    assert.equal(refreshed.sites.get('eu-1')?.last_contact, '2026-06-01T00:00:00.000Z');
    await catalog.upsertSite(site('eu-1', { region: 'us' }));
    assert.ok((await mirror.read()).version > before);
    await catalog.deleteSite('eu-1');
    assert.equal((await mirror.read()).sites.has('eu-1'), false);
  });

  it('reads the whole catalog again when the changes since are many, or no longer in the log', async () => {
    const before = snapshots;
    for (let i = 0; i < 60; i++) await catalog.upsertSite(site(`far-${i}`, {}));
    assert.equal((await mirror.read()).sites.size, 60);
    assert.equal(snapshots, before + 1);
    const d = image('d');
    await catalog.createImage(d);
    await catalog.truncate(0);
    const state = await mirror.read();
    assert.equal(snapshots, before + 2);
    assert.ok(state.images.has(d.id));
    assert.equal(state.seq, await catalog.lastSeq());
  });
});
