import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PolicyRecord } from '../../src/core/placement-policy.ts';
import { bytesOf, call, createActiveImage, expectStatus, project } from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

/** Asks for errors in Glance's JSON shape, as openstacksdk does. */
const JSON_ERRORS = { accept: 'application/json' };

const GOLDEN = {
  name: 'golden-eu', images: { tags: ['golden'], properties: { os_distro: 'ubuntu' }, visibility: 'public' },
  sites: { labels: 'region=eu,tier!=far' }, mode: 'replicate', priority: 70,
};

describe('/outpost/v1/policies', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site?.close(); });

  it('creates, reads, lists, patches and deletes a policy', async () => {
    const created = await call<PolicyRecord>(site, 'POST', '/outpost/v1/policies', { json: GOLDEN });
    expectStatus(created, 201);
    const p = created.body;
    assert.match(p.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual({ ...p, id: undefined, created_at: undefined, updated_at: undefined }, { ...GOLDEN, id: undefined, created_at: undefined, updated_at: undefined });
    assert.equal(p.created_at, p.updated_at);

    assert.deepEqual((await call(site, 'GET', `/outpost/v1/policies/${p.id}`)).body, p);
    const listed = await call<{ policies: PolicyRecord[] }>(site, 'GET', '/outpost/v1/policies', { as: project('p-reader') });
    expectStatus(listed, 200);
    assert.deepEqual(listed.body.policies, [p], 'any caller may read the policies');

    const patched = await call<PolicyRecord>(site, 'PATCH', `/outpost/v1/policies/${p.id}`, { json: { mode: 'cache', sites: { ids: ['central'] } } });
    expectStatus(patched, 200);
    assert.equal(patched.body.mode, 'cache');
    assert.deepEqual(patched.body.sites, { ids: ['central'] });
    assert.deepEqual(patched.body.images, GOLDEN.images, 'fields not given are kept');
    assert.equal(patched.body.created_at, p.created_at);
    assert.ok(patched.body.updated_at >= p.updated_at);
    assert.deepEqual((await call(site, 'GET', `/outpost/v1/policies/${p.id}`)).body, patched.body);

    expectStatus(await call(site, 'DELETE', `/outpost/v1/policies/${p.id}`), 204);
    expectStatus(await call(site, 'GET', `/outpost/v1/policies/${p.id}`), 404);
    expectStatus(await call(site, 'DELETE', `/outpost/v1/policies/${p.id}`), 404);
    assert.deepEqual((await call<{ policies: unknown[] }>(site, 'GET', '/outpost/v1/policies')).body.policies, []);
  });

  it('answers a bad policy with a 400 in Glance\'s shape naming the field, and stores nothing', async () => {
    const bad: [unknown, RegExp][] = [
      [{ ...GOLDEN, mode: 'mirror' }, /^mode: /],
      [{ ...GOLDEN, sites: { labels: 'region in (eu' } }, /^sites\.labels: /],
      [{ ...GOLDEN, sites: { ids: ['edge-nowhere'] } }, /^sites\.ids: .*edge-nowhere/],
      [{ ...GOLDEN, priority: 101 }, /^priority: /],
      [{ ...GOLDEN, name: '' }, /^name: /],
      [{ ...GOLDEN, images: { visibility: 'everyone' } }, /^images\.visibility: /],
      [[], /^policy: /],
    ];
    for (const [body, message] of bad) {
      const res = await call<{ message: string; code: string; title: string }>(site, 'POST', '/outpost/v1/policies', { json: body, headers: JSON_ERRORS });
      expectStatus(res, 400);
      assert.equal(res.body.code, '400 Bad Request');
      assert.equal(res.body.title, 'Bad Request');
      assert.match(res.body.message, message, JSON.stringify(body));
    }
    const malformed = await call(site, 'POST', '/outpost/v1/policies', { body: '{"name":', headers: { 'content-type': 'application/json' } });
    expectStatus(malformed, 400);
    assert.deepEqual((await call<{ policies: unknown[] }>(site, 'GET', '/outpost/v1/policies')).body.policies, []);

    const one = await call<PolicyRecord>(site, 'POST', '/outpost/v1/policies', { json: GOLDEN });
    expectStatus(one, 201);
    const twice = await call<{ message: string }>(site, 'POST', '/outpost/v1/policies', { json: GOLDEN, headers: JSON_ERRORS });
    expectStatus(twice, 400);
    assert.match(twice.body.message, /^name: a policy is already named "golden-eu"/);
    const badPatch = await call<{ message: string }>(site, 'PATCH', `/outpost/v1/policies/${one.body.id}`, { json: { mode: 'sometimes' }, headers: JSON_ERRORS });
    expectStatus(badPatch, 400);
    assert.match(badPatch.body.message, /^mode: /);
    assert.deepEqual((await call(site, 'GET', `/outpost/v1/policies/${one.body.id}`)).body, one.body, 'a refused PATCH changes nothing');
    expectStatus(await call(site, 'DELETE', `/outpost/v1/policies/${one.body.id}`), 204);
  });

  it('lets only administrators write policies (403), and answers 404 for a policy that is not there', async () => {
    const member = project('p-member', 'member');
    expectStatus(await call(site, 'POST', '/outpost/v1/policies', { json: GOLDEN, as: member }), 403);
    const p = await call<PolicyRecord>(site, 'POST', '/outpost/v1/policies', { json: GOLDEN });
    expectStatus(await call(site, 'PATCH', `/outpost/v1/policies/${p.body.id}`, { json: { priority: 1 }, as: member }), 403);
    expectStatus(await call(site, 'DELETE', `/outpost/v1/policies/${p.body.id}`, { as: member }), 403);
    expectStatus(await call(site, 'GET', '/outpost/v1/policies/6b1a8d9e-5f3c-4b7a-9e2d-1c0f8a7b6d5e'), 404);
    expectStatus(await call(site, 'PATCH', '/outpost/v1/policies/6b1a8d9e-5f3c-4b7a-9e2d-1c0f8a7b6d5e', { json: { priority: 1 } }), 404);
    expectStatus(await call(site, 'DELETE', `/outpost/v1/policies/${p.body.id}`), 204);
  });
});

