import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../helpers/glance-client.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1024 ** 2;
const IMAGE_SIZE = 48 * MiB;

/**
 * kill -9 of a real `outpost serve` process while `PUT /v2/images/{id}/file` is half-way (the
 * client sends half the bytes and then waits), then a restart on the same data directory: the
 * image is `queued` again (it stayed `saving`, and a new upload got 409), the store holds no
 * partial file, and a new upload makes the image active with the new bytes.
 */
describe('upload crash recovery: kill -9 during PUT /file', { timeout: 120_000 }, () => {
  let work: string;
  let store: string;
  let args: string[];
  let server: ServeProcess | undefined;
  const bytes = randomBytes(IMAGE_SIZE);
  const env = { OUTPOST_STORAGE_SYNC: 'false' };

  const api = (path: string, init: RequestInit = {}) => fetch(`${server!.url}${path}`, init);
  const image = async (id: string) => {
    const res = await api(`/v2/images/${id}`);
    assert.equal(res.status, 200);
    return res.json() as Promise<Record<string, any>>;
  };
  /** Every file under the store's directory (partial ones under .incomplete/ included). */
  const filesInStore = async () => (await readdir(store, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(store.length + 1)).sort();
  const partialBytes = async () => {
    let total = 0;
    for (const f of await filesInStore()) if (f.startsWith('.incomplete/')) total += (await stat(join(store, f)).catch(() => ({ size: 0 }))).size;
    return total;
  };

  before(async () => {
    work = await tempDir('outpost-upload-crash-');
    store = join(work, 'store');
    args = ['--listen', '127.0.0.1:0', '--data', join(work, 'data'), '--store', `central=file:${store}`];
  });
  after(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('returns the image to queued at restart, with no partial file, and a new upload succeeds', async () => {
    server = await spawnServe(args, env);
    const created = await api('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'half-way', disk_format: 'raw', container_format: 'bare' }),
    });
    assert.equal(created.status, 201);
    const { id } = await created.json() as { id: string };

    // A client that sends half the image and then waits (until the server dies under it).
    const url = new URL(`/v2/images/${id}/file`, server.url);
    const upload = request(url, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(IMAGE_SIZE) } });
    const ended = new Promise((resolve) => {
      upload.on('error', resolve);
      upload.on('response', (res) => { res.resume(); res.on('end', resolve); res.on('error', resolve); });
    });
    upload.write(bytes.subarray(0, IMAGE_SIZE / 2));
    for (const deadline = Date.now() + 30_000; ; await sleep(20)) {
      if ((await image(id)).status === 'saving' && (await partialBytes()) >= 16 * MiB) break;
      assert.ok(Date.now() < deadline, 'the upload did not get half-way within 30 s');
    }
    server.child.kill('SIGKILL');
    await server.stop();
    assert.equal(server.child.signalCode, 'SIGKILL');
    await ended;
    assert.ok((await partialBytes()) > 0, 'the dead process left a partial file');

    server = await spawnServe(args, env);
    const recovered = await image(id);
    assert.equal(recovered.status, 'queued', 'the interrupted upload no longer holds the image in saving');
    assert.equal(recovered.size, null);
    assert.equal(recovered.checksum, null);
    assert.deepEqual(await filesInStore(), [], 'no partial (or committed) file of the interrupted upload is left');
    assert.match(server.output(), new RegExp(`image ${id} was left saving by a stop`));

    const again = await api(`/v2/images/${id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes,
    });
    assert.equal(again.status, 204, await again.text());
    const active = await image(id);
    assert.equal(active.status, 'active');
    assert.equal(active.size, IMAGE_SIZE);
    assert.equal(active.checksum, createHash('md5').update(bytes).digest('hex'));
    assert.equal(active.os_hash_value, createHash('sha512').update(bytes).digest('hex'));
    assert.deepEqual(await filesInStore(), [id]);

    const download = await api(`/v2/images/${id}/file`);
    assert.equal(download.status, 200);
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(bytes), 'the download returns the new bytes');
  });
});
