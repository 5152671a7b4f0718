import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { bytesOf } from '../helpers/glance-client.ts';
import { eventually, stopProcess } from '../helpers/multi-site.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const PASSWORD = 'correct horse';
const EDGE_ENV = { OUTPOST_AUTH: 'keystone', OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };

/**
 * Removing a site (DELETE /outpost/v1/sites/{id}, `outpost site remove`), with real processes and
 * auth keystone: central ← edge-1 ← far-1, each with its site credential.
 */
describe('removing a site: endpoints, credential, inventory and copies go; children first', { timeout: 120_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let edge: ServeProcess | undefined;
  let far: ServeProcess | undefined;
  let admin: string;
  const credentials: Record<string, string> = {};

  const api = (url: string, path: string, init: RequestInit & { token?: string; json?: unknown } = {}) => fetch(`${url}${path}`, {
    ...init,
    body: init.json === undefined ? init.body : JSON.stringify(init.json),
    headers: {
      accept: 'application/json', ...(init.json === undefined ? {} : { 'content-type': 'application/json' }),
      ...(init.token === undefined ? {} : { 'x-auth-token': init.token }), ...init.headers,
    },
  });
  const json = async (res: Response) => {
    assert.ok(res.ok, `${res.status} ${await res.clone().text()}`);
    return res.json() as Promise<any>;
  };
  const siteIds = async (url: string) => ((await json(await api(url, '/outpost/v1/sites', { token: admin }))).sites as { id: string }[]).map((s) => s.id);
  const auth = async () => {
    const res = await api(central.url, '/identity/v3/auth/tokens', {
      method: 'POST',
      json: { auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      } },
    });
    assert.equal(res.status, 201, await res.clone().text());
    return { token: res.headers.get('x-subject-token')!, body: await res.json() as { token: { catalog: { type: string; endpoints: { region_id: string }[] }[] } } };
  };
  const imageRegions = (body: Awaited<ReturnType<typeof auth>>['body']) =>
    [...new Set(body.token.catalog.find((s) => s.type === 'image')!.endpoints.map((e) => e.region_id))];
  const cli = async (...args: string[]) => (await run(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), ...args, '--url', central.url, '--token', admin])).stdout;

  before(async () => {
    work = await tempDir('outpost-e2e-site-removal-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--auth', 'keystone'],
      { OUTPOST_ADMIN_PASSWORD: PASSWORD, OUTPOST_STORAGE_SYNC: 'false', OUTPOST_SHOW_MULTIPLE_LOCATIONS: 'true' });
    admin = (await auth()).token;
    for (const site of ['edge-1', 'far-1']) credentials[site] = /OUTPOST_SITE_TOKEN=(\S+)/.exec(await cli('site', 'add', site))![1];
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', central.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: credentials['edge-1'] });
    far = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'far'), '--role', 'edge', '--site', 'far-1', '--parent', edge.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: credentials['far-1'] });
    await eventually('both edges registered, and known at the far edge', 30_000, async () => (await siteIds(far!.url)).length === 3);
  });
  after(async () => {
    for (const p of [far, edge, central]) if (p !== undefined) await stopProcess(p);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('refuses: a site that still has children (409 naming them), central (409), an unknown site (404), a non-admin (403)', async () => {
    const del = (id: string, token = admin, url = central.url) => api(url, `/outpost/v1/sites/${id}`, { method: 'DELETE', token });
    const parent = await del('edge-1');
    assert.equal(parent.status, 409);
    assert.match((await parent.json() as { message: string }).message, /Site edge-1 still has child sites \(far-1\): remove them first/);
    assert.equal((await del('central')).status, 409);
    assert.equal((await del('nowhere')).status, 404);
    assert.equal((await del('far-1', credentials['edge-1'])).status, 403, 'a site credential is not an administrator');
    // Asked at an edge, the removal goes to central, which answers.
    assert.equal((await del('edge-1', admin, far!.url)).status, 409);
    assert.deepEqual(await siteIds(central.url), ['central', 'edge-1', 'far-1']);
  });

  it('removing the far edge drops it everywhere: sites, catalog, credential, inventory, and the copies in its store', async () => {
    // An image uploaded at far-1 (its only copy), and one at central of which far-1 also holds a located copy.
    const create = async (url: string, name: string) =>
      json(await api(url, '/v2/images', { method: 'POST', token: admin, json: { name, disk_format: 'raw', container_format: 'bare' } }));
    const data = bytesOf(64 * 1024, 71);
    const onlyAtFar = await create(far!.url, 'only-at-far');
    assert.equal((await api(far!.url, `/v2/images/${onlyAtFar.id}/file`, { method: 'PUT', token: admin, body: data, headers: { 'content-type': 'application/octet-stream' } })).status, 204);
    const both = await create(central.url, 'both');
    assert.equal((await api(central.url, `/v2/images/${both.id}/file`, { method: 'PUT', token: admin, body: data, headers: { 'content-type': 'application/octet-stream' } })).status, 204);
    const digest = (algo: string) => createHash(algo).update(data).digest('hex');
    assert.equal((await api(central.url, `/outpost/v1/images/${both.id}/locations/far-1`, {
      method: 'PUT', token: credentials['far-1'],
      json: { url: 'file:///far/both', size: data.length, checksum: digest('md5'), os_hash_algo: 'sha512', os_hash_value: digest('sha512'), virtual_size: null },
    })).status, 204);
    assert.deepEqual(imageRegions((await auth()).body), ['central', 'edge-1', 'far-1']);

    const res = await api(central.url, '/outpost/v1/sites/far-1', { method: 'DELETE', token: admin });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), {
      site: 'far-1', stores: ['far-1'], credential_revoked: true, images_with_copy_removed: [both.id], images_without_copy: [onlyAtFar.id],
    });

    assert.deepEqual(await siteIds(central.url), ['central', 'edge-1']);
    await eventually('the removal replicates to the edge', 30_000, async () => (await siteIds(edge!.url)).join() === 'central,edge-1');
    assert.deepEqual(imageRegions((await auth()).body), ['central', 'edge-1'], 'gone from the Keystone catalog');
    assert.equal((await api(central.url, '/outpost/v1/sites/far-1/inventory', { token: admin })).status, 404);
    // The images: no copy is left where nobody holds the bytes.
    const image = async (url: string, id: string) => json(await api(url, `/v2/images/${id}`, { token: admin }));
    const lost = await image(central.url, onlyAtFar.id);
    assert.deepEqual([lost.status, lost.size, lost.checksum, lost.stores, lost.locations], ['queued', null, null, undefined, []]);
    const kept = await image(central.url, both.id);
    assert.deepEqual([kept.status, kept.stores, kept.locations.map((l: { metadata: { store: string } }) => l.metadata.store)], ['active', 'central', ['central']]);
    await eventually('the edge sees the same', 30_000, async () => (await image(edge!.url, onlyAtFar.id)).status === 'queued');

    // Its credential is revoked: refused at central and, once the revocation arrives, at its parent;
    // so the far edge, still running, cannot come back by registering again.
    assert.equal((await api(central.url, '/outpost/v1/changes', { token: credentials['far-1'] })).status, 401);
    await eventually('the edge refuses the far edge\'s credential', 30_000, async () =>
      (await api(edge!.url, '/outpost/v1/changes', { token: credentials['far-1'] })).status === 401);
    const again = await api(edge!.url, '/outpost/v1/sites', { method: 'POST', token: credentials['far-1'], json: { id: 'far-1', parent: 'edge-1', stores: ['far-1'] } });
    assert.equal(again.status, 401);
    await stopProcess(far!);
    far = undefined;
    assert.deepEqual(await siteIds(central.url), ['central', 'edge-1']);
  });

  it('outpost site remove NAME removes a site whose children are gone', async () => {
    assert.match(await cli('site', 'remove', 'edge-1'), /removed site edge-1 \(stores edge-1; credential revoked\)/);
    assert.deepEqual(await siteIds(central.url), ['central']);
    await assert.rejects(cli('site', 'remove', 'edge-1'), /404.*No site edge-1 is registered/s);
  });
});
