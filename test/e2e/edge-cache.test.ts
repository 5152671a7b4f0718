import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, project, type ImageJson } from '../helpers/glance-client.ts';
import { assertWhole, download, type Downloaded, eventually, loopbackTarget, siteAt, startSiteChain, stopProcess, type SiteChain } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const MiB = 1 << 20;
const PARENT_TIMEOUT_MS = 1500;
const CHILD_ENV = { OUTPOST_PARENT_TIMEOUT_MS: String(PARENT_TIMEOUT_MS), OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };

type CacheList = { cached_images: { image_id: string; size: number; hits: number }[]; queued_images: string[] };
/**
 * The images the site has cached, once no fill is still committing (queued_images): a client has
 * the last byte of a fill once it is verified, a moment before its copy is committed.
 */
const cached = async (site: TestSite): Promise<string[]> => {
  let list: CacheList | undefined;
  await eventually('no fill is still committing', 30_000, async () => (list = (await call<CacheList>(site, 'GET', '/v2/cache')).body).queued_images.length === 0);
  return list!.cached_images.map((c) => c.image_id);
};
/** Waits until the image, as central has it now (active, for one with data), has reached the site. */
const visible = (site: TestSite, id: string, status = 'active') => eventually(`${id} replicated to ${site.url}`, 30_000, async () => {
  const res = await call<ImageJson>(site, 'GET', `/v2/images/${id}`);
  return res.status === 200 && res.body.status === status;
});

/**
 * Image bytes at the edge: central ← wanA ← edge ← wanB ← far edge, each site its own process,
 * each link a FaultProxy. The edge and far edge hold nothing at first; reads pull through.
 */
