import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { desiredAt } from '../../src/core/desired-placement.ts';
import type { Image } from '../../src/core/image.ts';
import { validatePolicy } from '../../src/core/placement-policy.ts';

const SITES = new Set(['edge-1', 'edge-2', 'far-1']);
let n = 0;
function image(over: Partial<Image> = {}): Image {
  const id = `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
  return {
    id, name: `i${n}`, status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: 'c'.repeat(32), os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 10, virtual_size: 10, disk_format: 'qcow2', container_format: 'bare',
    min_disk: 0, min_ram: 0, owner: null, created_at: '', updated_at: '', tags: [], properties: {}, locations: [], ...over,
  };
}
const eu = { id: 'edge-1', labels: { region: 'eu', tier: 'edge' }, stores: ['edge-1'] };
const euFar = { id: 'far-1', labels: { region: 'eu', tier: 'far' }, stores: ['far-1'] };
const us = { id: 'edge-2', labels: { region: 'us', tier: 'edge' }, stores: ['edge-2', 'edge-2-bulk'] };

describe('desired placement of a site', () => {
  const golden = validatePolicy({ name: 'golden-eu', images: { tags: ['golden'] }, sites: { labels: 'region=eu,tier!=far' }, mode: 'replicate', priority: 70 }, SITES);
  const warm = validatePolicy({ name: 'warm-far', images: { tags: ['golden'] }, sites: { ids: ['far-1', 'edge-1'] }, mode: 'cache', priority: 90 }, SITES);

  it('wants the images a policy selects at the sites it selects, with its mode and priority', () => {
    const g = image({ tags: ['golden'] });
    const plain = image();
    assert.deepEqual([...desiredAt(eu, [g, plain], [golden])], [[g.id, { mode: 'replicate', priority: 70, reasons: ['golden-eu'] }]]);
    assert.deepEqual(desiredAt(us, [g, plain], [golden]).size, 0);
    assert.deepEqual(desiredAt(euFar, [g, plain], [golden]).size, 0, 'tier!=far excludes the far edge');
  });

  it('merges several reasons: replicate wins over cache, the highest priority counts', () => {
    const g = image({ tags: ['golden'] });
    assert.deepEqual(desiredAt(eu, [g], [golden, warm]).get(g.id), { mode: 'replicate', priority: 90, reasons: ['golden-eu', 'warm-far'] });
    assert.deepEqual(desiredAt(euFar, [g], [golden, warm]).get(g.id), { mode: 'cache', priority: 90, reasons: ['warm-far'] });
  });

  it('outpost_placement acts as a replicate policy for its image; an empty or malformed one as none', () => {
    const byProperty = image({ properties: { outpost_placement: 'region in (us,eu), tier=edge' } });
    const empty = image({ properties: { outpost_placement: ' ' } });
    const malformed = image({ properties: { outpost_placement: 'region in (us' } });
    assert.deepEqual(desiredAt(us, [byProperty, empty, malformed], []).get(byProperty.id), { mode: 'replicate', priority: 50, reasons: ['outpost_placement'] });
    assert.equal(desiredAt(us, [byProperty, empty, malformed], []).size, 1);
    assert.equal(desiredAt(euFar, [byProperty], []).size, 0);
  });

  it('never wants an image without verifiable bytes; keeps wanting a deactivated one', () => {
    const queued = image({ status: 'queued', size: null, checksum: null, os_hash_value: null, os_hash_algo: null, tags: ['golden'] });
    const md5Only = image({ os_hash_algo: null, os_hash_value: null, tags: ['golden'] });
    const deactivated = image({ status: 'deactivated', tags: ['golden'] });
    assert.deepEqual([...desiredAt(eu, [queued, md5Only, deactivated], [golden]).keys()], [deactivated.id]);
  });

  it('wants a copy copy-image is bringing to one of the site\'s stores (listed in os_glance_importing_to_stores), above policies', () => {
    const copying = image({ properties: { os_glance_importing_to_stores: 'edge-2-bulk,edge-1' }, tags: ['golden'] });
    assert.deepEqual(desiredAt(us, [copying], [golden]).get(copying.id), { mode: 'replicate', priority: 80, reasons: ['copy-image'], store: 'edge-2-bulk' });
    assert.deepEqual(desiredAt(eu, [copying], [golden]).get(copying.id), { mode: 'replicate', priority: 80, reasons: ['golden-eu', 'copy-image'], store: 'edge-1' });
    assert.equal(desiredAt(euFar, [copying], [golden]).size, 0);
    const queued = image({ status: 'importing', properties: { os_glance_importing_to_stores: 'edge-2' } });
    assert.equal(desiredAt(us, [queued], []).size, 0, 'an import of new bytes is central\'s, not a copy');
  });
});
