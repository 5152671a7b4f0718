import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, it } from 'node:test';
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
  for (let i = 0; i < 100 && saw !== 'saving'; i++) {
    await sleep(20);
    saw = ((await (await site.request(`/v2/images/${id}`)).json()) as { status: string }).status;
  }
  assert.equal(saw, 'saving', 'the upload reached the saving state');
  req.destroy();

  let image: { status: string; size: unknown; checksum: unknown } = { status: '', size: 0, checksum: 0 };
  for (let i = 0; i < 100; i++) {
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
