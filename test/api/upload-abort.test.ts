import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
import { exchange, statusLines } from '../helpers/raw-http.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

let site: TestSite;
before(async () => { site = await startTestSite(); });
after(async () => { await site.close(); });

it('an upload cut off half-way returns the image to queued and leaves nothing in the store', async () => {
  const created = await site.request('/v2/images', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'cut', disk_format: 'raw', container_format: 'bare' }),
  });
  const { id } = await created.json() as { id: string };

  // Declare 64 MiB, send 4 MiB, then drop the connection.
  const req = request(`${site.url}/v2/images/${id}/file`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(64 << 20) },
  });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(4 << 20, 1));
  let saw = '';
  for (const deadline = Date.now() + 60_000; saw !== 'saving' && Date.now() < deadline;) {
    await sleep(20);
    saw = ((await (await site.request(`/v2/images/${id}`)).json()) as { status: string }).status;
  }
  assert.equal(saw, 'saving', 'the upload reached the saving state');
  req.destroy();

  let image: { status: string; size: unknown; checksum: unknown } = { status: '', size: 0, checksum: 0 };
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    image = await (await site.request(`/v2/images/${id}`)).json() as typeof image;
    if (image.status === 'queued') break;
    await sleep(20);
  }
  assert.equal(image.status, 'queued');
  assert.equal(image.size, null);
  assert.equal(image.checksum, null);
  const storeDir = join(site.dataDir, 'stores', 'central');
  assert.deepEqual((await readdir(storeDir)).filter((f) => f !== '.incomplete'), []);
  assert.deepEqual(await readdir(join(storeDir, '.incomplete')), []);
  assert.equal((await site.request(`/v2/images/${id}/file`)).status, 204);

  // The image can still be uploaded afterwards.
  const put = await site.request(`/v2/images/${id}/file`, {
    method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('whole'),
  });
  assert.equal(put.status, 204);
  assert.equal(await (await site.request(`/v2/images/${id}/file`)).text(), 'whole');
});

it('an upload whose body ends short of its Content-Length (the client half-closes) returns the image to queued', async () => {
  const created = await site.request('/v2/images', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'short', disk_format: 'raw', container_format: 'bare' }),
  });
  const { id } = await created.json() as { id: string };
  // 1 MiB declared, 64 KiB sent, then the client's side of the connection is closed (FIN).
  const answer = await exchange(site.url, `PUT /v2/images/${id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n`
    + `Content-Length: ${1 << 20}\r\n\r\n${'x'.repeat(64 << 10)}`);
  assert.equal(statusLines(answer).length, 1, answer);
  let image = { status: '', size: 0 as unknown };
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(20)) {
    image = await (await site.request(`/v2/images/${id}`)).json() as typeof image;
    if (image.status === 'queued') break;
  }
  assert.equal(image.status, 'queued', 'the image is ready for the upload to be retried');
  assert.equal(image.size, null);
  const storeDir = join(site.dataDir, 'stores', 'central');
  assert.deepEqual(await readdir(join(storeDir, '.incomplete')), []);
  const put = await site.request(`/v2/images/${id}/file`, {
    method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('retried'),
  });
  assert.equal(put.status, 204);
});

it('an upload refused part-way (past image_size_cap, its length not declared) is answered 413, not reset', async () => {
  const capped = await startTestSite({ image_size_cap: 8 << 20 });
  try {
    const created = await capped.request('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'too-large', disk_format: 'raw', container_format: 'bare' }),
    });
    const { id } = await created.json() as { id: string };
    // 24 MiB in 1 MiB pieces, chunked: the cap is found past 8 MiB, while the client still sends.
    let sent = 0;
    const put = await capped.request(`/v2/images/${id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', accept: 'application/json' }, duplex: 'half',
      body: new ReadableStream({ pull(c) { if (sent++ < 24) c.enqueue(Buffer.alloc(1 << 20, 7)); else c.close(); } }),
    } as RequestInit);
    assert.equal(put.status, 413, await put.clone().text());
    assert.match(((await put.json()) as { message: string }).message, /exceeds the storage quota/);
    assert.equal(((await (await capped.request(`/v2/images/${id}`)).json()) as { status: string }).status, 'queued');
  } finally {
    await capped.close();
  }
});
