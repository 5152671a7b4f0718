import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, getImage, upload } from '../helpers/glance-client.ts';
import { download, eventually, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const ENV = { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_SHOW_MULTIPLE_LOCATIONS: 'true' };
const CHILD_ENV = { ...ENV, OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2' };

/**
 * The store model (docs/architecture.md, "The store model"), with real processes: central (stores
 * `central` and `bulk`) ← edge-1 (store `edge-1`). Store ids are unique in the region; a request at
 * a site names that site's own stores only; every site shows an image's copies alike.
 */
describe('the store model: which stores exist, which may be named where, what images show', { timeout: 120_000 }, () => {
  let work: string;
  let procs: ServeProcess[] = [];
  let central: TestSite;
  let edge: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-stores-');
    // Weights that order central's stores otherwise than their ids do: every site must show that order.
    const config = join(work, 'central.json');
    await writeFile(config, JSON.stringify({ stores: [
      { id: 'central', path: join(work, 'central', 'stores', 'central'), weight: 10 }, { id: 'bulk', path: join(work, 'bulk'), weight: 0 },
    ] }));
    const c = await spawnServe(['--config', config, '--listen', '127.0.0.1:0', '--data', join(work, 'central')], ENV);
    procs.push(c);
    const e = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', c.url], CHILD_ENV);
    procs.push(e);
    central = siteAt(c.url);
    edge = siteAt(e.url);
    await eventually('edge-1 registered', 30_000, async () =>
      ((await call(central, 'GET', '/outpost/v1/sites')).body.sites as { id: string }[]).some((s) => s.id === 'edge-1'));
  });
  after(async () => {
    for (const p of procs.reverse()) await stopProcess(p);
    procs = [];
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('/v2/info/stores at a site lists its own stores, the default marked, then the other sites\'', async () => {
    const named = async (site: TestSite) => ((await call(site, 'GET', '/v2/info/stores')).body.stores as { id: string; default?: string }[])
      .map((s) => `${s.id}${s.default === 'true' ? ' (default)' : ''}`);
    assert.deepEqual(await named(central), ['central (default)', 'bulk', 'edge-1']);
    assert.deepEqual(await named(edge), ['edge-1 (default)', 'central', 'bulk']);
    // The region's stores are listed with the sites, anywhere.
    const sites = (await call(edge, 'GET', '/outpost/v1/sites')).body.sites as { id: string; stores: string[] }[];
    assert.deepEqual(Object.fromEntries(sites.map((s) => [s.id, s.stores])), { central: ['central', 'bulk'], 'edge-1': ['edge-1'] });
  });

  it('an upload at an edge names its own stores; another site\'s store gets a 400 saying whose it is and what may be named', async () => {
    const data = bytesOf(64 * 1024, 91);
    const image = await createImage(edge, { name: 'at-edge', disk_format: 'raw', container_format: 'bare' });
    const refused = await upload(edge, image.id, data, undefined, { 'x-image-meta-store': 'central' });
    expectStatus(refused, 400);
    assert.match(refused.text, /Store central belongs to site central\. An upload at site edge-1 is stored in one of its own stores \(edge-1; default edge-1\)/);
    const unknown = await upload(edge, image.id, data, undefined, { 'x-image-meta-store': 'nowhere' });
    expectStatus(unknown, 400);
    assert.match(unknown.text, /Store for identifier nowhere not found\. An upload at site edge-1 is stored in one of its own stores/);
    expectStatus(await upload(edge, image.id, data, undefined, { 'x-image-meta-store': 'edge-1' }), 204);
    assert.equal((await getImage(central, image.id)).stores, 'edge-1');
    // At central, an edge's store is not one an upload there may name either.
    const other = await createImage(central, { name: 'at-central', disk_format: 'raw', container_format: 'bare' });
    const atCentral = await upload(central, other.id, data, undefined, { 'x-image-meta-store': 'edge-1' });
    expectStatus(atCentral, 400);
    assert.match(atCentral.text, /Store edge-1 belongs to site edge-1\. An upload at site central is stored in one of its own stores \(central, bulk; default central\); to store the image at edge-1, upload it there/);
  });

  it('copy-image to an edge\'s store (at central or through the edge): the edge fetches its copy and the task ends when it has; stores-delete removes it there', async () => {
    const data = bytesOf(32 * 1024, 92);
    const image = await createActiveImage(central, data, { name: 'copy-me' });
    const onDisk = () => access(join(work, 'edge', 'stores', 'edge-1', image.id)).then(() => true, () => false);
    expectStatus(await call(edge, 'POST', `/v2/images/${image.id}/import`, { json: { method: { name: 'copy-image' }, stores: ['edge-1', 'bulk'] } }), 202);
    await eventually('both copies exist', 30_000, async () => (await getImage(central, image.id)).stores === 'central,bulk,edge-1');
    const done = await getImage(central, image.id);
    assert.deepEqual([done.os_glance_importing_to_stores, done.os_glance_failed_import], ['', '']);
    const task = async () => ((await call(central, 'GET', `/v2/images/${image.id}/tasks`)).body.tasks as { status: string; input: { backend: string[] } }[])[0];
    await eventually('the task succeeded', 30_000, async () => (await task())?.status === 'success');
    assert.deepEqual((await task())!.input.backend, ['bulk', 'edge-1'], 'this site\'s stores first');
    assert.equal(await onDisk(), true);
    assert.equal((await download(edge.url, image.id)).length, data.length);
    // The edge's copy is an explicit one: no placement agent removes it.
    const location = (done.locations as { metadata: { store: string } }[]).map((l) => l.metadata.store);
    assert.deepEqual(location, ['central', 'bulk', 'edge-1']);

    // Already there: Glance's 400; an import of new bytes into another site's store: 409 saying what to do.
    const again = await call(central, 'POST', `/v2/images/${image.id}/import`, { json: { method: { name: 'copy-image' }, stores: ['edge-1'] } });
    expectStatus(again, 400);
    const fresh = await createImage(central, { name: 'fresh', disk_format: 'raw', container_format: 'bare' });
    const web = await call(central, 'POST', `/v2/images/${fresh.id}/import`, { json: { method: { name: 'web-download', uri: 'http://127.0.0.1:9/x' }, stores: ['edge-1'] } });
    expectStatus(web, 409);
    assert.match(web.text, /Store edge-1 belongs to site edge-1: an import writes to the stores of site central \(stores that can be named at site central: central, bulk\); import there, then copy it to edge-1 with the copy-image method/);
    // Unknown stores keep Glance's answers.
    expectStatus(await call(central, 'POST', `/v2/images/${image.id}/import`, { json: { method: { name: 'copy-image' }, stores: ['nowhere'] } }), 409);
    expectStatus(await call(central, 'DELETE', `/v2/stores/nowhere/${image.id}`), 409);

    expectStatus(await call(central, 'DELETE', `/v2/stores/edge-1/${image.id}`), 204);
    assert.equal((await getImage(central, image.id)).stores, 'central,bulk');
    await eventually('the edge deleted its bytes', 30_000, async () => !(await onDisk()));
    expectStatus(await call(central, 'DELETE', `/v2/stores/bulk/${image.id}`), 204);
  });

  it('an image shows the same stores and locations at central and at the edge, the edge\'s cached copy included', async () => {
    const data = bytesOf(128 * 1024, 93);
    const image = await createActiveImage(central, data, { name: 'seen-alike' });
    await eventually('the image reached the edge active', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'active');
    assert.equal((await download(edge.url, image.id)).length, data.length);
    const view = async (site: TestSite) => {
      const i = await getImage(site, image.id);
      return JSON.stringify([i.stores, i.locations.map((l: { metadata: unknown }) => l.metadata)]);
    };
    const expected = JSON.stringify(['central,edge-1', [{ store: 'central' }]]);
    await eventually('central shows the edge\'s copy', 30_000, async () => (await view(central)) === expected);
    assert.equal(await view(edge), expected);
    // An upload at the edge: the same at both, too.
    const snap = await createImage(edge, { name: 'snap', disk_format: 'raw', container_format: 'bare' });
    expectStatus(await upload(edge, snap.id, data), 204);
    for (const site of [central, edge]) {
      const i = await getImage(site, snap.id);
      assert.deepEqual([i.stores, i.locations.map((l: { metadata: unknown }) => l.metadata)], ['edge-1', [{ store: 'edge-1' }]]);
    }
  });

  it('a site cannot register a store id another site owns (409 naming it)', async () => {
    const res = await call(central, 'POST', '/outpost/v1/sites', { json: { id: 'x-1', parent: 'central', stores: ['x-1', 'edge-1'] } });
    expectStatus(res, 409);
    assert.match(res.text, /Site x-1 cannot have store edge-1 \(site edge-1 has it\): store ids are unique in the region/);
    expectStatus(await call(central, 'POST', '/outpost/v1/sites', { json: { id: 'x-1', parent: 'central', stores: ['bulk'] } }), 409);
  });

  it('glance stores-info and image-create --store at an edge', { skip: cliSkip }, async () => {
    const home = join(work, 'glance-home');
    const glance = async (...args: string[]) => (await run('sh', ['-c', 'exec glance "$@" <&-', 'glance',
      '--os-image-api-version', '2', '--os-image-url', edge.url, '--os-auth-token', 'none', ...args,
    ], { env: { ...process.env, HOME: home, PYTHONWARNINGS: 'ignore' }, cwd: work })).stdout;
    const info = await glance('stores-info');
    // The table wraps: compare its cells without the borders.
    const cells = info.split('\n').map((l) => l.replace(/^\|[^|]*\|\s?/, '').replace(/\s*\|\s*$/, '')).join(' ');
    assert.match(cells, /"id": "edge-1", "description": "Filesystem store of site edge-1", "default":\s+"true"\}, \{"id": "central"/);
    const file = join(work, 'cli.img');
    await writeFile(file, bytesOf(32 * 1024, 94));
    const out = await glance('image-create', '--store', 'edge-1', '--disk-format', 'raw', '--container-format', 'bare', '--name', 'cli', '--file', file);
    const id = /\|\s*id\s*\|\s*([0-9a-f-]{36})/.exec(out)?.[1];
    assert.ok(id !== undefined, out);
    assert.equal((await getImage(central, id)).stores, 'edge-1');
    // A store of another site is refused by the edge (400), saying where to upload instead.
    await assert.rejects(glance('image-create', '--store', 'central', '--disk-format', 'raw', '--container-format', 'bare', '--name', 'no', '--file', file),
      (e: { stderr: string }) => /Store central belongs to site central/.test(e.stderr));
  });
});
