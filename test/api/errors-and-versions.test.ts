import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { call, createImage, expectStatus, type ImageJson } from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const JSON_TYPE = /^application\/json(; ?charset=utf-8)?$/i;
const MISSING = '00000000-0000-0000-0000-000000000000';

// Every site keeps an image cache, so the cache API's versions (2.14, 2.16, 2.18) are listed, as Glance lists them with
// image_cache_dir set; 2.17 is the locations API.
const EXPECTED_VERSIONS = ['v2.18', 'v2.17', 'v2.16', 'v2.15', 'v2.14', 'v2.13', 'v2.12', 'v2.11', 'v2.10', 'v2.9', 'v2.8', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0'];

interface VersionsDoc {
  versions: { id: string; status: string; links: { rel: string; href: string }[] }[];
}

/** A raw HTTP GET without any Accept header (fetch always sends one). */
function getWithoutAccept(site: TestSite, path: string): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${site.url}${path}`, { method: 'GET' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('versions, discovery and error bodies', () => {
  let site: TestSite;
  before(async () => { site = await startTestSite(); });
  after(async () => { await site.close(); });

  function assertVersionsDoc(body: VersionsDoc): void {
    assert.deepEqual(body.versions.map((v) => v.id), EXPECTED_VERSIONS);
    assert.deepEqual(body.versions.filter((v) => v.status === 'CURRENT').map((v) => v.id), ['v2.18']);
    for (const v of body.versions) {
      assert.ok(v.status === 'CURRENT' || v.status === 'SUPPORTED', v.status);
      assert.deepEqual(v.links, [{ rel: 'self', href: `${site.url}/v2/` }]);
    }
  }

  it('GET / answers 300 Multiple Choices with the version list', async () => {
    const res = await call<VersionsDoc>(site, 'GET', '/');
    expectStatus(res, 300);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assertVersionsDoc(res.body);
  });

  it('GET /versions answers 200 with the same list', async () => {
    const res = await call<VersionsDoc>(site, 'GET', '/versions');
    expectStatus(res, 200);
    assertVersionsDoc(res.body);
  });

  for (const path of ['/v3/x', '/v1/images', '/v2.99/images', '/anything']) {
    it(`an unknown version path (${path}) answers 300 with the version list`, async () => {
      const res = await call<VersionsDoc>(site, 'GET', path);
      expectStatus(res, 300);
      assertVersionsDoc(res.body);
    });
  }

  it('GET /healthcheck answers 200', async () => {
    const res = await call(site, 'GET', '/healthcheck');
    expectStatus(res, 200);
    assert.equal(res.text, 'OK');
  });

  it('/v2.5/images is the same API as /v2/images', async () => {
    const created = await call<ImageJson>(site, 'POST', '/v2.5/images', { json: { name: 'via-v2.5' } });
    expectStatus(created, 201);
    assert.equal(created.body.self, `/v2/images/${created.body.id}`);
    const viaV2 = await call<ImageJson>(site, 'GET', `/v2/images/${created.body.id}`);
    expectStatus(viaV2, 200);
    assert.equal(viaV2.body.name, 'via-v2.5');
    const viaV21 = await call<ImageJson>(site, 'GET', `/v2.1/images/${created.body.id}`);
    expectStatus(viaV21, 200);
    assert.deepEqual(viaV21.body, viaV2.body);
    const list = await call<{ images: ImageJson[] }>(site, 'GET', '/v2.5/images');
    expectStatus(list, 200);
    assert.ok(list.body.images.some((i) => i.id === created.body.id));
  });

  it('GET /v2/schemas/{name} answers the named JSON schema, unknown schemas 404', async () => {
    for (const name of ['image', 'images', 'member', 'members']) {
      const res = await call<{ name: string }>(site, 'GET', `/v2/schemas/${name}`);
      expectStatus(res, 200);
      assert.equal(res.body.name, name);
    }
    expectStatus(await call(site, 'GET', '/v2/schemas/nope'), 404);
  });

  describe('error bodies are negotiated on Accept as webob does', () => {
    it('Accept: application/json gives the flat JSON body of samples/error-404-json.http', async () => {
      const res = await call(site, 'GET', `/v2/images/${MISSING}`, { headers: { accept: 'application/json' } });
      expectStatus(res, 404);
      // Glance sends exactly application/json; tempest also accepts a utf-8 charset.
      assert.match(res.headers.get('content-type') ?? '', JSON_TYPE);
      assert.deepEqual(res.body, {
        message: `No image found with ID ${MISSING}<br /><br />\n\n\n`,
        code: '404 Not Found',
        title: 'Not Found',
      });
    });

    it('Accept: */* gives the HTML page of samples/error-404-html.http', async () => {
      const res = await call(site, 'GET', `/v2/images/${MISSING}`, { headers: { accept: '*/*' } });
      expectStatus(res, 404);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=UTF-8');
      assert.equal(res.text, [
        '<html>',
        ' <head>',
        '  <title>404 Not Found</title>',
        ' </head>',
        ' <body>',
        '  <h1>404 Not Found</h1>',
        `  No image found with ID ${MISSING}<br /><br />`,
        '',
        '',
        '',
        ' </body>',
        '</html>',
      ].join('\n'));
    });

    it('Accept: text/html gives HTML too, and a JSON preference beats it only when stated', async () => {
      const html = await call(site, 'GET', `/v2/images/${MISSING}`, { headers: { accept: 'text/html' } });
      assert.match(html.headers.get('content-type') ?? '', /^text\/html/);
      const json = await call(site, 'GET', `/v2/images/${MISSING}`, { headers: { accept: 'application/json, text/html;q=0.5' } });
      assert.match(json.headers.get('content-type') ?? '', JSON_TYPE);
    });

    it('no Accept header gives text/plain', async () => {
      const res = await getWithoutAccept(site, `/v2/images/${MISSING}`);
      assert.equal(res.status, 404);
      assert.match(res.type, /^text\/plain/);
      assert.ok(res.text.startsWith(`404 Not Found\n\nNo image found with ID ${MISSING}`), res.text);
    });

    it('400, 403, 409 and 415 bodies carry their own code and title', async () => {
      const json = { accept: 'application/json' };
      const bad = await call(site, 'GET', '/v2/images?limit=abc', { headers: json });
      expectStatus(bad, 400);
      assert.deepEqual(bad.body, { message: 'limit param must be an integer<br /><br />\n\n\n', code: '400 Bad Request', title: 'Bad Request' });

      const forbidden = await call<{ code: string; title: string; message: string }>(site, 'POST', '/v2/images', { json: { checksum: 'x' }, headers: json });
      expectStatus(forbidden, 403);
      assert.equal(forbidden.body.code, '403 Forbidden');
      assert.equal(forbidden.body.title, 'Forbidden');
      assert.equal(forbidden.body.message, "Attribute 'checksum' is read-only.<br /><br />\n\n\n");

      const image = await createImage(site, { name: 'for-409' });
      const dup = await call<{ code: string; title: string }>(site, 'POST', '/v2/images', { json: { id: image.id }, headers: json });
      expectStatus(dup, 409);
      assert.equal(dup.body.code, '409 Conflict');
      assert.equal(dup.body.title, 'Conflict');

      const unsupported = await call<{ code: string; title: string; message: string }>(site, 'PATCH', `/v2/images/${image.id}`, {
        body: '[]', headers: { ...json, 'content-type': 'application/json' },
      });
      expectStatus(unsupported, 415);
      assert.equal(unsupported.body.code, '415 Unsupported Media Type');
      assert.equal(unsupported.body.title, 'Unsupported Media Type');
      assert.match(unsupported.body.message, /^The request media type application\/json is not supported by this server\./);
    });
  });

  describe('status codes of the HTTP layer', () => {
    it('every response carries x-openstack-request-id, and an incoming one is honoured', async () => {
      const plain = await call(site, 'GET', '/v2/images');
      assert.match(plain.headers.get('x-openstack-request-id') ?? '', /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const missing = await call(site, 'GET', `/v2/images/${MISSING}`);
      assert.match(missing.headers.get('x-openstack-request-id') ?? '', /^req-/);
      const given = await call(site, 'GET', '/v2/images', { headers: { 'x-openstack-request-id': 'req-mine-123' } });
      assert.equal(given.headers.get('x-openstack-request-id'), 'req-mine-123');
    });

    it('GET /v2/images/ (empty id) answers 404, and so does DELETE', async () => {
      expectStatus(await call(site, 'GET', '/v2/images/'), 404);
      expectStatus(await call(site, 'DELETE', '/v2/images/'), 404);
    });

    it('an unknown path under /v2 answers 404', async () => {
      expectStatus(await call(site, 'GET', '/v2/nothing-here'), 404);
    });

    it('a wrong method answers 405 with an Allow header listing the methods of the path', async () => {
      const image = await createImage(site, { name: 'for-405' });
      const cases: [string, string, string[]][] = [
        ['PUT', '/v2/images', ['GET', 'POST']],
        ['DELETE', '/v2/images', ['GET', 'POST']],
        ['POST', `/v2/images/${image.id}`, ['GET', 'PATCH', 'DELETE']],
        ['PUT', `/v2/images/${image.id}`, ['GET', 'PATCH', 'DELETE']],
        ['POST', `/v2/images/${image.id}/file`, ['GET', 'PUT']],
        ['GET', `/v2/images/${image.id}/tags/blue`, ['PUT', 'DELETE']],
        ['GET', `/v2/images/${image.id}/actions/deactivate`, ['POST']],
      ];
      for (const [method, path, allowed] of cases) {
        const res = await call(site, method, path, { headers: { accept: 'application/json' } });
        assert.equal(res.status, 405, `${method} ${path}: ${res.text}`);
        const allow = (res.headers.get('allow') ?? '').split(',').map((m) => m.trim()).filter(Boolean);
        assert.deepEqual(allow.sort(), [...allowed].sort(), `${method} ${path}`);
        assert.equal((res.body as { code: string }).code, '405 Method Not Allowed');
      }
    });

    it('malformed JSON answers 400 "Malformed JSON in request body."', async () => {
      const res = await call<{ message: string }>(site, 'POST', '/v2/images', {
        body: '{"name": ', headers: { 'content-type': 'application/json', accept: 'application/json' },
      });
      expectStatus(res, 400);
      assert.equal(res.body.message, 'Malformed JSON in request body.<br /><br />\n\n\n');
      const patch = await call(site, 'PATCH', `/v2/images/${MISSING}`, {
        body: '[{"op":', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
      });
      assert.equal(patch.status, 400);
    });
  });
});
