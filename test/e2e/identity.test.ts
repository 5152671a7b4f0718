import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const PASSWORD = 'correct horse';
const EDGE_ENV = { OUTPOST_AUTH: 'keystone', OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };

/**
 * auth keystone across sites, each its own process: central issues tokens; the edge (behind a
 * FaultProxy) and the far edge check them against their replicas, also while cut off.
 */
describe('identity: Keystone v3 tokens signed by central, checked at every site', { timeout: 180_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let edge: ServeProcess;
  let far: ServeProcess;
  let wan: FaultProxy;

  const api = (url: string, path: string, init: RequestInit & { token?: string } = {}) =>
    fetch(`${url}${path}`, { ...init, headers: { accept: 'application/json', ...(init.token === undefined ? {} : { 'x-auth-token': init.token }), ...init.headers } });
  const token = async (user: string, password: string, project: string): Promise<string> => {
    const res = await api(central.url, '/identity/v3/auth/tokens', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: user, domain: { id: 'default' }, password } } },
        scope: { project: { name: project, domain: { id: 'default' } } },
      } }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return res.headers.get('x-subject-token')!;
  };
  const json = async (res: Response) => {
    assert.ok(res.ok, `${res.status} ${await res.clone().text()}`);
    return res.json() as Promise<any>;
  };
  let admin: string;

  before(async () => {
    work = await tempDir('outpost-e2e-identity-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--auth', 'keystone'],
      { OUTPOST_ADMIN_PASSWORD: PASSWORD, OUTPOST_STORAGE_SYNC: 'false' });
    admin = await token('admin', PASSWORD, 'admin');
    const credential = async (site: string) => (await json(await api(central.url, `/outpost/v1/sites/${site}/credential`, { method: 'POST', token: admin }))).token as string;
    wan = await FaultProxy.start({ target: loopbackTarget(central.url) });
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', wan.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: await credential('edge-1') });
    far = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'far'), '--role', 'edge', '--site', 'far-1', '--parent', edge.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: await credential('far-1') });
    await eventually('both edges registered', 30_000, async () =>
      (await json(await api(central.url, '/outpost/v1/sites', { token: admin }))).sites.length === 3);
  });
  after(async () => {
    for (const p of [far, edge]) if (p !== undefined) await stopProcess(p);
    await wan?.close();
    if (central !== undefined) await stopProcess(central);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('without a token, or with a forged one, every site answers 401', async () => {
    const [h, p] = admin.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const altered = `${h}.${Buffer.from(JSON.stringify({ ...claims, project: 'other' })).toString('base64url')}.${admin.split('.')[2]}`;
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`;
    for (const site of [central, edge, far]) {
      assert.equal((await api(site.url, '/v2/images')).status, 401);
      for (const bad of [altered, none, 'garbage']) assert.equal((await api(site.url, '/v2/images', { token: bad })).status, 401, `${site.url} ${bad.slice(0, 20)}`);
      assert.equal((await api(site.url, '/v2/images', { token: admin })).status, 200);
    }
    const wrong = await api(central.url, '/identity/v3/auth/tokens', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: 'no' } } } } }),
    });
    assert.equal(wrong.status, 401);
    assert.equal((await wrong.json() as { error: { code: number } }).error.code, 401);
  });

  it('project A\'s private image: invisible to B at every site, cut off or not; shared and accepted, B sees it', async () => {
    for (const [name, project] of [['alice', 'proj-a'], ['bob', 'proj-b']]) {
      const p = await json(await api(central.url, '/identity/v3/projects', { method: 'POST', token: admin, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project: { name: project } }) }));
      const u = await json(await api(central.url, '/identity/v3/users', { method: 'POST', token: admin, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: { name, password: 'pw' } }) }));
      const roles = await json(await api(central.url, '/identity/v3/roles?name=member', { token: admin }));
      assert.equal((await api(central.url, `/identity/v3/projects/${p.project.id}/users/${u.user.id}/roles/${roles.roles[0].id}`, { method: 'PUT', token: admin })).status, 204);
    }
    const alice = await token('alice', 'pw', 'proj-a');
    const bob = await token('bob', 'pw', 'proj-b');
    const created = await json(await api(edge.url, '/v2/images', {
      method: 'POST', token: alice, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'a-private', disk_format: 'raw', container_format: 'bare' }),
    }));
    const data = bytesOf(64 * 1024, 51);
    assert.equal((await api(central.url, `/v2/images/${created.id}/file`, { method: 'PUT', token: alice, headers: { 'content-type': 'application/octet-stream' }, body: data })).status, 204);
    await eventually('the image reaches the far edge', 30_000, async () => (await api(far.url, `/v2/images/${created.id}`, { token: alice })).status === 200);
    const check = async (bobSees: boolean) => {
      for (const site of [central, edge, far]) {
        assert.equal((await api(site.url, `/v2/images/${created.id}`, { token: bob })).status, bobSees ? 200 : 404, site.url);
        assert.equal((await api(site.url, `/v2/images/${created.id}/file`, { token: bob })).status, bobSees ? 200 : 404, site.url);
      }
    };
    await check(false);
    wan.blackhole();
    try {
      for (const site of [edge, far]) assert.equal((await api(site.url, `/v2/images/${created.id}`, { token: bob })).status, 404);
    } finally {
      wan.heal();
    }
    const bobProject = JSON.parse(Buffer.from(bob.split('.')[1], 'base64url').toString()).project;
    await json(await api(central.url, `/v2/images/${created.id}`, { method: 'PATCH', token: alice, headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify([{ op: 'replace', path: '/visibility', value: 'shared' }]) }));
    await json(await api(central.url, `/v2/images/${created.id}/members`, { method: 'POST', token: alice, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ member: bobProject }) }));
    await json(await api(central.url, `/v2/images/${created.id}/members/${bobProject}`, { method: 'PUT', token: bob, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 'accepted' }) }));
    await eventually('the membership reaches the far edge', 30_000, async () => (await api(far.url, `/v2/images/${created.id}`, { token: bob })).status === 200);
    await check(true);
  });

  it('cut off: a token issued before the cut works at the edge and far edge; one revoked before the cut does not', async () => {
    const kept = await token('admin', PASSWORD, 'admin');
    const revoked = await token('admin', PASSWORD, 'admin');
    assert.equal((await api(central.url, '/identity/v3/auth/tokens', { method: 'DELETE', token: admin, headers: { 'x-subject-token': revoked } })).status, 204);
    const image = await json(await api(central.url, '/v2/images', {
      method: 'POST', token: kept, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'boot-me', disk_format: 'raw', container_format: 'bare' }),
    }));
    const data = bytesOf(256 * 1024, 52);
    await api(central.url, `/v2/images/${image.id}/file`, { method: 'PUT', token: kept, headers: { 'content-type': 'application/octet-stream' }, body: data });
    // The edge holds the bytes (a download through it), and both replicas have the revocation.
    await eventually('the image is active at the edge', 30_000, async () => {
      const shown = await api(edge.url, `/v2/images/${image.id}`, { token: kept });
      return shown.status === 200 && ((await shown.json()) as { status: string }).status === 'active';
    });
    assert.equal((await api(edge.url, `/v2/images/${image.id}/file`, { token: kept })).status, 200);
    await eventually('the revocation reaches the far edge', 30_000, async () => (await api(far.url, '/v2/images', { token: revoked })).status === 401);
    wan.blackhole();
    try {
      for (const site of [edge, far]) {
        assert.equal((await api(site.url, '/v2/images', { token: kept })).status, 200);
        assert.equal((await api(site.url, `/v2/images/${image.id}`, { token: kept })).status, 200);
        assert.equal((await api(site.url, '/v2/images', { token: revoked })).status, 401);
      }
      for (const site of [edge, far]) {
        const file = await api(site.url, `/v2/images/${image.id}/file`, { token: kept });
        assert.equal(createHash('sha512').update(Buffer.from(await file.arrayBuffer())).digest('hex'), createHash('sha512').update(data).digest('hex'), site.url);
      }
      // Forged while cut off: altered claims, alg none.
      const [h, p, sig] = kept.split('.');
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
      const altered = `${h}.${Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 86400 })).toString('base64url')}.${sig}`;
      for (const site of [edge, far]) {
        assert.equal((await api(site.url, '/v2/images', { token: altered })).status, 401);
        assert.equal((await api(site.url, '/v2/images', { token: `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.` })).status, 401);
      }
    } finally {
      wan.heal();
    }
  });

  it('the catalog\'s regions, services and endpoints: a region per site in the site tree, answered at every site, cut off too', async () => {
    const sites = (await json(await api(central.url, '/outpost/v1/sites', { token: admin }))).sites as { id: string; public_url: string }[];
    const urlOf = Object.fromEntries(sites.map((s) => [s.id, s.public_url]));
    for (const site of [central, edge, far]) {
      const regions = (await json(await api(site.url, '/identity/v3/regions', { token: admin }))).regions as { id: string; parent_region_id: string | null; links: { self: string } }[];
      assert.deepEqual(regions.map((r) => [r.id, r.parent_region_id]), [['central', null], ['edge-1', 'central'], ['far-1', 'edge-1']]);
      assert.match(regions[1]!.links.self, /\/identity\/v3\/regions\/edge-1$/);
      const images = (await json(await api(site.url, '/identity/v3/endpoints?service_id=image&interface=public', { token: admin }))).endpoints as { region_id: string; url: string; service_id: string }[];
      assert.deepEqual(images.map((e) => [e.region_id, e.url]), ['central', 'edge-1', 'far-1'].map((id) => [id, urlOf[id]]));
      const services = (await json(await api(site.url, '/identity/v3/services', { token: admin }))).services as { id: string; type: string; name: string }[];
      assert.deepEqual(services.map((s) => [s.type, s.name]), [['image', 'glance'], ['identity', 'keystone']]);
      assert.equal((await json(await api(site.url, '/identity/v3/regions/far-1', { token: admin }))).region.parent_region_id, 'edge-1');
      const identityEndpoint = (await json(await api(site.url, '/identity/v3/endpoints/identity-central-public', { token: admin }))).endpoint;
      assert.equal(identityEndpoint.url, `${urlOf.central}/identity/v3`);
    }
    const missing = await api(central.url, '/identity/v3/regions/nowhere', { token: admin });
    assert.equal(missing.status, 404);
    assert.deepEqual((await missing.json() as { error: { code: number; message: string } }).error.code, 404);
    // Regions for anyone with a token; services and endpoints for administrators.
    const p = await json(await api(central.url, '/identity/v3/projects', { method: 'POST', token: admin, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ project: { name: 'proj-c' } }) }));
    const u = await json(await api(central.url, '/identity/v3/users', { method: 'POST', token: admin, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: { name: 'carol', password: 'pw' } }) }));
    const member = (await json(await api(central.url, '/identity/v3/roles?name=member', { token: admin }))).roles[0].id;
    assert.equal((await api(central.url, `/identity/v3/projects/${p.project.id}/users/${u.user.id}/roles/${member}`, { method: 'PUT', token: admin })).status, 204);
    const carol = await token('carol', 'pw', 'proj-c');
    assert.equal((await api(central.url, '/identity/v3/regions', { token: carol })).status, 200);
    assert.equal((await api(central.url, '/identity/v3/endpoints', { token: carol })).status, 403);
    assert.equal((await api(central.url, '/identity/v3/services', { token: carol })).status, 403);
    assert.equal((await api(central.url, '/identity/v3/regions')).status, 401);
    wan.blackhole();
    try {
      const cutOff = (await json(await api(edge.url, '/identity/v3/regions', { token: admin }))).regions as { id: string }[];
      assert.deepEqual(cutOff.map((r) => r.id), ['central', 'edge-1', 'far-1'], 'the edge answers from its replica while cut off');
    } finally {
      wan.heal();
    }
  });

  it('a keystone central started without OUTPOST_ADMIN_PASSWORD prints a generated admin password once, which then works', async () => {
    const data = join(work, 'defaults');
    const first = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone' });
    let password: string;
    try {
      await eventually('the password is printed', 30_000, async () => /with the password (\S+)/.test(first.output()));
      password = /with the password (\S+)/.exec(first.output())![1];
      assert.equal((await api(first.url, '/v2/images')).status, 401);
    } finally {
      await stopProcess(first);
    }
    const second = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone' });
    try {
      const res = await api(second.url, '/identity/v3/auth/tokens', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password } } } } }),
      });
      assert.equal(res.status, 201);
      assert.doesNotMatch(second.output(), /with the password/);
    } finally {
      await stopProcess(second);
    }
  });

  it('the openstack and glance CLIs authenticate with a password, at central and at an edge by region', { skip: cliSkip }, async () => {
    const env = {
      ...process.env, HOME: work, PYTHONWARNINGS: 'ignore', OS_AUTH_URL: `${central.url}/identity/v3`, OS_USERNAME: 'admin', OS_PASSWORD: PASSWORD,
      OS_PROJECT_NAME: 'admin', OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_IDENTITY_API_VERSION: '3',
    };
    const openstack = async (...args: string[]) => (await run('openstack', args, { env, cwd: work })).stdout;
    const issued = JSON.parse(await openstack('token', 'issue', '-f', 'json'));
    assert.match(issued.id, /^ey/);
    // The catalog's discovery calls, as the CLI shows them.
    const regions = JSON.parse(await openstack('region', 'list', '-f', 'json')) as { Region: string; 'Parent Region': string | null }[];
    assert.deepEqual(regions.map((r) => [r.Region, r['Parent Region'] ?? null]), [['central', null], ['edge-1', 'central'], ['far-1', 'edge-1']]);
    const endpoints = JSON.parse(await openstack('endpoint', 'list', '--service', 'image', '--interface', 'public', '-f', 'json')) as { Region: string; 'Service Name': string; URL: string }[];
    assert.deepEqual(endpoints.map((e) => [e.Region, e['Service Name']]), [['central', 'glance'], ['edge-1', 'glance'], ['far-1', 'glance']]);
    assert.deepEqual((JSON.parse(await openstack('service', 'list', '-f', 'json')) as { Type: string }[]).map((x) => x.Type), ['image', 'identity']);
    const file = join(work, 'cli.img');
    const data = bytesOf(512 * 1024, 53);
    await writeFile(file, data);
    const created = JSON.parse(await openstack('image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', file, '-f', 'json', 'cli-keystone'));
    assert.match(JSON.parse(await openstack('image', 'show', '-f', 'json', created.id)).status, /active/);
    await eventually('the image reaches edge-1', 30_000, async () => (await openstack('--os-region-name', 'edge-1', 'image', 'list', '-f', 'value', '-c', 'ID')).includes(created.id));
    await openstack('--os-region-name', 'edge-1', 'image', 'save', '--file', join(work, 'saved.img'), created.id);
    const saved = await run('sha512sum', [join(work, 'saved.img')]);
    assert.equal(saved.stdout.split(' ')[0], createHash('sha512').update(data).digest('hex'));
    // Create and show at the edge too: the upload stays in the edge's store, central records it.
    const atEdge = JSON.parse(await openstack('--os-region-name', 'edge-1', 'image', 'create', '--disk-format', 'raw', '--container-format', 'bare',
      '--file', file, '-f', 'json', 'cli-keystone-edge'));
    assert.equal(JSON.parse(await openstack('--os-region-name', 'edge-1', 'image', 'show', '-f', 'json', atEdge.id)).status, 'active');
    assert.equal((await json(await api(central.url, `/v2/images/${atEdge.id}`, { token: admin }))).stores, 'edge-1');
    // Central reads it from the edge with its own credential, which the edge checks.
    const fromCentral = await api(central.url, `/v2/images/${atEdge.id}/file`, { token: admin });
    assert.equal(fromCentral.status, 200, await fromCentral.clone().text());
    assert.equal(createHash('sha512').update(Buffer.from(await fromCentral.arrayBuffer())).digest('hex'), createHash('sha512').update(data).digest('hex'));
    const glance = await run('glance', ['image-list'], { env, cwd: work });
    assert.match(glance.stdout, /cli-keystone/);
  });

  it('key rotation (outpost keys): old tokens verify until their key is removed, then every site refuses them', async () => {
    const cli = async (...args: string[]) => (await run(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), ...args, '--url', central.url, '--token', admin])).stdout;
    const old = await token('admin', PASSWORD, 'admin');
    const oldKid = JSON.parse(Buffer.from(old.split('.')[0], 'base64url').toString()).kid;
    assert.match(await cli('keys', 'rotate'), /new active key/);
    const fresh = await token('admin', PASSWORD, 'admin');
    assert.notEqual(JSON.parse(Buffer.from(fresh.split('.')[0], 'base64url').toString()).kid, oldKid);
    await eventually('the new key reaches the far edge', 30_000, async () => (await api(far.url, '/v2/images', { token: fresh })).status === 200);
    for (const site of [central, edge, far]) assert.equal((await api(site.url, '/v2/images', { token: old })).status, 200);
    assert.match(await cli('keys', 'list'), new RegExp(`${oldKid}\\s+retired`));
    // The sites' credentials were signed with the old key: removing it is refused until they have new ones.
    await assert.rejects(cli('keys', 'remove', oldKid), /409.*sites edge-1, far-1/s);
    const credential = async (site: string) => /OUTPOST_SITE_TOKEN=(\S+)/.exec(await cli('site', 'add', site))![1];
    await stopProcess(far);
    await stopProcess(edge);
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', wan.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: await credential('edge-1') });
    far = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'far'), '--role', 'edge', '--site', 'far-1', '--parent', edge.url],
      { ...EDGE_ENV, OUTPOST_SITE_TOKEN: await credential('far-1') });
    admin = fresh;
    assert.match(await cli('keys', 'remove', oldKid), /removed key/);
    await eventually('the removal reaches the far edge', 30_000, async () => (await api(far.url, '/v2/images', { token: old })).status === 401);
    for (const site of [central, edge]) assert.equal((await api(site.url, '/v2/images', { token: old })).status, 401);
    for (const site of [central, edge, far]) assert.equal((await api(site.url, '/v2/images', { token: fresh })).status, 200);
  });
});

/**
 * keystone_url: a site validating tokens against an existing Keystone — here the Keystone v3 API of
 * another Outpost central, reached through a FaultProxy — and, cut off from it, still accepting
 * the tokens it has seen until they expire.
 */
describe('identity: tokens of an existing Keystone (keystone_url)', { timeout: 60_000 }, () => {
  let work: string;
  let keystone: ServeProcess;
  let site: ServeProcess;
  let link: FaultProxy;
  const issue = async () => {
    const res = await fetch(`${keystone.url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      } }),
    });
    assert.equal(res.status, 201);
    return res.headers.get('x-subject-token')!;
  };
  const images = (token: string) => fetch(`${site.url}/v2/images`, { headers: { 'x-auth-token': token } });

  before(async () => {
    work = await tempDir('outpost-e2e-keystone-url-');
    keystone = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'keystone'), '--auth', 'keystone'], { OUTPOST_ADMIN_PASSWORD: PASSWORD });
    link = await FaultProxy.start({ target: loopbackTarget(keystone.url) });
    site = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'site'), '--auth', 'keystone'],
      { OUTPOST_KEYSTONE_URL: `${link.url}/identity/v3`, OUTPOST_PARENT_TIMEOUT_MS: '1500' });
  });
  after(async () => {
    if (site !== undefined) await stopProcess(site);
    await link?.close();
    if (keystone !== undefined) await stopProcess(keystone);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('accepts the Keystone\'s tokens, refuses others, and cut off keeps accepting those it has seen', async () => {
    const seen = await issue();
    const unseen = await issue();
    assert.equal((await images(seen)).status, 200);
    assert.equal((await images('not-a-token')).status, 401);
    assert.equal((await fetch(`${site.url}/identity/v3/auth/tokens`, { method: 'POST' })).status, 404, 'the site does not issue tokens itself');
    link.blackhole();
    try {
      assert.equal((await images(seen)).status, 200);
      const t0 = performance.now();
      assert.equal((await images(unseen)).status, 503);
      assert.ok(performance.now() - t0 < 4000, 'the 503 comes within the timeout');
    } finally {
      link.heal();
    }
    assert.equal((await images(unseen)).status, 200);
  });
});
