import assert from 'node:assert/strict';
import { chmod, chown, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stopProcess } from '../helpers/multi-site.ts';
import { serveUntilExit } from '../helpers/serve-exit.ts';
import { spawnServe, tempDir } from '../helpers/site.ts';

const mode = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);
const CATALOG_FILES = ['catalog.sqlite', 'catalog.sqlite-wal', 'catalog.sqlite-shm'];

describe('a data directory', () => {
  let work: string;
  before(async () => { work = await tempDir(); });
  after(async () => { await rm(work, { recursive: true, force: true }); });

  it('is made private to the service user (0700, its catalog files 0600) on a fresh start', async () => {
    const data = join(work, 'fresh');
    const site = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    try {
      assert.equal(await mode(data), '700');
      for (const f of [...CATALOG_FILES, 'outpost-site.json', 'outpost.lock', 'outpost.pid']) assert.equal(await mode(join(data, f)), '600', f);
      for (const d of ['stores', 'stores/central', 'staging']) assert.equal(await mode(join(data, d)), '700', d);
    } finally {
      await stopProcess(site);
    }
  });

  it('left open to others (0755, a 0644 catalog) is made private at start, and the log says so', async () => {
    const data = join(work, 'opened');
    const first = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    await stopProcess(first);
    await chmod(data, 0o755);
    await chmod(join(data, 'catalog.sqlite'), 0o644);
    const site = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    try {
      assert.equal(await mode(data), '700');
      for (const f of CATALOG_FILES) assert.equal(await mode(join(data, f)), '600', f);
      assert.match(site.output(), /"path":"[^"]*opened","was":"0755","now":"0700","msg":"the data directory was open to other users; made it private"/);
      assert.match(site.output(), /"path":"[^"]*catalog.sqlite","was":"0644","now":"0600","msg":"the file was open to other users; made it private"/);
    } finally {
      await stopProcess(site);
    }
  });

  it('owned by another user is refused with the reason and the fix', { skip: process.getuid?.() !== 0 && 'needs root to give a directory to another user' }, async () => {
    const data = join(work, 'theirs');
    await mkdir(data, { mode: 0o700 });
    await chown(data, 65534, 65534);
    const run = await serveUntilExit(['--listen', '127.0.0.1:0', '--data', data]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^outpost: the data directory \S+theirs is owned by uid 65534, not by the user outpost runs as \(uid 0\);.*chown/m);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });

  it('belongs to one site: an edge started on central\'s directory is refused, naming both and --data', async () => {
    const data = join(work, 'central');
    const central = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    try {
      assert.partialDeepStrictEqual(JSON.parse(await readFile(join(data, 'outpost-site.json'), 'utf8')), { site: 'central', role: 'central' });
      const edge = await serveUntilExit(['--listen', '127.0.0.1:0', '--data', data, '--role', 'edge', '--site', 'edge-1', '--parent', central.url]);
      assert.equal(edge.code, 1);
      assert.equal(edge.stderr.trim(), `outpost: the data directory ${data} belongs to the central site "central", not to this edge site "edge-1"; `
        + 'each site needs its own data directory: start this one with --data DIR (for example --data ./data-edge-1)');
      assert.equal(edge.stdout, '');
    } finally {
      await stopProcess(central);
    }
    // Stopped, it is still central's: another central site id is refused too.
    const other = await serveUntilExit(['--listen', '127.0.0.1:0', '--data', data, '--site', 'central-2']);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /belongs to the central site "central", not to this central site "central-2"/);
  });

  it('is held by one process: a second central is refused while the first runs, and a restart after kill -9 takes it over', async () => {
    const data = join(work, 'held');
    const first = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    try {
      const second = await serveUntilExit(['--listen', '127.0.0.1:0', '--data', data]);
      assert.equal(second.code, 1);
      assert.equal(second.stderr.trim(), `outpost: the data directory ${data} is in use by another outpost process (pid ${first.child.pid}); `
        + 'stop it first, or give this site its own data directory with --data DIR');
      assert.equal((await fetch(`${first.url}/versions`)).status, 200, 'the first site is untouched');
    } finally {
      await first.stop('SIGKILL');
    }
    assert.equal((await readFile(join(data, 'outpost.pid'), 'utf8')).trim(), String(first.child.pid), 'kill -9 left its pid behind');
    const restarted = await spawnServe(['--listen', '127.0.0.1:0', '--data', data]);
    try {
      assert.equal((await fetch(`${restarted.url}/versions`)).status, 200);
      assert.equal((await readFile(join(data, 'outpost.pid'), 'utf8')).trim(), String(restarted.child.pid));
    } finally {
      await stopProcess(restarted);
    }
  });
});
