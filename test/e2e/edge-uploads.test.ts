import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf, call, createImage, expectStatus, getImage, project, upload, type ImageJson } from '../helpers/glance-client.ts';
import { download, eventually, startSiteChain, type SiteChain } from '../helpers/multi-site.ts';
import { tempDir, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const CHILD_ENV = { OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

/**
 * Uploads at an edge (seed 004: a VM snapshot taken there): the bytes stay in the edge's own store,
 * central records the copy, and every other site reads them through central.
 */
describe('uploads at an edge: stored there, recorded at central', { timeout: 120_000 }, () => {
  let work: string;
  let chain: SiteChain;
  let central: TestSite;
  let edge: TestSite;
  let far: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-upload-');
    chain = await startSiteChain(work, CHILD_ENV);
    ({ central, edge, far } = chain);
  });
  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('an upload at the far edge makes the image active at central with far-1 in stores; every site reads the same bytes', async () => {
    const data = bytesOf(3 * 1024 * 1024 + 5, 41);
    const image = await createImage(far, { name: 'snapshot-at-far', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(far, image.id, data), 204);
    // The client that uploaded at the far edge reads its write there at once.
    const atFar = await getImage(far, image.id);
    assert.equal(atFar.status, 'active');
    assert.equal(atFar.stores, 'far-1');
    const atCentral = await getImage(central, image.id);
    assert.deepEqual(
      [atCentral.status, atCentral.size, atCentral.checksum, atCentral.os_hash_algo, atCentral.os_hash_value, atCentral.stores],
      ['active', data.length, md5(data), 'sha512', sha512(data), 'far-1'],
    );
    assert.ok((await readdir(join(work, 'far', 'stores', 'far-1'))).includes(image.id), 'the bytes are in far-1\'s store');
    // Central holds no copy: it reads from far-1; the edge pulls through central.
    for (const site of [far, central, edge]) {
      const d = await download(site.url, image.id);
      assert.deepEqual([d.status, d.length, d.sha512, d.broken], [200, data.length, sha512(data), false], site.url);
    }
    assert.ok(!(await readdir(join(work, 'central', 'stores', 'central'))).includes(image.id), 'central did not take a located copy');
  });

  it('deleting the image at central removes the bytes from the store of the edge that took the upload', async () => {
    const data = bytesOf(64 * 1024, 42);
    const image = await createImage(edge, { name: 'to-delete', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(edge, image.id, data), 204);
    const store = join(work, 'edge', 'stores', 'edge-1');
    assert.ok((await readdir(store)).includes(image.id));
    expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
    await eventually('the edge drops the deleted image\'s bytes', 30_000, async () => !(await readdir(store)).includes(image.id));
  });

  it('refuses what Glance refuses: a second upload (409), another project\'s image (403/404), formats unset (400); nothing is kept', async () => {
    const data = bytesOf(4096, 43);
    const image = await createImage(edge, { name: 'once', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(edge, image.id, data), 204);
    expectStatus(await upload(edge, image.id, data), 409);
    const mine = await createImage(edge, { name: 'p1-image', disk_format: 'raw', container_format: 'bare' }, project('p1'));
    assert.ok([403, 404].includes((await upload(edge, mine.id, data, project('p2'))).status));
    const bare = await createImage(edge, { name: 'no-formats' });
    expectStatus(await upload(edge, bare.id, data), 400);
    const kept = await readdir(join(work, 'edge', 'stores', 'edge-1'));
    assert.ok(!kept.includes(mine.id) && !kept.includes(bare.id));
    assert.equal((await getImage(central, bare.id)).status, 'queued');
  });

  it('PUT /outpost/v1/images/{id}/locations/{store} checks what it records', async () => {
    const put = (id: string, store: string, body: unknown, as = {}) => call(central, 'PUT', `/outpost/v1/images/${id}/locations/${store}`, { as, json: body });
    const data = bytesOf(1000, 44);
    const copy = { url: 'file:///x', size: data.length, checksum: md5(data), os_hash_algo: 'sha512', os_hash_value: sha512(data), virtual_size: null };
    const image = await createImage(central, { name: 'record', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await put(image.id, 'edge-1', { ...copy, checksum: 'nope' }), 400);
    expectStatus(await put(image.id, 'nowhere', copy), 409);
    const other = await createImage(central, { name: 'p1', disk_format: 'raw', container_format: 'bare' }, project('p1'));
    assert.ok([403, 404].includes((await put(other.id, 'edge-1', copy, project('p2'))).status));
    expectStatus(await put(image.id, 'edge-1', copy), 204);
    const recorded: ImageJson = await getImage(central, image.id);
    assert.deepEqual([recorded.status, recorded.size, recorded.stores], ['active', 1000, 'edge-1']);
    // Active now: another site's copy must have the same digests; the same copy again changes nothing.
    expectStatus(await put(image.id, 'far-1', { ...copy, size: 999 }), 409);
    expectStatus(await put(image.id, 'far-1', copy), 204);
    assert.equal((await getImage(central, image.id)).stores, 'edge-1,far-1');
    expectStatus(await put(image.id, 'far-1', { ...copy, placed_by: 'someone' }), 400);
  });

  it('DELETE /outpost/v1/images/{id}/locations/{store} removes only a copy a policy placed, never the last, for sites and admins', async () => {
    // Recorded in central's store, where a policy wants these images (or central's placement
    // agent would remove a placed copy no policy wants at once).
    const policy = await call<{ id: string }>(central, 'POST', '/outpost/v1/policies', {
      json: { name: 'placed-at-central', images: { tags: ['placed'] }, sites: { ids: ['central'] }, mode: 'replicate' },
    });
    expectStatus(policy, 201);
    const loc = (id: string, store: string) => `/outpost/v1/images/${id}/locations/${store}`;
    const data = bytesOf(2000, 47);
    const copy = { url: 'file:///x', size: data.length, checksum: md5(data), os_hash_algo: 'sha512', os_hash_value: sha512(data), virtual_size: null };
    const image = await createImage(central, { name: 'placed', disk_format: 'raw', container_format: 'bare', tags: ['placed'] });
    expectStatus(await call(central, 'PUT', loc(image.id, 'edge-1'), { json: copy }), 204);
    expectStatus(await call(central, 'PUT', loc(image.id, 'central'), { json: { ...copy, placed_by: 'policy' } }), 204);
    assert.equal((await getImage(central, image.id)).stores, 'central,edge-1');
    expectStatus(await call(central, 'DELETE', loc(image.id, 'central'), { as: project('p1', 'member') }), 403);
    const upload = await call<{ message: string }>(central, 'DELETE', loc(image.id, 'edge-1'), { headers: { accept: 'application/json' } });
    expectStatus(upload, 409);
    assert.match(upload.body.message, /was not placed by a policy/);
    expectStatus(await call(central, 'DELETE', loc(image.id, 'far-1'), {}), 404);
    // Forwarded up from the far edge, as an agent's is.
    expectStatus(await call(far, 'DELETE', loc(image.id, 'central'), {}), 204);
    assert.equal((await getImage(central, image.id)).stores, 'edge-1');
    expectStatus(await call(central, 'DELETE', loc(image.id, 'central'), {}), 404);

    const only = await createImage(central, { name: 'placed-only', disk_format: 'raw', container_format: 'bare', tags: ['placed'] });
    expectStatus(await call(central, 'PUT', loc(only.id, 'central'), { json: { ...copy, placed_by: 'policy' } }), 204);
    const last = await call<{ message: string }>(central, 'DELETE', loc(only.id, 'central'), { headers: { accept: 'application/json' } });
    expectStatus(last, 409);
    assert.match(last.body.message, /is its last one/);
    expectStatus(await call(central, 'DELETE', `/outpost/v1/policies/${policy.body.id}`), 204);
  });

  it('every site reports what it holds up to central: the inventory, and the sites in an image\'s stores', async () => {
    type Inventory = { site: string; images: { image_id: string; store: string; size: number; state: string; hits: number | null }[] };
    const inventory = async (at: TestSite, site: string) => {
      const res = await call<Inventory>(at, 'GET', `/outpost/v1/sites/${site}/inventory`);
      expectStatus(res, 200);
      return res.body;
    };
    const states = (inv: Inventory, id: string) => inv.images.filter((i) => i.image_id === id).map((i) => `${i.store}:${i.state}`);
    const data = bytesOf(256 * 1024, 46);
    const image = await createImage(far, { name: 'inventoried', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(far, image.id, data), 204);
    // Read at the edge: central pulls it from far-1 and caches it, the edge caches it too.
    assert.equal((await download(edge.url, image.id)).sha512, sha512(data));
    await eventually('central shows every site holding a copy', 30_000, async () =>
      (await getImage(central, image.id)).stores === 'far-1,central,edge-1');
    for (const [site, expected] of [['far-1', 'far-1:stored'], ['edge-1', 'edge-1:cached'], ['central', 'central:cached']]) {
      await eventually(`${site} reports ${expected}`, 30_000, async () => states(await inventory(central, site), image.id).join() === expected);
    }
    // At an edge, its own inventory is answered there; another site's comes from central.
    assert.deepEqual(states(await inventory(edge, 'edge-1'), image.id), ['edge-1:cached']);
    assert.deepEqual(states(await inventory(far, 'edge-1'), image.id), ['edge-1:cached']);
    // GET /v2/cache/nodes/{id} (API 2.18): the sites holding it, by their URLs, asked anywhere.
    const urls = Object.fromEntries(((await call<{ sites: { id: string; public_url: string }[] }>(central, 'GET', '/outpost/v1/sites')).body.sites).map((s) => [s.id, s.public_url]));
    for (const at of [central, far]) {
      const nodes = await call<string[]>(at, 'GET', `/v2/cache/nodes/${image.id}`);
      expectStatus(nodes, 200);
      assert.deepEqual([...nodes.body].sort(), [urls.central, urls['edge-1'], urls['far-1']].sort());
    }
    expectStatus(await call(central, 'GET', `/v2/cache/nodes/${image.id}`, { as: project('p1') }), 403);
    expectStatus(await call(central, 'GET', '/v2/cache/nodes/00000000-0000-4000-8000-000000000000'), 404);
    // A pin, then an eviction, reach central.
    expectStatus(await call(edge, 'PUT', `/outpost/v1/cache/${image.id}/pin`), 200);
    await eventually('the pin is reported', 30_000, async () => states(await inventory(central, 'edge-1'), image.id)[0] === 'edge-1:pinned');
    expectStatus(await call(edge, 'DELETE', `/v2/cache/${image.id}`), 204);
    await eventually('the eviction is reported', 30_000, async () => (await getImage(central, image.id)).stores === 'far-1,central');
    assert.deepEqual(states(await inventory(central, 'edge-1'), image.id), []);
  });

  it('an inventory report is checked: a registered site, its own stores, sites and administrators only', async () => {
    const put = (site: string, images: unknown[], as = {}) => call(central, 'PUT', `/outpost/v1/sites/${site}/inventory`, { as, json: { images } });
    const good = { image_id: 'x', store: 'edge-1', size: 1, state: 'cached', since: new Date().toISOString(), hits: 0, last_accessed: null };
    expectStatus(await put('nowhere', []), 404);
    expectStatus(await put('edge-1', [{ ...good, store: 'central' }]), 400);
    expectStatus(await put('edge-1', [{ ...good, state: 'lost' }]), 400);
    expectStatus(await put('edge-1', [good], project('p1')), 403);
    expectStatus(await call(central, 'GET', '/outpost/v1/sites/edge-1/inventory', { as: project('p1') }), 403);
    expectStatus(await call(central, 'GET', '/outpost/v1/sites/nowhere/inventory'), 404);
  });

  it('openstack image create --file at an edge (as Nova snapshots there) stores the bytes at the edge', { skip: cliSkip }, async () => {
    const data = bytesOf(2 * 1024 * 1024, 45);
    const file = join(work, 'snap.img');
    await writeFile(file, data);
    const env = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore', OS_AUTH_TYPE: 'none', OS_ENDPOINT: edge.url };
    const out = await run('openstack', ['image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', file, '-f', 'json', 'cli-snapshot'], { env, cwd: work });
    const id = (JSON.parse(out.stdout) as { id: string }).id;
    const atCentral = await getImage(central, id);
    assert.deepEqual([atCentral.status, atCentral.os_hash_value, atCentral.stores], ['active', sha512(data), 'edge-1']);
  });
});
