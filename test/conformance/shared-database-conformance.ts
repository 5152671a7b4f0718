import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Image } from '../../src/core/image.ts';
import type { Catalog, Site } from '../../src/core/ports.ts';
import { eventually } from '../helpers/multi-site.ts';

/**
 * Two catalog handles opened on one database — on PostgreSQL, two nodes of a central — and how
 * to dispose of both (and of the database).
 */
export interface SharedDatabaseHandles {
  one: Catalog;
  two: Catalog;
  cleanup(): Promise<void>;
}

/** How long a commit may take to reach the other handle: it is announced, not waited for. */
const HEARD_WITHIN_MS = 10_000;

function site(id: string, weight: number): Site {
  return {
    id, parent: 'central', labels: {}, public_url: `https://${id}.example`, stores: [`${id}-store`],
    store_details: [{ id: `${id}-store`, type: 'file', weight, read_only: false, default: true, description: '', properties: {} }],
    version: '1', registered_at: '2024-01-01T00:00:00.000Z', last_contact: '2024-01-01T00:00:00.000Z', lag_changes: null,
  };
}

function image(overrides: Partial<Image> = {}): Image {
  const at = new Date().toISOString();
  return {
    id: randomUUID(), name: 'shared', status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: null, os_hash_algo: null, os_hash_value: null, size: 1, virtual_size: null, disk_format: 'raw',
    container_format: 'bare', min_disk: 0, min_ram: 0, owner: 'p', created_at: at, updated_at: at, tags: [],
    properties: {}, locations: [], ...overrides,
  };
}

/**
 * What one handle sees of writes made through another on the same database: whatever a handle
 * keeps in memory (the sites' registrations, which every image view reads) follows the other's
 * commits, and images are read whole from the database every time.
 */
export function sharedDatabaseConformance(name: string, open: () => Promise<SharedDatabaseHandles>): void {
  const withHandles = (fn: (one: Catalog, two: Catalog) => Promise<void>) => async () => {
    const handles = await open();
    try {
      await fn(handles.one, handles.two);
    } finally {
      await handles.cleanup();
    }
  };
  const weightAt = async (catalog: Catalog, id: string) => (await catalog.listSites()).find((s) => s.id === id)?.store_details?.[0]?.weight;

  describe(`Two handles on one database: ${name}`, () => {
    it('a site registered, changed or removed through one handle is seen in the sites the other lists', withHandles(async (one, two) => {
      await one.upsertSite({ ...site('central', 1), parent: null });
      await eventually('the other handle lists central', HEARD_WITHIN_MS, async () => (await weightAt(two, 'central')) === 1);
      // The other handle has read the sites (and may keep them): every later change must reach it.
      await one.upsertSite(site('edge-a', 7));
      await eventually('the other handle lists the new site', HEARD_WITHIN_MS, async () => (await weightAt(two, 'edge-a')) === 7);
      await one.upsertSite(site('edge-a', 9));
      await eventually('the other handle lists the site\'s new store weight', HEARD_WITHIN_MS, async () => (await weightAt(two, 'edge-a')) === 9);
      await one.deleteSite('edge-a');
      await eventually('the other handle no longer lists the removed site', HEARD_WITHIN_MS, async () => (await weightAt(two, 'edge-a')) === undefined);
      // And the other way round; the writing handle sees its own writes as soon as they resolve.
      await two.upsertSite(site('edge-b', 3));
      assert.equal(await weightAt(two, 'edge-b'), 3);
      await eventually('the first handle lists the site the other registered', HEARD_WITHIN_MS, async () => (await weightAt(one, 'edge-b')) === 3);
      assert.deepEqual((await one.listSites()).map((s) => s.id), ['central', 'edge-b']);
    }));

    it('an image written through one handle is read whole through the other as soon as the write resolves', withHandles(async (one, two) => {
      const written = image({
        tags: ['zeta', 'alpha', 'mid'], properties: { b: '2', a: '1', 'ü': '3' },
        locations: [{ store: 's2', url: 'file:///2' }, { store: 's1', url: 'file:///1', placed_by: 'policy' }],
      });
      await one.createImage(written);
      assert.deepEqual(await two.getImage(written.id), written);
      const updated = await one.updateImage(written.id, (current) => ({
        ...current, tags: ['mid', 'zeta'], properties: { ...current.properties, c: '4' }, locations: [...current.locations].reverse(),
      }));
      assert.deepEqual(await two.getImage(written.id), updated);
      assert.deepEqual(await two.imagesInStores(['s1']), [updated]);
      const listed = await two.listImages({
        scope: { admin: true, projectId: null, visibility: 'all', memberStatus: 'all' }, base: {}, properties: {}, tags: [],
        sort: [{ key: 'created_at', dir: 'desc' }, { key: 'id', dir: 'desc' }], limit: 10,
      });
      assert.deepEqual(listed, [updated]);
      await one.deleteImage(written.id);
      assert.equal(await two.getImage(written.id), undefined);
    }));
  });
}
