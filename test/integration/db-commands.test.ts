import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';
import { stopProcess } from '../helpers/multi-site.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);

/** `outpost ARGS`: its exit code and output (a failing command does not throw). */
async function outpost(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** check says behind (exit 1) → migrate applies every migration → check says up to date (exit 0); migrate again applies nothing. */
async function migrateAndCheck(where: string[], shown: RegExp): Promise<void> {
  const behind = await outpost(['db', 'check', ...where]);
  assert.equal(behind.code, 1, behind.stderr);
  assert.match(behind.stdout, shown);
  assert.match(behind.stdout, /0 migrations applied, \d+ pending/);
  assert.match(behind.stderr, /needs .*0001-images.*run `outpost db migrate`/);
  const migrated = await outpost(['db', 'migrate', ...where]);
  assert.equal(migrated.code, 0, migrated.stderr);
  assert.match(migrated.stdout, /applied 0001-images, .*0015-node-work/);
  const fine = await outpost(['db', 'check', ...where]);
  assert.equal(fine.code, 0, fine.stderr);
  assert.match(fine.stdout, /\d+ migrations applied, 0 pending/);
  assert.match(fine.stdout, /change log at seq 0/);
  assert.match((await outpost(['db', 'migrate', ...where])).stdout, /up to date/);
}

describe('outpost db migrate | check', () => {
  it('on the SQLite catalog of a data directory', async () => {
    const dir = await tempDir('outpost-db-');
    try {
      await migrateAndCheck(['--data', join(dir, 'data')], /catalog\.sqlite \(sqlite\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on PostgreSQL, printing the URL without its password; an unreachable one exits 1 with why', { skip: postgresSkip }, async () => {
    const database = await createTestDatabase();
    try {
      await migrateAndCheck(['--database-url', database.url], /postgres:\/\/outpost:\*\*\*@127\.0\.0\.1:\d+\/outpost_test_\w+ \(postgres\)/);
    } finally {
      await database.drop();
    }
    const down = await outpost(['db', 'check', '--database-url', 'postgres://outpost:secret@127.0.0.1:1/none']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot open the catalog at postgres:\/\/outpost:\*\*\*@127\.0\.0\.1:1\/none: .*ECONNREFUSED/);
    assert.doesNotMatch(down.stderr, /secret/);
  });
});

describe('outpost db load-metadefs', () => {
  const namespace = (name: string, extra: Record<string, unknown> = {}) => ({
    namespace: name, display_name: `${name} options`, visibility: 'public', protected: true, owner: 'admin',
    resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'lab_' }],
    properties: { boot_menu: { title: 'Boot Menu', type: 'string', enum: ['true', 'false'] } },
    objects: [{ name: 'Watchdog', properties: { action: { title: 'Action', type: 'string' } } }],
    tags: [{ name: 'lab' }],
    ...extra,
  });
  const write = async (dir: string, file: string, body: unknown) => writeFile(join(dir, file), typeof body === 'string' ? body : JSON.stringify(body));

  it('loads a directory of namespace files into a stopped site\'s SQLite catalog: skip, --merge, --prefer-new, --overwrite; a bad file is reported and left out', async () => {
    const dir = await tempDir('outpost-metadefs-');
    const files = join(dir, 'metadefs');
    await mkdir(files);
    let site: ServeProcess | undefined;
    try {
      const data = ['--data', join(dir, 'data')];
      assert.equal((await outpost(['db', 'migrate', ...data])).code, 0);
      await write(files, 'a.json', namespace('Lab::A'));
      await write(files, 'b.json', namespace('Lab::B'));
      await write(files, 'broken.json', '{ not json');
      await write(files, 'notes.txt', 'not a namespace');
      await write(files, 'nameless.json', { display_name: 'no namespace' });
      const first = await outpost(['db', 'load-metadefs', ...data, '--path', files]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /Lab::A: created\nLab::B: created/);
      assert.match(first.stdout, /broken\.json: skipped: /);
      assert.match(first.stdout, /nameless\.json: skipped: Provided object does not match schema 'namespace': 'namespace' is a required property/);
      assert.match(first.stdout, /2 of 2 namespaces loaded/);

      // Again: existing namespaces are skipped; --merge adds what they lack; --prefer-new replaces what differs.
      await write(files, 'a.json', namespace('Lab::A', {
        display_name: 'renamed', tags: [{ name: 'lab' }, { name: 'new' }],
        properties: { boot_menu: { title: 'Boot menu (new)', type: 'string' } },
      }));
      assert.match((await outpost(['db', 'load-metadefs', ...data, '--path', join(files, 'a.json')])).stdout, /Lab::A: skipped/);
      assert.match((await outpost(['db', 'load-metadefs', ...data, '--path', join(files, 'a.json'), '--merge'])).stdout, /Lab::A: merged/);
      await write(files, 'b.json', namespace('Lab::B', { tags: [{ name: 'only' }], objects: [] }));
      assert.match((await outpost(['db', 'load-metadefs', ...data, '--path', join(files, 'b.json'), '--overwrite'])).stdout, /Lab::B: overwritten/);
      const none = await outpost(['db', 'load-metadefs', ...data, '--path', join(files, 'broken.json')]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no namespace file could be loaded/);

      site = await spawnServe(['--listen', '127.0.0.1:0', ...data]);
      const get = async (path: string) => (await fetch(`${site!.url}${path}`, { headers: { accept: 'application/json' } })).json() as Promise<any>;
      const a = await get('/v2/metadefs/namespaces/Lab::A');
      assert.equal(a.display_name, 'Lab::A options', '--merge keeps what the namespace had');
      assert.deepEqual(a.tags, [{ name: 'lab' }, { name: 'new' }]);
      assert.equal(a.properties.boot_menu.title, 'Boot Menu');
      assert.equal(a.owner, 'admin');
      assert.equal(a.protected, true);
      const b = await get('/v2/metadefs/namespaces/Lab::B');
      assert.deepEqual(b.tags, [{ name: 'only' }]);
      assert.equal(b.objects, undefined);
      const types = await get('/v2/metadefs/resource_types');
      assert.deepEqual(types.resource_types.map((t: any) => t.name), ['OS::Glance::Image']);
      await stopProcess(site);
      site = undefined;
      const newer = await outpost(['db', 'load-metadefs', ...data, '--path', join(files, 'a.json'), '--merge', '--prefer-new']);
      assert.match(newer.stdout, /Lab::A: merged/);
      site = await spawnServe(['--listen', '127.0.0.1:0', ...data]);
      const a2 = await get('/v2/metadefs/namespaces/Lab::A');
      assert.equal(a2.display_name, 'renamed');
      assert.equal(a2.properties.boot_menu.title, 'Boot menu (new)');
    } finally {
      if (site !== undefined) await stopProcess(site);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on PostgreSQL, while a node serves the catalog: the namespaces are served at once', { skip: postgresSkip }, async () => {
    const database = await createTestDatabase();
    const dir = await tempDir('outpost-metadefs-pg-');
    let site: ServeProcess | undefined;
    try {
      site = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(dir, 'data'), '--database-url', database.url]);
      await write(dir, 'c.json', namespace('Lab::C'));
      const loaded = await outpost(['db', 'load-metadefs', '--database-url', database.url, '--path', join(dir, 'c.json')]);
      assert.equal(loaded.code, 0, loaded.stderr);
      const res = await fetch(`${site.url}/v2/metadefs/namespaces/Lab::C`, { headers: { accept: 'application/json' } });
      assert.equal(res.status, 200);
      assert.deepEqual(((await res.json()) as any).objects.map((o: any) => o.name), ['Watchdog']);
    } finally {
      if (site !== undefined) await stopProcess(site);
      await rm(dir, { recursive: true, force: true });
      await database.drop();
    }
  });
});
