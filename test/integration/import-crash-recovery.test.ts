import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, rm, stat, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../helpers/glance-client.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const IMAGE_SIZE = GiB;

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

const free = await freeBytes(tmpdir());
const skip = free < 4 * GiB ? `needs 4 GiB free in the temp directory (has ${(free / GiB).toFixed(1)} GiB)` : false;

/**
 * kill -9 of a real `outpost serve` process while copy-image moves a 1 GiB image between two
 * stores, then a restart on the same data directory: the interrupted task is resumed and brings a
 * verified copy (one final file, no partial one), the image's lock is released, and the copy in
 * the target store alone serves the image's bytes.
 */
describe('import crash recovery: kill -9 during copy-image', { skip, timeout: 240_000 }, () => {
  let work: string;
  let server: ServeProcess | undefined;
  let args: string[];
  let imageFile: string;
  let expectedSha512: string;
  let storeB: string;

  const env = { OUTPOST_STORAGE_SYNC: 'false' };
  const api = (path: string, init: RequestInit = {}) => fetch(`${server!.url}${path}`, init);
  const json = async (path: string, init: RequestInit = {}) => {
    const res = await api(path, init);
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) };
  };

  before(async () => {
    work = await tempDir('outpost-crash-');
    storeB = join(work, 'b');
    args = ['--listen', '127.0.0.1:0', '--data', join(work, 'data'), '--store', `a=file:${join(work, 'a')}`, '--store', `b=file:${storeB}`];
    // 1 GiB quickly: one random MiB written 1024 times (each copy is still hashed and compared).
    imageFile = join(work, 'disk.raw');
    const block = randomBytes(MiB);
    const hash = createHash('sha512');
    const file = await open(imageFile, 'w');
    try {
      for (let i = 0; i < IMAGE_SIZE / MiB; i++) {
        await file.write(block);
        hash.update(block);
      }
    } finally {
      await file.close();
    }
    expectedSha512 = hash.digest('hex');
    await mkdir(join(work, 'data'), { recursive: true });
  });
  after(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  /** Files of the image in store b: the committed one and any partial one under .incomplete. */
  async function inStoreB(id: string): Promise<string[]> {
    const found: string[] = [];
    if (existsSync(join(storeB, id))) found.push(id);
    try {
      for (const f of await readdir(join(storeB, '.incomplete'))) if (f.startsWith(id)) found.push(`.incomplete/${f}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return found;
  }

  async function partialBytes(id: string): Promise<number> {
    let total = 0;
    for (const f of await inStoreB(id)) {
      if (f.startsWith('.incomplete/')) total += (await stat(join(storeB, f)).catch(() => ({ size: 0 }))).size;
    }
    return total;
  }

  async function taskOf(id: string, requestId: string): Promise<Record<string, any> | undefined> {
    const res = await json(`/v2/images/${id}/tasks`);
    assert.equal(res.status, 200);
    return (res.body.tasks as Record<string, any>[]).find((t) => t.request_id === requestId);
  }

  async function sha512OfDownload(id: string): Promise<{ sha512: string; size: number }> {
    const res = await api(`/v2/images/${id}/file`);
    assert.equal(res.status, 200);
    const hash = createHash('sha512');
    let size = 0;
    for await (const chunk of res.body!) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { sha512: hash.digest('hex'), size };
  }

  it('resumes the interrupted task at restart and finishes the copy', async () => {
    server = await spawnServe(args, env);
    const created = await json('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'one-gib', disk_format: 'raw', container_format: 'bare' }),
    });
    assert.equal(created.status, 201);
    const id: string = created.body.id;

    const uploaded = await api(`/v2/images/${id}/file`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'x-openstack-image-size': String(IMAGE_SIZE) },
      body: Readable.toWeb(createReadStream(imageFile, { highWaterMark: MiB })) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    assert.equal(uploaded.status, 204, await uploaded.text());
    const active = (await json(`/v2/images/${id}`)).body;
    assert.equal(active.status, 'active');
    assert.equal(active.size, IMAGE_SIZE);
    assert.equal(active.os_hash_value, expectedSha512);
    assert.equal(active.stores, 'a');

    // Copy to b, and kill the server as soon as the copy is under way.
    const started = await api(`/v2/images/${id}/import`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: { name: 'copy-image' }, stores: ['b'] }),
    });
    assert.equal(started.status, 202);
    const requestId = started.headers.get('x-openstack-request-id')!;
    let progress = '';
    for (let i = 0; ; i++) {
      if ((await partialBytes(id)) > 0) break;
      const task = await taskOf(id, requestId);
      if (task !== undefined && /^Copied [1-9]/.test(task.message)) {
        progress = task.message;
        break;
      }
      assert.ok(i < 3000, 'the copy did not start within 30 s');
      await sleep(10);
    }
    const during = (await json(`/v2/images/${id}`)).body;
    assert.equal(during.stores, 'a', `the copy must still be running when the server is killed (${progress})`);
    assert.equal(during.os_glance_importing_to_stores, 'b');
    server.child.kill('SIGKILL');
    await new Promise((resolve) => (server!.child.exitCode !== null || server!.child.signalCode !== null ? resolve(null) : server!.child.once('exit', resolve)));
    assert.equal(server.child.signalCode, 'SIGKILL');

    // Restart the same command on the same data directory: the task no node runs any more is
    // resumed (the process that claimed it is gone), and finishes the copy.
    server = await spawnServe(args, env);
    let task: Record<string, any> | undefined;
    for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(200)) {
      task = await taskOf(id, requestId);
      if (task?.status === 'success' || task?.status === 'failure') break;
    }
    assert.equal(task?.status, 'success', `the interrupted task must be resumed and succeed: ${JSON.stringify(task)}`);
    assert.deepEqual(task!.result, { image_id: id });

    const copied = (await json(`/v2/images/${id}`)).body;
    assert.equal(copied.status, 'active');
    assert.equal(copied.stores, 'a,b');
    assert.equal(copied.os_glance_failed_import, '');
    assert.equal(copied.os_glance_importing_to_stores, '');
    assert.equal(Object.hasOwn(copied, 'os_glance_import_task'), false, 'the lock is released');
    assert.deepEqual(await inStoreB(id), [id], 'one final file in store b, no partial one');
    assert.equal((await stat(join(storeB, id))).size, IMAGE_SIZE);

    // Download from b only: remove the copy in a first.
    const removed = await api(`/v2/stores/a/${id}`, { method: 'DELETE' });
    assert.equal(removed.status, 204);
    assert.equal((await json(`/v2/images/${id}`)).body.stores, 'b');
    assert.deepEqual(await sha512OfDownload(id), { sha512: expectedSha512, size: IMAGE_SIZE });

    // The big files go with the image.
    assert.equal((await api(`/v2/images/${id}`, { method: 'DELETE' })).status, 204);
    assert.deepEqual(await inStoreB(id), []);
    await rm(imageFile, { force: true });
  });
});
