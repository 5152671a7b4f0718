import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { validateManifest } from '../../src/core/chunk-manifest.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, type ImageJson } from '../helpers/glance-client.ts';
import { eventually, startSiteChain, type SiteChain } from '../helpers/multi-site.ts';
import { tempDir } from '../helpers/site.ts';

const MiB = 1 << 20;

/**
 * Chunk manifests across sites: central ← wanA ← edge ← wanB ← far edge, each site its own
 * process. The same bytes have the same manifest at every site; a site that holds no copy asks
 * its parent once and keeps the answer; central asks the edge that holds an image uploaded there.
 */
describe('chunk manifests across sites', { timeout: 240_000 }, () => {
  let work: string;
  let chain: SiteChain;

  before(async () => {
    work = await tempDir('outpost-e2e-manifests-');
    chain = await startSiteChain(work, { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2' });
  });
  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const visible = (site: SiteChain['edge'], id: string) => eventually(`${id} at ${site.url}`, 30_000, async () => {
    const res = await call<ImageJson>(site, 'GET', `/v2/images/${id}`);
    return res.status === 200 && res.body.status === 'active';
  });

  it('every site answers central\'s manifest of an image; the edges keep it, and answer it while cut off', async () => {
    const { central, edge, far, wanA, wanB } = chain;
    const data = Buffer.concat([bytesOf(2 * MiB, 41), Buffer.alloc(2 * MiB)]);
    const image = await createActiveImage(central, data, { name: 'described' });
    await visible(far, image.id);
    const atCentral = (await call(central, 'GET', `/outpost/v1/images/${image.id}/manifest`)).body;
    validateManifest(atCentral, data.length);
    wanA.resetStats();
    for (const site of [edge, far]) {
      const res = await call(site, 'GET', `/outpost/v1/images/${image.id}/manifest`);
      expectStatus(res, 200);
      assert.deepEqual(res.body, atCentral);
    }
    assert.ok(wanA.stats().toClient.forwarded < MiB, 'no image bytes were moved for it');
    assert.deepEqual((await call(edge, 'GET', '/v2/cache')).body.cached_images, [], 'no copy was made for it');
    wanA.refuse();
    wanB.refuse();
    try {
      for (const site of [edge, far]) assert.deepEqual((await call(site, 'GET', `/outpost/v1/images/${image.id}/manifest`)).body, atCentral);
    } finally {
      wanA.heal();
      wanB.heal();
    }
  });

  it('an edge that has no parent answer says 503 naming the parent, not 404', async () => {
    const { central, far, wanB } = chain;
    const image = await createActiveImage(central, bytesOf(100_000, 43), { name: 'cut-before-asked' });
    await visible(far, image.id);
    wanB.refuse();
    try {
      const res = await call(far, 'GET', `/outpost/v1/images/${image.id}/manifest`);
      expectStatus(res, 503);
      assert.match(res.text, /could not be reached/);
    } finally {
      wanB.heal();
    }
  });

  it('central answers the manifest of an image uploaded at the edge (whose bytes only the edge holds), the same as the edge', async () => {
    const { central, edge } = chain;
    const image = await createImage(edge, { name: 'uploaded-at-edge', disk_format: 'raw', container_format: 'bare' });
    const data = bytesOf(3 * MiB, 44);
    expectStatus(await call(edge, 'PUT', `/v2/images/${image.id}/file`, { body: data, headers: { 'content-type': 'application/octet-stream' } }), 204);
    await visible(central, image.id);
    const atEdge = (await call(edge, 'GET', `/outpost/v1/images/${image.id}/manifest`)).body;
    validateManifest(atEdge, data.length);
    assert.deepEqual((await call(central, 'GET', `/outpost/v1/images/${image.id}/manifest`)).body, atEdge);
  });
});
