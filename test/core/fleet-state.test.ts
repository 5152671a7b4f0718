import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RegionPlacement, type FleetReport } from '../../src/core/fleet-state.ts';
import type { PlacementSite } from '../../src/core/desired-placement.ts';
import type { Image } from '../../src/core/image.ts';
import { validatePolicy } from '../../src/core/placement-policy.ts';
import { BadRequestError } from '../../src/core/errors.ts';
import { parseLabelSelector } from '../../src/core/label-selector.ts';
import { Fleet } from '../../src/placement/fleet.ts';

let n = 0;
function image(over: Partial<Image> = {}): Image {
  const id = `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
  return {
    id, name: `i${n}`, status: 'active', visibility: 'public', protected: false, os_hidden: false,
    checksum: 'c'.repeat(32), os_hash_algo: 'sha512', os_hash_value: 'f'.repeat(128), size: 100, virtual_size: 100, disk_format: 'raw', container_format: 'bare',
    min_disk: 0, min_ram: 0, owner: null, created_at: '', updated_at: '', tags: [], properties: {}, locations: [{ store: 'central', url: 'file:///c' }], ...over,
  };
}
const SITES = new Set(['central', 'eu-1', 'eu-2', 'us-1']);
const site = (id: string, labels: Record<string, string>, report?: FleetReport): PlacementSite & { report?: FleetReport } => ({ id, labels, stores: [id], report });
const reportsOf = (sites: { id: string; report?: FleetReport }[]) => new Map(sites.flatMap((s) => (s.report === undefined ? [] : [[s.id, s.report] as const])));
const T = '2026-12-05T10:00:00.000Z';

describe('fleet state', () => {
  const golden = validatePolicy({ name: 'golden-eu', images: { tags: ['golden'] }, sites: { labels: 'region=eu' }, mode: 'replicate' }, SITES);
  const warm = validatePolicy({ name: 'warm-us', images: { tags: ['golden'] }, sites: { ids: ['us-1'] }, mode: 'cache', priority: 20 }, SITES);

  it('every wanted pair: held where the catalog locates a copy, else as the site reported it, else pending saying why', () => {
    const g = image({ tags: ['golden'] });
    const heldAtEu1 = { ...g, locations: [...g.locations, { store: 'eu-1', url: 'file:///e', placed_by: 'policy' as const }] };
    const sites = [
      site('central', {}),
      site('eu-1', { region: 'eu' }, { reported_at: T, cached: [], placements: [{ image_id: g.id, state: 'held', reason: null, since: T, bytes_done: null, bytes_per_second: null }] }),
      site('eu-2', { region: 'eu' }, {
        reported_at: T, cached: [],
        placements: [{ image_id: g.id, state: 'transferring', reason: null, since: T, bytes_done: 40, bytes_per_second: 10 }],
      }),
      site('eu-3', { region: 'eu' }),
      site('us-1', { region: 'us' }, { reported_at: T, cached: [g.id], placements: [] }),
    ];
    const { entries, more, convergence: c } = new RegionPlacement(sites, [heldAtEu1, image()], [golden, warm]).view(reportsOf(sites), { limit: 100 });
    assert.equal(more, false);
    assert.deepEqual(entries.map((e) => [e.site, e.mode, e.state, e.bytes_done, e.bytes_total, e.reason]), [
      ['eu-1', 'replicate', 'held', 100, 100, null],
      ['eu-2', 'replicate', 'transferring', 40, 100, null],
      ['eu-3', 'replicate', 'pending', 0, 100, 'site eu-3 has not reported yet'],
      ['us-1', 'cache', 'held', 100, 100, null],
    ]);
    assert.equal(entries[0]!.since, T);
    assert.deepEqual(entries[3]!.reasons, ['warm-us']);

    assert.deepEqual(c.images, [{ id: g.id, held: 2, desired: 4, percent: 50 }]);
    assert.deepEqual(c.policies, [{ id: 'golden-eu', held: 1, desired: 3, percent: 33.3 }, { id: 'warm-us', held: 1, desired: 1, percent: 100 }]);
    assert.deepEqual(c.sites.map((s) => [s.id, s.percent]), [['eu-1', 100], ['eu-2', 0], ['eu-3', 0], ['us-1', 100]]);
  });

  it('a site that reported but has not started a copy, or failed it, says so', () => {
    const g = image({ tags: ['golden'] });
    const failed = { image_id: g.id, state: 'failed' as const, reason: 'bytes did not match', since: T, bytes_done: null, bytes_per_second: null };
    const sites = [
      site('eu-1', { region: 'eu' }, { reported_at: T, cached: [], placements: [] }),
      site('eu-2', { region: 'eu' }, { reported_at: T, cached: [], placements: [failed] }),
    ];
    const { entries } = new RegionPlacement(sites, [g], [golden]).view(reportsOf(sites), { limit: 100 });
    assert.deepEqual(entries.map((e) => [e.state, e.reason]), [['pending', `not started at site eu-1 as of its report at ${T}`], ['failed', 'bytes did not match']]);
  });

  it('filters by image, site, policy and state and pages in image-then-site order; convergence stays the whole region\'s', () => {
    const images = [image({ tags: ['golden'] }), image({ tags: ['golden'] }), image({ tags: ['golden'] })];
    const sites = [site('eu-2', { region: 'eu' }), site('us-1', { region: 'us' }), site('eu-1', { region: 'eu' })];
    const located = { ...images[1]!, locations: [...images[1]!.locations, { store: 'eu-2', url: 'file:///e' }] };
    const region = new RegionPlacement(sites, [images[0]!, located, images[2]!], [golden, warm]);
    assert.equal(region.size, 9);
    const reports = reportsOf(sites);
    const pairs = (v: { entries: { image_id: string; site: string }[] }) => v.entries.map((e) => `${images.findIndex((i) => i.id === e.image_id)}/${e.site}`);

    const first = region.view(reports, { limit: 4 });
    assert.deepEqual(pairs(first), ['0/eu-1', '0/eu-2', '0/us-1', '1/eu-1']);
    assert.equal(first.more, true);
    const rest = region.view(reports, { limit: 4, after: { image_id: images[1]!.id, site: 'eu-1' } });
    assert.deepEqual(pairs(rest), ['1/eu-2', '1/us-1', '2/eu-1', '2/eu-2']);
    assert.equal(rest.more, true);
    const last = region.view(reports, { limit: 4, after: { image_id: images[2]!.id, site: 'eu-2' } });
    assert.deepEqual([pairs(last), last.more], [['2/us-1'], false]);

    assert.deepEqual(pairs(region.view(reports, { limit: 10, site: 'us-1' })), ['0/us-1', '1/us-1', '2/us-1']);
    assert.deepEqual(pairs(region.view(reports, { limit: 10, image: images[1]!.id, policy: 'golden-eu' })), ['1/eu-1', '1/eu-2']);
    const held = region.view(reports, { limit: 10, state: 'held' });
    assert.deepEqual(pairs(held), ['1/eu-2']);
    assert.deepEqual(held.convergence.policies, [{ id: 'golden-eu', held: 1, desired: 6, percent: 16.6 }, { id: 'warm-us', held: 0, desired: 3, percent: 0 }]);
    assert.deepEqual(held.convergence.sites.map((c) => [c.id, c.held, c.desired]), [['eu-1', 0, 3], ['eu-2', 1, 3], ['us-1', 0, 3]]);
    assert.deepEqual(region.view(reports, { limit: 10, site: 'nowhere' }).entries, []);
  });

  it('filters by tags (every one given) and by a site label selector, with the other filters; convergence stays region-wide', () => {
    const anyTier = validatePolicy({ name: 'all-golden', images: { tags: ['golden'] }, sites: { labels: 'region' }, mode: 'replicate' }, SITES);
    const gold = image({ tags: ['golden'] });
    const goldLinux = image({ tags: ['golden', 'linux'] });
    const sites = [
      site('central', {}), site('eu-1', { region: 'eu', tier: 'edge' }), site('eu-far', { region: 'eu', tier: 'far' }),
      site('us-1', { region: 'us', tier: 'edge' }, { reported_at: T, cached: [], placements: [{ image_id: gold.id, state: 'failed', reason: 'sha512 mismatch', since: T, bytes_done: null, bytes_per_second: null }] }),
    ];
    const placement = new RegionPlacement(sites, [gold, goldLinux, image({ tags: ['linux'] })], [anyTier]);
    const view = (filter: object) => placement.view(reportsOf(sites), { limit: 100, ...filter });
    const pairs = (filter: object) => view(filter).entries.map((e) => `${e.image_id === gold.id ? 'gold' : 'goldLinux'}@${e.site}`);
    assert.deepEqual(pairs({}), ['gold@eu-1', 'gold@eu-far', 'gold@us-1', 'goldLinux@eu-1', 'goldLinux@eu-far', 'goldLinux@us-1']);
    assert.deepEqual(pairs({ tags: ['linux'] }), ['goldLinux@eu-1', 'goldLinux@eu-far', 'goldLinux@us-1']);
    assert.deepEqual(pairs({ tags: ['golden', 'linux'] }), ['goldLinux@eu-1', 'goldLinux@eu-far', 'goldLinux@us-1']);
    assert.deepEqual(pairs({ tags: ['golden', 'windows'] }), []);
    assert.deepEqual(pairs({ siteLabels: parseLabelSelector('region=eu,tier!=far') }), ['gold@eu-1', 'goldLinux@eu-1']);
    assert.deepEqual(pairs({ siteLabels: parseLabelSelector('tier in (far)'), tags: ['linux'] }), ['goldLinux@eu-far']);
    assert.deepEqual(pairs({ siteLabels: parseLabelSelector('region!=eu'), state: 'failed' }), ['gold@us-1']);
    assert.deepEqual(view({ tags: ['linux'] }).convergence, view({}).convergence);
  });

  it('GET /outpost/v1/fleet\'s query: tag repeatable, site_labels parsed, a bad selector refused naming site_labels', () => {
    const q = (pairs: [string, string][]) => {
      const m = new Map<string, string[]>();
      for (const [k, v] of pairs) m.set(k, [...(m.get(k) ?? []), v]);
      return Fleet.query(m);
    };
    assert.deepEqual(q([['tag', 'golden'], ['tag', 'linux']]).tags, ['golden', 'linux']);
    assert.equal(q([]).tags, undefined);
    assert.equal(q([['site_labels', 'region=eu, tier!=far']]).siteLabels?.text, 'region=eu,tier!=far');
    assert.throws(() => q([['site_labels', 'region in (eu']]), (e: Error) => e instanceof BadRequestError && /^site_labels: /.test(e.message));
    assert.throws(() => q([['site_labels', 'a=b'], ['site_labels', 'c=d']]), /site_labels may be given once/);
  });
});
