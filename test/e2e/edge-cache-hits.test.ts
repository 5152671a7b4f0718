import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { InventoryItem } from '../../src/core/ports.ts';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { bytesOf, call, createActiveImage, type ImageJson } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const MiB = 1 << 20;
type CacheList = { cached_images: { image_id: string; hits: number }[]; queued_images: string[] };

/**
 * The hit counter an operator sees at an edge (issue 11, item 11): central ← wan (FaultProxy, slow)
 * ← edge, each site its own process. The contract (PullThroughImages): the GET whose miss starts a
 * fill is not a hit; every client that joins the fill is, and so is every read of the held copy.
 */
describe('edge cache hits: clients served during a fill are counted', { timeout: 180_000 }, () => {
  let work: string;
  const procs: ServeProcess[] = [];
  let wan: FaultProxy | undefined;
  let central: TestSite;
  let edge: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-cache-hits-');
    const c = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central'], { OUTPOST_STORAGE_SYNC: 'false' });
    procs.push(c);
    central = siteAt(c.url);
    wan = await FaultProxy.start({ target: loopbackTarget(c.url) });
    const e = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', wan.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2' });
    procs.push(e);
    edge = siteAt(e.url);
  });
  after(async () => {
    for (const p of procs.reverse()) await stopProcess(p);
    await wan?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('1 GET starts a fill, 9 more join it: the copy shows 9 hits in GET /v2/cache and the inventory, then 10 after a read of the copy', async () => {
    const image = await createActiveImage(central, bytesOf(8 * MiB + 5, 11));
    await eventually('the image replicated to the edge', 30_000, async () => (await call<ImageJson>(edge, 'GET', `/v2/images/${image.id}`)).body.status === 'active');
    const hits = async () => (await call<CacheList>(edge, 'GET', '/v2/cache')).body.cached_images.find((c) => c.image_id === image.id)?.hits;
    const inventoryHits = async () => (await call<{ images: InventoryItem[] }>(edge, 'GET', '/outpost/v1/sites/edge-1/inventory')).body.images
      .find((i) => i.image_id === image.id)?.hits;

    wan!.resetStats();
    wan!.bandwidth(2 * MiB); // the fill lasts ~4 s
    const first = download(edge.url, image.id);
    await eventually('the fill is running', 30_000, async () => (await call<CacheList>(edge, 'GET', '/v2/cache')).body.queued_images.includes(image.id));
    const joined = await Promise.all(Array.from({ length: 9 }, () => download(edge.url, image.id)));
    const all = [await first, ...joined];
    for (const d of all) assert.equal(d.sha512, image.os_hash_value);
    assert.ok(wan!.stats().toClient.forwarded < image.size + MiB, 'one transfer from the parent');
    // The clients have the last byte once it is verified, a moment before the copy is committed.
    await eventually('the copy is committed', 30_000, async () => (await hits()) !== undefined);
    assert.equal(await hits(), 9, 'GET /v2/cache: the 9 clients that joined the fill');
    assert.equal(await inventoryHits(), 9, 'the edge\'s inventory');

    wan!.pass();
    assert.equal((await download(edge.url, image.id)).sha512, image.os_hash_value);
    assert.equal(await hits(), 10, 'a read of the held copy is a hit');
    assert.equal(await inventoryHits(), 10);
  });
});
