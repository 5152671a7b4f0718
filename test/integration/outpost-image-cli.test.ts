import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);

/** `outpost image import|copy` against a real three-store site. */
describe('outpost image import and copy', { timeout: 120_000 }, () => {
  let server: ServeProcess;
  let work: string;
  const bytes = randomBytes(5 * 1024 * 1024 + 3);
  const outpost = (...args: string[]) => run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), ...args, '--url', server.url]);
  const api = async (path: string, init?: RequestInit) => fetch(`${server.url}${path}`, init);

  before(async () => {
    work = await tempDir('outpost-image-cli-');
    server = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'data'),
      '--store', `a=file:${join(work, 'a')}`, '--store', `b=file:${join(work, 'b')}`, '--store', `c=file:${join(work, 'c')}`]);
    await writeFile(join(work, 'disk.raw'), bytes);
  });
  after(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('imports a file with glance-direct into two stores, then copies it to the third', async () => {
    const created = await (await api('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'cli-disk', disk_format: 'raw', container_format: 'bare' }),
    })).json() as { id: string };

    const imported = await outpost('image', 'import', 'cli-disk', '--method', 'glance-direct', '--file', join(work, 'disk.raw'), '--stores', 'a,b');
    assert.match(imported.stdout, new RegExp(`image ${created.id} \\(cli-disk\\) is active in stores: a,b\\n`));

    const copied = await outpost('image', 'copy', created.id, '--stores', 'c');
    assert.match(copied.stdout, /is active in stores: a,b,c\n/);

    const image = await (await api(`/v2/images/${created.id}`)).json() as Record<string, unknown>;
    assert.equal(image.os_hash_value, createHash('sha512').update(bytes).digest('hex'));
    assert.equal(image.os_glance_importing_to_stores, '');
    assert.equal(image.os_glance_failed_import, '');
    const tasks = await (await api(`/v2/images/${created.id}/tasks`)).json() as { tasks: { status: string }[] };
    assert.deepEqual(tasks.tasks.map((t) => t.status), ['success', 'success']);
  });

  it('explains a refused request and exits non-zero', async () => {
    await assert.rejects(outpost('image', 'copy', 'cli-disk', '--stores', 'a'), (e: { code: number; stderr: string }) => {
      assert.equal(e.code, 1);
      assert.match(e.stderr, /400 Bad Request: Image is already present at store a/);
      return true;
    });
    await assert.rejects(outpost('image', 'copy', 'no-such-image', '--stores', 'c'), /no image named or with id "no-such-image"/);
  });
});