describe('/outpost/v1/fleet', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site?.close(); });

  const register = async (id: string, labels: Record<string, string>) => expectStatus(await call(site, 'POST', '/outpost/v1/sites', {
    json: { id, parent: 'central', labels, public_url: `http://127.0.0.1:1/${id}`, version: 'test', stores: [id] },
  }), 200);
  type Page = { fleet: { image_id: string; site: string; state: string; bytes_done: number; reason: string | null }[]; next: string | null; convergence: { policies: { id: string; held: number; desired: number }[] } };
  const fleet = async (query: string) => {
    const res = await call<Page>(site, 'GET', `/outpost/v1/fleet${query}`);
    expectStatus(res, 200);
    return res.body;
  };

  it('pages through every pair in image-then-site order, follows catalog changes and reports, and refuses bad queries', async () => {
    const central = (await call<{ site: string }>(site, 'GET', '/outpost/v1/status')).body.site;
    for (const [id, region] of [['eu-2', 'eu'], ['us-1', 'us'], ['eu-1', 'eu'], ['eu-3', 'eu']] as const) await register(id, { region });
    expectStatus(await call(site, 'POST', '/outpost/v1/policies', { json: { name: 'golden-eu', images: { tags: ['golden'] }, sites: { labels: 'region=eu' }, mode: 'replicate' } }), 201);
    const images = [];
    for (let i = 0; i < 3; i++) images.push(await createActiveImage(site, bytesOf(100 + i, i), { tags: ['golden'] }));
    images.sort((a, b) => (a.id < b.id ? -1 : 1));
    const all = images.flatMap((image) => ['eu-1', 'eu-2', 'eu-3'].map((s) => `${image.id}/${s}`));

    const seen: string[] = [];
    let query = '?limit=2';
    for (;;) {
      const page = await fleet(query);
      seen.push(...page.fleet.map((e) => `${e.image_id}/${e.site}`));
      assert.ok(page.fleet.length <= 2);
      if (page.next === null) break;
      assert.equal(page.next, seen.at(-1));
      query = `?limit=2&marker=${encodeURIComponent(page.next)}`;
    }
    assert.deepEqual(seen, all);
    assert.deepEqual((await fleet('?site=eu-3')).fleet.map((e) => `${e.image_id}/${e.site}`), all.filter((p) => p.endsWith('/eu-3')));
    assert.ok(!seen.some((p) => p.endsWith(`/${central}`) || p.endsWith('/us-1')));

    // A report moves a pair; a new image tagged golden and a site's new labels show at once.
    const [first] = images;
    expectStatus(await call(site, 'PUT', '/outpost/v1/sites/eu-1/inventory', {
      json: { images: [], placements: [{ image_id: first!.id, state: 'transferring', reason: null, since: new Date().toISOString(), bytes_done: 40, bytes_per_second: 10 }] },
    }), 204);
    const moving = await fleet(`?image=${first!.id}&state=transferring`);
    assert.deepEqual(moving.fleet.map((e) => [e.site, e.bytes_done]), [['eu-1', 40]]);
    assert.match((await fleet(`?image=${first!.id}&site=eu-2`)).fleet[0]!.reason!, /eu-2 has not reported yet/);
    const fourth = await createActiveImage(site, bytesOf(50, 9), { tags: ['golden'] });
    await register('us-1', { region: 'eu' });
    const after = await fleet('?limit=1000');
    assert.equal(after.fleet.length, 4 * 4);
    assert.ok(after.fleet.some((e) => e.image_id === fourth.id && e.site === 'us-1'));
    assert.deepEqual(after.convergence.policies, [{ id: 'golden-eu', held: 0, desired: 16, percent: 0 }]);

    for (const bad of ['?state=done', '?limit=-1', '?limit=x', '?marker=nothing', '?site=a&site=b']) {
      const res = await call<{ code: string }>(site, 'GET', `/outpost/v1/fleet${bad}`, { headers: JSON_ERRORS });
      expectStatus(res, 400);
      assert.equal(res.body.code, '400 Bad Request', bad);
    }
  });
});
