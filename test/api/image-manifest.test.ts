import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { validateManifest, type ChunkManifest } from '../../src/core/chunk-manifest.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, project } from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const MiB = 1 << 20;

describe('GET /outpost/v1/images/{id}/manifest', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site?.close(); });

  it('answers the chunk manifest of an uploaded image: chunks that add up to the bytes, each with its sha256, zeros marked', async () => {
    const data = Buffer.concat([bytesOf(3 * MiB, 21), Buffer.alloc(4 * MiB), bytesOf(MiB + 5, 22)]);
    const image = await createActiveImage(site, data, { name: 'with-manifest' });
    const res = await call<ChunkManifest>(site, 'GET', `/outpost/v1/images/${image.id}/manifest`);
    expectStatus(res, 200);
    const manifest = validateManifest(res.body, data.length);
    assert.equal(manifest.chunking.algorithm, 'fastcdc-gear32-v1');
    assert.deepEqual([manifest.chunking.min, manifest.chunking.avg, manifest.chunking.max], [64 << 10, 256 << 10, MiB]);
    for (const c of manifest.chunks) {
      const part = data.subarray(c.offset, c.offset + c.length);
      assert.equal(c.sha256, createHash('sha256').update(part).digest('hex'), `chunk at ${c.offset}`);
      assert.equal(c.zero === true, part.every((b) => b === 0));
    }
    assert.ok(manifest.chunks.filter((c) => c.zero).length >= 2, 'the 4 MiB of zeros are zero chunks');

    // The same bytes in another image: the same manifest.
    const twin = await createActiveImage(site, data, { name: 'twin' });
    assert.deepEqual((await call(site, 'GET', `/outpost/v1/images/${twin.id}/manifest`)).body, res.body);
  });

  it('answers 404 for an image without data, an unknown image and an image the caller cannot see; 403 for a deactivated one but to admins', async () => {
    const queued = await createImage(site, { name: 'no-data' });
    const noData = await call(site, 'GET', `/outpost/v1/images/${queued.id}/manifest`);
    expectStatus(noData, 404);
    assert.match(noData.text, /has no data/);
    expectStatus(await call(site, 'GET', '/outpost/v1/images/6b1a8d9e-5f3c-4b7a-9e2d-1c0f8a7b6d5e/manifest'), 404);
    const owner = project('p-manifest-a');
    const priv = await createActiveImage(site, bytesOf(1000, 23), { visibility: 'private' }, owner);
    expectStatus(await call(site, 'GET', `/outpost/v1/images/${priv.id}/manifest`, { as: project('p-manifest-b') }), 404);
    expectStatus(await call(site, 'GET', `/outpost/v1/images/${priv.id}/manifest`, { as: owner }), 200);
    const shared = await createActiveImage(site, bytesOf(1000, 24), { visibility: 'community' }, owner);
    expectStatus(await call(site, 'POST', `/v2/images/${shared.id}/actions/deactivate`), 204);
    expectStatus(await call(site, 'GET', `/outpost/v1/images/${shared.id}/manifest`, { as: project('p-manifest-b') }), 403);
    expectStatus(await call(site, 'GET', `/outpost/v1/images/${shared.id}/manifest`), 200);
  });

  it('with chunk_manifests off, the manifest is built when first asked for, the same as one built at upload', async () => {
    const lazy = await startTestSite({ chunk_manifests: false });
    try {
      const data = bytesOf(2 * MiB + 3, 25);
      const here = await createActiveImage(site, data, { name: 'eager' });
      const there = await createActiveImage(lazy, data, { name: 'lazy' });
      const res = await call(lazy, 'GET', `/outpost/v1/images/${there.id}/manifest`);
      expectStatus(res, 200);
      assert.deepEqual(res.body, (await call(site, 'GET', `/outpost/v1/images/${here.id}/manifest`)).body);
    } finally {
      await lazy.close();
    }
  });

  it('GET /outpost/v1/transfers is for administrators and sites', async () => {
    const res = await call<{ transfers: unknown[] }>(site, 'GET', '/outpost/v1/transfers');
    expectStatus(res, 200);
    assert.deepEqual(res.body.transfers, [], 'central fetched nothing');
    expectStatus(await call(site, 'GET', '/outpost/v1/transfers', { as: project('p-transfers') }), 403);
  });

  it('an empty image has a manifest of no chunks', async () => {
    const empty = await createActiveImage(site, new Uint8Array(0), { name: 'empty' });
    const res = await call<ChunkManifest>(site, 'GET', `/outpost/v1/images/${empty.id}/manifest`);
    expectStatus(res, 200);
    assert.equal(res.body.size, 0);
    assert.deepEqual(res.body.chunks, []);
  });
});
