import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  bytesOf, call, createActiveImage, createImage, expectStatus, getImage, project, upload, type ImageJson,
} from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const JSON_ACCEPT = { accept: 'application/json' };
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

describe('image data: upload, download, ranges', () => {
  let site: TestSite;
  let storeDir: string;
  before(async () => {
    site = await startTestSite();
    storeDir = join(site.dataDir, 'stores', 'central');
  });
  after(async () => { await site.close(); });

  /** Files of the store for an image: committed ones and partial ones in .incomplete. */
  async function storedFiles(id: string): Promise<{ committed: boolean; partial: string[] }> {
    const partial = (await readdir(join(storeDir, '.incomplete'))).filter((f) => f.startsWith(id));
    return { committed: existsSync(join(storeDir, id)), partial };
  }

  describe('upload (PUT /v2/images/{id}/file)', () => {
    it('moves a queued image to active with size, checksum and sha512 of the bytes', async () => {
      const data = bytesOf(5000, 1);
      const image = await createImage(site, { name: 'up', disk_format: 'raw', container_format: 'bare' });
      assert.equal(image.status, 'queued');
      const res = await upload(site, image.id, data);
      expectStatus(res, 204);
      assert.equal(res.text, '');
      const active = await getImage(site, image.id);
      assert.equal(active.status, 'active');
      assert.equal(active.size, data.length);
      assert.equal(active.virtual_size, data.length);
      assert.equal(active.checksum, md5(data));
      assert.equal(active.os_hash_algo, 'sha512');
      assert.equal(active.os_hash_value, sha512(data));
      assert.deepEqual(await storedFiles(image.id), { committed: true, partial: [] });
    });

    it('accepts a matching x-openstack-image-size', async () => {
      const data = bytesOf(1234, 2);
      const image = await createImage(site, { disk_format: 'qcow2', container_format: 'bare' });
      expectStatus(await upload(site, image.id, data, undefined, { 'x-openstack-image-size': String(data.length) }), 204);
      assert.equal((await getImage(site, image.id)).size, data.length);
    });

    it('answers 409 for an image that is already active, and keeps the first bytes', async () => {
      const data = bytesOf(800, 3);
      const image = await createActiveImage(site, data);
      const res = await call<{ message: string }>(site, 'PUT', `/v2/images/${image.id}/file`, {
        body: bytesOf(10, 4), headers: { 'content-type': 'application/octet-stream', ...JSON_ACCEPT },
      });
      expectStatus(res, 409);
      assert.equal(res.body.message, 'Image status transition from active to saving is not allowed<br /><br />\n\n\n');
      const after = await getImage(site, image.id);
      assert.equal(after.status, 'active');
      assert.equal(after.checksum, md5(data));
      const got = await site.request(`/v2/images/${image.id}/file`);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), data);
    });

    for (const [what, formats] of [
      ['neither format', {}],
      ['no container_format', { disk_format: 'raw' }],
      ['no disk_format', { container_format: 'bare' }],
    ] as const) {
      it(`answers 400 when the image has ${what}, and the image stays queued with nothing stored`, async () => {
        const image = await createImage(site, { name: `no-format-${what}`, ...formats });
        const res = await call<{ message: string }>(site, 'PUT', `/v2/images/${image.id}/file`, {
          body: bytesOf(100), headers: { 'content-type': 'application/octet-stream', ...JSON_ACCEPT },
        });
        expectStatus(res, 400);
        assert.match(res.body.message, /must be set prior to saving data/);
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'queued');
        assert.equal(after.size, null);
        assert.deepEqual(await storedFiles(image.id), { committed: false, partial: [] });
      });
    }

    for (const [what, declared, sent] of [
      ['fewer bytes than declared', 4096, 4000],
      ['more bytes than declared', 1000, 4000],
    ] as const) {
      it(`answers 400 for ${what} in x-openstack-image-size; the image returns to queued with nothing stored`, async () => {
        const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
        const res = await upload(site, image.id, bytesOf(sent, 5), undefined, { 'x-openstack-image-size': String(declared) });
        expectStatus(res, 400);
        const after = await getImage(site, image.id);
        assert.equal(after.status, 'queued');
        assert.equal(after.size, null);
        assert.equal(after.checksum, null);
        assert.deepEqual(await storedFiles(image.id), { committed: false, partial: [] });
        expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`), 204);
        // The image can take a correct upload afterwards.
        const data = bytesOf(declared, 6);
        expectStatus(await upload(site, image.id, data, undefined, { 'x-openstack-image-size': String(declared) }), 204);
        const active = await getImage(site, image.id);
        assert.equal(active.status, 'active');
        assert.equal(active.checksum, md5(data));
      });
    }

    it('answers 400 for an x-openstack-image-size that is not a number', async () => {
      const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
      expectStatus(await upload(site, image.id, bytesOf(10), undefined, { 'x-openstack-image-size': 'ten' }), 400);
      assert.equal((await getImage(site, image.id)).status, 'queued');
    });

    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json']) {
      it(`answers 415 for Content-Type ${type}; the image stays queued`, async () => {
        const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
        const res = await call<{ code: string }>(site, 'PUT', `/v2/images/${image.id}/file`, {
          body: bytesOf(100, 9), headers: { 'content-type': type, ...JSON_ACCEPT },
        });
        expectStatus(res, 415);
        assert.equal(res.body.code, '415 Unsupported Media Type');
        assert.equal((await getImage(site, image.id)).status, 'queued');
        assert.deepEqual(await storedFiles(image.id), { committed: false, partial: [] });
      });
    }

    it('answers 404 for an unknown image', async () => {
      expectStatus(await upload(site, '00000000-0000-0000-0000-000000000000', bytesOf(10)), 404);
    });

    it('lets only the owner (or an admin) upload: 404 for an invisible image, 403 for a visible one', async () => {
      const owner = project('proj-up-a');
      const other = project('proj-up-b');
      const priv = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'private' }, owner);
      expectStatus(await upload(site, priv.id, bytesOf(10), other), 404);
      const community = await createImage(site, { disk_format: 'raw', container_format: 'bare', visibility: 'community' }, owner);
      expectStatus(await upload(site, community.id, bytesOf(10), other), 403);
      expectStatus(await upload(site, community.id, bytesOf(10), project('proj-up-a', 'reader')), 403);
      assert.equal((await getImage(site, community.id)).status, 'queued');
      expectStatus(await upload(site, community.id, bytesOf(10), owner), 204);
    });
  });

  describe('download (GET /v2/images/{id}/file)', () => {
    const data = bytesOf(4096, 11);
    let image: ImageJson;
    before(async () => { image = await createActiveImage(site, data, { name: 'ranges' }); });

    it('answers 204 with an empty body for a queued image', async () => {
      const queued = await createImage(site, { name: 'empty' });
      const res = await site.request(`/v2/images/${queued.id}/file`);
      assert.equal(res.status, 204);
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    });

    it('answers 200 with the bytes, Content-Type, Content-Length and Content-MD5', async () => {
      const res = await site.request(`/v2/images/${image.id}/file`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('content-length'), String(data.length));
      assert.equal(res.headers.get('content-md5'), md5(data));
      assert.equal(res.headers.get('content-range'), null);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data);
    });

    const ranges: [string, number, number][] = [
      ['bytes=0-99', 0, 99],
      ['bytes=100-199', 100, 199],
      ['bytes=4000-', 4000, 4095],
      ['bytes=4095-4095', 4095, 4095],
      ['bytes=-10', 4086, 4095],
      ['bytes=-5000', 0, 4095],
      ['bytes=4000-9999', 4000, 4095],
    ];
    for (const [header, start, end] of ranges) {
      it(`Range: ${header} answers 206 with Content-Range bytes ${start}-${end}/4096 and the whole-image Content-MD5`, async () => {
        const res = await site.request(`/v2/images/${image.id}/file`, { headers: { range: header } });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${data.length}`);
        assert.equal(res.headers.get('content-length'), String(end - start + 1));
        assert.equal(res.headers.get('content-md5'), md5(data));
        assert.equal(res.headers.get('content-type'), 'application/octet-stream');
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), data.subarray(start, end + 1));
      });
    }

    it('honours the legacy request header Content-Range', async () => {
      const res = await site.request(`/v2/images/${image.id}/file`, { headers: { 'content-range': 'bytes 10-19/4096' } });
      assert.equal(res.status, 206);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), data.subarray(10, 20));
    });

    for (const header of ['bytes=4096-', 'bytes=5000-6000', 'bytes=4096-4100']) {
      it(`Range: ${header} (start at or past the size) answers 416`, async () => {
        const res = await call(site, 'GET', `/v2/images/${image.id}/file`, { headers: { range: header } });
        expectStatus(res, 416);
      });
    }

    it('a malformed range answers 416', async () => {
      for (const header of ['bytes=abc', 'items=0-1', 'bytes=9-2']) {
        const res = await call(site, 'GET', `/v2/images/${image.id}/file`, { headers: { range: header } });
        assert.equal(res.status, 416, `${header}: ${res.text}`);
      }
    });

    it('several ranges answer 400', async () => {
      const res = await call(site, 'GET', `/v2/images/${image.id}/file`, { headers: { range: 'bytes=0-1,5-9' } });
      expectStatus(res, 400);
    });

    it('HEAD answers GET\'s status and headers without a body, with Accept-Ranges (QEMU\'s curl driver reads only such URLs)', async () => {
      const whole = await site.request(`/v2/images/${image.id}/file`, { method: 'HEAD' });
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get('content-length'), String(data.length));
      assert.equal(whole.headers.get('accept-ranges'), 'bytes');
      assert.equal(whole.headers.get('content-md5'), md5(data));
      assert.equal((await whole.arrayBuffer()).byteLength, 0);
      const part = await site.request(`/v2/images/${image.id}/file`, { method: 'HEAD', headers: { range: 'bytes=100-199' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes 100-199/${data.length}`);
      assert.equal(part.headers.get('content-length'), '100');
      const queued = await createImage(site, { name: 'head-empty' });
      assert.equal((await site.request(`/v2/images/${queued.id}/file`, { method: 'HEAD' })).status, 204);
      assert.equal((await site.request(`/v2/images/${image.id}/file`, { method: 'HEAD', headers: { range: 'bytes=5000-' } })).status, 416);
      const get = await site.request(`/v2/images/${image.id}/file`);
      assert.equal(get.headers.get('accept-ranges'), 'bytes');
      await get.arrayBuffer();
    });

    it('a project that cannot see the image gets 404 for its data', async () => {
      const owner = project('proj-dl-a');
      const priv = await createActiveImage(site, bytesOf(100, 12), { visibility: 'private' }, owner);
      expectStatus(await call(site, 'GET', `/v2/images/${priv.id}/file`, { as: project('proj-dl-b') }), 404);
      const mine = await site.request(`/v2/images/${priv.id}/file`, { headers: owner });
      assert.equal(mine.status, 200);
      await mine.arrayBuffer();
    });
  });

  it('deleting an image removes its bytes from the store', async () => {
    const image = await createActiveImage(site, bytesOf(2000, 13));
    assert.equal((await storedFiles(image.id)).committed, true);
    expectStatus(await call(site, 'DELETE', `/v2/images/${image.id}`), 204);
    assert.deepEqual(await storedFiles(image.id), { committed: false, partial: [] });
  });
});