describe('edge image cache: pull-through, single flight, verification, cut-off, invalidation', { timeout: 240_000 }, () => {
  let work: string;
  let chain: SiteChain;
  let central: TestSite;
  let edge: TestSite;
  let far: TestSite;
  let wanA: FaultProxy;
  let wanB: FaultProxy;

  before(async () => {
    work = await tempDir('outpost-e2e-cache-');
    chain = await startSiteChain(work, CHILD_ENV);
    ({ central, edge, far, wanA, wanB } = chain);
  });
  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('50 concurrent cold GETs of a 32 MiB image at the edge cause one transfer from the parent; every body is whole', async () => {
    const image = await createActiveImage(central, bytesOf(32 * MiB, 5));
    await visible(edge, image.id);
    wanA.resetStats();
    // A WAN of 16 MiB/s keeps the fill running for about 2 s, so the clients arrive while it is
    // under way and join it (the size of the image proves nothing more).
    wanA.bandwidth(16 * MiB);
    let bodies: Downloaded[];
    try {
      bodies = await Promise.all(Array.from({ length: 50 }, () => download(edge.url, image.id)));
    } finally {
      wanA.pass();
    }
    for (const b of bodies) assertWhole(b, image);
    const upstream = wanA.stats().toClient.forwarded;
    assert.ok(upstream >= image.size && upstream < image.size + MiB, `bytes from the parent: ${upstream} for an image of ${image.size}`);
    await cached(edge); // the copy committed
    const list = (await call<CacheList>(edge, 'GET', '/v2/cache')).body;
    assert.deepEqual(list.cached_images.map((c) => [c.image_id, c.size]), [[image.id, image.size]]);
    // A second round is served from the held copy, with Range locally too.
    wanA.resetStats();
    assertWhole(await download(edge.url, image.id), image);
    const part = await fetch(`${edge.url}/v2/images/${image.id}/file`, { headers: { range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${image.size}`);
    assert.equal((await part.arrayBuffer()).byteLength, 100);
    assert.ok(wanA.stats().toClient.forwarded < MiB, 'a held copy is served without the parent');
    await call(edge, 'DELETE', `/v2/cache/${image.id}`);
  });

  it('a cold GET at the far edge pulls through the edge, and both keep a verified copy', async () => {
    const image = await createActiveImage(central, bytesOf(8 * MiB + 3, 6), { name: 'pulled' });
    await visible(far, image.id);
    assertWhole(await download(far.url, image.id), image);
    assert.ok((await cached(far)).includes(image.id));
    assert.ok((await cached(edge)).includes(image.id));
  });

  it('corrupted bytes from the parent: the chunk that fails its sha256 is fetched again; every client gets the whole image', async () => {
    const image = await createActiveImage(central, bytesOf(16 * MiB, 7), { name: 'corrupted-on-the-way' });
    await visible(edge, image.id);
    wanA.resetStats();
    // A WAN's pace (16 MiB/s): what the parent had sent past the bad chunk when the edge stopped
    // that response is a link's worth in flight, not whatever loopback's buffers take.
    wanA.bandwidth(16 * MiB);
    wanA.corrupt({ afterBytes: 4 * MiB, limit: 1 });
    try {
      const bodies = await Promise.all(Array.from({ length: 3 }, () => download(edge.url, image.id)));
      for (const b of bodies) assertWhole(b, image);
    } finally {
      wanA.pass();
    }
    const moved = wanA.stats().toClient.forwarded;
    assert.ok(moved > image.size! && moved < 1.5 * image.size!, `bytes from the parent: ${moved} for ${image.size} (from the bad chunk on again, not the whole image)`);
    assert.ok((await cached(edge)).includes(image.id), 'the verified copy was committed');
  });

  it('cut off: held copies download in full at the edge and far edge; a miss answers 503 within the timeout', async () => {
    const held = await createActiveImage(central, bytesOf(4 * MiB, 8), { name: 'held' });
    const cold = await createActiveImage(central, bytesOf(4 * MiB, 9), { name: 'cold' });
    await visible(far, cold.id);
    assertWhole(await download(far.url, held.id), held);
    wanA.blackhole();
    wanB.blackhole();
    try {
      assertWhole(await download(edge.url, held.id), held);
      assertWhole(await download(far.url, held.id), held);
      for (const site of [edge, far]) {
        const started = performance.now();
        const miss = await call(site, 'GET', `/v2/images/${cold.id}/file`, { headers: { accept: 'application/json' } });
        const ms = performance.now() - started;
        expectStatus(miss, 503);
        assert.match(miss.body.message, /parent site .* could not be reached/);
        assert.ok(ms < PARENT_TIMEOUT_MS + 1000, `the miss took ${Math.round(ms)} ms`);
      }
    } finally {
      wanA.heal();
      wanB.heal();
    }
    assertWhole(await download(far.url, cold.id), cold);
  });

  it('deleting an image at central removes its copy from the edge caches', async () => {
    const image = await createActiveImage(central, bytesOf(MiB, 10), { name: 'to-delete' });
    await visible(far, image.id);
    assertWhole(await download(far.url, image.id), image);
    expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
    await eventually('the copies are dropped', 30_000, async () => !(await cached(edge)).includes(image.id) && !(await cached(far)).includes(image.id));
  });

  it('the cache API answers with Glance\'s status codes, for administrators only, at edges as at central', async () => {
    const image = await createActiveImage(central, bytesOf(MiB, 11), { name: 'api' });
    const queued = await createImage(central, { name: 'no-data' });
    await visible(edge, queued.id, 'queued');
    expectStatus(await call(edge, 'GET', '/v2/cache', { as: project('p1') }), 403);
    expectStatus(await call(edge, 'PUT', `/v2/cache/${image.id}`, { as: project('p1') }), 403);
    expectStatus(await call(edge, 'PUT', '/v2/cache/00000000-0000-4000-8000-000000000000'), 404);
    expectStatus(await call(edge, 'PUT', `/v2/cache/${queued.id}`), 400);
    expectStatus(await call(edge, 'DELETE', '/v2/cache/00000000-0000-4000-8000-000000000000'), 404);
    expectStatus(await call(edge, 'DELETE', '/v2/cache', { headers: { 'x-image-cache-clear-target': 'both' } }), 400);
    expectStatus(await call(central, 'GET', '/v2/cache'), 200); // central keeps a cache too (test/e2e/central-cache.test.ts)
    const versions = (await call<{ versions: { id: string; status: string }[] }>(edge, 'GET', '/versions')).body.versions;
    assert.deepEqual(versions.filter((v) => ['v2.14', 'v2.16'].includes(v.id)).map((v) => v.id), ['v2.16', 'v2.14']);
    await visible(edge, image.id);
    expectStatus(await call(edge, 'PUT', `/v2/cache/${image.id}`), 202);
    await eventually('prefetched', 30_000, async () => (await cached(edge)).includes(image.id));
    expectStatus(await call(edge, 'DELETE', `/v2/cache/${image.id}`), 204);
    assert.ok(!(await cached(edge)).includes(image.id));
  });

  it('an administrator pins an image at the far edge from central, or through the edge; and unpins it', async () => {
    const image = await createActiveImage(central, bytesOf(MiB, 12), { name: 'pin-from-afar' });
    await visible(far, image.id);
    const pinState = async () => {
      const inv = await call<{ images: { image_id: string; state: string }[] }>(far, 'GET', '/outpost/v1/sites/far-1/inventory');
      return inv.body.images.find((i) => i.image_id === image.id)?.state;
    };
    const pinned = await call(central, 'PUT', `/outpost/v1/sites/far-1/cache/${image.id}/pin`, { json: {} });
    assert.ok(pinned.status === 202 || pinned.status === 200, `${pinned.status} ${pinned.text}`);
    assert.equal(pinned.body.pinned, true);
    await eventually('the far edge holds the pinned copy', 30_000, async () => (await pinState()) === 'pinned');
    expectStatus(await call(central, 'PUT', `/outpost/v1/sites/far-1/cache/${image.id}/pin`, { json: {}, as: project('p1') }), 403);
    expectStatus(await call(central, 'PUT', `/outpost/v1/sites/no-such-site/cache/${image.id}/pin`, { json: {} }), 404);
    // Asked at the edge, the unpin goes up to central, which reaches the far edge.
    expectStatus(await call(edge, 'DELETE', `/outpost/v1/sites/far-1/cache/${image.id}/pin`), 204);
    assert.equal(await pinState(), 'cached');
    // Naming the site that answers: its own pin (the edge holds a copy: the far edge pulled through it).
    expectStatus(await call(edge, 'PUT', `/outpost/v1/sites/edge-1/cache/${image.id}/pin`, { json: {} }), 200);
    expectStatus(await call(edge, 'DELETE', `/outpost/v1/sites/edge-1/cache/${image.id}/pin`), 204);
  });

  it('glance cache-queue, cache-list, cache-delete and cache-clear work against an edge', { skip: cliSkip }, async () => {
    const image = await createActiveImage(central, bytesOf(2 * MiB, 12), { name: 'glance-cli' });
    await visible(edge, image.id);
    const env = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
    const glance = async (...args: string[]) => (await run('glance', [
      '--os-image-api-version', '2', '--os-image-url', edge.url, '--os-auth-token', 'none', ...args,
    ], { env, cwd: work })).stdout;
    await glance('cache-queue', image.id);
    await eventually('cached', 30_000, async () => (await cached(edge)).includes(image.id));
    assert.match(await glance('cache-list'), new RegExp(image.id));
    await glance('cache-delete', image.id);
    assert.doesNotMatch(await glance('cache-list'), new RegExp(image.id));
    await glance('cache-queue', image.id);
    await eventually('cached again', 30_000, async () => (await cached(edge)).includes(image.id));
    await glance('cache-clear');
    assert.deepEqual(await cached(edge), []);
  });
});

/**
 * The cache's budget, pins and crash safety, at one edge whose budget holds three 8 MiB images.
 */
describe('edge image cache: budget, LRU, pins, kill -9 mid-fill', { timeout: 120_000 }, () => {
  const UNIT = 8 * MiB;
  let work: string;
  let centralProc: ServeProcess;
  let edgeProc: ServeProcess;
  let central: TestSite;
  let edge: TestSite;
  let wan: FaultProxy;
  const edgeArgs = () => ['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-b', '--parent', wan.url];
  const edgeEnv = { ...CHILD_ENV, OUTPOST_CACHE_MAX_BYTES: String(3 * UNIT + MiB) };
  const images: ImageJson[] = [];

  before(async () => {
    work = await tempDir('outpost-e2e-budget-');
    centralProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    central = siteAt(centralProc.url);
    wan = await FaultProxy.start({ target: loopbackTarget(centralProc.url) });
    edgeProc = await spawnServe(edgeArgs(), edgeEnv);
    edge = siteAt(edgeProc.url);
    for (let i = 0; i < 6; i++) images.push(await createActiveImage(central, bytesOf(UNIT, 20 + i), { name: `unit-${i}` }));
  });
  after(async () => {
    await wan?.close();
    await stopProcess(edgeProc);
    await stopProcess(centralProc);
    await rm(work, { recursive: true, force: true });
  });

  it('kill -9 in mid-fill: after a restart no partial copy is served or listed, and the next GET fills again', async () => {
    const big = await createActiveImage(central, bytesOf(3 * UNIT, 30), { name: 'big' });
    await visible(edge, big.id);
    wan.bandwidth(4 * MiB);
    const reading = download(edge.url, big.id);
    await eventually('the fill is under way', 30_000, async () => wan.stats().toClient.forwarded > 2 * MiB);
    edgeProc.child.kill('SIGKILL');
    const cut = await reading;
    assert.ok(cut.broken || cut.length < big.size, 'the client saw the cut');
    wan.pass();
    edgeProc = await spawnServe(edgeArgs(), edgeEnv);
    edge = siteAt(edgeProc.url);
    assert.deepEqual(await cached(edge), []);
    // What the fill had received is kept aside for the next fill of the image, and only there.
    const left = await readdir(join(work, 'edge', 'cache-spool'));
    assert.ok(left.length <= 1 && left.every((f) => f.startsWith(`${big.id}.`)), JSON.stringify(left));
    assertWhole(await download(edge.url, big.id), big);
    assert.deepEqual(await cached(edge), [big.id]);
    assert.deepEqual(await readdir(join(work, 'edge', 'cache-spool')), [], 'taken and removed by the next fill');
    expectStatus(await call(edge, 'DELETE', '/v2/cache'), 204);
    assert.deepEqual(await cached(edge), []);
  });

  it('evicts the least recently used unpinned copy; pins are respected; an admission that cannot fit is refused with the reason', async () => {
    const [a, b, c, d, e, f] = images;
    for (const image of [a, b, c]) assertWhole(await download(edge.url, image.id), image);
    assertWhole(await download(edge.url, a.id), a); // a is now more recent than b
    assertWhole(await download(edge.url, d.id), d);
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id, d.id].sort(), 'b, the least recently used, was evicted');

    expectStatus(await call(edge, 'PUT', `/outpost/v1/cache/${a.id}/pin`, { json: {} }), 200);
    expectStatus(await call(edge, 'PUT', `/outpost/v1/cache/${c.id}/pin`, { json: { until: '2999-01-01T00:00:00Z' } }), 200);
    assertWhole(await download(edge.url, e.id), e);
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id, e.id].sort(), 'd, the only unpinned copy, made room');

    expectStatus(await call(edge, 'PUT', `/outpost/v1/cache/${e.id}/pin`, { json: {} }), 200);
    const refused = await call(edge, 'PUT', `/v2/cache/${f.id}`, { headers: { accept: 'application/json' } });
    expectStatus(refused, 413);
    assert.match(refused.body.message, /cannot cache image .* cache budget is \d+ bytes, \d+ of them held by pinned copies/);
    // A download is still served, straight from the parent, and not kept.
    assertWhole(await download(edge.url, f.id), f);
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id, e.id].sort());

    expectStatus(await call(edge, 'DELETE', `/outpost/v1/cache/${e.id}/pin`), 204);
    expectStatus(await call(edge, 'PUT', `/v2/cache/${f.id}`), 202);
    await eventually('f cached in place of e', 30_000, async () => (await cached(edge)).sort().join() === [a.id, c.id, f.id].sort().join());
  });

  it('cache state survives a restart', async () => {
    const before = (await cached(edge)).sort();
    await stopProcess(edgeProc);
    edgeProc = await spawnServe(edgeArgs(), edgeEnv);
    edge = siteAt(edgeProc.url);
    assert.deepEqual((await cached(edge)).sort(), before);
    wan.blackhole();
    try {
      for (const id of before) assertWhole(await download(edge.url, id), images.find((i) => i.id === id)!);
    } finally {
      wan.heal();
    }
  });

  it('POST /v2/cache/prune (API 2.18) after the budget was lowered removes least recently used unpinned copies until the rest fits; POST /v2/cache/clean answers 200', async () => {
    const [a, , c, , , f] = images;
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id, f.id].sort());
    await stopProcess(edgeProc);
    edgeProc = await spawnServe(edgeArgs(), { ...edgeEnv, OUTPOST_CACHE_MAX_BYTES: String(2 * UNIT + MiB) });
    edge = siteAt(edgeProc.url);
    expectStatus(await call(edge, 'POST', '/v2/cache/prune', { as: project('p1') }), 403);
    const pruned = await call(edge, 'POST', '/v2/cache/prune');
    expectStatus(pruned, 200);
    assert.deepEqual(pruned.body, { total_files_pruned: 1, total_bytes_pruned: UNIT }, 'f, the only unpinned copy; a and c are pinned');
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id].sort());
    assert.deepEqual((await call(edge, 'POST', '/v2/cache/prune')).body, { total_files_pruned: 0, total_bytes_pruned: 0 }, 'it fits now');
    expectStatus(await call(edge, 'POST', '/v2/cache/clean', { as: project('p1') }), 403);
    // What a write that died left in the cache's store (no running write holds it).
    const incomplete = join(work, 'edge', 'stores', 'edge-b', '.incomplete');
    await writeFile(join(incomplete, `${f.id}.cached.dead00`), 'half a copy');
    const cleaned = await call(edge, 'POST', '/v2/cache/clean');
    expectStatus(cleaned, 200);
    assert.equal(cleaned.text, '');
    assert.deepEqual(await readdir(incomplete), [], 'the dead partial write is gone');
    assert.deepEqual((await cached(edge)).sort(), [a.id, c.id].sort(), 'clean leaves verified copies alone');
  });
});
