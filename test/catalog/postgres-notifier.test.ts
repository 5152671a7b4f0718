// How the nodes sharing a PostgreSQL catalog hear of each other's commits (src/catalog/notify/
// postgres-notifier.ts), and what a node's copy of the sites does while its listening connection
// is down. Two engines on one database play two nodes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { CatalogDatabase } from '../../src/catalog/database.ts';
import { openPostgres } from '../../src/catalog/dialects/postgres.ts';
import { migrate } from '../../src/catalog/migrations/index.ts';
import { SiteRepository } from '../../src/catalog/site-repository.ts';
import { CHANGE_ENTITIES, type CommitEvent, type Site } from '../../src/core/ports.ts';
import { eventually } from '../helpers/multi-site.ts';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';

function site(id: string): Site {
  return {
    id, parent: 'central', labels: {}, public_url: '', stores: [`${id}-store`], version: '1',
    registered_at: '2024-01-01T00:00:00.000Z', last_contact: '2024-01-01T00:00:00.000Z', lag_changes: null,
  };
}

describe('PostgreSQL change notifications between nodes', { skip: postgresSkip }, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  /** The node whose listening connection the tests break, and the one that writes. */
  let listener: CatalogDatabase;
  let writer: CatalogDatabase;
  /** The backend of `listener`'s listening connection. */
  let listeningPid: number;
  const heard: CommitEvent[] = [];

  /** Ends `listener`'s listening connection from the server's side, and waits until the node knows. */
  const breakListening = async () => {
    await sql`select pg_terminate_backend(${listeningPid})`.execute(writer.db);
    await eventually('the node knows its listening connection is gone', 10_000, async () => !listener.hearsEveryCommit);
  };
  /** Waits for the listening connection to come back (the notifier re-opens it), and notes its backend. */
  const listeningAgain = async () => {
    await eventually('the listening connection is back', 30_000, async () => listener.hearsEveryCommit);
    listeningPid = await listeningBackend();
  };
  const listeningBackend = async () => {
    const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity
      where datname = current_database() and query = 'listen outpost_changes' and pid <> ${listeningPid ?? 0}`.execute(writer.db);
    assert.ok(rows.length >= 1, 'a listening backend');
    return rows[0].pid;
  };

  before(async () => {
    database = await createTestDatabase();
    listener = new CatalogDatabase(await openPostgres({ url: database.url }));
    await migrate(listener.db, 'postgres');
    // Only the first node listens yet: its listening backend is the only one.
    const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity
      where datname = current_database() and query = 'listen outpost_changes'`.execute(listener.db);
    assert.equal(rows.length, 1);
    listeningPid = rows[0].pid;
    writer = new CatalogDatabase(await openPostgres({ url: database.url }));
    listener.subscribe((event) => heard.push(event));
  });

  after(async () => {
    await listener?.close();
    await writer?.close();
    await database?.drop();
  });

  it('a committed write is announced to the other node, which then reads it; a rolled-back one never is', async () => {
    heard.length = 0;
    await assert.rejects(writer.write(async (tx) => {
      await tx.append('site', 'never', 'upsert', { id: 'never' });
      throw new Error('rolled back');
    }), /rolled back/);
    const seq = await writer.write(async (tx) => {
      await tx.append('policy', 'p1', 'upsert', { id: 'p1' });
      return (await tx.db.selectFrom('changes').select('seq').where('entity_id', '=', 'p1').executeTakeFirstOrThrow()).seq;
    });
    await eventually('the other node hears of the commit', 10_000, async () => heard.length > 0);
    assert.deepEqual(heard, [{ seq: Number(seq), kinds: ['policy'] }], 'the rolled-back write was not announced');
    const read = await listener.db.selectFrom('changes').select('entity_id').where('seq', '=', Number(seq)).executeTakeFirst();
    assert.equal(read?.entity_id, 'p1', 'what was announced is there to read');
  });

  it('while its listening connection is down a node knows it may miss commits; when it is back, every listener has been woken', async () => {
    assert.equal(listener.hearsEveryCommit, true);
    await breakListening();
    heard.length = 0;
    let wokenFirst = false;
    await eventually('the listening connection is back', 30_000, async () => {
      if (!listener.hearsEveryCommit) return false;
      // Back: every listener has been woken by then.
      wokenFirst = heard.some((e) => CHANGE_ENTITIES.every((k) => e.kinds.includes(k)));
      return true;
    });
    assert.ok(wokenFirst, 'every listener was woken (every kind) as the connection came back');
    listeningPid = await listeningBackend();
    heard.length = 0;
    await writer.write((tx) => tx.append('policy', 'p2', 'upsert', { id: 'p2' }));
    await eventually('the node hears commits again', 10_000, async () => heard.some((e) => e.kinds.includes('policy')));
  });

  it('a site registered while a node\'s listening connection is down is in that node\'s next list of sites', async () => {
    const mine = new SiteRepository(listener);
    const theirs = new SiteRepository(writer);
    try {
      await theirs.upsertSite({ ...site('central'), parent: null });
      await eventually('the node lists central', 10_000, async () => (await mine.listSites()).some((s) => s.id === 'central'));
      await mine.listSites(); // kept in memory now
      await breakListening();
      await theirs.upsertSite(site('edge-a')); // announced to no one here
      assert.deepEqual((await mine.listSites()).map((s) => s.id), ['central', 'edge-a']);
      await listeningAgain();
      await theirs.upsertSite(site('edge-b'));
      await eventually('the node lists the site registered after its connection came back', 10_000,
        async () => (await mine.listSites()).some((s) => s.id === 'edge-b'));
    } finally {
      mine.close();
      theirs.close();
    }
  });
});
