// SiteRepository's copy of the sites' registrations: when listSites answers from memory, and when
// it must read the table. The engine here is SQLite with a notifier the test drives, so that it can
// play another node's announcements and a listening connection that is down.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Kysely, SqliteDialect } from 'kysely';
import { CatalogDatabase } from '../../src/catalog/database.ts';
import { NodeSqliteDatabase } from '../../src/catalog/dialects/node-sqlite-database.ts';
import { migrate } from '../../src/catalog/migrations/index.ts';
import { InProcessNotifier } from '../../src/catalog/notify/in-process-notifier.ts';
import { SiteRepository } from '../../src/catalog/site-repository.ts';
import type { CatalogTables } from '../../src/catalog/tables.ts';
import type { Site } from '../../src/core/ports.ts';

function site(id: string, weight = 1): Site {
  return {
    id, parent: id === 'central' ? null : 'central', labels: {}, public_url: '', stores: [`${id}-store`],
    store_details: [{ id: `${id}-store`, type: 'file', weight, read_only: false, default: true, description: '', properties: {} }],
    version: '1', registered_at: '2024-01-01T00:00:00.000Z', last_contact: '2024-01-01T00:00:00.000Z', lag_changes: null,
  };
}

describe('SiteRepository: the sites kept in memory', () => {
  let dir: string;
  let kysely: Kysely<CatalogTables>;
  let notifier: InProcessNotifier;
  let db: CatalogDatabase;
  let sites: SiteRepository;
  /** What the engine reports of its notifications (the test's stand-in for a listening connection). */
  let hears: boolean;
  /** Reads of the sites table since the test began. */
  let reads: number;
  /** A registration written behind the handle's back, as another node would (no announcement). */
  const writeElsewhere = async (s: Site) => {
    await kysely.insertInto('sites').values({ id: s.id, body: JSON.stringify(s) })
      .onConflict((oc) => oc.column('id').doUpdateSet({ body: JSON.stringify(s) })).execute();
  };
  /** Another node's commit arriving: its announcement. */
  const announce = (kinds: ('site' | 'image')[]) => notifier.publish({ seq: 1_000, kinds });
  const ids = async () => (await sites.listSites()).map((s) => s.id);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outpost-sites-'));
    reads = 0;
    hears = true;
    kysely = new Kysely<CatalogTables>({
      dialect: new SqliteDialect({ database: new NodeSqliteDatabase(join(dir, 'catalog.sqlite')) }),
      log: (event) => { if (event.level === 'query' && /^select "body" from "sites"/.test(event.query.sql)) reads++; },
    });
    await migrate(kysely, 'sqlite');
    notifier = new InProcessNotifier();
    db = new CatalogDatabase({
      name: 'sqlite', kysely, notifier, hearsEveryCommit: () => hears,
      async close() { await notifier.close(); await kysely.destroy(); },
    });
    sites = new SiteRepository(db);
  });

  afterEach(async () => {
    sites.close();
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('while every commit is heard: read once, kept until a commit touching sites is announced', async () => {
    await sites.upsertSite(site('central'));
    assert.deepEqual(await ids(), ['central']);
    assert.deepEqual(await ids(), ['central']);
    assert.equal(reads, 1, 'the second list is answered from memory');
    await writeElsewhere(site('edge-a'));
    await announce(['image']);
    assert.deepEqual(await ids(), ['central'], 'a commit of another kind leaves the copy');
    assert.equal(reads, 1);
    await announce(['site']);
    assert.deepEqual(await ids(), ['central', 'edge-a'], 'the announcement of a sites commit drops it');
    assert.equal(reads, 2);
  });

  it('a write through the handle is listed as soon as it resolves (its own commit drops the copy)', async () => {
    assert.deepEqual(await ids(), []);
    await sites.upsertSite(site('central'));
    assert.deepEqual(await ids(), ['central']);
    await sites.upsertSite(site('central', 5));
    assert.equal((await sites.listSites())[0].store_details?.[0].weight, 5);
    assert.equal(await sites.deleteSite('central'), true);
    assert.deepEqual(await ids(), []);
  });

  it('hands out copies: a caller changing what it got changes nothing for the next', async () => {
    await sites.upsertSite(site('central'));
    (await sites.listSites())[0].stores.push('changed');
    assert.deepEqual((await sites.listSites())[0].stores, ['central-store']);
  });

  it('while commits may go unheard (a listening connection down), every list reads the table', async () => {
    await sites.upsertSite(site('central'));
    await ids();
    hears = false;
    await writeElsewhere(site('edge-a'));
    assert.deepEqual(await ids(), ['central', 'edge-a'], 'not the copy read before');
    assert.deepEqual(await ids(), ['central', 'edge-a']);
    assert.equal(reads, 3, 'nothing is kept meanwhile');
  });

  it('a read that an announcement overtakes is not kept', async () => {
    await sites.upsertSite(site('central'));
    const listing = sites.listSites(); // its read is under way...
    void announce(['site']); // ...when another node's commit is announced (listeners are called at once)
    assert.deepEqual((await listing).map((s) => s.id), ['central']);
    await writeElsewhere(site('edge-a'));
    assert.deepEqual(await ids(), ['central', 'edge-a'], 'what the overtaken read found was not kept');
    assert.equal(reads, 2);
  });

  it('a read during which the notifications stopped is not kept', async () => {
    await sites.upsertSite(site('central'));
    const listing = sites.listSites();
    hears = false;
    await listing;
    hears = true;
    await writeElsewhere(site('edge-a'));
    assert.deepEqual(await ids(), ['central', 'edge-a'], 'what that read found was not kept');
  });
});
