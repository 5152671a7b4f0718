import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, getImage, project, upload, type ImageJson } from '../helpers/glance-client.ts';
import { assertWhole, download, eventually, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { createTestBucket, s3Skip, type TestBucket } from '../helpers/s3.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const MiB = 1 << 20;
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

type CacheList = { cached_images: { image_id: string; size: number; hits: number }[]; queued_images: string[] };
const listing = async (site: TestSite): Promise<CacheList> => {
  const res = await call<CacheList>(site, 'GET', '/v2/cache');
  expectStatus(res, 200);
  return res.body;
};
/** Whether the image's copy is committed: listed in cached_images and no longer in queued_images. */
const isCached = async (site: TestSite, id: string): Promise<boolean> => {
  const list = await listing(site);
  return list.cached_images.some((c) => c.image_id === id) && !list.queued_images.includes(id);
};
const hitsOf = async (site: TestSite, id: string) => (await listing(site)).cached_images.find((c) => c.image_id === id)?.hits;

/**
 * Issue 15 item 3: the cache API at central, as Glance answers it on any API node with a cache.
 * Central on embedded defaults (a directory store, a SQLite catalog) keeps its cache in
 * `<data>/image-cache`, filled from its own store, verified, apart from the store.
 */
describe('central image cache: queue, cached, list, hit, delete, clear; admin only; versions; glance CLI', { timeout: 180_000 }, () => {
  let work: string;
  let proc: ServeProcess;
  let central: TestSite;
  const cacheDir = () => join(work, 'central', 'image-cache');

  before(async () => {
    work = await tempDir('outpost-e2e-central-cache-');
    proc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    central = siteAt(proc.url);
  });
  after(async () => {
    if (proc !== undefined) await stopProcess(proc);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('a download from the directory store is not cached; PUT /v2/cache/{id} queues it; the copy is served as a hit; DELETE removes it; DELETE /v2/cache clears', async () => {
    const data = bytesOf(6 * MiB + 7, 81);
    const image = await createActiveImage(central, data, { name: 'cached-at-central' });
    // A plain miss of an image central's own directory store holds reads the store: no copy is made.
    assertWhole(await download(central.url, image.id), image);
    assert.deepEqual(await listing(central), { cached_images: [], queued_images: [] });

    expectStatus(await call(central, 'PUT', `/v2/cache/${image.id}`), 202);
    await eventually('the queued image is cached', 60_000, () => isCached(central, image.id));
    const entry = (await listing(central)).cached_images.find((c) => c.image_id === image.id)!;
    assert.deepEqual([entry.size, entry.hits], [image.size, 0]);
    // Kept apart from the store, in the cache's own directory.
    assert.ok((await readdir(cacheDir())).includes(`${image.id}.cached`), 'the copy is in <data>/image-cache');
    assert.deepEqual((await readdir(join(work, 'central', 'stores', 'central'))).filter((f) => f.endsWith('.cached')), []);

    const hit = await download(central.url, image.id);
    assertWhole(hit, image);
    assert.equal(hit.sha512, sha512(data));
    await eventually('the download is counted as a hit', 30_000, async () => (await hitsOf(central, image.id)) === 1);
    // A range of a held copy is served from it too.
    const part = await fetch(`${central.url}/v2/images/${image.id}/file`, { headers: { range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(10, 20));

    expectStatus(await call(central, 'DELETE', `/v2/cache/${image.id}`), 204);
    assert.deepEqual((await listing(central)).cached_images, []);
    assert.ok(!(await readdir(cacheDir())).includes(`${image.id}.cached`), 'the copy\'s file is gone');
    assertWhole(await download(central.url, image.id), image); // from the store again

    expectStatus(await call(central, 'PUT', `/v2/cache/${image.id}`), 202);
    await eventually('queued again and cached', 60_000, () => isCached(central, image.id));
    expectStatus(await call(central, 'DELETE', '/v2/cache'), 204);
    assert.deepEqual(await listing(central), { cached_images: [], queued_images: [] });
  });

  it('the cache API at central is for administrators, with Glance\'s status codes; central advertises v2.14 and v2.16', async () => {
    const image = await createActiveImage(central, bytesOf(MiB, 82), { name: 'api-at-central' });
    const queued = await createImage(central, { name: 'no-data' });
    expectStatus(await call(central, 'GET', '/v2/cache', { as: project('p1') }), 403);
    expectStatus(await call(central, 'PUT', `/v2/cache/${image.id}`, { as: project('p1') }), 403);
    expectStatus(await call(central, 'DELETE', '/v2/cache', { as: project('p1') }), 403);
    expectStatus(await call(central, 'DELETE', `/v2/cache/${image.id}`, { as: project('p1') }), 403);
    expectStatus(await call(central, 'PUT', '/v2/cache/00000000-0000-4000-8000-000000000000'), 404);
    expectStatus(await call(central, 'PUT', `/v2/cache/${queued.id}`), 400);
    expectStatus(await call(central, 'DELETE', '/v2/cache/00000000-0000-4000-8000-000000000000'), 404);
    expectStatus(await call(central, 'DELETE', '/v2/cache', { headers: { 'x-image-cache-clear-target': 'both' } }), 400);
    const versions = (await call<{ versions: { id: string; status: string }[] }>(central, 'GET', '/versions')).body.versions;
    assert.deepEqual(versions.filter((v) => ['v2.14', 'v2.16'].includes(v.id)).map((v) => v.id), ['v2.16', 'v2.14']);
    assert.deepEqual(versions.filter((v) => v.status === 'CURRENT').map((v) => v.id), ['v2.18']);
    // /v2.16/... is /v2/... (version negotiation), as glanceclient asks for it.
    expectStatus(await call(central, 'GET', '/v2.16/cache'), 200);
    // GET /v2/cache/nodes/{id} still answers at central: the site holding the image.
    const nodes = await call<string[]>(central, 'GET', `/v2/cache/nodes/${image.id}`);
    expectStatus(nodes, 200);
    assert.deepEqual(nodes.body, [proc.url]);
  });

  it('deleting an image at central drops its cached copy there', async () => {
    const image = await createActiveImage(central, bytesOf(2 * MiB, 83), { name: 'deleted-while-cached' });
    expectStatus(await call(central, 'PUT', `/v2/cache/${image.id}`), 202);
    await eventually('cached', 60_000, () => isCached(central, image.id));
    expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
    await eventually('the cached copy is dropped', 30_000, async () => !(await listing(central)).cached_images.some((c) => c.image_id === image.id));
    assert.ok(!(await readdir(cacheDir())).includes(`${image.id}.cached`));
  });

  it('glance cache-queue, cache-list, cache-delete and cache-clear work against central', { skip: cliSkip }, async () => {
    const image = await createActiveImage(central, bytesOf(2 * MiB, 84), { name: 'glance-cli-at-central' });
    const env = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
    const glance = async (...args: string[]) => (await run('glance', [
      '--os-image-api-version', '2', '--os-image-url', central.url, '--os-auth-token', 'none', ...args,
    ], { env, cwd: work })).stdout;
    await glance('cache-queue', image.id);
    await eventually('cached', 60_000, () => isCached(central, image.id));
    assert.match(await glance('cache-list'), new RegExp(image.id));
    await glance('cache-delete', image.id);
    assert.doesNotMatch(await glance('cache-list'), new RegExp(image.id));
    await glance('cache-queue', image.id);
    await eventually('cached again', 60_000, () => isCached(central, image.id));
    await glance('cache-clear');
    assert.deepEqual((await listing(central)).cached_images, []);
  });
});

/**
 * Central and one edge. An edge keeps its cache in its default store unless image_cache_dir says
 * otherwise. An image uploaded at an edge lives only there; central caches it from that edge. When
 * the edge is removed the image goes back to queued (its bytes are gone) and central's cached copy
 * with it, so new bytes uploaded later are what central serves.
 */
describe('image cache: image_cache_dir at an edge; central drops a copy of bytes the image no longer has (CacheInvalidation)', { timeout: 120_000 }, () => {
  let work: string;
  let centralProc: ServeProcess;
  let edgeProc: ServeProcess | undefined;
  let central: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-central-cache-bytes-');
    centralProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    central = siteAt(centralProc.url);
    edgeProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', centralProc.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2' });
    await eventually('edge-1 registered at central', 30_000, async () =>
      ((await call<{ sites: { id: string }[] }>(central, 'GET', '/outpost/v1/sites')).body.sites ?? []).some((s) => s.id === 'edge-1'));
  });
  after(async () => {
    if (edgeProc !== undefined) await stopProcess(edgeProc);
    if (centralProc !== undefined) await stopProcess(centralProc);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('an edge given image_cache_dir keeps its cache there from then on; the copies it kept in its default store are removed', async () => {
    const image = await createActiveImage(central, bytesOf(MiB + 9, 88), { name: 'moved-cache' });
    let edge = siteAt(edgeProc!.url);
    await eventually('replicated to the edge', 30_000, async () => (await call<ImageJson>(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'active');
    assertWhole(await download(edge.url, image.id), image);
    await eventually('the edge caches it in its default store', 30_000, () => isCached(edge, image.id));
    const defaultStore = join(work, 'edge', 'stores', 'edge-1');
    assert.ok((await readdir(defaultStore)).includes(`${image.id}.cached`));

    await stopProcess(edgeProc!);
    edgeProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', centralProc.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_IMAGE_CACHE_DIR: join(work, 'edge-cache') });
    edge = siteAt(edgeProc.url);
    assert.deepEqual((await listing(edge)).cached_images, []);
    assert.ok(!(await readdir(defaultStore)).includes(`${image.id}.cached`), 'the copy in the default store is gone');
    assertWhole(await download(edge.url, image.id), image);
    await eventually('cached again, in image_cache_dir', 30_000, () => isCached(edge, image.id));
    assert.ok((await readdir(join(work, 'edge-cache'))).includes(`${image.id}.cached`));
    assert.equal((await getImage(edge, image.id)).stores, 'central,edge-1', 'shown in the edge\'s default store, as before');
    await eventually('registered again after the restart', 30_000, async () =>
      ((await call<{ sites: { id: string; public_url: string }[] }>(central, 'GET', '/outpost/v1/sites')).body.sites ?? []).some((s) => s.id === 'edge-1' && s.public_url === edge.url));
  });

  it('the cached copy of an image uploaded at a removed edge is dropped; the image\'s new bytes are served', async () => {
    const edge = siteAt(edgeProc!.url);
    const first = bytesOf(3 * MiB + 1, 86);
    const image = await createImage(edge, { name: 'snapshot-at-edge', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(edge, image.id, first), 204);
    assert.equal((await getImage(central, image.id)).stores, 'edge-1');
    expectStatus(await call(central, 'PUT', `/v2/cache/${image.id}`), 202);
    await eventually('central caches it from the edge', 60_000, () => isCached(central, image.id));
    assert.equal((await download(central.url, image.id)).sha512, sha512(first));
    assert.equal(await hitsOf(central, image.id), 1);

    await stopProcess(edgeProc!);
    edgeProc = undefined;
    expectStatus(await call(central, 'DELETE', '/outpost/v1/sites/edge-1'), 200);
    assert.equal((await getImage(central, image.id)).status, 'queued');
    await eventually('central drops the copy of bytes the image no longer has', 30_000, async () => (await listing(central)).cached_images.length === 0);

    const second = bytesOf(2 * MiB + 3, 87);
    expectStatus(await upload(central, image.id, second), 204);
    const got = await download(central.url, image.id);
    assert.deepEqual([got.status, got.length, got.sha512], [200, second.length, sha512(second)]);
  });
});

/**
 * Central whose default store is S3 (Swift's s3api): a download miss reads the bucket once and
 * keeps a verified copy in the local cache directory; the next download is a hit served from it.
 */
describe('central image cache over an S3 store: a miss fills the local cache, the next download is a hit', { skip: s3Skip || undefined, timeout: 180_000 }, () => {
  let work: string;
  let bucket: TestBucket;
  let proc: ServeProcess;
  let central: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-central-cache-s3-');
    bucket = await createTestBucket();
    const store = `central=s3://${bucket.bucket}/central?endpoint=${bucket.endpoint}&region=us-east-1&path_style=true`;
    proc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--store', store], {
      AWS_ACCESS_KEY_ID: bucket.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: bucket.credentials.secretAccessKey, OUTPOST_STORAGE_SYNC: 'false',
    });
    central = siteAt(proc.url);
  });
  after(async () => {
    if (proc !== undefined) await stopProcess(proc);
    await bucket?.remove();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('the first download is a miss that caches the image in <data>/image-cache; the second is a hit; the bucket holds the image only', async () => {
    const data = bytesOf(9 * MiB + 5, 85);
    const image = await createActiveImage(central, data, { name: 'in-the-bucket' });
    assert.deepEqual(await bucket.objects('central/'), [`central/${image.id}`]);
    assert.deepEqual(await listing(central), { cached_images: [], queued_images: [] });

    const miss = await download(central.url, image.id);
    assertWhole(miss, image);
    assert.equal(miss.sha512, sha512(data));
    await eventually('the miss left a verified copy in the cache', 60_000, () => isCached(central, image.id));
    assert.equal(await hitsOf(central, image.id), 0, 'the download that caches an image is not a hit');
    assert.ok((await readdir(join(work, 'central', 'image-cache'))).includes(`${image.id}.cached`));

    const hit = await download(central.url, image.id);
    assertWhole(hit, image);
    await eventually('the second download is a hit', 30_000, async () => (await hitsOf(central, image.id)) === 1);
    assert.deepEqual(await bucket.objects('central/'), [`central/${image.id}`], 'nothing cached into the bucket');

    expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
    await eventually('the cached copy goes with the image', 30_000, async () => (await listing(central)).cached_images.length === 0);
  });
});
