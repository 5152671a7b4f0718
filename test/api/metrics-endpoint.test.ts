// GET /metrics at a site with Keystone authentication: no token needed to scrape; requests counted by
// route pattern and status, token checks by result, downloads from the store by source; no image,
// project or user id in what it shows.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startSite, type RunningSite } from '../../src/api/site.ts';
import { resolveConfig } from '../../src/core/config.ts';
import { tempDir } from '../helpers/site.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { samples } from '../helpers/metrics.ts';

describe('GET /metrics', () => {
  let site: RunningSite;
  let data: string;
  let token: string;
  const scrape = async () => {
    const res = await fetch(`${site.url}/metrics`);
    assert.equal(res.status, 200);
    return { text: await res.text(), type: res.headers.get('content-type') };
  };

  before(async () => {
    data = await tempDir();
    site = await startSite(resolveConfig({ flags: { listen: '127.0.0.1:0', data, storage_sync: false, auth: 'keystone' } }), pino({ level: 'silent' }), { adminPassword: 'pw' });
    const res = await fetch(`${site.url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: 'pw' } } },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      } }),
    });
    assert.equal(res.status, 201);
    token = res.headers.get('x-subject-token')!;
  });
  after(async () => {
    await site?.close();
    if (data !== undefined) await rm(data, { recursive: true, force: true });
  });

  it('needs no token, counts requests by route pattern and status, token checks by result, store reads by source', async () => {
    const before = samples((await scrape()).text);
    const auth = { 'x-auth-token': token };
    assert.equal((await fetch(`${site.url}/v2/images`)).status, 401);
    assert.equal((await fetch(`${site.url}/v2/images`, { headers: { 'x-auth-token': 'not-a-token' } })).status, 401);
    const created = await fetch(`${site.url}/v2/images`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare', name: 'secret-name' }),
    });
    assert.equal(created.status, 201);
    const image = await created.json() as { id: string; owner: string };
    const bytes = bytesOf(300_000, 7);
    assert.equal((await fetch(`${site.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: bytes })).status, 204);
    const got = await fetch(`${site.url}/v2/images/${image.id}/file`, { headers: auth });
    assert.equal(got.status, 200);
    assert.equal((await got.arrayBuffer()).byteLength, bytes.length);
    const ranged = await fetch(`${site.url}/v2/images/${image.id}/file`, { headers: { ...auth, range: 'bytes=0-99' } });
    assert.equal(ranged.status, 206);
    await ranged.arrayBuffer();
    assert.equal((await fetch(`${site.url}/v2/images/${image.id}`, { headers: auth })).status, 200);

    const { text, type } = await scrape();
    assert.equal(type, 'text/plain; version=0.0.4; charset=utf-8');
    const after = samples(text);
    const grew = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0);
    assert.equal(grew('outpost_token_checks_total{result="missing"}'), 1);
    assert.equal(grew('outpost_token_checks_total{result="refused"}'), 1);
    assert.equal(grew('outpost_token_checks_total{result="valid"}'), 5);
    assert.equal(grew('outpost_http_requests_total{method="GET",route="/v2/images",status="401"}'), 2);
    assert.equal(grew('outpost_http_requests_total{method="POST",route="/v2/images",status="201"}'), 1);
    assert.equal(grew('outpost_http_requests_total{method="PUT",route="/v2/images/:id/file",status="204"}'), 1);
    assert.equal(grew('outpost_http_requests_total{method="GET",route="/v2/images/:id/file",status="200"}'), 1);
    assert.equal(grew('outpost_http_requests_total{method="GET",route="/v2/images/:id/file",status="206"}'), 1);
    assert.equal(grew('outpost_http_requests_total{method="GET",route="/v2/images/:id",status="200"}'), 1);
    assert.equal(grew('outpost_http_requests_total{method="GET",route="/metrics",status="200"}'), 1);
    assert.equal(grew('outpost_http_request_duration_seconds_count{method="GET",route="/v2/images/:id/file"}'), 2);
    assert.equal(grew('outpost_image_downloads_total{source="store"}'), 2);
    assert.equal(grew('outpost_image_served_bytes_total{source="store"}'), bytes.length + 100);
    // Central has no parent: no parent-link metrics (zeros would read as "cut off").
    assert.equal(after.has('outpost_parent_reachable'), false);
    assert.ok(after.has('outpost_cache_budget_bytes'));
    // Operational counts only: no image, project or user id, no image name, no token.
    for (const secret of [image.id, image.owner, 'secret-name', token]) assert.equal(text.includes(secret), false, `the exposition shows ${secret}`);
  });

  it('answers HEAD, and 405 to the methods it does not take', async () => {
    assert.equal((await fetch(`${site.url}/metrics`, { method: 'HEAD' })).status, 200);
    const res = await fetch(`${site.url}/metrics`, { method: 'POST' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET');
  });
});
