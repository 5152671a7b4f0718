import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, bytesOf, call, createActiveImage, createImage, expectStatus, getImage, ids, listImages, patchImage, project,
  upload, type ImageJson,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const MISSING = '00000000-0000-0000-0000-000000000000';
const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

interface MemberJson {
  member_id: string;
  image_id: string;
  status: string;
  created_at: string;
  updated_at: string;
  schema: string;
}

describe('members and access rules', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  describe('image members', () => {
    const owner = project('m-owner');
    const b = project('m-b');
    const c = project('m-c');
    let shared: ImageJson;

    before(async () => {
      shared = await createActiveImage(site, bytesOf(1500, 1), { name: 'shared-img', visibility: 'shared', marker: 'members' }, owner);
    });

    const members = (id = shared.id) => `/v2/images/${id}/members`;
    const inDefaultList = async (who = b) => ids(await listImages(site, 'limit=100', who)).includes(shared.id);

    for (const visibility of ['private', 'public', 'community'] as const) {
      it(`a ${visibility} image has no members (403)`, async () => {
        const image = visibility === 'public'
          ? await createImage(site, { visibility, owner: 'm-owner' })
          : await createImage(site, { visibility }, owner);
        const add = await call<{ message: string }>(site, 'POST', members(image.id), {
          as: owner, json: { member: 'm-b' }, headers: { accept: 'application/json' },
        });
        expectStatus(add, 403);
        assert.equal(add.body.message, 'Only shared images have members.<br /><br />\n\n\n');
        expectStatus(await call(site, 'GET', members(image.id), { as: owner }), 403);
      });
    }

    it('POST adds a pending member (200 with the member body)', async () => {
      const res = await call<MemberJson>(site, 'POST', members(), { as: owner, json: { member: 'm-b' } });
      expectStatus(res, 200);
      assert.deepEqual(Object.keys(res.body).sort(), ['created_at', 'image_id', 'member_id', 'schema', 'status', 'updated_at']);
      assert.equal(res.body.member_id, 'm-b');
      assert.equal(res.body.image_id, shared.id);
      assert.equal(res.body.status, 'pending');
      assert.equal(res.body.schema, '/v2/schemas/member');
      assert.match(res.body.created_at, ISO_SECONDS);
      assert.match(res.body.updated_at, ISO_SECONDS);
    });

    it('adding the same member again answers 409', async () => {
      expectStatus(await call(site, 'POST', members(), { as: owner, json: { member: 'm-b' } }), 409);
    });

    it('a body without a member answers 400', async () => {
      for (const json of [{}, { member: 42 }, { member: '' }, []]) {
        const res = await call(site, 'POST', members(), { as: owner, json });
        assert.equal(res.status, 400, `${JSON.stringify(json)}: ${res.text}`);
      }
    });

    it('only the owner may add members', async () => {
      // m-b can see the image (it is a member) but does not own it.
      expectStatus(await call(site, 'POST', members(), { as: b, json: { member: 'm-c' } }), 403);
      // m-c cannot even see it.
      expectStatus(await call(site, 'POST', members(), { as: c, json: { member: 'm-c' } }), 404);
    });

    it('the owner lists all members; a member sees only itself; others get 404', async () => {
      expectStatus(await call(site, 'POST', members(), { as: owner, json: { member: 'm-d' } }), 200);
      const all = await call<{ members: MemberJson[]; schema: string }>(site, 'GET', members(), { as: owner });
      expectStatus(all, 200);
      assert.equal(all.body.schema, '/v2/schemas/members');
      assert.deepEqual(all.body.members.map((m) => m.member_id).sort(), ['m-b', 'm-d']);
      const mine = await call<{ members: MemberJson[] }>(site, 'GET', members(), { as: b });
      expectStatus(mine, 200);
      assert.deepEqual(mine.body.members.map((m) => m.member_id), ['m-b']);
      expectStatus(await call(site, 'GET', members(), { as: c }), 404);
    });

    it('GET of one member: the owner and the member itself see it', async () => {
      const asOwner = await call<MemberJson>(site, 'GET', `${members()}/m-b`, { as: owner });
      expectStatus(asOwner, 200);
      assert.equal(asOwner.body.status, 'pending');
      expectStatus(await call(site, 'GET', `${members()}/m-b`, { as: b }), 200);
      expectStatus(await call(site, 'GET', `${members()}/m-nobody`, { as: owner }), 404);
    });

    it('a pending member can GET the image but does not have it in its default list', async () => {
      assert.equal((await getImage(site, shared.id, b)).id, shared.id);
      assert.equal(await inDefaultList(), false);
      assert.ok(ids(await listImages(site, 'member_status=pending', b)).includes(shared.id));
    });

    it('the owner cannot set a member\'s status (403)', async () => {
      const res = await call(site, 'PUT', `${members()}/m-b`, { as: owner, json: { status: 'accepted' } });
      expectStatus(res, 403);
      const m = await call<MemberJson>(site, 'GET', `${members()}/m-b`, { as: owner });
      assert.equal(m.body.status, 'pending');
    });

    it('an invalid status answers 400', async () => {
      for (const json of [{ status: 'maybe' }, { status: 1 }, {}]) {
        const res = await call(site, 'PUT', `${members()}/m-b`, { as: b, json });
        assert.equal(res.status, 400, `${JSON.stringify(json)}: ${res.text}`);
      }
    });

    it('the member accepts (200): the image joins its default list', async () => {
      const res = await call<MemberJson>(site, 'PUT', `${members()}/m-b`, { as: b, json: { status: 'accepted' } });
      expectStatus(res, 200);
      assert.equal(res.body.status, 'accepted');
      assert.equal(res.body.member_id, 'm-b');
      assert.equal(res.body.image_id, shared.id);
      assert.equal(await inDefaultList(), true);
      const owned = await call<MemberJson>(site, 'GET', `${members()}/m-b`, { as: owner });
      assert.equal(owned.body.status, 'accepted');
    });

    it('an accepted member may download but not modify the image', async () => {
      const res = await site.request(`/v2/images/${shared.id}/file`, { headers: b });
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytesOf(1500, 1));
      expectStatus(await patchImage(site, shared.id, [{ op: 'replace', path: '/name', value: 'mine' }], { as: b }), 403);
      expectStatus(await call(site, 'DELETE', `/v2/images/${shared.id}`, { as: b }), 403);
      assert.equal((await getImage(site, shared.id)).name, 'shared-img');
    });

    it('the member rejects (200): the image leaves its default list', async () => {
      const res = await call<MemberJson>(site, 'PUT', `${members()}/m-b`, { as: b, json: { status: 'rejected' } });
      expectStatus(res, 200);
      assert.equal(res.body.status, 'rejected');
      assert.equal(await inDefaultList(), false);
      assert.ok(ids(await listImages(site, 'member_status=rejected', b)).includes(shared.id));
    });

    it('another project cannot set a membership that is not its own', async () => {
      // m-d is a member and sees the image, but m-b's membership is not its to change.
      expectStatus(await call(site, 'PUT', `${members()}/m-b`, { as: project('m-d'), json: { status: 'accepted' } }), 403);
      expectStatus(await call(site, 'PUT', `${members()}/m-b`, { as: c, json: { status: 'accepted' } }), 404);
      expectStatus(await call(site, 'PUT', `${members()}/m-nobody`, { as: b, json: { status: 'accepted' } }), 404);
    });

    it('DELETE removes a member (204): it loses sight of the image', async () => {
      const res = await call(site, 'DELETE', `${members()}/m-b`, { as: owner });
      expectStatus(res, 204);
      assert.equal(res.text, '');
      expectStatus(await call(site, 'GET', `${members()}/m-b`, { as: owner }), 404);
      expectStatus(await call(site, 'GET', `/v2/images/${shared.id}`, { as: b }), 404);
      expectStatus(await call(site, 'DELETE', `${members()}/m-b`, { as: owner }), 404);
      const left = await call<{ members: MemberJson[] }>(site, 'GET', members(), { as: owner });
      assert.deepEqual(left.body.members.map((m) => m.member_id), ['m-d']);
    });

    it('member calls on a missing image answer 404', async () => {
      expectStatus(await call(site, 'GET', members(MISSING)), 404);
      expectStatus(await call(site, 'POST', members(MISSING), { json: { member: 'x' } }), 404);
      expectStatus(await call(site, 'GET', `${members(MISSING)}/x`), 404);
      expectStatus(await call(site, 'DELETE', `${members(MISSING)}/x`), 404);
    });
  });

  describe('access rules (auth: none identity headers)', () => {
    const a = project('acc-a');
    const bProj = project('acc-b');

    it('no identity headers is an admin; X-Project-Id without X-Roles is a member of that project', async () => {
      const image = await createImage(site, { name: 'as-member' }, { 'x-project-id': 'acc-a' });
      assert.equal(image.owner, 'acc-a');
      const byAdmin = await createImage(site, { name: 'as-admin' });
      assert.equal(byAdmin.owner, null);
      const adminInProject = await createImage(site, { name: 'admin-in-project', visibility: 'public' }, project('acc-admin', 'admin'));
      assert.equal(adminInProject.owner, 'acc-admin');
    });

    it('an image private to project A is invisible to project B', async () => {
      const image = await createActiveImage(site, bytesOf(700, 2), { name: 'a-private', visibility: 'private' }, a);
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}`, { as: bProj }), 404);
      assert.ok(!ids(await listImages(site, 'limit=1000', bProj)).includes(image.id));
      assert.ok(!ids(await listImages(site, 'limit=1000&visibility=all', bProj)).includes(image.id));
      assert.ok(!ids(await listImages(site, 'limit=1000&visibility=private', bProj)).includes(image.id));
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`, { as: bProj }), 404);
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'x' }], { as: bProj }), 404);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`, { as: bProj }), 404);
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/deactivate`, { as: bProj }), 404);
      // Still there, for its owner and for the admin.
      assert.equal((await getImage(site, image.id, a)).name, 'a-private');
      assert.equal((await getImage(site, image.id, ADMIN)).name, 'a-private');
      assert.ok(ids(await listImages(site, 'limit=1000', a)).includes(image.id));
    });

    it('a shared image without membership is invisible to other projects', async () => {
      const image = await createImage(site, { name: 'a-shared', visibility: 'shared' }, a);
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}`, { as: bProj }), 404);
      assert.ok(!ids(await listImages(site, 'limit=1000&visibility=shared', bProj)).includes(image.id));
    });

    it('making an image public needs an admin (403 for a member)', async () => {
      const res = await call(site, 'POST', '/v2/images', { as: a, json: { name: 'pub-attempt', visibility: 'public' } });
      expectStatus(res, 403);
      assert.equal((await listImages(site, 'name=pub-attempt')).images.length, 0);
      const byAdmin = await call<ImageJson>(site, 'POST', '/v2/images', { json: { name: 'pub-ok', visibility: 'public' } });
      expectStatus(byAdmin, 201);
      assert.ok(ids(await listImages(site, 'limit=1000', bProj)).includes(byAdmin.body.id));
    });

    it('a member cannot create an image owned by another project', async () => {
      expectStatus(await call(site, 'POST', '/v2/images', { as: a, json: { owner: 'acc-b' } }), 403);
      const own = await call<ImageJson>(site, 'POST', '/v2/images', { as: a, json: { owner: 'acc-a' } });
      expectStatus(own, 201);
      const given = await createImage(site, { owner: 'acc-b', name: 'given-by-admin' });
      assert.equal(given.owner, 'acc-b');
      assert.equal((await getImage(site, given.id, bProj)).name, 'given-by-admin');
    });

    it('a community image is visible to all by GET but only in its owner\'s default list', async () => {
      const image = await createActiveImage(site, bytesOf(900, 3), { name: 'a-community', visibility: 'community' }, a);
      assert.equal((await getImage(site, image.id, bProj)).name, 'a-community');
      assert.ok(!ids(await listImages(site, 'limit=1000', bProj)).includes(image.id));
      assert.ok(ids(await listImages(site, 'limit=1000&visibility=community', bProj)).includes(image.id));
      assert.ok(ids(await listImages(site, 'limit=1000&visibility=all', bProj)).includes(image.id));
      assert.ok(ids(await listImages(site, 'limit=1000', a)).includes(image.id));
      const data = await site.request(`/v2/images/${image.id}/file`, { headers: bProj });
      assert.equal(data.status, 200);
      assert.deepEqual(Buffer.from(await data.arrayBuffer()), bytesOf(900, 3));
      // Visible, yet not B's to change: 403.
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'x' }], { as: bProj }), 403);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`, { as: bProj }), 403);
      assert.equal((await getImage(site, image.id)).name, 'a-community');
    });

    it('a public image cannot be changed or deleted by a project that does not own it (403)', async () => {
      const image = await createImage(site, { name: 'a-public', visibility: 'public', owner: 'acc-a' });
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'x' }], { as: bProj }), 403);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`, { as: bProj }), 403);
      expectStatus(await upload(site, image.id, bytesOf(10), bProj), 403);
      assert.equal((await getImage(site, image.id)).status, 'queued');
      const byOwner = await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'renamed' }], { as: a });
      expectStatus(byOwner, 200);
      assert.equal(byOwner.body.name, 'renamed');
    });

    it('a reader can read but not create or modify (403)', async () => {
      const reader = project('acc-a', 'reader');
      expectStatus(await call(site, 'POST', '/v2/images', { as: reader, json: { name: 'by-reader' } }), 403);
      assert.equal((await listImages(site, 'name=by-reader')).images.length, 0);
      const image = await createActiveImage(site, bytesOf(300, 4), { name: 'read-me', visibility: 'private' }, a);
      assert.equal((await getImage(site, image.id, reader)).name, 'read-me');
      assert.ok(ids(await listImages(site, 'limit=1000', reader)).includes(image.id));
      const data = await site.request(`/v2/images/${image.id}/file`, { headers: reader });
      assert.equal(data.status, 200);
      await data.arrayBuffer();
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'x' }], { as: reader }), 403);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`, { as: reader }), 403);
      expectStatus(await call(site, 'PUT', `/v2/images/${image.id}/tags/t`, { as: reader }), 403);
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/deactivate`, { as: reader }), 403);
      assert.equal((await getImage(site, image.id)).name, 'read-me');
    });

    it('roles are read from a comma-separated X-Roles, case-insensitively', async () => {
      const image = await createImage(site, { name: 'roles' }, project('acc-r', 'reader, Member'));
      assert.equal(image.owner, 'acc-r');
      expectStatus(await call(site, 'POST', '/v2/images', { as: project('acc-r', 'reader,observer'), json: {} }), 403);
    });

    it('an admin with a project sees and changes other projects\' images', async () => {
      const admin = project('acc-ops', 'admin');
      const image = await createImage(site, { name: 'b-private', visibility: 'private' }, bProj);
      assert.equal((await getImage(site, image.id, admin)).name, 'b-private');
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'by-admin' }], { as: admin }), 200);
      assert.equal((await getImage(site, image.id, bProj)).name, 'by-admin');
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`, { as: admin }), 204);
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}`, { as: bProj }), 404);
    });
  });
});
