import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { SERVE_NODE_FLAGS } from '../../src/cli/runtime-flags.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { REPO_ROOT } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();

it('outpost demo starts four sites with Keystone authentication and a sample image everywhere, prints the dashboard and credentials that work, and Ctrl-C stops them all', { timeout: 300_000 }, async (t) => {
  // The IPC channel makes the demo (and so its sites) stop if this process dies before the finally.
  // OUTPOST_ADMIN_PASSWORD unset: the demo generates the password it prints.
  const env = { ...process.env };
  delete env.OUTPOST_ADMIN_PASSWORD;
  const demo = spawn(process.execPath, [...SERVE_NODE_FLAGS, join(REPO_ROOT, 'bin/outpost.js'), 'demo', '--base-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env,
  });
  demo.channel?.unref();
  const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve));
  let out = '';
  let stdout = '';
  demo.stdout!.on('data', (d) => { out += d; stdout += d; });
  demo.stderr!.on('data', (d) => { out += d; });
  try {
    // Four processes start one after the other: generous on a busy machine.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo not ready within 180 s:\n${out}`)), 180_000);
      demo.stdout!.on('data', () => { if (stdout.includes('ready')) { clearTimeout(timer); resolve(); } });
      void exited.then((code) => { clearTimeout(timer); reject(new Error(`demo exited with ${code}:\n${out}`)); });
    });
    const urls = Object.fromEntries([...stdout.matchAll(/^ {2}(central|edge-a|edge-b|far-a1)\s+(http:\/\/127\.0\.0\.1:\d+)/gm)].map((m) => [m[1], m[2]]));
    assert.deepEqual(Object.keys(urls), ['central', 'edge-a', 'edge-b', 'far-a1']);

    // The dashboard's URL, and the credentials to log in to it with.
    const dashboard = /^Dashboard: (\S+)/m.exec(stdout)?.[1];
    assert.equal(dashboard, `${urls.central}/dashboard/`, stdout);
    const credentials = /^ {2}user admin, project admin, domain Default, password (\S+)$/m.exec(stdout);
    assert.ok(credentials !== null, stdout);
    const password = credentials[1];
    assert.ok(password.length >= 16, 'a generated password of at least 16 characters');
    const page = await fetch(dashboard);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<!doctype html>/i);
    const login = await fetch(`${urls.central}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password } } },
        scope: { project: { name: 'admin', domain: { name: 'Default' } } },
      } }),
    });
    assert.equal(login.status, 201, await login.clone().text());
    const token = login.headers.get('x-subject-token')!;

    // Keystone authentication at every site: no token, 401; the admin's token, the sample image.
    for (const [site, url] of Object.entries(urls)) {
      assert.equal((await fetch(`${url}/v2/images`)).status, 401, `${site} wants a token`);
      const list = await (await fetch(`${url}/v2/images?name=demo-image`, { headers: { 'x-auth-token': token } })).json() as { images: { status: string }[] };
      assert.equal(list.images[0]?.status, 'active', `the sample image is listed at ${site}`);
    }
    const status = await (await fetch(`${urls['far-a1']}/outpost/v1/status`)).json() as { role: string; parent: string };
    assert.equal(status.role, 'edge');
    assert.equal(status.parent, urls['edge-a']);

    // The OS_* variables as printed, for the openstack CLI.
    const exported = Object.fromEntries([...stdout.matchAll(/^ {2}export (.+)$/gm)].flatMap((m) => m[1].split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
    assert.deepEqual(exported, {
      OS_AUTH_URL: `${urls.central}/identity/v3`, OS_IDENTITY_API_VERSION: '3', OS_USERNAME: 'admin', OS_PASSWORD: password,
      OS_PROJECT_NAME: 'admin', OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default',
    });
    assert.match(stdout, /^ {2}openstack --os-region-name far-a1 image show demo-image$/m);
    if (cliSkip !== false) t.diagnostic(`not run with the openstack CLI: ${cliSkip}`);
    else {
      const cliEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OS_')));
      const { stdout: shown } = await run('openstack', ['--os-region-name', 'far-a1', 'image', 'show', 'demo-image', '-f', 'json'], {
        env: { ...cliEnv, ...exported }, timeout: 120_000,
      });
      assert.equal(JSON.parse(shown).status, 'active', 'the far edge answers the openstack CLI logged in with the printed variables');
    }

    demo.kill('SIGINT');
    assert.equal(await exited, 0);
    for (const url of Object.values(urls)) {
      await assert.rejects(fetch(`${url}/healthcheck`), 'every site stopped');
    }
  } finally {
    if (demo.exitCode === null && demo.signalCode === null) {
      demo.kill('SIGINT');
      const killer = setTimeout(() => demo.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
  }
});
