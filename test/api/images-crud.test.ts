import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, bytesOf, call, createActiveImage, createImage, expectStatus, getImage, listImages, patchImage, project,
  upload, type ImageJson,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const MISSING = '00000000-0000-0000-0000-000000000000';
const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const JSON_ACCEPT = { accept: 'application/json' };

/** The keys of samples/image-create.json (a create with two custom properties). */
const SAMPLE_CREATE_KEYS = [
  'os_distro', 'hw_scsi_model', 'name', 'disk_format', 'container_format', 'visibility', 'size', 'virtual_size',
  'status', 'checksum', 'protected', 'min_ram', 'min_disk', 'owner', 'os_hidden', 'os_hash_algo', 'os_hash_value',
  'id', 'created_at', 'updated_at', 'tags', 'self', 'file', 'schema',
];

describe('images: create, show, delete, deactivate', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  describe('POST /v2/images', () => {
    it('answers 201 with Location and the image body of samples/image-create.json', async () => {
      const res = await call<ImageJson>(site, 'POST', '/v2/images', {
        json: {
          name: 'fixture-1g', disk_format: 'raw', container_format: 'bare', visibility: 'public', tags: ['fixture'],
          os_distro: 'debian', min_disk: 1, hw_scsi_model: 'virtio-scsi',
        },
      });
      expectStatus(res, 201);
      const image = res.body;
      assert.match(image.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(res.headers.get('location'), `${site.url}/v2/images/${image.id}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(Object.keys(image).sort(), [...SAMPLE_CREATE_KEYS].sort());
      assert.deepEqual({ ...image, id: 'ID', created_at: 'T', updated_at: 'T' }, {
        os_distro: 'debian', hw_scsi_model: 'virtio-scsi', name: 'fixture-1g', disk_format: 'raw',
        container_format: 'bare', visibility: 'public', size: null, virtual_size: null, status: 'queued',
        checksum: null, protected: false, min_ram: 0, min_disk: 1, owner: null, os_hidden: false,
        os_hash_algo: null, os_hash_value: null, id: 'ID', created_at: 'T', updated_at: 'T', tags: ['fixture'],
        self: `/v2/images/${image.id}`, file: `/v2/images/${image.id}/file`, schema: '/v2/schemas/image',
      });
      assert.match(image.created_at, ISO_SECONDS);
      assert.equal(image.updated_at, image.created_at);
      // What was created is what GET shows.
      assert.deepEqual(await getImage(site, image.id), image);
    });

    it('a minimal create gives the defaults of samples/image-create-minimal.json, owned by the caller', async () => {
      const caller = project('proj-minimal');
      const res = await call<ImageJson>(site, 'POST', '/v2/images', { as: caller, json: { name: 'fixture-small' } });
      expectStatus(res, 201);
      assert.deepEqual({ ...res.body, id: 'ID', created_at: 'T', updated_at: 'T' }, {
        name: 'fixture-small', disk_format: null, container_format: null, visibility: 'shared', size: null,
        virtual_size: null, status: 'queued', checksum: null, protected: false, min_ram: 0, min_disk: 0,
        owner: 'proj-minimal', os_hidden: false, os_hash_algo: null, os_hash_value: null, id: 'ID',
        created_at: 'T', updated_at: 'T', tags: [], self: `/v2/images/${res.body.id}`,
        file: `/v2/images/${res.body.id}/file`, schema: '/v2/schemas/image',
      });
    });

    it('an empty object creates an image with a null name', async () => {
      const image = await createImage(site, {});
      assert.equal(image.name, null);
      assert.equal(image.status, 'queued');
    });

    it('uses a given id, and a second create with the same id answers 409', async () => {
      const id = randomUUID();
      const image = await createImage(site, { id, name: 'chosen-id' });
      assert.equal(image.id, id);
      assert.equal((await getImage(site, id)).name, 'chosen-id');
      const dup = await call(site, 'POST', '/v2/images', { json: { id, name: 'again' } });
      expectStatus(dup, 409);
      assert.equal((await getImage(site, id)).name, 'chosen-id');
    });

    it('de-duplicates tags and keeps typed base attributes', async () => {
      const image = await createImage(site, {
        name: 'typed', tags: ['a', 'b', 'a'], protected: true, os_hidden: true, min_ram: 512, min_disk: 2,
        visibility: 'community',
      });
      assert.deepEqual([...image.tags].sort(), ['a', 'b']);
      assert.equal(image.protected, true);
      assert.equal(image.os_hidden, true);
      assert.equal(image.min_ram, 512);
      assert.equal(image.min_disk, 2);
      assert.equal(image.visibility, 'community');
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/protected', value: false }]), 200);
    });

    const schemaViolations: [string, Record<string, unknown>, RegExp?][] = [
      ['a bad disk_format enum', { name: 'x', disk_format: 'bogus' },
        /^Provided object does not match schema 'image': 'bogus' is not one of \[None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'\]/],
      ['a bad container_format enum', { container_format: 'zip' }, /'zip' is not one of/],
      ['a bad visibility', { visibility: 'everyone' }, /'everyone' is not one of/],
      ['a non-string custom property', { os_distro: 1 }, /1 is not of type 'string'/],
      ['a null custom property', { my_prop: null }],
      ['a negative min_disk', { min_disk: -1 }],
      ['a negative min_ram', { min_ram: -5 }],
      ['a non-integer min_ram', { min_ram: 'lots' }],
      ['a fractional min_disk', { min_disk: 1.5 }],
      ['a bad id', { id: 'not-a-uuid' }],
      ['a numeric id', { id: 42 }],
      ['a name longer than 255', { name: 'n'.repeat(256) }],
      ['tags that are not an array', { tags: 'a,b' }],
      ['a tag that is not a string', { tags: [1] }],
      ['a non-boolean protected', { protected: 'yes' }],
      ['a non-boolean os_hidden', { os_hidden: 1 }],
      ['a property name longer than 255', { ['k'.repeat(256)]: 'v' }],
    ];
    for (const [what, body, message] of schemaViolations) {
      it(`answers 400 for ${what}`, async () => {
        const before = (await listImages(site, 'limit=1000')).images.length;
        const res = await call<{ message: string; code: string }>(site, 'POST', '/v2/images', { json: body, headers: JSON_ACCEPT });
        expectStatus(res, 400);
        assert.equal(res.body.code, '400 Bad Request');
        if (message !== undefined) assert.match(res.body.message, message);
        assert.equal((await listImages(site, 'limit=1000')).images.length, before, 'nothing was created');
      });
    }

    it('answers 400 for a body that is not a JSON object', async () => {
      for (const body of ['[]', '"name"', '42', 'null']) {
        const res = await call(site, 'POST', '/v2/images', { body, headers: { 'content-type': 'application/json' } });
        assert.equal(res.status, 400, `body ${body}: ${res.text}`);
      }
    });

    const forbidden: [string, unknown, string][] = [
      ['checksum', 'abc', 'read-only'],
      ['self', '/v2/images/x', 'read-only'],
      ['file', '/v2/images/x/file', 'read-only'],
      ['schema', '/v2/schemas/image', 'read-only'],
      ['direct_url', 'file:///x', 'read-only'],
      ['stores', 'central', 'read-only'],
      ['status', 'active', 'read-only'],
      ['size', 1, 'read-only'],
      ['virtual_size', 1, 'read-only'],
      ['os_hash_value', 'abc', 'read-only'],
      ['created_at', '2020-01-01T00:00:00Z', 'read-only'],
      ['os_glance_foo', 'bar', 'reserved'],
      ['os_glance_import_task', 'x', 'reserved'],
      ['location', 'file:///x', 'reserved'],
      ['deleted', 'true', 'reserved'],
      ['deleted_at', 'x', 'reserved'],
    ];
    for (const [key, value, kind] of forbidden) {
      it(`answers 403 for the ${kind} attribute '${key}'`, async () => {
        const res = await call<{ message: string }>(site, 'POST', '/v2/images', {
          json: { name: `with-${key}`, [key]: value }, headers: JSON_ACCEPT,
        });
        expectStatus(res, 403);
        assert.equal(res.body.message, `Attribute '${key}' is ${kind}.<br /><br />\n\n\n`);
        const names = (await listImages(site, `name=with-${key}`)).images;
        assert.equal(names.length, 0, 'nothing was created');
      });
    }
  });

  describe('GET /v2/images/{id}', () => {
    it('answers 404 for an unknown id', async () => {
      const res = await call<{ message: string }>(site, 'GET', `/v2/images/${randomUUID()}`, { headers: JSON_ACCEPT });
      expectStatus(res, 404);
      assert.match(res.body.message, /^No image found with ID [0-9a-f-]{36}/);
    });

    it('answers 404 (never 400) for ids that are not UUIDs, on every image path', async () => {
      for (const bad of ['nope', '12345', 'x'.repeat(300), '00000000-0000-0000-0000-00000000000g']) {
        for (const [method, path] of [
          ['GET', `/v2/images/${bad}`], ['DELETE', `/v2/images/${bad}`], ['GET', `/v2/images/${bad}/file`],
          ['PUT', `/v2/images/${bad}/tags/t`], ['GET', `/v2/images/${bad}/members`],
          ['POST', `/v2/images/${bad}/actions/deactivate`],
        ] as const) {
          const res = await call(site, method, path);
          assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
        }
        const patched = await patchImage(site, bad, [{ op: 'replace', path: '/name', value: 'x' }]);
        assert.equal(patched.status, 404);
      }
    });

    it('finds an image by its id whatever the letter case', async () => {
      const image = await createImage(site, { name: 'case' });
      assert.equal((await getImage(site, image.id.toUpperCase())).id, image.id);
    });
  });

  describe('DELETE /v2/images/{id}', () => {
    it('answers 204 with no body, after which the image is 404 and out of the list', async () => {
      const image = await createActiveImage(site, bytesOf(2048, 3), { name: 'doomed' });
      const res = await call(site, 'DELETE', `/v2/images/${image.id}`);
      expectStatus(res, 204);
      assert.equal(res.text, '');
      const gone = await call<{ message: string }>(site, 'GET', `/v2/images/${image.id}`, { headers: JSON_ACCEPT });
      expectStatus(gone, 404);
      assert.equal(gone.body.message, `No image found with ID ${image.id}<br /><br />\n\n\n`);
      assert.ok(!(await listImages(site, 'limit=1000')).images.some((i) => i.id === image.id));
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`), 404);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 404);
    });

    it('answers 404 for an unknown image', async () => {
      expectStatus(await call(site, 'DELETE', `/v2/images/${MISSING}`), 404);
    });

    it('refuses a protected image with 403 until protected is cleared', async () => {
      const image = await createImage(site, { name: 'keep', protected: true });
      const res = await call(site, 'DELETE', `/v2/images/${image.id}`);
      expectStatus(res, 403);
      assert.equal((await getImage(site, image.id)).status, 'queued');
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/protected', value: false }]), 200);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}`), 404);
    });

    it('the id of a deleted image cannot be taken again (409), as Glance keeps deleted rows', async () => {
      const image = await createImage(site, { name: 'once' });
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
      expectStatus(await call(site, 'POST', '/v2/images', { json: { id: image.id, name: 'twice' } }), 409);
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}`), 404);
    });
  });

  describe('deactivate / reactivate', () => {
    const owner = project('proj-deact');
    let image: ImageJson;
    const data = bytesOf(3000, 7);

    before(async () => {
      image = await createActiveImage(site, data, { name: 'deact' }, owner);
    });

    it('refuses to deactivate a queued image (403)', async () => {
      const queued = await createImage(site, { name: 'queued-deact' }, owner);
      expectStatus(await call(site, 'POST', `/v2/images/${queued.id}/actions/deactivate`, { as: owner }), 403);
      expectStatus(await call(site, 'POST', `/v2/images/${queued.id}/actions/reactivate`, { as: owner }), 403);
      assert.equal((await getImage(site, queued.id)).status, 'queued');
    });

    it('deactivates (204, idempotent); the data is then forbidden to non-admins, allowed to the admin', async () => {
      const res = await call(site, 'POST', `/v2/images/${image.id}/actions/deactivate`, { as: owner });
      expectStatus(res, 204);
      assert.equal(res.text, '');
      assert.equal((await getImage(site, image.id, owner)).status, 'deactivated');
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/deactivate`, { as: owner }), 204);
      assert.equal((await getImage(site, image.id)).status, 'deactivated');

      const denied = await call(site, 'GET', `/v2/images/${image.id}/file`, { as: owner });
      expectStatus(denied, 403);
      const admin = await site.request(`/v2/images/${image.id}/file`);
      assert.equal(admin.status, 200);
      assert.deepEqual(Buffer.from(await admin.arrayBuffer()), data);
    });

    it('reactivates (204, idempotent) and the data can be downloaded again', async () => {
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/reactivate`, { as: owner }), 204);
      assert.equal((await getImage(site, image.id, owner)).status, 'active');
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/reactivate`, { as: owner }), 204);
      const res = await site.request(`/v2/images/${image.id}/file`, { headers: owner });
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    });

    it('answers 404 for an unknown image and 403 for a project that does not own a visible image', async () => {
      expectStatus(await call(site, 'POST', `/v2/images/${MISSING}/actions/deactivate`), 404);
      const pub = await createActiveImage(site, bytesOf(100, 8), { name: 'pub-deact', visibility: 'public' }, ADMIN);
      expectStatus(await call(site, 'POST', `/v2/images/${pub.id}/actions/deactivate`, { as: project('someone-else') }), 403);
      assert.equal((await getImage(site, pub.id)).status, 'active');
      // Another project cannot even see the private image.
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/actions/deactivate`, { as: project('someone-else') }), 404);
    });

    it('an admin may deactivate any image', async () => {
      const other = await createActiveImage(site, bytesOf(100, 9), { name: 'admin-deact' }, project('proj-x'));
      expectStatus(await call(site, 'POST', `/v2/images/${other.id}/actions/deactivate`), 204);
      assert.equal((await getImage(site, other.id)).status, 'deactivated');
      expectStatus(await upload(site, other.id, bytesOf(10)), 409);
    });
  });
});
