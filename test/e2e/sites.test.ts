import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

interface SiteJson { id: string; parent: string | null; labels: Record<string, string>; public_url: string; stores: string[]; lag_changes: number | null; last_contact: string }

async function sites(url: string): Promise<SiteJson[]> {
  return ((await (await fetch(`${url}/outpost/v1/sites`)).json()) as { sites: SiteJson[] }).sites;
}

async function eventually<T>(get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) assert.fail(`not reached in time: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sites register themselves, up to central, in a tree of any depth. */
describe('site registration', { timeout: 60_000 }, () => {
  let dir: string;
  let central: ServeProcess;
  let edge: ServeProcess;
  let far: ServeProcess;
  const edgeArgs = (...labels: string[]) => ['--role', 'edge', '--site', 'edge-1', '--parent', central.url, '--listen', '127.0.0.1:0',
    '--data', join(dir, 'edge'), ...labels.flatMap((l) => ['--label', l])];

  before(async () => {
    dir = await tempDir();
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(dir, 'central'),
      '--store', `fast=file:${join(dir, 'fast')}`, '--store', `bulk=file:${join(dir, 'bulk')}`]);
    edge = await spawnServe(edgeArgs('region=north', 'tier=edge'));
    far = await spawnServe(['--role', 'edge', '--site', 'far-1', '--parent', edge.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'far')],
      { OUTPOST_LABELS: 'region=north,tier=far-edge' });
  });
  after(async () => {
    await far?.stop();
    await edge?.stop();
    await central?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('every site registers with its parent, the registration reaches central, and the list replicates down', async () => {
    const atCentral = await eventually(() => sites(central.url), (s) => s.length === 3);
    assert.deepEqual(atCentral.map((s) => [s.id, s.parent]), [['central', null], ['edge-1', 'central'], ['far-1', 'edge-1']]);
    assert.equal(atCentral.find((s) => s.id === 'far-1')?.public_url, far.url);
    assert.deepEqual(atCentral.find((s) => s.id === 'edge-1')?.stores, ['edge-1']);
    await eventually(() => sites(far.url), (s) => s.length === 3);
  });

  it('each site\'s labels (--label, OUTPOST_LABELS) reach central and replicate down', async () => {
    const labels = (list: SiteJson[]) => Object.fromEntries(list.map((s) => [s.id, s.labels]));
    const expected = { central: {}, 'edge-1': { region: 'north', tier: 'edge' }, 'far-1': { region: 'north', tier: 'far-edge' } };
    await eventually(() => sites(central.url), (s) => JSON.stringify(labels(s)) === JSON.stringify(expected));
    await eventually(() => sites(far.url), (s) => JSON.stringify(labels(s)) === JSON.stringify(expected));
  });

  it('each site answers /v2/info/stores with its own stores first (the default marked), then the other sites\' (which copy-image may name)', async () => {
    const get = async (url: string, path: string) => (await fetch(`${url}${path}`, { headers: { accept: 'application/json' } })).json() as Promise<{ stores: { id: string; default?: string; description?: string }[] }>;
    await eventually(() => get(central.url, '/v2/info/stores'), (r) => r.stores.length === 4);
    const atCentral = (await get(central.url, '/v2/info/stores')).stores;
    assert.deepEqual(atCentral.slice(0, 2), [{ id: 'fast', default: 'true' }, { id: 'bulk' }]);
    assert.deepEqual(atCentral.slice(2).map((s) => [s.id, s.default, s.description]), [
      ['edge-1', undefined, 'Store of site edge-1 (copy-image and stores-delete may name it; upload at edge-1 to store there)'],
      ['far-1', undefined, 'Store of site far-1 (copy-image and stores-delete may name it; upload at far-1 to store there)'],
    ]);
    await eventually(() => get(far.url, '/v2/info/stores'), (r) => r.stores.length === 4);
    assert.deepEqual((await get(far.url, '/v2/info/stores')).stores.map((s) => [s.id, s.default ?? '']), [['far-1', 'true'], ['fast', ''], ['bulk', ''], ['edge-1', '']]);
    await eventually(() => sites(far.url), (s) => JSON.stringify(s.find((x) => x.id === 'central')?.stores) === '["fast","bulk"]');
  });

  it('a placement policy written at the far edge is made at central and replicates to every site; the audit finds them equal', async () => {
    const api = async (url: string, method: string, path: string, json?: unknown) => {
      const res = await fetch(`${url}${path}`, {
        method, body: json === undefined ? undefined : JSON.stringify(json),
        headers: { accept: 'application/json', ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
      });
      return { status: res.status, body: res.status === 204 ? undefined : await res.json() as any };
    };
    const policies = async (url: string) => (await api(url, 'GET', '/outpost/v1/policies')).body.policies as { id: string; priority: number }[];
    const created = await api(far.url, 'POST', '/outpost/v1/policies', { name: 'north-golden', images: { tags: ['golden'] }, sites: { labels: 'region=north,tier!=far-edge' }, mode: 'replicate' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    // The far edge answers its write once its replica has it (read-your-writes), and so does central.
    assert.deepEqual(await policies(far.url), [created.body]);
    assert.deepEqual(await policies(central.url), [created.body]);
    await eventually(() => policies(edge.url), (p) => p.length === 1);

    const bad = await api(edge.url, 'POST', '/outpost/v1/policies', { name: 'bad', sites: { ids: ['far-2'] }, mode: 'replicate' });
    assert.equal(bad.status, 400, 'central checks the site ids');
    assert.match(bad.body.message, /^sites\.ids: no site is registered as far-2/);

    assert.equal((await api(edge.url, 'PATCH', `/outpost/v1/policies/${id}`, { priority: 95 })).status, 200);
    await eventually(() => policies(far.url), (p) => p[0]?.priority === 95);
    for (const url of [edge.url, far.url]) {
      // 'busy' while a periodic audit runs: ask again.
      const audit = await eventually(() => api(url, 'POST', '/outpost/v1/audit'), (a) => a.status !== 200 || a.body.result !== 'busy');
      assert.equal(audit.status, 200);
      assert.deepEqual([audit.body.result, audit.body.mismatched], ['ok', []], `audit at ${url}`);
    }
    assert.equal((await api(far.url, 'DELETE', `/outpost/v1/policies/${id}`)).status, 204);
    assert.deepEqual(await policies(far.url), []);
    await eventually(() => policies(edge.url), (p) => p.length === 0);
    assert.deepEqual(await policies(central.url), []);
  });

  it('refuses an unknown or cyclic parent with a clear 409', async () => {
    const post = (body: unknown) => fetch(`${central.url}/outpost/v1/sites`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body),
    });
    const cyclic = await post({ id: 'edge-1', parent: 'far-1' });
    assert.equal(cyclic.status, 409);
    assert.match((await cyclic.json() as { message: string }).message, /would make a cycle/);
    const unknown = await post({ id: 'x-1', parent: 'nowhere' });
    assert.equal(unknown.status, 409);
    assert.match((await unknown.json() as { message: string }).message, /unknown parent site nowhere/);
    assert.equal((await post({ id: 'central', parent: 'edge-1' })).status, 409);
    assert.equal((await post({ id: 'bad id!', parent: 'central' })).status, 400);
    assert.equal((await post({ id: 'x-2', parent: 'central', stores: ['x-2'], store_details: [{ id: 'other' }] })).status, 400);
  });

  it('an edge lists the sites with central\'s last contact while it reaches its parent, and from its replica when it does not', async () => {
    // A heartbeat (a refresh that changes nothing but the time) is kept at central only.
    const record = (await sites(central.url)).find((s) => s.id === 'edge-1')!;
    const refresh = await fetch(`${central.url}/outpost/v1/sites`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ id: record.id, parent: record.parent, labels: record.labels, public_url: record.public_url, stores: record.stores }),
    });
    assert.ok(refresh.ok, await refresh.text());
    const atCentral = (await sites(central.url)).find((s) => s.id === 'edge-1')!;
    assert.ok(atCentral.last_contact > record.last_contact, 'central took the heartbeat');
    assert.equal((await sites(far.url)).find((s) => s.id === 'edge-1')?.last_contact, atCentral.last_contact, 'the far edge, two hops down, shows it');
    const one = await fetch(`${far.url}/outpost/v1/sites/edge-1`);
    assert.equal(((await one.json()) as SiteJson).last_contact, atCentral.last_contact);
    for (const site of [central, far]) {
      const unknown = await fetch(`${site.url}/outpost/v1/sites/nowhere`, { headers: { accept: 'application/json' } });
      assert.equal(unknown.status, 404);
      assert.match(((await unknown.json()) as { message: string }).message, /No site nowhere is registered/);
    }

    await edge.stop();
    try {
      const cutOff = await sites(far.url);
      assert.deepEqual(cutOff.map((s) => s.id), ['central', 'edge-1', 'far-1'], 'cut off, the far edge answers from its replica');
    } finally {
      edge = await spawnServe(edgeArgs('region=north', 'tier=edge'));
    }
    await eventually(() => sites(central.url), (list) => list.find((x) => x.id === 'edge-1')!.last_contact > atCentral.last_contact);
  });

  it('restarting an edge does not duplicate it, and takes its new labels', async () => {
    const before = (await sites(central.url)).find((s) => s.id === 'edge-1')!;
    await edge.stop();
    edge = await spawnServe(edgeArgs('region=south'));
    await eventually(() => sites(central.url), (s) => s.find((x) => x.id === 'edge-1')!.last_contact > before.last_contact);
    const after = (await sites(central.url)).filter((s) => s.id === 'edge-1');
    assert.equal(after.length, 1);
    assert.deepEqual(after[0].labels, { region: 'south' });
  });
});
