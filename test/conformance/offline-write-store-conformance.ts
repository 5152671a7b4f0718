import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Image } from '../../src/core/image.ts';
import type { Catalog, ChangeLog, OfflineWriteStore, Replica, Snapshot } from '../../src/core/ports.ts';

type EdgeCatalog = Catalog & ChangeLog & Replica & OfflineWriteStore;
type Open = () => Promise<{ catalog: EdgeCatalog; cleanup(): Promise<void> }>;

function image(overrides: Partial<Image> = {}): Image {
  const t = '2026-12-06T10:00:00.000Z';
  return {
    id: randomUUID(), name: 'made-here', status: 'queued', visibility: 'private', protected: false, os_hidden: false,
    checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: 'raw',
    container_format: 'bare', min_disk: 0, min_ram: 0, owner: 'project-o', created_at: t, updated_at: t, tags: [],
    properties: {}, locations: [], ...overrides,
  };
}

/** An image made at the edge while cut off, as its catalog stores it: marked (no base), then created. */
async function madeHere(catalog: EdgeCatalog): Promise<Image> {
  const made = image();
  await catalog.markOffline(made.id, null);
  await catalog.createImage(made);
  return made;
}

const emptySnapshot = (seq: number): Snapshot => ({ seq, images: [], deleted: [], members: [], tasks: [], sites: [], policies: [], identity: [] });

/**
 * OfflineWriteStore (issue 17): an edge's images written while cut off stand against its parent's
 * feed and snapshots until they are settled, and its audit leaves them out.
 */
