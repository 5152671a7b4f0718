import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  call, createImage, expectStatus, getImage, listImages, project, type ImageJson,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const MISSING = '00000000-0000-0000-0000-000000000000';

describe('image tags', () => {
  let site: TestSite;
  let image: ImageJson;
  before(async () => {
    site = await startTestSite();
    image = await createImage(site, { name: 'tagged', tags: ['initial'] });
  });
  after(async () => { await site.close(); });

  const tagPath = (tag: string, id = image.id) => `/v2/images/${id}/tags/${encodeURIComponent(tag)}`;

  it('PUT answers 204 with no body and adds the tag', async () => {
    const res = await call(site, 'PUT', tagPath('blue'));
    expectStatus(res, 204);
    assert.equal(res.text, '');
    assert.deepEqual((await getImage(site, image.id)).tags.sort(), ['blue', 'initial']);
  });

  it('PUT is idempotent: the tag is held once', async () => {
    expectStatus(await call(site, 'PUT', tagPath('blue')), 204);
    expectStatus(await call(site, 'PUT', tagPath('blue')), 204);
    const tags: string[] = (await getImage(site, image.id)).tags;
    assert.equal(tags.filter((t) => t === 'blue').length, 1);
  });

  it('a tag with spaces and unicode round-trips, and the list filter finds it', async () => {
    expectStatus(await call(site, 'PUT', tagPath('my tag é')), 204);
    assert.ok((await getImage(site, image.id)).tags.includes('my tag é'));
    const list = await listImages(site, `tag=${encodeURIComponent('my tag é')}`);
    assert.deepEqual(list.images.map((i) => i.id), [image.id]);
  });

  it('DELETE answers 204 and removes the tag; deleting it again answers 404', async () => {
    const res = await call(site, 'DELETE', tagPath('blue'));
    expectStatus(res, 204);
    assert.equal(res.text, '');
    assert.ok(!(await getImage(site, image.id)).tags.includes('blue'));
    expectStatus(await call(site, 'DELETE', tagPath('blue')), 404);
  });

  it('DELETE of a tag the image never had answers 404', async () => {
    expectStatus(await call(site, 'DELETE', tagPath('never')), 404);
  });

  it('tags on a missing image answer 404', async () => {
    expectStatus(await call(site, 'PUT', tagPath('x', MISSING)), 404);
    expectStatus(await call(site, 'DELETE', tagPath('x', MISSING)), 404);
  });

  it('a tag longer than 255 characters answers 400', async () => {
    expectStatus(await call(site, 'PUT', tagPath('t'.repeat(256))), 400);
    expectStatus(await call(site, 'PUT', tagPath('t'.repeat(255))), 204);
  });

  it('only the owner (or an admin) may tag: 404 when the image is invisible, 403 when visible', async () => {
    const owner = project('tags-owner');
    const priv = await createImage(site, { name: 'priv', visibility: 'private' }, owner);
    const community = await createImage(site, { name: 'comm', visibility: 'community' }, owner);
    expectStatus(await call(site, 'PUT', tagPath('x', priv.id), { as: project('tags-other') }), 404);
    expectStatus(await call(site, 'PUT', tagPath('x', community.id), { as: project('tags-other') }), 403);
    expectStatus(await call(site, 'PUT', tagPath('x', community.id), { as: project('tags-owner', 'reader') }), 403);
    assert.deepEqual((await getImage(site, community.id)).tags, []);
    expectStatus(await call(site, 'PUT', tagPath('x', community.id), { as: owner }), 204);
    expectStatus(await call(site, 'DELETE', tagPath('x', community.id), { as: project('tags-other') }), 403);
    assert.deepEqual((await getImage(site, community.id)).tags, ['x']);
  });

  it('answers 413 past 128 tags', async () => {
    const many = await createImage(site, { name: 'many-tags' });
    for (let i = 0; i < 128; i++) expectStatus(await call(site, 'PUT', tagPath(`t${i}`, many.id)), 204);
    expectStatus(await call(site, 'PUT', tagPath('one-too-many', many.id)), 413);
    // Re-adding a tag it has is still fine.
    expectStatus(await call(site, 'PUT', tagPath('t0', many.id)), 204);
    assert.equal((await getImage(site, many.id)).tags.length, 128);
  });
});
