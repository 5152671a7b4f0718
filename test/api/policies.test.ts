import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PolicyRecord } from '../../src/core/placement-policy.ts';
import { call, expectStatus, project } from '../helpers/glance-client.ts';
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
