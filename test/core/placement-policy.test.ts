import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import { policyWantsImage, policyWantsSite, validatePolicy } from '../../src/core/placement-policy.ts';

const SITES = new Set(['edge-1', 'edge-2']);

function image(over: Partial<Image> = {}): Image {
  return {
    id: '6b1a8d9e-5f3c-4b7a-9e2d-1c0f8a7b6d5e', name: 'x', status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: null, os_hash_algo: null, os_hash_value: null, size: 1, virtual_size: 1, disk_format: 'qcow2', container_format: 'bare',
    min_disk: 0, min_ram: 0, owner: null, created_at: '', updated_at: '', tags: [], properties: {}, locations: [], ...over,
  };
}

describe('placement policies', () => {
  it('a valid policy is normalised: tags sorted and unique, priority defaulted, selector parsed', () => {
    const p = validatePolicy({
      name: ' golden-eu ', images: { tags: ['golden', 'b', 'golden'], properties: { os_distro: 'ubuntu' }, visibility: 'public' },
      sites: { labels: 'region=eu, tier!=far' }, mode: 'replicate',
    }, SITES);
    assert.equal(p.name, 'golden-eu');
    assert.deepEqual(p.images.tags, ['b', 'golden']);
    assert.equal(p.priority, 50);
    assert.ok('labels' in p.sites && p.sites.labels.text === 'region=eu,tier!=far');
  });

  it('wants the images every given criterion holds for, at the sites it selects', () => {
    const p = validatePolicy({ name: 'p', images: { tags: ['golden'], properties: { os_distro: 'ubuntu' } }, sites: { labels: 'region=eu,tier!=far' }, mode: 'cache' }, SITES);
    assert.equal(policyWantsImage(p, image({ tags: ['golden', 'x'], properties: { os_distro: 'ubuntu' } })), true);
    assert.equal(policyWantsImage(p, image({ tags: ['golden'], properties: { os_distro: 'debian' } })), false);
    assert.equal(policyWantsImage(p, image({ tags: [], properties: { os_distro: 'ubuntu' } })), false);
    assert.equal(policyWantsSite(p, { id: 'edge-1', labels: { region: 'eu', tier: 'edge' } }), true);
    assert.equal(policyWantsSite(p, { id: 'far-1', labels: { region: 'eu', tier: 'far' } }), false);
    const byId = validatePolicy({ name: 'q', sites: { ids: ['edge-2'] }, mode: 'replicate', priority: 90 }, SITES);
    assert.equal(policyWantsImage(byId, image()), true, 'no criteria: every image');
    assert.equal(policyWantsSite(byId, { id: 'edge-2', labels: {} }), true);
    assert.equal(policyWantsSite(byId, { id: 'edge-1', labels: {} }), false);
  });

  const bad: [unknown, RegExp][] = [
    [null, /^policy: must be an object/],
    [{ name: '', sites: { ids: ['edge-1'] }, mode: 'cache' }, /^name: /],
    [{ name: 'p', sites: { ids: ['edge-9'] }, mode: 'cache' }, /^sites\.ids: no site is registered as edge-9/],
    [{ name: 'p', sites: { labels: 'region in (eu' }, mode: 'cache' }, /^sites\.labels: unbalanced/],
    [{ name: 'p', sites: {}, mode: 'cache' }, /^sites: must be/],
    [{ name: 'p', sites: { ids: ['edge-1'], labels: 'a=b' }, mode: 'cache' }, /^sites: must be/],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'mirror' }, /^mode: must be one of replicate, cache/],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', priority: 101 }, /^priority: /],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', images: { visibility: 'secret' } }, /^images\.visibility: /],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', images: { tags: 'golden' } }, /^images\.tags: /],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', images: { properties: { a: 1 } } }, /^images\.properties\.a: /],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', images: { size: 3 } }, /^images\.size: is not an image criterion/],
    [{ name: 'p', sites: { ids: ['edge-1'] }, mode: 'cache', colour: 'red' }, /^colour: is not a field of a policy/],
  ];
  for (const [body, message] of bad) {
    it(`refuses ${JSON.stringify(body)} with a 400 naming the field`, () => {
      assert.throws(() => validatePolicy(body, SITES), (e: unknown) => e instanceof BadRequestError && message.test(e.message));
    });
  }
});
