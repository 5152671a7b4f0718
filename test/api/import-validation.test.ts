import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, bytesOf, call, createActiveImage, createImage, expectStatus, getImage, project, sleep, upload, type ImageJson,
} from '../helpers/glance-client.ts';
import {
  JSON_ACCEPT, NOTHING_STORED, acceptedImport, imageTasks, runImport, stage, startImport, storeFiles, waitForTask,
} from '../helpers/import-client.ts';
import { startTestSite, tempDir, type TestSite } from '../helpers/site.ts';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

const P1 = project('p1');
const P2 = project('p2');
const P1_READER = project('p1', 'reader');
const REMOTE_ID = '6b0ea5d5-76b5-4e5a-a4b3-8f1d5a6a1b2c';

/**
 * POST /v2/images/{id}/import and its companions on a site with three file stores a (default),
 * b and c: Glance's validation order and status codes (API-NOTES §1.8), the task it starts
 * (§1.13), multistore copies and failure reporting (§2), and DELETE /v2/stores (§1.10).
 */
describe('interoperable import: validation, tasks, multistore', () => {
  let site: TestSite;
  let root: string;
  const dir = (store: string) => join(root, store);

  before(async () => {
    root = await tempDir('outpost-import-stores-');
    site = await startTestSite({ stores: ['a=file:' + dir('a'), 'b=file:' + dir('b'), 'c=file:' + dir('c')] });
  });
  after(async () => {
    await site?.close();
    await rm(root, { recursive: true, force: true });
  });

  /** An image the import API refuses must look exactly as before. */
  async function assertUnchanged(before: ImageJson): Promise<void> {
    const now = await getImage(site, before.id);
    assert.deepEqual(now, before);
  }

  async function expectRefused(id: string, body: unknown, status: number, message?: RegExp | string, opts: { as?: typeof P1; headers?: Record<string, string> } = {}): Promise<void> {
    const before = await getImage(site, id);
    const res = await startImport(site, id, body, opts);
    expectStatus(res, status);
    if (message !== undefined) {
      const text = res.body.message.replace(/<br \/><br \/>\n\n\n$/, '');
      if (typeof message === 'string') assert.equal(text, message);
      else assert.match(text, message);
    }
    assert.ok(res.headers.get('x-openstack-request-id')?.startsWith('req-'));
    await assertUnchanged(before);
  }

  /** Replaces a store's directory by a regular file, so every write to it fails; returns the repair. */
  async function breakStore(store: string): Promise<() => Promise<void>> {
    await rm(dir(store), { recursive: true, force: true });
    await writeFile(dir(store), 'not a directory');
    return async () => {
      await rm(dir(store), { force: true });
      await mkdir(join(dir(store), '.incomplete'), { recursive: true });
    };
  }

  /** A queued raw/bare image with `data` staged (status uploading). */
  async function stagedImage(data: Uint8Array, body: Record<string, unknown> = {}): Promise<ImageJson> {
    const image = await createImage(site, { disk_format: 'raw', container_format: 'bare', ...body });
    expectStatus(await stage(site, image.id, data), 204);
    return getImage(site, image.id);
  }

  describe('discovery', () => {
    it('POST /v2/images answers with the import methods and store ids in headers', async () => {
      const res = await call<ImageJson>(site, 'POST', '/v2/images', { json: { name: 'headers' } });
      expectStatus(res, 201);
      assert.equal(res.headers.get('openstack-image-import-methods'), 'glance-direct,web-download,copy-image,glance-download');
      assert.equal(res.headers.get('openstack-image-store-ids'), 'a,b,c');
    });

    it('GET /v2/info/import lists the enabled methods; /v2/info/stores the stores, a as default', async () => {
      const info = await call(site, 'GET', '/v2/info/import');
      expectStatus(info, 200);
      assert.deepEqual(info.body, {
        'import-methods': {
          description: 'Import methods available.', type: 'array',
          value: ['glance-direct', 'web-download', 'copy-image', 'glance-download'],
        },
      });
      const stores = await call<{ stores: Record<string, string>[] }>(site, 'GET', '/v2/info/stores');
      expectStatus(stores, 200);
      assert.deepEqual(stores.body.stores.map((s) => [s.id, s.default]), [['a', 'true'], ['b', undefined], ['c', undefined]]);
    });

    it('a site offering only some methods lists those, refuses the others (400) and has no /stage (404)', async () => {
      const small = await startTestSite({ import_methods: ['web-download', 'copy-image'] });
      try {
        const info = await call(small, 'GET', '/v2/info/import');
        assert.deepEqual((info.body as any)['import-methods'].value, ['web-download', 'copy-image']);
        const res = await call<ImageJson>(small, 'POST', '/v2/images', { json: { disk_format: 'raw', container_format: 'bare' } });
        assert.equal(res.headers.get('openstack-image-import-methods'), 'web-download,copy-image');
        const id = res.body.id;
        expectStatus(await stage(small, id, bytesOf(10)), 404);
        for (const name of ['glance-direct', 'glance-download']) {
          const refused = await startImport(small, id, { method: { name, glance_region: 'r', glance_image_id: REMOTE_ID } });
          expectStatus(refused, 400);
          assert.match(refused.body.message, new RegExp(`Import method "${name}" is not valid`));
        }
        assert.equal((await getImage(small, id)).status, 'queued');
      } finally {
        await small.close();
      }
    });
  });

  describe('validation order and status codes (API-NOTES §1.8)', () => {
    let queued: ImageJson;
    let active: ImageJson;
    let missing: string;
    before(async () => {
      queued = await createImage(site, { name: 'queued', disk_format: 'raw', container_format: 'bare' });
      active = await createActiveImage(site, bytesOf(1000, 7), { name: 'active' });
      missing = '0b1e4f5e-4d6c-4a1b-9d9e-000000000000';
    });

    it('400 without a method or a method name — before the image is even looked up', async () => {
      for (const body of [{}, { method: {} }, { method: 'copy-image' }, { method: null }, { method: [] }, { stores: ['a'] }]) {
        expectStatus(await startImport(site, missing, body), 400);
        await expectRefused(queued.id, body, 400);
      }
      // Not JSON / not an object at all.
      expectStatus(await startImport(site, queued.id, ['glance-direct']), 400);
      const malformed = await call(site, 'POST', `/v2/images/${queued.id}/import`, {
        body: '{"method":', headers: { 'content-type': 'application/json', ...JSON_ACCEPT },
      });
      expectStatus(malformed, 400);
    });

    it('400 for an unknown import method (also before the 404)', async () => {
      for (const name of ['nope', 'Glance-Direct', '', 42]) {
        expectStatus(await startImport(site, missing, { method: { name } }), 400);
        await expectRefused(queued.id, { method: { name } }, 400, /is not valid/);
      }
    });

    it('400 when all_stores or all_stores_must_succeed is not a boolean (before the 404)', async () => {
      for (const extra of [{ all_stores: 'true' }, { all_stores: 1 }, { all_stores_must_succeed: 'false' }, { all_stores_must_succeed: null }]) {
        expectStatus(await startImport(site, missing, { method: { name: 'copy-image' }, ...extra }), 400);
        await expectRefused(active.id, { method: { name: 'copy-image' }, ...extra }, 400, /must be a boolean/);
      }
    });

    it('404 for a missing image, a non-UUID id, and an image the caller cannot see — before status and policy', async () => {
      for (const name of ['glance-direct', 'web-download', 'copy-image', 'glance-download']) {
        const body = { method: { name, uri: 'http://127.0.0.1:9/x', glance_region: 'r', glance_image_id: 'not-a-uuid' } };
        expectStatus(await startImport(site, missing, body), 404);
        expectStatus(await startImport(site, 'not-a-uuid', body), 404);
      }
      const hidden = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'private' }, P1);
      expectStatus(await startImport(site, hidden.id, { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' } }, { as: P2 }), 404);
      expectStatus(await startImport(site, hidden.id, { method: { name: 'copy-image' }, stores: ['b'] }, { as: P2 }), 404);
    });

    it('409 for the wrong status, per method', async () => {
      const staged = await stagedImage(bytesOf(100, 8));
      assert.equal(staged.status, 'uploading');
      // Glance's messages (images.py import_image).
      const activeOnly = 'Only images with status active can be targeted for copying';
      const notStaged = "Image needs to be staged before 'glance-direct' method can be used";
      const notActive = 'Image with status active cannot be target for import';
      const cases: [ImageJson, string, string][] = [
        [queued, 'copy-image', activeOnly], [staged, 'copy-image', activeOnly],
        [queued, 'glance-direct', notStaged], [active, 'glance-direct', notActive],
        [active, 'web-download', notActive], [staged, 'web-download', "Image needs to be in 'queued' state to use 'web-download' method"],
        [active, 'glance-download', notActive], [staged, 'glance-download', "Image needs to be in 'queued' state to use 'glance-download' method"],
      ];
      for (const [image, name, message] of cases) {
        const body = { method: { name, uri: 'http://127.0.0.1:9/x', glance_region: 'r', glance_image_id: REMOTE_ID }, stores: ['b'] };
        await expectRefused(image.id, body, 409, message);
      }
      // Status is checked before the glance-download parameters and before policy.
      await expectRefused(active.id, { method: { name: 'glance-download' } }, 409);
      const others = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'public', owner: 'p1' });
      await expectRefused(others.id, { method: { name: 'copy-image' }, stores: ['b'] }, 409, undefined, { as: P2 });
      const deactivated = await createActiveImage(site, bytesOf(10, 9));
      expectStatus(await call(site, 'POST', `/v2/images/${deactivated.id}/actions/deactivate`), 204);
      await expectRefused(deactivated.id, { method: { name: 'copy-image' }, stores: ['b'] }, 409, 'Only images with status active can be targeted for copying');
    });

    it('409 when disk_format or container_format is unset (glance-direct, web-download)', async () => {
      for (const [formats, missingFormat] of [[{}, 'container_format'], [{ disk_format: 'raw' }, 'container_format'], [{ container_format: 'bare' }, 'disk_format']] as const) {
        const bare = await createImage(site, formats);
        const message = `'${missingFormat}' needs to be set before import`;
        await expectRefused(bare.id, { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' } }, 409, message);
        expectStatus(await stage(site, bare.id, bytesOf(10)), 204);
        await expectRefused(bare.id, { method: { name: 'glance-direct' } }, 409, message);
      }
    });

    it('glance-download: 400 without glance_region or glance_image_id, 400 "does not look like a UUID"', async () => {
      for (const method of [
        { name: 'glance-download' }, { name: 'glance-download', glance_region: 'r' },
        { name: 'glance-download', glance_image_id: REMOTE_ID }, { name: 'glance-download', glance_region: '', glance_image_id: REMOTE_ID },
      ]) await expectRefused(queued.id, { method }, 400, /glance_region and glance_image_id/);
      await expectRefused(queued.id, { method: { name: 'glance-download', glance_region: 'r', glance_image_id: 'abc' } }, 400, /image id does not look like a UUID/);
      // Checked after the image lookup (404 for an image the caller cannot see) but before policy.
      expectStatus(await startImport(site, queued.id, { method: { name: 'glance-download', glance_region: 'r', glance_image_id: 'abc' } }, { as: P2 }), 404);
      const publicImage = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'public', owner: 'p1' });
      await expectRefused(publicImage.id, { method: { name: 'glance-download', glance_region: 'r', glance_image_id: 'abc' } }, 400, /does not look like a UUID/, { as: P2 });
    });

    it('403 for copy-image by a non-admin, even the owner', async () => {
      const own = await createActiveImage(site, bytesOf(100, 10), { visibility: 'public', owner: 'p1' });
      for (const as of [P1, P2, P1_READER]) {
        await expectRefused(own.id, { method: { name: 'copy-image' }, stores: ['b'] }, 403, /copy_image/, { as });
      }
    });

    it('403 (visible) or 404 (not visible) for the other methods by a non-owner or a reader', async () => {
      const visible = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'public', owner: 'p1' });
      for (const as of [P2, P1_READER]) {
        await expectRefused(visible.id, { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' } }, 403, undefined, { as });
        await expectRefused(visible.id, { method: { name: 'glance-download', glance_region: 'r', glance_image_id: REMOTE_ID } }, 403, undefined, { as });
      }
      // Staging needs the same right.
      expectStatus(await stage(site, visible.id, bytesOf(10), P2), 403);
      expectStatus(await stage(site, visible.id, bytesOf(10)), 204);
      await expectRefused(visible.id, { method: { name: 'glance-direct' } }, 403, undefined, { as: P2 });
      const hidden = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'private' }, P1);
      expectStatus(await startImport(site, hidden.id, { method: { name: 'glance-download', glance_region: 'r', glance_image_id: REMOTE_ID } }, { as: P2 }), 404);
    });

    it('409 while another import holds the image (live lock), checked before the store rules', async () => {
      const big = Buffer.concat(Array.from({ length: 128 }, () => randomBytes(1 << 20)));
      const image = await createActiveImage(site, big, { name: 'locked' });
      const requestId = await acceptedImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b'] });
      const during = await getImage(site, image.id);
      assert.match(during.os_glance_import_task, /^[0-9a-f-]{36}$/);
      assert.equal(during.os_glance_importing_to_stores, 'b');
      assert.equal(during.os_glance_failed_import, '');
      const [running] = await imageTasks(site, image.id);
      assert.equal(running.id, during.os_glance_import_task);
      assert.ok(['pending', 'processing'].includes(running.status), running.status);
      assert.equal(running.expires_at, null, 'a running task does not expire (as in samples/image-tasks.json)');
      assert.equal(running.result, null);
      const second = await startImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'] });
      expectStatus(second, 409);
      assert.match(second.body.message, /active task|in progress/);
      const both = await startImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'], all_stores: true });
      expectStatus(both, 409);
      const task = await waitForTask(site, image.id, requestId);
      assert.equal(task.status, 'success', task.message);
      // The lock is gone: the next copy is accepted.
      assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'] })).status, 'success');
      const done = await getImage(site, image.id);
      assert.equal(done.stores, 'a,b,c');
      assert.equal(done.os_glance_import_task, undefined);
    });

    it('store rules: all_stores with stores or X-Image-Meta-Store 400, stores with the header 400, unknown store 409', async () => {
      const copy = { name: 'copy-image' };
      await expectRefused(active.id, { method: copy, all_stores: true, stores: ['b'] }, 400);
      await expectRefused(active.id, { method: copy, all_stores: true }, 400, undefined, { headers: { 'x-image-meta-store': 'b' } });
      await expectRefused(active.id, { method: copy, stores: ['b'] }, 400, undefined, { headers: { 'x-image-meta-store': 'c' } });
      await expectRefused(active.id, { method: copy, stores: ['nowhere'] }, 409, 'Store for identifier nowhere not found');
      await expectRefused(active.id, { method: copy, stores: ['b', 'nowhere'] }, 409, 'Store for identifier nowhere not found');
      await expectRefused(active.id, { method: copy }, 409, 'Store for identifier nowhere not found', { headers: { 'x-image-meta-store': 'nowhere' } });
      await expectRefused(queued.id, { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' }, stores: ['nowhere'] }, 409);
      // The sample's body exactly (webob JSON).
      const res = await startImport(site, active.id, { method: copy, stores: ['nowhere'] });
      assert.deepEqual(res.body, { message: 'Store for identifier nowhere not found<br /><br />\n\n\n', code: '409 Conflict', title: 'Conflict' });
      // Unknown stores are refused before the URI is filtered.
      await expectRefused(queued.id, { method: { name: 'web-download', uri: 'ftp://127.0.0.1:9/x' }, stores: ['nowhere'] }, 409);
    });

    it('copy-image: 400 for explicit stores that already hold the image', async () => {
      await expectRefused(active.id, { method: { name: 'copy-image' }, stores: ['a'] }, 400, /already present/);
      await expectRefused(active.id, { method: { name: 'copy-image' }, stores: ['b', 'a'] }, 400, /already present/);
      // No stores: the default store a, which holds it.
      await expectRefused(active.id, { method: { name: 'copy-image' } }, 400, /already present/);
    });

    it('copy-image all_stores copies to the missing stores, and with everything present answers 202 doing nothing (no task)', async () => {
      const data = bytesOf(3000, 11);
      const image = await createActiveImage(site, data, { name: 'all-stores' });
      const task = await runImport(site, image.id, { method: { name: 'copy-image' }, all_stores: true });
      assert.equal(task.status, 'success', task.message);
      assert.deepEqual(task.input.backend, ['b', 'c']);
      const copied = await getImage(site, image.id);
      assert.equal(copied.stores, 'a,b,c');
      for (const s of ['a', 'b', 'c']) assert.deepEqual(await storeFiles(dir(s), image.id), { committed: true, partial: [] });

      const res = await startImport(site, image.id, { method: { name: 'copy-image' }, all_stores: true });
      expectStatus(res, 202);
      assert.equal(res.text, '');
      assert.deepEqual(await getImage(site, image.id), copied, 'the image is untouched');
      assert.equal((await imageTasks(site, image.id)).length, 1, 'no task for nothing to do');
      assert.equal(copied.os_glance_import_task, undefined);
      assert.equal(copied.os_glance_importing_to_stores, '');
      assert.equal(copied.os_glance_failed_import, '');
      assert.equal(copied.checksum, md5(data));
    });

    it('web-download: 400 "does not pass filtering" for a URI the filter refuses (last check)', async () => {
      for (const uri of ['ftp://127.0.0.1:9/x', 'http://127.0.0.1:1/x', 'http://169.254.169.254/latest/meta-data', 'file:///etc/passwd', 'not a uri']) {
        await expectRefused(queued.id, { method: { name: 'web-download', uri } }, 400, /does not pass filtering/);
      }
      await expectRefused(queued.id, { method: { name: 'web-download' } }, 400);
      assert.deepEqual(await imageTasks(site, queued.id), []);
    });
  });

  describe('accepted import (202) and its task', () => {
    it('answers 202 with an empty body and a request id that the task records; the task shows as in the sample', async () => {
      const image = await createActiveImage(site, bytesOf(2048, 12), {}, ADMIN);
      const res = await startImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b'] }, {
        headers: { 'x-openstack-request-id': 'req-11111111-2222-4333-8444-555555555555' },
      });
      expectStatus(res, 202);
      assert.equal(res.text, '');
      assert.equal(res.headers.get('content-length'), '0');
      assert.equal(res.headers.get('x-openstack-request-id'), 'req-11111111-2222-4333-8444-555555555555');
      const task = await waitForTask(site, image.id, 'req-11111111-2222-4333-8444-555555555555');
      // The keys of samples/image-tasks.json, in its order.
      assert.deepEqual(Object.keys(task), [
        'id', 'type', 'status', 'owner', 'expires_at', 'created_at', 'updated_at', 'deleted_at', 'deleted', 'image_id',
        'request_id', 'user_id', 'input', 'result', 'message',
      ]);
      assert.equal(task.type, 'api_image_import');
      assert.equal(task.status, 'success');
      assert.equal(task.image_id, image.id);
      assert.equal(task.deleted, false);
      assert.equal(task.deleted_at, null);
      assert.deepEqual(task.input, { image_id: image.id, import_req: { method: { name: 'copy-image' }, stores: ['b'] }, backend: ['b'] });
      assert.deepEqual(task.result, { image_id: image.id });
      for (const k of ['created_at', 'updated_at', 'expires_at']) assert.match(task[k], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/, k);
      assert.ok(task.expires_at > task.updated_at);
      assert.match(task.message, /^Copied \d+ MiB$/);
    });

    it('records the owner of the image and the user who asked', async () => {
      const data = bytesOf(500, 13);
      const image = await stagedImage(data, { owner: 'p1', visibility: 'public' });
      const task = await runImport(site, image.id, { method: { name: 'glance-direct' } }, { as: P1 });
      assert.equal(task.status, 'success', task.message);
      assert.equal(task.owner, 'p1');
      assert.equal(task.user_id, 'user-of-p1');
      // Only tasks of images the caller can see.
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}/tasks`, { as: P2 }), 200);
      const hidden = await createImage(site, { visibility: 'private' }, P1);
      expectStatus(await call(site, 'GET', `/v2/images/${hidden.id}/tasks`, { as: P2 }), 404);
      expectStatus(await call(site, 'GET', '/v2/images/0b1e4f5e-4d6c-4a1b-9d9e-000000000000/tasks'), 404);
    });
  });

  describe('PUT /v2/images/{id}/stage', () => {
    it('415 for anything but application/octet-stream; the image stays queued', async () => {
      const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
      for (const type of ['application/json', 'text/plain', 'application/x-www-form-urlencoded']) {
        const res = await call(site, 'PUT', `/v2/images/${image.id}/stage`, { body: 'abc', headers: { 'content-type': type, ...JSON_ACCEPT } });
        expectStatus(res, 415);
      }
      assert.equal((await getImage(site, image.id)).status, 'queued');
      assert.deepEqual(await staged(image.id), []);
    });

    it('409 unless the image is queued (uploading, active)', async () => {
      const image = await stagedImage(bytesOf(100, 14));
      expectStatus(await stage(site, image.id, bytesOf(50)), 409);
      assert.equal((await getImage(site, image.id)).size, 100);
      const active = await createActiveImage(site, bytesOf(10, 15));
      expectStatus(await stage(site, active.id, bytesOf(50)), 409);
      expectStatus(await stage(site, '0b1e4f5e-4d6c-4a1b-9d9e-000000000000', bytesOf(5)), 404);
    });

    it('moves the image to uploading with its size, no checksum and no store yet', async () => {
      const data = bytesOf(4321, 16);
      const image = await stagedImage(data);
      assert.equal(image.status, 'uploading');
      assert.equal(image.size, 4321);
      assert.equal(image.checksum, null);
      assert.equal(image.stores, undefined);
      assert.deepEqual(await staged(image.id), [image.id]);
      // No data to download yet.
      expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`), 204);
    });
  });

  async function staged(id: string): Promise<string[]> {
    return (await readdir(join(site.dataDir, 'staging'))).filter((f) => f.startsWith(id));
  }

  describe('glance-direct end to end', () => {
    it('stage → import → active in the requested stores, with import properties kept as ""', async () => {
      const data = bytesOf(10_000, 17);
      const image = await stagedImage(data, { name: 'direct' });
      const requestId = await acceptedImport(site, image.id, { method: { name: 'glance-direct' }, stores: ['b', 'c'] });
      const task = await waitForTask(site, image.id, requestId);
      assert.equal(task.status, 'success', task.message);
      assert.equal(task.request_id, requestId);
      const done = await getImage(site, image.id);
      assert.equal(done.status, 'active');
      assert.equal(done.stores, 'b,c');
      assert.equal(done.size, data.length);
      assert.equal(done.checksum, md5(data));
      assert.equal(done.os_hash_algo, 'sha512');
      assert.equal(done.os_hash_value, sha512(data));
      assert.equal(done.os_glance_importing_to_stores, '');
      assert.equal(done.os_glance_failed_import, '');
      assert.equal(Object.hasOwn(done, 'os_glance_import_task'), false);
      for (const s of ['b', 'c']) assert.deepEqual(await storeFiles(dir(s), image.id), { committed: true, partial: [] });
      assert.deepEqual(await storeFiles(dir('a'), image.id), NOTHING_STORED);
      assert.deepEqual(await staged(image.id), [], 'the staged file is removed');
      const got = await site.request(`/v2/images/${image.id}/file`);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), data);
      // A later copy keeps both properties as "" (never removed).
      assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['a'] })).status, 'success');
      const copied = await getImage(site, image.id);
      assert.equal(copied.stores, 'a,b,c');
      assert.equal(copied.os_glance_importing_to_stores, '');
      assert.equal(copied.os_glance_failed_import, '');
      assert.equal(Object.hasOwn(copied, 'os_glance_import_task'), false);
    });

    it('without stores goes to X-Image-Meta-Store, else to the default store', async () => {
      const one = await stagedImage(bytesOf(100, 18));
      assert.equal((await runImport(site, one.id, { method: { name: 'glance-direct' } }, { headers: { 'x-image-meta-store': 'c' } })).status, 'success');
      assert.equal((await getImage(site, one.id)).stores, 'c');
      const two = await stagedImage(bytesOf(100, 19));
      assert.equal((await runImport(site, two.id, { method: { name: 'glance-direct' } })).status, 'success');
      assert.equal((await getImage(site, two.id)).stores, 'a');
    });

    it('all_stores imports to every store', async () => {
      const image = await stagedImage(bytesOf(100, 20));
      const task = await runImport(site, image.id, { method: { name: 'glance-direct' }, all_stores: true });
      assert.equal(task.status, 'success');
      assert.deepEqual(task.input.backend, ['a', 'b', 'c']);
      assert.equal((await getImage(site, image.id)).stores, 'a,b,c');
    });
  });

  describe('one target store failing (all_stores_must_succeed)', () => {
    it('copy-image, must_succeed false: the other store gets its copy, the failed one is listed, the task succeeds', async () => {
      const data = bytesOf(5000, 21);
      const image = await createActiveImage(site, data);
      const repair = await breakStore('c');
      try {
        const task = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b', 'c'], all_stores_must_succeed: false });
        assert.equal(task.status, 'success', task.message);
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'active');
        assert.equal(after.stores, 'a,b');
        assert.equal(after.os_glance_failed_import, 'c');
        assert.equal(after.os_glance_importing_to_stores, '');
        assert.equal(Object.hasOwn(after, 'os_glance_import_task'), false);
        assert.deepEqual(await storeFiles(dir('b'), image.id), { committed: true, partial: [] });
      } finally {
        await repair();
      }
      assert.deepEqual(await storeFiles(dir('c'), image.id), NOTHING_STORED);
      // A retry to the repaired store clears it from the failed list.
      assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'] })).status, 'success');
      const retried = await getImage(site, image.id);
      assert.equal(retried.stores, 'a,b,c');
      assert.equal(retried.os_glance_failed_import, '');
    });

    it('copy-image, must_succeed true: the task fails, the copy already made is removed, both stores are listed failed', async () => {
      const data = bytesOf(5000, 22);
      const image = await createActiveImage(site, data);
      const repair = await breakStore('c');
      try {
        const task = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b', 'c'] });
        assert.equal(task.status, 'failure');
        assert.notEqual(task.message, '');
        assert.equal(task.result, null);
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'active');
        assert.equal(after.stores, 'a');
        assert.deepEqual(after.os_glance_failed_import.split(',').sort(), ['b', 'c']);
        assert.equal(after.os_glance_importing_to_stores, '');
        assert.equal(Object.hasOwn(after, 'os_glance_import_task'), false);
        assert.deepEqual(await storeFiles(dir('b'), image.id), NOTHING_STORED);
      } finally {
        await repair();
      }
      const got = await site.request(`/v2/images/${image.id}/file`);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), data);
    });

    it('glance-direct, must_succeed false: active in the stores that worked, the failed one listed', async () => {
      const data = bytesOf(5000, 23);
      const image = await stagedImage(data);
      const repair = await breakStore('c');
      try {
        const task = await runImport(site, image.id, { method: { name: 'glance-direct' }, stores: ['b', 'c'], all_stores_must_succeed: false });
        assert.equal(task.status, 'success', task.message);
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'active');
        assert.equal(after.stores, 'b');
        assert.equal(after.checksum, md5(data));
        assert.equal(after.os_glance_failed_import, 'c');
        assert.equal(after.os_glance_importing_to_stores, '');
        assert.equal(Object.hasOwn(after, 'os_glance_import_task'), false);
      } finally {
        await repair();
      }
      assert.deepEqual(await storeFiles(dir('c'), image.id), NOTHING_STORED);
      assert.deepEqual(await staged(image.id), []);
    });

    it('glance-direct, must_succeed true: the task fails and the image is queued again with no copy anywhere', async () => {
      const data = bytesOf(5000, 24);
      const image = await stagedImage(data);
      const repair = await breakStore('c');
      try {
        const task = await runImport(site, image.id, { method: { name: 'glance-direct' }, stores: ['b', 'c'], all_stores_must_succeed: true });
        assert.equal(task.status, 'failure');
        assert.notEqual(task.message, '');
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'queued');
        assert.equal(after.stores, undefined);
        assert.equal(after.checksum, null);
        assert.deepEqual(after.os_glance_failed_import.split(',').sort(), ['b', 'c']);
        assert.equal(after.os_glance_importing_to_stores, '');
        assert.equal(Object.hasOwn(after, 'os_glance_import_task'), false);
        assert.deepEqual(await storeFiles(dir('b'), image.id), NOTHING_STORED);
        expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`), 204);
      } finally {
        await repair();
      }
      assert.deepEqual(await storeFiles(dir('c'), image.id), NOTHING_STORED);
      // The image can be imported again from scratch.
      expectStatus(await stage(site, image.id, data), 204);
      assert.equal((await runImport(site, image.id, { method: { name: 'glance-direct' }, stores: ['b', 'c'] })).status, 'success');
      const done = await getImage(site, image.id);
      assert.equal(done.stores, 'b,c');
      assert.equal(done.os_glance_failed_import, '');
    });
  });

  describe('tasks API', () => {
    it('GET /v2/tasks is admin-only: 403 for a member, also for one task', async () => {
      expectStatus(await call(site, 'GET', '/v2/tasks', { as: P1, headers: JSON_ACCEPT }), 403);
      const image = await createActiveImage(site, bytesOf(100, 25));
      const task = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b'] });
      expectStatus(await call(site, 'GET', `/v2/tasks/${task.id}`, { as: P1 }), 403);
      const one = await call(site, 'GET', `/v2/tasks/${task.id}`);
      expectStatus(one, 200);
      assert.deepEqual(one.body, {
        id: task.id, type: 'api_image_import', status: 'success', owner: image.owner, input: task.input, result: { image_id: image.id },
        message: task.message, image_id: image.id, request_id: task.request_id, user_id: null,
        expires_at: `${task.expires_at.slice(0, 19)}Z`, created_at: `${task.created_at.slice(0, 19)}Z`,
        updated_at: `${task.updated_at.slice(0, 19)}Z`, self: `/v2/tasks/${task.id}`, schema: '/v2/schemas/task',
      });
      expectStatus(await call(site, 'GET', '/v2/tasks/0b1e4f5e-4d6c-4a1b-9d9e-000000000000'), 404);
    });

    it('GET /v2/tasks pages with limit and marker, sorts, filters on status', async () => {
      // A few more tasks, one of them failed.
      const image = await createActiveImage(site, bytesOf(100, 26));
      await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b'] });
      const repair = await breakStore('c');
      try {
        assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'] })).status, 'failure');
      } finally {
        await repair();
      }
      const all = await call<{ tasks: any[]; first: string; schema: string }>(site, 'GET', '/v2/tasks?limit=1000');
      expectStatus(all, 200);
      assert.equal(all.body.schema, '/v2/schemas/tasks');
      assert.equal(all.body.first, '/v2/tasks?limit=1000');
      const total = all.body.tasks.length;
      assert.ok(total >= 3);
      assert.deepEqual(Object.keys(all.body.tasks[0]).sort(), [
        'created_at', 'expires_at', 'id', 'owner', 'schema', 'self', 'status', 'type', 'updated_at',
      ]);
      for (let i = 1; i < total; i++) assert.ok(all.body.tasks[i - 1].created_at >= all.body.tasks[i].created_at, 'newest first by default');

      for (const dirName of ['asc', 'desc']) {
        const seen: string[] = [];
        let path: string | undefined = `/v2/tasks?limit=2&sort_key=id&sort_dir=${dirName}`;
        for (let guard = 0; path !== undefined && guard < 100; guard++) {
          const page: any = await call(site, 'GET', path);
          expectStatus(page, 200);
          assert.ok(page.body.tasks.length <= 2);
          seen.push(...page.body.tasks.map((t: any) => t.id));
          path = page.body.next;
          if (path !== undefined) assert.match(path, /[?&]marker=/);
        }
        const sorted = [...seen].sort();
        assert.deepEqual(seen, dirName === 'asc' ? sorted : sorted.reverse(), `every task once, by id ${dirName}`);
        assert.equal(seen.length, total);
      }

      const failed = await call<{ tasks: any[] }>(site, 'GET', '/v2/tasks?status=failure&limit=1000');
      expectStatus(failed, 200);
      assert.ok(failed.body.tasks.length >= 1);
      assert.ok(failed.body.tasks.every((t) => t.status === 'failure'));
      for (const bad of ['limit=-1', 'limit=x', 'sort_key=name', 'sort_dir=up', 'status=done', 'marker=0b1e4f5e-4d6c-4a1b-9d9e-000000000000']) {
        expectStatus(await call(site, 'GET', `/v2/tasks?${bad}`), 400);
      }
      expectStatus(await call(site, 'DELETE', `/v2/tasks/${all.body.tasks[0].id}`), 405);
    });

    it('GET /v2/images/{id}/tasks lists the image\'s tasks newest first', async () => {
      const image = await createActiveImage(site, bytesOf(100, 27));
      const first = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b'] });
      const second = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['c'] });
      const tasks = await imageTasks(site, image.id);
      assert.deepEqual(tasks.map((t) => t.id), [second.id, first.id]);
      assert.ok(tasks.every((t) => t.image_id === image.id));
    });
  });

  describe('DELETE /v2/stores/{store}/{image}', () => {
    let image: ImageJson;
    before(async () => {
      image = await createActiveImage(site, bytesOf(3000, 28));
      assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b', 'c'] })).status, 'success');
    });

    it('403 for a non-admin, 409 for an unknown store, 404 for a missing image', async () => {
      const denied = await call<{ message: string }>(site, 'DELETE', `/v2/stores/b/${image.id}`, { as: P1, headers: JSON_ACCEPT });
      expectStatus(denied, 403);
      const unknown = await call(site, 'DELETE', `/v2/stores/nowhere/${image.id}`, { headers: JSON_ACCEPT });
      expectStatus(unknown, 409);
      expectStatus(await call(site, 'DELETE', '/v2/stores/b/0b1e4f5e-4d6c-4a1b-9d9e-000000000000'), 404);
      assert.equal((await getImage(site, image.id)).stores, 'a,b,c');
    });

    it('204 removes the copy and its file; then 404 "not stored in store" as in the sample', async () => {
      const res = await call(site, 'DELETE', `/v2/stores/b/${image.id}`);
      expectStatus(res, 204);
      assert.equal(res.text, '');
      const after = await getImage(site, image.id);
      assert.equal(after.stores, 'a,c');
      assert.equal(after.os_glance_importing_to_stores, '', 'kept as ""');
      assert.equal(after.os_glance_failed_import, '', 'kept as ""');
      assert.deepEqual(await storeFiles(dir('b'), image.id), NOTHING_STORED);
      const again = await call<{ message: string }>(site, 'DELETE', `/v2/stores/b/${image.id}`, { headers: JSON_ACCEPT });
      expectStatus(again, 404);
      assert.deepEqual(again.body, { message: `Image ${image.id} is not stored in store b.<br /><br />\n\n\n`, code: '404 Not Found', title: 'Not Found' });
    });

    it('403 for the last copy; the image keeps it', async () => {
      expectStatus(await call(site, 'DELETE', `/v2/stores/a/${image.id}`), 204);
      const last = await call<{ message: string }>(site, 'DELETE', `/v2/stores/c/${image.id}`, { headers: JSON_ACCEPT });
      expectStatus(last, 403);
      assert.match(last.body.message, /only store/);
      const after = await getImage(site, image.id);
      assert.equal(after.stores, 'c');
      assert.deepEqual(await storeFiles(dir('c'), image.id), { committed: true, partial: [] });
      const got = await site.request(`/v2/images/${image.id}/file`);
      assert.equal(got.status, 200);
      await got.arrayBuffer();
    });

    it('409 for an image that is not active (queued, deactivated)', async () => {
      const queued = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
      expectStatus(await call(site, 'DELETE', `/v2/stores/a/${queued.id}`), 409);
      const two = await createActiveImage(site, bytesOf(100, 29));
      assert.equal((await runImport(site, two.id, { method: { name: 'copy-image' }, stores: ['b'] })).status, 'success');
      expectStatus(await call(site, 'POST', `/v2/images/${two.id}/actions/deactivate`), 204);
      expectStatus(await call(site, 'DELETE', `/v2/stores/b/${two.id}`), 409);
      assert.deepEqual(await storeFiles(dir('b'), two.id), { committed: true, partial: [] });
    });
  });

  describe('never stuck', () => {
    it('an empty stores list: glance-direct is refused (400) and stays uploading; copy-image has nothing to do', async () => {
      const image = await stagedImage(bytesOf(100, 33));
      await expectRefused(image.id, { method: { name: 'glance-direct' }, stores: [] }, 400, /No store to import/);
      await expectRefused((await createImage(site, { disk_format: 'raw', container_format: 'bare' })).id, { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' }, stores: [] }, 400, /No store to import/);
      assert.equal((await getImage(site, image.id)).status, 'uploading');
      assert.equal((await runImport(site, image.id, { method: { name: 'glance-direct' }, stores: ['b'] })).status, 'success');
      assert.equal((await getImage(site, image.id)).stores, 'b');
      const before = await getImage(site, image.id);
      const res = await startImport(site, image.id, { method: { name: 'copy-image' }, stores: [] });
      expectStatus(res, 202);
      assert.deepEqual(await getImage(site, image.id), before);
    });

    it('a staging upload cut off half-way returns the image to queued with nothing staged', async () => {
      const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
      const req = httpRequest(`${site.url}/v2/images/${image.id}/stage`, {
        method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(64 << 20) },
      });
      req.on('error', () => undefined);
      req.write(Buffer.alloc(4 << 20, 1));
      let saw = '';
      for (const deadline = Date.now() + 60_000; saw !== 'uploading' && Date.now() < deadline;) {
        await sleep(10);
        saw = (await getImage(site, image.id)).status;
      }
      assert.equal(saw, 'uploading');
      req.destroy();
      let after = await getImage(site, image.id);
      for (const deadline = Date.now() + 60_000; after.status !== 'queued' && Date.now() < deadline;) {
        await sleep(10);
        after = await getImage(site, image.id);
      }
      assert.equal(after.status, 'queued');
      assert.equal(after.size, null);
      for (const deadline = Date.now() + 60_000; (await readdir(join(site.dataDir, 'staging', '.incomplete'))).length > 0 && Date.now() < deadline;) await sleep(10);
      assert.deepEqual(await staged(image.id), []);
      assert.deepEqual((await readdir(join(site.dataDir, 'staging', '.incomplete'))).filter((f) => f.startsWith(image.id)), []);
      expectStatus(await stage(site, image.id, bytesOf(10)), 204);
    });

    it('an image deleted while its import runs: the task fails and no copy is left anywhere', async () => {
      const big = Buffer.concat(Array.from({ length: 64 }, () => randomBytes(1 << 20)));
      const image = await createActiveImage(site, big);
      const requestId = await acceptedImport(site, image.id, { method: { name: 'copy-image' }, stores: ['b', 'c'] });
      const [task] = await imageTasks(site, image.id);
      assert.equal(task.request_id, requestId);
      expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
      let ended: any;
      for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
        ended = (await call(site, 'GET', `/v2/tasks/${task.id}`)).body;
        if (ended.status === 'success' || ended.status === 'failure') break;
        await sleep(25);
      }
      assert.equal(ended.status, 'failure', JSON.stringify(ended));
      for (const s of ['a', 'b', 'c']) assert.deepEqual(await storeFiles(dir(s), image.id), NOTHING_STORED, s);
    });
  });

  it('deleting an image removes its copy from every store directory', async () => {
    const image = await createActiveImage(site, bytesOf(2000, 30));
    assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, all_stores: true })).status, 'success');
    for (const s of ['a', 'b', 'c']) assert.deepEqual(await storeFiles(dir(s), image.id), { committed: true, partial: [] });
    expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
    for (const s of ['a', 'b', 'c']) assert.deepEqual(await storeFiles(dir(s), image.id), NOTHING_STORED);
  });

  it('deleting a staged image removes the staged data', async () => {
    const image = await stagedImage(bytesOf(2000, 31));
    assert.deepEqual(await staged(image.id), [image.id]);
    expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
    assert.deepEqual(await staged(image.id), []);
  });

  it('an upload with X-Image-Meta-Store goes to that store', async () => {
    const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(site, image.id, bytesOf(100, 32), ADMIN, { 'x-image-meta-store': 'b' }), 204);
    assert.equal((await getImage(site, image.id)).stores, 'b');
  });
});
