import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ADMIN, bytesOf, call, createActiveImage, createImage, expectStatus, getImage, project, upload,
} from '../helpers/glance-client.ts';
import { runImport } from '../helpers/import-client.ts';
import { startTestSite, tempDir, type TestSite } from '../helpers/site.ts';

/** A site's stores as clients see them: discovery, upload placement, ordering, locations. */
describe('stores of a site', () => {
  let site: TestSite;
  let dir: string;
  before(async () => {
    dir = await tempDir();
    site = await startTestSite({
      stores: [
        { id: 'slow', path: join(dir, 'slow'), description: 'Spinning disks', weight: 0 },
        { id: 'fast', path: join(dir, 'fast'), description: 'NVMe', weight: 10 },
        { id: 'archive', path: join(dir, 'archive'), read_only: true },
      ],
      show_multiple_locations: true,
      show_image_direct_url: true,
    });
  });
  after(async () => { await site.close(); });

  it('GET /v2/info/stores lists them with "true" strings for default and read-only', async () => {
    const res = await call(site, 'GET', '/v2/info/stores');
    expectStatus(res, 200);
    assert.deepEqual(res.body, { stores: [
      { id: 'slow', description: 'Spinning disks', default: 'true' },
      { id: 'fast', description: 'NVMe' },
      { id: 'archive', 'read-only': 'true' },
    ] });
  });

  it('GET /v2/info/stores/detail adds type, weight and properties, for admins only', async () => {
    const res = await call(site, 'GET', '/v2/info/stores/detail');
    expectStatus(res, 200);
    const fast = res.body.stores.find((s: { id: string }) => s.id === 'fast');
    assert.equal(fast.type, 'file');
    assert.equal(fast.weight, 10);
    assert.match(fast.properties.data_dir, /fast$/);
    expectStatus(await call(site, 'GET', '/v2/info/stores/detail', { as: project('p1') }), 403);
  });

  it('X-Image-Meta-Store picks the upload store; an unknown store is 400, a read-only one 410', async () => {
    const image = await createImage(site, { disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(site, image.id, bytesOf(10), ADMIN, { 'x-image-meta-store': 'nowhere' }), 400);
    expectStatus(await upload(site, image.id, bytesOf(10), ADMIN, { 'x-image-meta-store': 'archive' }), 410);
    assert.equal((await getImage(site, image.id)).status, 'queued');
    expectStatus(await upload(site, image.id, bytesOf(10), ADMIN, { 'x-image-meta-store': 'fast' }), 204);
    const active = await getImage(site, image.id);
    assert.equal(active.stores, 'fast');
  });

  it('orders stores, locations and direct_url by weight, and every copy has the same hashes', async () => {
    const image = await createActiveImage(site, bytesOf(4096, 7));
    assert.equal(image.stores, 'slow');
    const task = await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['fast'] });
    assert.equal(task.status, 'success');
    const copied = await getImage(site, image.id);
    assert.equal(copied.stores, 'fast,slow');
    assert.deepEqual(copied.locations.map((l: { metadata: { store: string } }) => l.metadata.store), ['fast', 'slow']);
    assert.match(copied.direct_url, /^file:\/\/.*\/fast\//);
    assert.equal(copied.checksum, image.checksum);
    assert.equal(copied.os_hash_value, image.os_hash_value);
    for (const store of ['fast', 'slow']) {
      assert.deepEqual(await readFile(join(dir, store, image.id)), bytesOf(4096, 7), `the copy in ${store}`);
    }
  });

  it('?prefer=store1,store2 (API 2.18) reads the copies of those stores first, in that order; an unknown store is 400', async () => {
    const data = bytesOf(8192, 8);
    const image = await createActiveImage(site, data);
    assert.equal((await runImport(site, image.id, { method: { name: 'copy-image' }, stores: ['fast'] })).status, 'success');
    // The copy in fast (the heavier store, read first) made different, so that a read shows which copy it took.
    const other = Buffer.alloc(data.length, 0x5a);
    await writeFile(join(dir, 'fast', image.id), other);
    const read = async (query: string) => {
      const res = await site.request(`/v2/images/${image.id}/file${query}`);
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
    };
    assert.ok((await read('')).body.equals(other), 'by weight: fast first');
    assert.ok((await read('?prefer=slow')).body.equals(data), 'slow preferred');
    assert.ok((await read('?prefer=slow,fast')).body.equals(data));
    assert.ok((await read('?prefer=fast,slow')).body.equals(other));
    assert.ok((await read('?prefer=archive,slow')).body.equals(data), 'a preferred store without a copy is passed over');
    const ranged = await site.request(`/v2/images/${image.id}/file?prefer=slow`, { headers: { range: 'bytes=0-9' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(0, 10)));
    for (const query of ['?prefer=nowhere', '?prefer=slow,nowhere']) {
      const refused = await call(site, 'GET', `/v2/images/${image.id}/file${query}`, { headers: { accept: 'application/json' } });
      expectStatus(refused, 400);
      assert.match(refused.text, /Store for identifier nowhere not found/);
    }
    expectStatus(await call(site, 'HEAD', `/v2/images/${image.id}/file?prefer=nowhere`), 400);
  });

  it('copy-image refuses a read-only target store', async () => {
    const image = await createActiveImage(site, bytesOf(100, 3));
    const res = await call(site, 'POST', `/v2/images/${image.id}/import`, {
      json: { method: { name: 'copy-image' }, stores: ['archive'] }, headers: { accept: 'application/json' },
    });
    expectStatus(res, 409);
  });
});