export function offlineWriteStoreConformance(name: string, open: Open): void {
  describe(`OfflineWriteStore conformance: ${name}`, () => {
    it('a mark keeps its first base and what was sent; marks are listed in the order they were made; a mark can be taken back', async () => {
      const { catalog, cleanup } = await open();
      try {
        assert.equal(await catalog.markOffline('a', null), true);
        assert.equal(await catalog.markOffline('b', '2026-12-06T09:00:00.000Z'), true);
        await catalog.sendingOffline('a', '2026-12-06T10:00:00.000Z');
        await catalog.sendingOffline('a', '2026-12-06T10:00:00.000Z');
        await catalog.sendingOffline('a', null);
        assert.equal(await catalog.markOffline('a', '2026-12-06T11:00:00.000Z'), false);
        assert.deepEqual((await catalog.offlineMarks()).map((m) => [m.image_id, m.base_updated_at, m.sent]),
          [['a', null, ['2026-12-06T10:00:00.000Z']], ['b', '2026-12-06T09:00:00.000Z', []]]);
        assert.deepEqual((await catalog.offlineMark('a'))?.sent, ['2026-12-06T10:00:00.000Z']);
        assert.equal(await catalog.offlineMark('none'), undefined);
        await catalog.unmarkOffline('b');
        assert.deepEqual((await catalog.offlineMarks()).map((m) => m.image_id), ['a']);
      } finally {
        await cleanup();
      }
    });

    it('a marked image is not changed by the parent\'s feed or a snapshot reload, and the audit\'s digest can leave it out', async () => {
      const { catalog, cleanup } = await open();
      try {
        const mine = await madeHere(catalog);
        const digestWithout = (await catalog.digest({ excludeImages: new Set([mine.id]) })).digests;
        await catalog.apply([{ seq: 1, entity: 'image', id: mine.id, op: 'upsert', body: { ...mine, name: 'the parent\'s', updated_at: '2026-12-06T12:00:00.000Z' }, at: '' }], 1);
        assert.equal((await catalog.getImage(mine.id))?.name, 'made-here');
        await catalog.load(emptySnapshot(2));
        assert.equal((await catalog.getImage(mine.id))?.name, 'made-here', 'a snapshot without it keeps it');
        assert.deepEqual((await catalog.digest({ excludeImages: new Set([mine.id]) })).digests.images, digestWithout.images);
        assert.notEqual((await catalog.digest()).digests.images, digestWithout.images);
      } finally {
        await cleanup();
      }
    });

    it('settle: unchanged since it was sent, the mark ends and central\'s version is applied (and logged for followers); changed since, the mark stays based on central\'s version', async () => {
      const { catalog, cleanup } = await open();
      try {
        const mine = await madeHere(catalog);
        const central = { ...mine, name: 'at central', updated_at: '2026-12-06T10:05:00.000Z' };
        const before = await catalog.lastSeq();
        assert.equal(await catalog.settleOffline(mine.id, mine.updated_at, central), true);
        assert.deepEqual(await catalog.offlineMarks(), []);
        assert.equal((await catalog.getImage(mine.id))?.name, 'at central');
        assert.ok((await catalog.changesSince(before, 10)).some((c) => c.id === mine.id && c.op === 'upsert'), 'logged for this site\'s followers');

        const again = await madeHere(catalog);
        await catalog.updateImage(again.id, (i) => ({ ...i, name: 'changed here meanwhile', updated_at: '2026-12-06T10:10:00.000Z' }));
        assert.equal(await catalog.settleOffline(again.id, again.updated_at, { ...again, updated_at: '2026-12-06T10:06:00.000Z' }), false);
        assert.deepEqual((await catalog.offlineMarks()).map((m) => [m.image_id, m.base_updated_at]), [[again.id, '2026-12-06T10:06:00.000Z']]);
        assert.equal((await catalog.getImage(again.id))?.name, 'changed here meanwhile');

        // Central has none (deleted there): gone here too.
        assert.equal(await catalog.settleOffline(again.id, '2026-12-06T10:10:00.000Z', null), true);
        assert.equal(await catalog.getImage(again.id), undefined);
      } finally {
        await cleanup();
      }
    });

    it('settle after a conflict or a refusal (final) ends the mark even if written here meanwhile; an image never here gets no tombstone; unknown keeps the local version', async () => {
      const { catalog, cleanup } = await open();
      try {
        const mine = await madeHere(catalog);
        await catalog.updateImage(mine.id, (i) => ({ ...i, name: 'written meanwhile', updated_at: '2026-12-06T10:10:00.000Z' }));
        assert.equal(await catalog.settleOffline(mine.id, mine.updated_at, { ...mine, name: 'central\'s', updated_at: '2026-12-06T10:20:00.000Z' }, { final: true }), true);
        assert.deepEqual(await catalog.offlineMarks(), []);
        assert.equal((await catalog.getImage(mine.id))?.name, 'central\'s');

        // A mark left by a create that never happened (a crash in between): no tombstone for the id.
        const never = randomUUID();
        await catalog.markOffline(never, null);
        const before = await catalog.lastSeq();
        assert.equal(await catalog.settleOffline(never, null, null), true);
        assert.deepEqual((await catalog.changesSince(before, 10)).filter((c) => c.id === never), []);
        await catalog.createImage(image({ id: never }));

        const kept = await madeHere(catalog);
        assert.equal(await catalog.settleOffline(kept.id, kept.updated_at, undefined, { final: true }), true);
        assert.deepEqual([(await catalog.offlineMarks()).length, (await catalog.getImage(kept.id))?.name], [0, 'made-here']);
      } finally {
        await cleanup();
      }
    });

    it('the parent\'s changes to a marked image that arrive after its version was sent are kept aside and applied when the mark ends', async () => {
      const { catalog, cleanup } = await open();
      try {
        const mine = await madeHere(catalog);
        const upsert = (seq: number, name: string, updated_at: string) => catalog.apply([{ seq, entity: 'image', id: mine.id, op: 'upsert', body: { ...mine, name, updated_at }, at: '' }], seq);
        await upsert(1, 'before it was sent', '2026-12-06T10:01:00.000Z');
        await catalog.sendingOffline(mine.id, mine.updated_at);
        await upsert(2, 'changed at central after the answer', '2026-12-06T10:03:00.000Z');
        assert.equal((await catalog.getImage(mine.id))?.name, 'made-here', 'the mark stands');
        assert.equal(await catalog.settleOffline(mine.id, mine.updated_at, { ...mine, name: 'the answer', updated_at: '2026-12-06T10:02:00.000Z' }), true);
        assert.equal((await catalog.getImage(mine.id))?.name, 'changed at central after the answer');

        // Deleted at central after the answer: gone here.
        const other = await madeHere(catalog);
        await catalog.sendingOffline(other.id, other.updated_at);
        await catalog.apply([{ seq: 3, entity: 'image', id: other.id, op: 'delete', body: { id: other.id }, at: '' }], 3);
        assert.equal(await catalog.settleOffline(other.id, other.updated_at, other), true);
        assert.equal(await catalog.getImage(other.id), undefined);

        // A snapshot reload (after a 410 from the feed) is kept aside the same way.
        const third = await madeHere(catalog);
        await catalog.sendingOffline(third.id, third.updated_at);
        await catalog.load({ ...emptySnapshot(4), images: [{ ...third, name: 'in the parent\'s snapshot', updated_at: '2026-12-06T10:04:00.000Z' }] });
        assert.equal((await catalog.getImage(third.id))?.name, 'made-here', 'the mark stands');
        assert.equal(await catalog.settleOffline(third.id, third.updated_at, third), true);
        assert.equal((await catalog.getImage(third.id))?.name, 'in the parent\'s snapshot');
      } finally {
        await cleanup();
      }
    });
  });
}
