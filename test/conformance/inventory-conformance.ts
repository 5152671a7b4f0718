import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InventoryItem, InventoryStore, SiteInventory } from '../../src/core/ports.ts';

export interface InventoryHandle {
  inventory: InventoryStore;
  cleanup(): Promise<void>;
}

const item = (image_id: string, store: string, state: InventoryItem['state'] = 'cached'): InventoryItem => ({
  image_id, store, size: 10, state, since: '2026-01-01T00:00:00.000Z', hits: state === 'stored' ? null : 3, last_accessed: null,
});
const report = (site: string, images: InventoryItem[]): SiteInventory => ({ site, reported_at: '2026-01-02T00:00:00.000Z', images });

/** The contract of the `InventoryStore` port (src/core/ports.ts), run against one adapter. */
export function inventoryConformance(name: string, open: () => Promise<InventoryHandle>): void {
  const withStore = (fn: (inventory: InventoryStore) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle.inventory);
    } finally {
      await handle.cleanup();
    }
  };

  describe(`InventoryStore conformance: ${name}`, () => {
    it('keeps each site\'s last report as it was given; an unknown site has none', withStore(async (inventory) => {
      assert.equal(await inventory.getInventory('edge-1'), undefined);
      const first = report('edge-1', [item('i1', 'edge-1'), item('i2', 'edge-1', 'stored')]);
      await inventory.putInventory(first);
      assert.deepEqual(await inventory.getInventory('edge-1'), first);
      const second = report('edge-1', [item('i2', 'edge-1', 'stored')]);
      await inventory.putInventory(second);
      assert.deepEqual(await inventory.getInventory('edge-1'), second);
    }));

    it('listInventories: every site\'s last report, by site, placements kept as given', withStore(async (inventory) => {
      assert.deepEqual(await inventory.listInventories(), []);
      const withPlacements: SiteInventory = {
        ...report('edge-2', [item('i1', 'edge-2', 'stored')]),
        placements: [{ image_id: 'i2', state: 'transferring', reason: null, since: '2026-01-02T00:00:00.000Z', bytes_done: 5, bytes_per_second: 2 }],
      };
      await inventory.putInventory(withPlacements);
      await inventory.putInventory(report('edge-1', [item('i1', 'edge-1')]));
      await inventory.putInventory(report('edge-1', []));
      assert.deepEqual(await inventory.listInventories(), [report('edge-1', []), withPlacements]);
      await assert.rejects(inventory.listInventories({ signal: AbortSignal.abort() }));
    }));

    it('listInventories of some sites; inventoryRevisions changes with every report a site sends, also an identical one', withStore(async (inventory) => {
      assert.deepEqual(await inventory.inventoryRevisions(), new Map());
      for (const site of ['edge-3', 'edge-1', 'edge-2']) await inventory.putInventory(report(site, []));
      assert.deepEqual(await inventory.listInventories({ sites: ['edge-3', 'edge-1', 'gone'] }), [report('edge-1', []), report('edge-3', [])]);
      assert.deepEqual(await inventory.listInventories({ sites: [] }), []);
      const before = await inventory.inventoryRevisions();
      assert.deepEqual([...before.keys()].sort(), ['edge-1', 'edge-2', 'edge-3']);
      await inventory.putInventory(report('edge-2', []));
      const after = await inventory.inventoryRevisions();
      assert.notEqual(after.get('edge-2'), before.get('edge-2'));
      assert.equal(after.get('edge-1'), before.get('edge-1'));
      await inventory.deleteInventory('edge-1');
      assert.equal((await inventory.inventoryRevisions()).has('edge-1'), false);
    }));

    it('heartbeats: each site\'s last one, replaced by the next', withStore(async (inventory) => {
      assert.deepEqual(await inventory.listHeartbeats(), new Map());
      await inventory.putHeartbeat('edge-1', { last_contact: '2026-01-01T00:00:00.000Z', lag_changes: null });
      await inventory.putHeartbeat('edge-2', { last_contact: '2026-01-01T00:00:01.000Z', lag_changes: 0 });
      await inventory.putHeartbeat('edge-1', { last_contact: '2026-01-01T00:00:30.000Z', lag_changes: 7 });
      assert.deepEqual(await inventory.listHeartbeats(), new Map([
        ['edge-1', { last_contact: '2026-01-01T00:00:30.000Z', lag_changes: 7 }],
        ['edge-2', { last_contact: '2026-01-01T00:00:01.000Z', lag_changes: 0 }],
      ]));
      await assert.rejects(inventory.listHeartbeats({ signal: AbortSignal.abort() }));
    }));

    it('storesHolding: per image, the stores of every site whose last report holds a cached copy', withStore(async (inventory) => {
      await inventory.putInventory(report('edge-1', [item('i1', 'edge-1'), item('i2', 'edge-1', 'pinned')]));
      await inventory.putInventory(report('edge-2', [item('i1', 'edge-2'), item('i1', 'edge-2')]));
      assert.deepEqual(await inventory.storesHolding(['i1', 'i2', 'i3']), new Map([['i1', ['edge-1', 'edge-2']], ['i2', ['edge-1']]]));
      // A new report replaces the old one: copies it no longer lists are no longer held.
      await inventory.putInventory(report('edge-1', []));
      assert.deepEqual(await inventory.storesHolding(['i1', 'i2']), new Map([['i1', ['edge-2']]]));
      assert.deepEqual(await inventory.storesHolding([]), new Map());
      // A stored copy is the catalog's location: not among the cached copies.
      await inventory.putInventory(report('edge-3', [item('i3', 'edge-3', 'stored')]));
      assert.deepEqual(await inventory.storesHolding(['i3']), new Map());
    }));

    it('deleteInventory forgets a site\'s report and the copies it listed; other sites keep theirs', withStore(async (inventory) => {
      await inventory.putInventory(report('edge-1', [item('i1', 'edge-1')]));
      await inventory.putInventory(report('edge-2', [item('i1', 'edge-2')]));
      await inventory.deleteInventory('edge-1');
      await inventory.deleteInventory('never-reported');
      assert.equal(await inventory.getInventory('edge-1'), undefined);
      assert.deepEqual(await inventory.storesHolding(['i1']), new Map([['i1', ['edge-2']]]));
    }));

    it('rejects calls made with an aborted signal', withStore(async (inventory) => {
      const signal = AbortSignal.abort();
      await assert.rejects(inventory.putInventory(report('edge-1', [item('i1', 'edge-1')]), { signal }));
      await assert.rejects(inventory.getInventory('edge-1', { signal }));
      await assert.rejects(inventory.storesHolding(['i1'], { signal }));
      await assert.rejects(inventory.deleteInventory('edge-1', { signal }));
      assert.equal(await inventory.getInventory('edge-1'), undefined);
    }));
  });
}
