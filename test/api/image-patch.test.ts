import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, PATCH_V20, PATCH_V21, bytesOf, call, createActiveImage, createImage, expectStatus, getImage, patchImage,
  project, type ImageJson,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const ACCEPT_PATCH = 'application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch';

describe('PATCH /v2/images/{id}', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  const fresh = (body: Record<string, unknown> = {}, as = ADMIN) => createImage(site, { name: 'patch-me', ...body }, as);

  describe('media types', () => {
    it('v2.1 (RFC 6902 style {op, path, value}) answers 200 with the whole updated image', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, [
        { op: 'add', path: '/description', value: 'patched' },
        { op: 'replace', path: '/name', value: 'fixture-small-2' },
      ]);
      expectStatus(res, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      const { updated_at: u1, ...rest } = res.body;
      const { updated_at: u0, ...before } = image;
      assert.deepEqual(rest, { ...before, description: 'patched', name: 'fixture-small-2' });
      assert.ok(u1 >= u0);
      assert.deepEqual(await getImage(site, image.id), res.body);
    });

    it('v2.0 (draft style {"replace": "/name", "value": …}) is accepted too', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, [
        { replace: '/name', value: 'renamed-v20' },
        { add: '/os_distro', value: 'debian' },
      ], { type: PATCH_V20 });
      expectStatus(res, 200);
      assert.equal(res.body.name, 'renamed-v20');
      assert.equal(res.body.os_distro, 'debian');
      const removed = await patchImage(site, image.id, [{ remove: '/os_distro' }], { type: PATCH_V20 });
      expectStatus(removed, 200);
      assert.equal('os_distro' in removed.body, false);
    });

    it('a media type parameter (charset) does not matter', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'cs' }], { type: `${PATCH_V21}; charset=UTF-8` });
      expectStatus(res, 200);
      assert.equal(res.body.name, 'cs');
    });

    for (const type of ['application/json', 'application/json-patch+json', 'text/plain']) {
      it(`answers 415 with Accept-Patch for Content-Type ${type}`, async () => {
        const image = await fresh();
        const res = await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'nope' }], { type, accept: 'application/json' });
        expectStatus(res, 415);
        assert.equal(res.headers.get('accept-patch'), ACCEPT_PATCH);
        assert.match((res.body as unknown as { message: string }).message, new RegExp(`^The request media type ${type.replace(/[+/]/g, '\\$&')} is not supported by this server\\.`));
        assert.equal((await getImage(site, image.id)).name, 'patch-me');
      });
    }

    it('answers 415 (not 400) for an application/json body that is not even JSON', async () => {
      const image = await fresh();
      const res = await call(site, 'PATCH', `/v2/images/${image.id}`, { body: '[{"op":', headers: { 'content-type': 'application/json' } });
      expectStatus(res, 415);
      assert.equal(res.headers.get('accept-patch'), ACCEPT_PATCH);
    });
  });

  describe('custom properties', () => {
    let image: ImageJson;
    before(async () => { image = await fresh({ os_distro: 'debian' }); });

    it('add creates, replace changes, remove deletes', async () => {
      let res = await patchImage(site, image.id, [{ op: 'add', path: '/hw_disk_bus', value: 'scsi' }]);
      expectStatus(res, 200);
      assert.equal(res.body.hw_disk_bus, 'scsi');
      res = await patchImage(site, image.id, [{ op: 'replace', path: '/hw_disk_bus', value: 'virtio' }]);
      expectStatus(res, 200);
      assert.equal(res.body.hw_disk_bus, 'virtio');
      res = await patchImage(site, image.id, [{ op: 'remove', path: '/hw_disk_bus' }]);
      expectStatus(res, 200);
      assert.equal('hw_disk_bus' in res.body, false);
      assert.equal('hw_disk_bus' in (await getImage(site, image.id)), false);
      assert.equal((await getImage(site, image.id)).os_distro, 'debian');
    });

    it('replace of a missing property answers 409', async () => {
      const res = await patchImage(site, image.id, [{ op: 'replace', path: '/no_such_prop', value: 'x' }]);
      expectStatus(res, 409);
      assert.equal('no_such_prop' in (await getImage(site, image.id)), false);
    });

    it('remove of a missing property answers 409', async () => {
      expectStatus(await patchImage(site, image.id, [{ op: 'remove', path: '/no_such_prop' }]), 409);
      expectStatus(await patchImage(site, image.id, [{ remove: '/no_such_prop' }], { type: PATCH_V20 }), 409);
    });

    it('v2.0 add on an existing property answers 409; v2.1 add on an existing property replaces it', async () => {
      const v20 = await patchImage(site, image.id, [{ add: '/os_distro', value: 'ubuntu' }], { type: PATCH_V20 });
      expectStatus(v20, 409);
      assert.equal((await getImage(site, image.id)).os_distro, 'debian');
      const v21 = await patchImage(site, image.id, [{ op: 'add', path: '/os_distro', value: 'ubuntu' }]);
      expectStatus(v21, 200);
      assert.equal(v21.body.os_distro, 'ubuntu');
    });

    it('a non-string value answers 400', async () => {
      for (const value of [1, true, null, ['a'], { a: 1 }]) {
        const res = await patchImage(site, image.id, [{ op: 'add', path: '/os_version', value }]);
        assert.equal(res.status, 400, `${JSON.stringify(value)}: ${res.text}`);
      }
      assert.equal('os_version' in (await getImage(site, image.id)), false);
    });

    it('JSON-pointer escapes are decoded (~1 is "/", ~0 is "~")', async () => {
      const res = await patchImage(site, image.id, [{ op: 'add', path: '/a~1b~0c', value: 'v' }]);
      expectStatus(res, 200);
      assert.equal(res.body['a/b~c'], 'v');
    });
  });

  describe('base attributes', () => {
    it('replaces typed attributes, and tags as a whole', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, [
        { op: 'replace', path: '/min_ram', value: 1024 },
        { op: 'replace', path: '/min_disk', value: 10 },
        { op: 'replace', path: '/protected', value: true },
        { op: 'replace', path: '/os_hidden', value: true },
        { op: 'replace', path: '/visibility', value: 'private' },
        { op: 'replace', path: '/tags', value: ['x', 'y', 'x'] },
        { op: 'replace', path: '/disk_format', value: 'qcow2' },
        { op: 'add', path: '/container_format', value: 'bare' },
      ]);
      expectStatus(res, 200);
      const b = res.body;
      assert.deepEqual(
        [b.min_ram, b.min_disk, b.protected, b.os_hidden, b.visibility, [...b.tags].sort(), b.disk_format, b.container_format],
        [1024, 10, true, true, 'private', ['x', 'y'], 'qcow2', 'bare'],
      );
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/protected', value: false }]), 200);
    });

    it('replace of name with null is allowed', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: null }]);
      expectStatus(res, 200);
      assert.equal(res.body.name, null);
    });

    for (const key of ['name', 'min_ram', 'disk_format', 'visibility', 'protected', 'tags']) {
      it(`remove of the base attribute ${key} answers 403`, async () => {
        const image = await fresh({ disk_format: 'raw' });
        expectStatus(await patchImage(site, image.id, [{ op: 'remove', path: `/${key}` }]), 403);
        assert.deepEqual(await getImage(site, image.id), image);
      });
    }

    for (const [key, value] of [
      ['status', 'active'], ['checksum', 'abc'], ['id', '00000000-0000-0000-0000-000000000001'], ['size', 5],
      ['virtual_size', 5], ['created_at', '2020-01-01T00:00:00Z'], ['updated_at', '2020-01-01T00:00:00Z'],
      ['os_hash_algo', 'md5'], ['os_hash_value', 'abc'], ['self', 'x'], ['file', 'x'], ['schema', 'x'],
      ['direct_url', 'x'], ['os_glance_foo', 'x'], ['os_glance_import_task', 'x'], ['deleted', 'x'], ['location', 'x'],
    ] as const) {
      it(`a change of the read-only or reserved attribute ${key} answers 403`, async () => {
        const image = await fresh();
        for (const op of ['add', 'replace'] as const) {
          const res = await patchImage(site, image.id, [{ op, path: `/${key}`, value }]);
          assert.equal(res.status, 403, `${op} /${key}: ${res.text}`);
        }
        const removed = await patchImage(site, image.id, [{ op: 'remove', path: `/${key}` }]);
        assert.equal(removed.status, 403, `remove /${key}: ${removed.text}`);
        assert.deepEqual(await getImage(site, image.id), image);
      });
    }

    for (const [what, op] of [
      ['a bad disk_format', { op: 'replace', path: '/disk_format', value: 'bogus' }],
      ['a bad container_format', { op: 'replace', path: '/container_format', value: 'bogus' }],
      ['a bad visibility', { op: 'replace', path: '/visibility', value: 'world' }],
      ['a negative min_ram', { op: 'replace', path: '/min_ram', value: -1 }],
      ['a string min_disk', { op: 'replace', path: '/min_disk', value: '10' }],
      ['a non-boolean protected', { op: 'replace', path: '/protected', value: 'true' }],
      ['a too-long name', { op: 'replace', path: '/name', value: 'n'.repeat(256) }],
      ['tags that are not an array', { op: 'replace', path: '/tags', value: 'a' }],
    ] as const) {
      it(`${what} answers 400`, async () => {
        const image = await fresh();
        expectStatus(await patchImage(site, image.id, [op]), 400);
        assert.deepEqual(await getImage(site, image.id), image);
      });
    }

    it('disk_format and container_format cannot change once the image is active (403)', async () => {
      const image = await createActiveImage(site, bytesOf(512, 1));
      for (const [path, value] of [['/disk_format', 'qcow2'], ['/container_format', 'ovf']]) {
        const res = await patchImage(site, image.id, [{ op: 'replace', path, value }]);
        assert.equal(res.status, 403, `${path}: ${res.text}`);
      }
      const after = await getImage(site, image.id);
      assert.equal(after.disk_format, 'raw');
      assert.equal(after.container_format, 'bare');
      // Other attributes of an active image still change.
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/name', value: 'active-renamed' }]), 200);
    });

    it('only an admin may make an image public or give it to another project', async () => {
      const owner = project('proj-patch-owner');
      const image = await fresh({}, owner);
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/visibility', value: 'public' }], { as: owner }), 403);
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/owner', value: 'proj-other' }], { as: owner }), 403);
      const mine = await getImage(site, image.id);
      assert.equal(mine.visibility, 'shared');
      assert.equal(mine.owner, 'proj-patch-owner');
      expectStatus(await patchImage(site, image.id, [{ op: 'replace', path: '/visibility', value: 'community' }], { as: owner }), 200);
      const pub = await patchImage(site, image.id, [{ op: 'replace', path: '/visibility', value: 'public' }]);
      expectStatus(pub, 200);
      assert.equal(pub.body.visibility, 'public');
      const given = await patchImage(site, image.id, [{ op: 'replace', path: '/owner', value: 'proj-other' }]);
      expectStatus(given, 200);
      assert.equal(given.body.owner, 'proj-other');
    });
  });

  describe('documents', () => {
    it('an empty list changes nothing (200)', async () => {
      const image = await fresh();
      const res = await patchImage(site, image.id, []);
      expectStatus(res, 200);
      assert.equal(res.body.name, 'patch-me');
    });

    for (const [what, body] of [
      ['an object', { op: 'replace', path: '/name', value: 'x' }],
      ['a string', 'replace'],
      ['a number', 1],
      ['null', null],
    ] as const) {
      it(`a body that is ${what}, not an array, answers 400`, async () => {
        const image = await fresh();
        expectStatus(await patchImage(site, image.id, body), 400);
        assert.equal((await getImage(site, image.id)).name, 'patch-me');
      });
    }

    for (const [what, op, type] of [
      ['a non-object operation', 'replace', PATCH_V21],
      ['an unknown op', { op: 'move', from: '/name', path: '/x' }, PATCH_V21],
      ['the op "test"', { op: 'test', path: '/name', value: 'patch-me' }, PATCH_V21],
      ['no op', { path: '/name', value: 'x' }, PATCH_V21],
      ['a path without a leading slash', { op: 'replace', path: 'name', value: 'x' }, PATCH_V21],
      ['a missing path', { op: 'replace', value: 'x' }, PATCH_V21],
      ['a nested path', { op: 'add', path: '/a/b', value: 'x' }, PATCH_V21],
      ['a bad escape', { op: 'add', path: '/a~2b', value: 'x' }, PATCH_V21],
      ['a replace without value', { op: 'replace', path: '/name' }, PATCH_V21],
      ['a v2.0 op with two operation members', { add: '/a', replace: '/name', value: 'x' }, PATCH_V20],
      ['a v2.0 op without value', { add: '/a' }, PATCH_V20],
    ] as const) {
      it(`${what} answers 400`, async () => {
        const image = await fresh();
        const res = await patchImage(site, image.id, [op], { type });
        expectStatus(res, 400);
        assert.deepEqual(await getImage(site, image.id), image);
      });
    }

    it('is all or nothing: a failing operation leaves the earlier ones unapplied', async () => {
      const image = await fresh({ os_distro: 'debian' });
      const res = await patchImage(site, image.id, [
        { op: 'replace', path: '/name', value: 'half' },
        { op: 'add', path: '/extra', value: 'x' },
        { op: 'remove', path: '/missing' },
      ]);
      expectStatus(res, 409);
      assert.deepEqual(await getImage(site, image.id), image);
    });

    it('answers 404 for an unknown image', async () => {
      expectStatus(await patchImage(site, '00000000-0000-0000-0000-000000000000', [{ op: 'replace', path: '/name', value: 'x' }]), 404);
    });
  });
});
