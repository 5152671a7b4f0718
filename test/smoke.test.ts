import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestSite, type TestSite } from './helpers/site.ts';

describe('a site on defaults', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  it('answers GET / with the version list (300) and GET /versions with 200', async () => {
    const root = await site.request('/');
    assert.equal(root.status, 300);
    const body = await root.json() as { versions: { id: string; status: string }[] };
    assert.ok(body.versions.some((v) => v.status === 'CURRENT' && v.id.startsWith('v2.')));
    assert.equal((await site.request('/versions')).status, 200);
  });

  it('round-trips an image: create, upload, download', async () => {
    const created = await site.request('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'smoke', disk_format: 'raw', container_format: 'bare' }),
    });
    assert.equal(created.status, 201);
    const { id } = await created.json() as { id: string };
    const bytes = Buffer.from('hello outpost');
    const put = await site.request(`/v2/images/${id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes,
    });
    assert.equal(put.status, 204);
    const got = await site.request(`/v2/images/${id}/file`);
    assert.equal(got.status, 200);
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), bytes);
  });
});
