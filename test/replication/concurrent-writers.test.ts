import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ConflictError, ImageNotFoundError, NotFoundError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';

const WRITE_MS = Number(process.env.TEST_WRITE_MS ?? 8000);

function newImage(): Image {
  const at = new Date().toISOString();
  return {
    id: randomUUID(), name: 'w', status: 'queued', visibility: 'shared', protected: false, os_hidden: false, checksum: null,
    os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null, container_format: null,
    min_disk: 0, min_ram: 0, owner: 'p', created_at: at, updated_at: at, tags: ['t'], properties: {}, locations: [],
  };
}

/** One writer: creates, patches (someone's) images, shares them and deletes them, until `stop`. */
async function writer(catalog: SqlCatalog, ids: string[], stop: AbortSignal): Promise<number> {
  let writes = 0;
  while (!stop.aborted) {
    // Requests arrive from the network: between two, the event loop turns (SQLite's calls
    // complete without I/O, and would otherwise starve the timer that stops the writers).
    await new Promise((resolve) => setImmediate(resolve));
    const pick = ids[Math.floor(Math.random() * ids.length)];
    const roll = Math.random();
    try {
      if (pick === undefined || roll < 0.3) {
        const image = newImage();
        await catalog.createImage(image);
        ids.push(image.id);
      } else if (roll < 0.75) {
        await catalog.updateImage(pick, (i) => ({ ...i, properties: { ...i.properties, n: String(Number(i.properties.n ?? 0) + 1) } }));
      } else if (roll < 0.9) {
        const at = new Date().toISOString();
        await catalog.addMember({ image_id: pick, member_id: randomUUID(), status: 'pending', created_at: at, updated_at: at });
      } else {
        if (ids.includes(pick)) ids.splice(ids.indexOf(pick), 1);
        await catalog.deleteImage(pick);
      }
      writes++;
    } catch (error) {
      // Another writer got there first (deleted the image): expected, and must change nothing.
      if (!(error instanceof NotFoundError || error instanceof ImageNotFoundError || error instanceof ConflictError)) throw error;
    }
  }
  return writes;
}

/**
 * 8 writers on `nodes` handles of one database while a follower reads the feed throughout: every
 * seq it is handed must be the one after the last (a gap would be a change that commits later
 * with a lower seq — one the follower would skip forever), and its replica must end equal.
 */
async function writeWhileFollowing(nodes: SqlCatalog[], replica: SqlCatalog): Promise<void> {
  const ids: string[] = [];
  const stop = new AbortController();
  const feed = nodes[0]!;
  let position = 0;
  let applied = 0;
  let writersDone = false;
  const follow = (async () => {
    while (!writersDone || position < await feed.lastSeq()) {
      const changes = await feed.changesSince(position, 200);
      for (const change of changes) {
        assert.equal(change.seq, position + 1 + changes.indexOf(change), `the feed skipped from ${position} to ${change.seq}`);
      }
      if (changes.length === 0) {
        await feed.waitForChange(position, 100);
        continue;
      }
      position = changes.at(-1)!.seq;
      await replica.apply(changes, position);
      applied += changes.length;
    }
  })();
  follow.catch(() => stop.abort());
  const writers = Array.from({ length: 8 }, (_, i) => writer(nodes[i % nodes.length]!, ids, stop.signal));
  const timer = setTimeout(() => stop.abort(), WRITE_MS);
  // Everything ends before the handles close, whichever fails first.
  const written = await Promise.allSettled(writers);
  writersDone = true;
  clearTimeout(timer);
  const results = [...written, ...await Promise.allSettled([follow])];
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  const writes = written.reduce((sum, r) => sum + (r as PromiseFulfilledResult<number>).value, 0);
  assert.ok(writes > 100, `only ${writes} writes in ${WRITE_MS} ms`);
  assert.equal(applied, await feed.lastSeq());
  const [source, copy] = await Promise.all([feed.digest(), replica.digest()]);
  assert.deepEqual(copy.digests, source.digests);
}

describe('the change log under concurrent writers', () => {
  it('SQLite: 8 writers, one follower — no seq skipped, the replica ends identical', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outpost-writers-'));
    const central = await openCatalog(join(dir, 'central.sqlite'));
    const replica = await openCatalog(join(dir, 'replica.sqlite'));
    try {
      await writeWhileFollowing([central], replica);
    } finally {
      await central.close();
      await replica.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('PostgreSQL: 8 writers over two nodes, one follower — no seq skipped, the replica ends identical', { skip: postgresSkip }, async () => {
    const database = await createTestDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'outpost-writers-'));
    const nodes = [await openCatalog(database.url), await openCatalog(database.url)];
    const replica = await openCatalog(join(dir, 'replica.sqlite'));
    try {
      await writeWhileFollowing(nodes, replica);
    } finally {
      for (const node of nodes) await node.close();
      await replica.close();
      await database.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
