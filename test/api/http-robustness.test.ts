import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createImage } from '../helpers/glance-client.ts';
import { exchange, statusLines } from '../helpers/raw-http.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

describe('HTTP robustness: one answer per request', () => {
  let site: TestSite;
  let queued: string;
  before(async () => {
    site = await startTestSite();
    queued = (await createImage(site, { name: 'q', disk_format: 'raw', container_format: 'bare' })).id;
  });
  after(async () => {
    await site?.close();
  });

  const partial = (head: string) => `${head}\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"name":`;
  const cases: [string, () => string, number, boolean][] = [
    ['a GET answered before its body came', () => partial('GET /v2/images HTTP/1.1'), 200, true],
    ['a PATCH of the wrong media type', () => partial(`PATCH /v2/images/${queued} HTTP/1.1\r\nContent-Type: text/plain`), 415, true],
    ['an upload to an unknown image', () => partial('PUT /v2/images/6b1a8d9e-5f3c-4b7a-9e2d-1c0f8a7b6d5e/file HTTP/1.1\r\nContent-Type: application/octet-stream'), 404, true],
    ['an upload whose body never completes', () => partial(`PUT /v2/images/${queued}/file HTTP/1.1\r\nContent-Type: application/octet-stream`), 400, false],
    ['a create whose JSON never completes', () => partial('POST /v2/images HTTP/1.1\r\nContent-Type: application/json'), 400, false],
  ];
  for (const [what, request, status, answersFirst] of cases) {
    it(`a body shorter than its Content-Length, then a half-close: exactly one answer (${what})`, async () => {
      const lines = statusLines(await exchange(site.url, request(), answersFirst));
      assert.equal(lines.length, 1, `expected one response, got ${JSON.stringify(lines)}`);
      assert.match(lines[0], new RegExp(`^HTTP/1\\.1 ${status} `));
    });
  }

  it('a request line Node cannot parse still gets one Glance-shaped 400', async () => {
    const received = await exchange(site.url, 'GET /v2/images HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n');
    assert.deepEqual(statusLines(received), ['HTTP/1.1 400 Bad Request']);
    assert.match(received, /x-openstack-request-id: req-/);
  });
});
