import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const PASSWORD = 'operator secret';

/**
 * The operator's `outpost` verbs against a real central with Keystone authentication, logged in
 * with the openstack CLI's OS_* variables (no --url: the image endpoint comes from the token's
 * catalog), in tables and as JSON, with the documented exit codes.
 */
describe('outpost site | policy | cache | status | keys with OS_* credentials', { timeout: 120_000 }, () => {
  let central: ServeProcess;
  let work: string;
  let env: NodeJS.ProcessEnv;

  /** `outpost ARGS` with `extra` in its environment: exit code and output (a failing command does not throw). */
  const outpost = async (args: string[], extra: Record<string, string | undefined> = {}) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), ...args], { env: { ...env, ...extra } });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const adminToken = async () => (await fetch(`${central.url}/identity/v3/auth/tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } } }),
  })).headers.get('x-subject-token')!;
  const ok = async (...args: string[]) => {
    const r = await outpost(args);
    assert.equal(r.code, 0, `outpost ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    work = await tempDir('outpost-operator-cli-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--auth', 'keystone'],
      { OUTPOST_ADMIN_PASSWORD: PASSWORD, OUTPOST_STORAGE_SYNC: 'false' });
    const { OUTPOST_URL: _url, OS_AUTH_TOKEN: _token, OS_TOKEN: _t, OS_ENDPOINT: _e, ...rest } = process.env;
    env = {
      ...rest,
      OS_AUTH_URL: `${central.url}/identity`, OS_USERNAME: 'admin', OS_PASSWORD: PASSWORD, OS_PROJECT_NAME: 'admin',
      OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default',
    };
  });
  after(async () => {
    await central?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('site list and show: a table for people, JSON for scripts', async () => {
    const table = await ok('site', 'list');
    assert.match(table, /^site\s+parent\s+url\s+stores\s+labels\s+last contact\s+lag\n/);
    assert.match(table, new RegExp(`^central\\s+-\\s+${central.url.replace(/[.]/g, '\\.')}\\s+central`, 'm'));
    const sites = JSON.parse(await ok('site', 'list', '-f', 'json')) as { id: string; public_url: string }[];
    assert.deepEqual(sites.map((s) => s.id), ['central']);
    const shown = JSON.parse(await ok('site', 'show', 'central', '-f', 'json')) as { site: { id: string }; inventory: { images: unknown[] } | null };
    assert.equal(shown.site.id, 'central');
    assert.match(await ok('site', 'show', 'central'), /^images\s+0 \(0 stored, 0 cached\)/m);
  });

  it('policy create, list, show and delete', async () => {
    const created = JSON.parse(await ok('policy', 'create', 'golden', '--tag', 'golden', '--property', 'os_distro=ubuntu', '--labels', 'region=eu', '--mode', 'cache', '--priority', '70', '-f', 'json'));
    assert.equal(created.name, 'golden');
    assert.deepEqual(created.images, { tags: ['golden'], properties: { os_distro: 'ubuntu' }, visibility: null });
    assert.deepEqual(created.sites, { labels: 'region=eu' });
    assert.match(await ok('policy', 'list'), /^golden\s+tag golden, os_distro=ubuntu\s+labels region=eu\s+cache\s+70\s+/m);
    assert.match(await ok('policy', 'show', 'golden'), /^priority\s+70$/m);
    assert.equal(JSON.parse(await ok('policy', 'show', created.id, '-f', 'json')).name, 'golden');
    assert.match(await ok('policy', 'delete', 'golden'), /deleted policy golden/);
    const gone = await outpost(['policy', 'show', 'golden']);
    assert.equal(gone.code, 3, 'not found');
    assert.match(gone.stderr, /no placement policy named or with id "golden"/);
    const bad = await outpost(['policy', 'create', 'x', '--labels', 'region in (eu', '--sites', 'central']);
    assert.equal(bad.code, 2, 'both --labels and --sites: a usage error');
    const refused = await outpost(['policy', 'create', 'x', '--labels', 'region in (eu']);
    assert.equal(refused.code, 1, 'the site refuses it');
    assert.match(refused.stderr, /400 Bad Request: sites\.labels: /);
  });

  it('status of central is in step (exit 0); keys list', async () => {
    const status = JSON.parse(await ok('status', '-f', 'json'));
    assert.equal(status.site, 'central');
    assert.equal(status.role, 'central');
    assert.equal(status.healthy, true);
    assert.match(await ok('status'), /^health\s+in step$/m);
    assert.match(await ok('keys', 'list'), /^kid\s+state\s+created\n\S+\s+active\s+/);
  });

  it('cache pin, list and unpin at central', async () => {
    const token = await adminToken();
    const api = (path: string, init: RequestInit = {}) => fetch(`${central.url}${path}`, { ...init, headers: { 'x-auth-token': token, ...init.headers } });
    const image = await (await api('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'pinned-disk', disk_format: 'raw', container_format: 'bare' }),
    })).json() as { id: string };
    assert.equal((await api(`/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(300_000, 7) })).status, 204);
    assert.match(await ok('cache', 'list'), /site central: the cache is empty/);

    assert.match(await ok('cache', 'pin', 'pinned-disk'), new RegExp(`pinned ${image.id}`));
    const listed = async () => JSON.parse(await ok('cache', 'list', '-f', 'json')) as { site: string; images: { image_id: string; state: string; size: number | null }[] };
    for (const deadline = Date.now() + 60_000; ;) {
      const row = (await listed()).images.find((i) => i.image_id === image.id);
      if (row?.state === 'pinned') {
        assert.equal(row.size, 300_000);
        break;
      }
      assert.ok(Date.now() < deadline, `the pinned image is held in central's cache: ${JSON.stringify(row)}`);
    }
    assert.match(await ok('cache', 'list'), new RegExp(`^${image.id}\\s+pinned\\s+300000\\s+`, 'm'));
    assert.match(await ok('cache', 'unpin', image.id), /unpinned/);
    assert.equal((await listed()).images.find((i) => i.image_id === image.id)?.state, 'cached');
    const unknown = await outpost(['cache', 'pin', 'no-such-disk']);
    assert.equal(unknown.code, 3);
  });

  it('exit codes: 5 for a wrong password, 4 for an unreachable site, 2 for a bad option', async () => {
    const wrong = await outpost(['site', 'list'], { OS_PASSWORD: 'not it' });
    assert.equal(wrong.code, 5);
    assert.match(wrong.stderr, /cannot get a token from .*401/);
    const away = await outpost(['site', 'list', '--url', 'http://127.0.0.1:9'], { OS_AUTH_URL: undefined, OS_PASSWORD: undefined });
    assert.equal(away.code, 4);
    assert.match(away.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
    const usage = await outpost(['site', 'list', '--no-such-flag']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown option '--no-such-flag'/);
    // A token works as well as a password (OS_TOKEN, as `openstack --os-auth-type token`).
    const withToken = await outpost(['site', 'list', '-f', 'json', '--url', central.url], { OS_TOKEN: await adminToken(), OS_PASSWORD: undefined });
    assert.equal(withToken.code, 0, withToken.stderr);
  });
});
