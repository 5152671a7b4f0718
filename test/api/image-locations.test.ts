import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openstackClientsMissing } from '../helpers/clients.ts';
import {
  ADMIN, bytesOf, call as rawCall, createActiveImage, createImage, expectStatus, getImage, patchImage, project, sleep, type CallOptions, type Identity,
  type ImageJson,
} from '../helpers/glance-client.ts';
import { JSON_ACCEPT, imageTasks, type TaskJson } from '../helpers/import-client.ts';
import { download } from '../helpers/multi-site.ts';
import { startTestSite, tempDir, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const hash = (algo: string, b: Uint8Array) => createHash(algo).update(b).digest('hex');

const DATA = bytesOf(300_000, 151);
/** Other bytes of the same length: a URL serving them is not the image. */
const OTHER = bytesOf(DATA.length, 152);
/** Bytes no other image of the site has (so none of their chunks is held elsewhere here). */
const UNIQUE = bytesOf(200_000, 153);
const AT_EDGE = bytesOf(250_000, 154);
/** Errors in JSON (Glance's webob shapes are negotiated on Accept). */
const call = <T = any>(s: TestSite, method: string, path: string, opts: CallOptions = {}) => rawCall<T>(s, method, path, { ...opts, headers: { ...JSON_ACCEPT, ...opts.headers } });
const patch = (s: TestSite, id: string, ops: unknown, as: Identity = ADMIN) => patchImage(s, id, ops, { as, accept: 'application/json' });
const SERVICE = Object.freeze({ 'x-project-id': 'service', 'x-roles': 'service' });
const OWNER = project('p1');

/**
 * The locations API (issue 15 item 2; Glance's show_multiple_locations / manage_locations, API
 * 2.17): PATCH add / replace / remove on /locations with validation_data, the newer POST and GET
 * /v2/images/{id}/locations, against a real site and a loopback HTTP server that the site's
 * import filter allows (web-download's SSRF filter applies to http locations too).
 */
describe('locations API', () => {
  let source: Server;
  let base: string;
  let site: TestSite;
  let hidden: TestSite;
  /** What /changing serves (a test swaps it). */
  let changing: Uint8Array = DATA;
  let requests: string[] = [];

  before(async () => {
    source = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}${req.headers.range === undefined ? '' : ` ${req.headers.range}`}`);
      const body = req.url === '/good' || req.url === '/good2' ? DATA : req.url === '/other' ? OTHER : req.url === '/changing' ? changing
        : req.url === '/unique' ? UNIQUE : req.url === '/edge' ? AT_EDGE : undefined;
      if (body === undefined) return void res.writeHead(404).end('no such thing');
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range !== null) {
        const from = Number(range[1]);
        res.writeHead(206, { 'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` });
        return void res.end(body.subarray(from));
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((resolve) => source.listen(0, '127.0.0.1', resolve));
    const port = (source.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
    const filter = { import_filter: { allowed_hosts: ['127.0.0.1'], allowed_ports: [port] } };
    site = await startTestSite({ show_multiple_locations: true, ...filter });
    hidden = await startTestSite(filter); // show_multiple_locations: false, Glance's default
  });
  after(async () => {
    await site?.close();
    await hidden?.close();
    source?.closeAllConnections();
    await new Promise((r) => source?.close(r));
  });

  const queued = (body: Record<string, unknown> = {}, as = OWNER) => createImage(site, { disk_format: 'raw', container_format: 'bare', ...body }, as);
  const add = (url: string, extra: Record<string, unknown> = {}, path = '/locations/-') => [{ op: 'add', path, value: { url, metadata: {}, ...extra } }];
  const goodData = { checksum: hash('md5', DATA), os_hash_algo: 'sha512', os_hash_value: hash('sha512', DATA) };
  const storeUrl = (s: TestSite, id: string) => pathToFileURL(join(s.dataDir, 'stores', 'central', id)).href;

  describe('PATCH /locations', () => {
    it('adding the first http location with validation_data makes a queued image active with those values, and its bytes are served verified', async () => {
      const image = await queued();
      const res = await patch(site, image.id, add(`${base}/good`, { metadata: { note: 'mirror' }, validation_data: goodData }), OWNER);
      expectStatus(res, 200);
      assert.equal(res.body.status, 'active');
      assert.equal(res.body.size, DATA.length);
      assert.equal(res.body.checksum, goodData.checksum);
      assert.equal(res.body.os_hash_algo, 'sha512');
      assert.equal(res.body.os_hash_value, goodData.os_hash_value);
      assert.deepEqual(res.body.locations, [{ url: `${base}/good`, metadata: { note: 'mirror' } }]);
      assert.equal(res.body.stores, undefined, 'an http location is in none of the stores');
      assert.deepEqual(await getImage(site, image.id, OWNER), res.body);

      const got = await download(site.url, image.id, OWNER);
      assert.equal(got.status, 200);
      assert.equal(got.broken, false);
      assert.equal(got.length, DATA.length);
      assert.equal(got.sha512, goodData.os_hash_value);
      // A range too (the client's range is read from the URL, or from the cached copy).
      const range = await site.request(`/v2/images/${image.id}/file`, { headers: { ...OWNER, range: 'bytes=1000-1999' } });
      assert.equal(range.status, 206);
      assert.deepEqual(Buffer.from(await range.arrayBuffer()), DATA.subarray(1000, 2000));
    });

    it('adding an http location without validation_data: active with the size the URL announces, no hashes (as Glance)', async () => {
      const image = await queued();
      const res = await patch(site, image.id, add(`${base}/good`), OWNER);
      expectStatus(res, 200);
      assert.equal(res.body.status, 'active');
      assert.equal(res.body.size, DATA.length);
      assert.equal(res.body.checksum, null);
      assert.equal(res.body.os_hash_value, null);
      const got = await download(site.url, image.id, OWNER);
      assert.equal(got.status, 200);
      assert.equal(got.sha512, hash('sha512', DATA));
    });

    it('a URL serving other bytes than the validation_data says is never served as the image', async () => {
      const image = await queued();
      expectStatus(await patch(site, image.id, add(`${base}/other`, { validation_data: goodData }), OWNER), 200);
      for (let i = 0; i < 2; i++) {
        const got = await download(site.url, image.id, OWNER);
        assert.ok(got.status !== 200 || got.broken || got.length < DATA.length, `a download of other bytes must not complete: ${JSON.stringify(got)}`);
        assert.notEqual(got.sha512, hash('sha512', OTHER));
      }
      const cached = await call<{ cached_images: { image_id: string }[] }>(site, 'GET', '/v2/cache');
      assert.ok(!cached.body.cached_images.some((c) => c.image_id === image.id), 'nothing was cached');
    });

    it('a URL whose size changed after it was added is refused before any byte', async () => {
      changing = DATA;
      const image = await queued();
      expectStatus(await patch(site, image.id, add(`${base}/changing`, { validation_data: goodData }), OWNER), 200);
      changing = DATA.subarray(0, DATA.length - 10);
      const res = await call(site, 'GET', `/v2/images/${image.id}/file`, { as: OWNER, headers: { accept: 'application/json' } });
      assert.ok(res.status >= 500, `${res.status} ${res.text.slice(0, 200)}`);
      assert.match(res.text, /has 299990 bytes; image .* has 300000/);
      changing = DATA;
    });

    it('validation_data is checked against the image as Glance checks it', async () => {
      const active = await createActiveImage(site, DATA, {}, OWNER);
      // The same values: accepted, the http location added (its size is the image's).
      const same = await patch(site, active.id, add(`${base}/good`, { validation_data: goodData }), OWNER);
      expectStatus(same, 200);
      assert.deepEqual(same.body.locations.map((l: { url: string }) => l.url), [storeUrl(site, active.id), `${base}/good`]);
      assert.equal(same.body.stores, 'central');
      // Another hash than the image's: refused (409, images.py _validate_validation_data).
      const other = await patch(site, active.id, add(`${base}/good2`, { validation_data: { ...goodData, os_hash_value: hash('sha512', OTHER) } }), OWNER);
      expectStatus(other, 409);
      assert.match(other.text, /os_hash_value is already set with a different value/);

      const q = await queued();
      const cases: [unknown, number, RegExp][] = [
        [{ os_hash_algo: 'md5', os_hash_value: hash('md5', DATA) }, 409, /os_hash_algo must be sha512, not md5/],
        [{ os_hash_algo: 'sha512', os_hash_value: 'zz'.repeat(64) }, 409, /os_hash_value \(z+\) is not a valid hexadecimal value/],
        [{ os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(32) }, 409, /is not the correct size for sha512 \(should be 64 bytes\)/],
        [{ ...goodData, checksum: 'x'.repeat(32) }, 409, /checksum \(x+\) is not a valid hexadecimal value/],
        [{ os_hash_algo: 'sha512' }, 400, /Provided object does not match schema 'image': 'os_hash_value' is a required property/],
        [{ ...goodData, size: 3 }, 400, /Additional properties are not allowed \('size' was unexpected\)/],
        [{ ...goodData, checksum: 'abc' }, 400, /'abc' is too short/],
      ];
      for (const [vd, status, message] of cases) {
        const res = await patch(site, q.id, add(`${base}/good`, { validation_data: vd }), OWNER);
        expectStatus(res, status);
        assert.match(res.text, message);
      }
      assert.deepEqual(await getImage(site, q.id, OWNER), q, 'a refused patch changes nothing');
    });

    it('refuses URLs that are not locations: other schemes, filtered or unreachable URLs (400)', async () => {
      const image = await queued();
      for (const url of ['file:///etc/passwd', 'swift://x', 'rbd://pool/image', 'not a url', storeUrl(site, image.id)]) {
        const res = await patch(site, image.id, add(url), OWNER);
        expectStatus(res, 400);
        assert.match(res.text, /Invalid location/);
      }
      const filtered = await patch(site, image.id, add('http://127.0.0.1:1/x'), OWNER);
      expectStatus(filtered, 400);
      assert.match(filtered.text, /URI for a location does not pass filtering: port 1 is not allowed/);
      const missing = await patch(site, image.id, add(`${base}/missing`), OWNER);
      expectStatus(missing, 400);
      assert.match(missing.text, /Invalid location: GET .*\/missing answered HTTP 404/);
      assert.deepEqual(await getImage(site, image.id, OWNER), image);
    });

    it('applies Glance\'s other rules: paths, positions, formats, statuses, duplicates', async () => {
      const noFormats = await createImage(site, {}, OWNER);
      const formats = await patch(site, noFormats.id, add(`${base}/good`), OWNER);
      expectStatus(formats, 400);
      assert.match(formats.text, /Properties disk_format, container_format must be set prior to saving data\./);

      const image = await queued();
      for (const [ops, status, message] of [
        [[{ op: 'add', path: '/locations', value: { url: `${base}/good`, metadata: {} } }], 400, /Invalid JSON pointer for this resource: '\/locations'/],
        [[{ op: 'replace', path: '/locations/0', value: [] }], 400, /Invalid JSON pointer for this resource: '\/locations\/0'/],
        [add(`${base}/good`, {}, '/locations/x'), 400, /Invalid position for adding a location\./],
        [[{ op: 'add', path: '/locations/-', value: { url: `${base}/good` } }], 400, /'metadata' is a required property/],
        [[{ op: 'replace', path: '/locations', value: [] }], 403, /Cannot set locations to empty list\./],
      ] as const) {
        const res = await patch(site, image.id, ops, OWNER);
        expectStatus(res, status);
        assert.match(res.text, message);
      }
      // Another project's member may not (set_image_location: admin or the owning project's member).
      expectStatus(await patch(site, image.id, add(`${base}/good`), project('p2')), 404);

      const active = await createActiveImage(site, DATA, {}, OWNER);
      const dup = await patch(site, active.id, add(storeUrl(site, active.id)), OWNER);
      expectStatus(dup, 400);
      assert.match(dup.text, /The location file:\/\/.* already exists/);
      expectStatus(await call(site, 'POST', `/v2/images/${active.id}/actions/deactivate`, { as: OWNER }), 204);
      const deactivated = await patch(site, active.id, add(`${base}/good`), OWNER);
      expectStatus(deactivated, 409);
      assert.match(deactivated.text, /It's not allowed to add locations if image status is deactivated\./);
    });

    it('remove: admin only, never the last location; a removed store copy is deleted and the image is served from its http location', async () => {
      const image = await createActiveImage(site, UNIQUE, {}, OWNER);
      const file = join(site.dataDir, 'stores', 'central', image.id);
      const last = await patch(site, image.id, [{ op: 'remove', path: '/locations/0' }]);
      expectStatus(last, 403);
      assert.match(last.text, /Cannot remove last location in the image\./);
      expectStatus(await patch(site, image.id, add(`${base}/unique`), OWNER), 200);
      const owner = await patch(site, image.id, [{ op: 'remove', path: '/locations/0' }], OWNER);
      expectStatus(owner, 403);
      assert.match(owner.text, /You are not authorized to complete delete_image_location action\./);
      const bad = await patch(site, image.id, [{ op: 'remove', path: '/locations/2' }]);
      expectStatus(bad, 400);
      assert.match(bad.text, /Invalid position for removing a location\./);

      assert.ok(existsSync(file));
      const removed = await patch(site, image.id, [{ op: 'remove', path: '/locations/0' }]);
      expectStatus(removed, 200);
      assert.deepEqual(removed.body.locations, [{ url: `${base}/unique`, metadata: {} }]);
      assert.equal(removed.body.stores, undefined);
      assert.equal(removed.body.status, 'active');
      assert.ok(!existsSync(file), 'the store copy is deleted with its location (StoreLocations.pop)');
      requests = [];
      const got = await download(site.url, image.id, OWNER);
      assert.equal(got.sha512, image.os_hash_value);
      assert.equal(got.broken, false);
      assert.ok(requests.some((r) => r.startsWith('GET /unique')), `the bytes came from the http location: ${requests.join(', ')}`);
    });

    it('replace: only the metadata of the same URLs (glance location-update), or the first locations of a queued image', async () => {
      const image = await queued();
      expectStatus(await patch(site, image.id, add(`${base}/good`, { validation_data: goodData }), OWNER), 200);
      const meta = await patch(site, image.id, [{ op: 'replace', path: '/locations', value: [{ url: `${base}/good`, metadata: { tier: 'cold' } }] }], OWNER);
      expectStatus(meta, 200);
      assert.deepEqual(meta.body.locations, [{ url: `${base}/good`, metadata: { tier: 'cold' } }]);
      const other = await patch(site, image.id, [{ op: 'replace', path: '/locations', value: [{ url: `${base}/good2`, metadata: {} }] }], OWNER);
      expectStatus(other, 400);
      assert.match(other.text, /Original locations is not empty/);

      const fresh = await queued();
      const replaced = await patch(site, fresh.id, [{ op: 'replace', path: '/locations', value: [
        { url: `${base}/good`, metadata: {}, validation_data: goodData }, { url: `${base}/good2`, metadata: { n: 2 } },
      ] }], OWNER);
      expectStatus(replaced, 200);
      assert.equal(replaced.body.status, 'active');
      assert.deepEqual(replaced.body.locations.map((l: { url: string }) => l.url), [`${base}/good`, `${base}/good2`]);
    });

    it('a URL in one of the site\'s stores is recorded when its bytes are there: hashed, and checked against validation_data', async () => {
      const image = await queued();
      await mkdir(join(site.dataDir, 'stores', 'central'), { recursive: true });
      await writeFile(join(site.dataDir, 'stores', 'central', image.id), DATA);
      const wrong = await patch(site, image.id, add(storeUrl(site, image.id), { validation_data: { ...goodData, os_hash_value: hash('sha512', OTHER) } }), OWNER);
      expectStatus(wrong, 400);
      assert.match(wrong.text, /Invalid location: the bytes at file:.* do not match the checksum and hash of image/);
      const res = await patch(site, image.id, add(storeUrl(site, image.id), { metadata: { store: 'ignored', k: 'v' } }), OWNER);
      expectStatus(res, 200);
      assert.equal(res.body.status, 'active');
      assert.equal(res.body.checksum, goodData.checksum);
      assert.equal(res.body.os_hash_value, goodData.os_hash_value);
      assert.equal(res.body.stores, 'central');
      assert.deepEqual(res.body.locations, [{ url: storeUrl(site, image.id), metadata: { k: 'v', store: 'central' } }]);
      const got = await download(site.url, image.id, OWNER);
      assert.equal(got.sha512, goodData.os_hash_value);
    });

    it('without show_multiple_locations every location operation is refused (403), as Glance', async () => {
      const image = await createImage(hidden, { disk_format: 'raw', container_format: 'bare' });
      for (const [ops, verb] of [
        [add(`${base}/good`), 'add'],
        [[{ op: 'replace', path: '/locations', value: [{ url: `${base}/good`, metadata: {} }] }], 'update'],
      ] as const) {
        const res = await patch(hidden, image.id, ops);
        expectStatus(res, 403);
        assert.match(res.text, new RegExp(`It's not allowed to ${verb} locations if locations are invisible\\.`));
      }
      assert.equal((await getImage(hidden, image.id)).locations, undefined);
    });
  });

  describe('POST and GET /v2/images/{id}/locations', () => {
    async function waitTask(id: string): Promise<TaskJson> {
      for (let i = 0; i < 400; i++) {
        const task = (await imageTasks(site, id)).find((t) => t.type === 'location_import');
        if (task !== undefined && (task.status === 'success' || task.status === 'failure')) return task;
        await sleep(25);
      }
      assert.fail('the location import did not end');
    }

    it('adds the location and the service computes size and hashes (a location_import task)', async () => {
      const image = await queued();
      const res = await call(site, 'POST', `/v2/images/${image.id}/locations`, { as: OWNER, json: { url: `${base}/good` } });
      expectStatus(res, 202);
      assert.equal(res.text, '');
      const task = await waitTask(image.id);
      assert.equal(task.status, 'success', task.message);
      assert.deepEqual(task.input, { image_id: image.id, loc_url: `${base}/good`, validation_data: {} });
      const active = await getImage(site, image.id, OWNER);
      assert.equal(active.status, 'active');
      assert.equal(active.size, DATA.length);
      assert.equal(active.checksum, hash('md5', DATA));
      assert.equal(active.os_hash_algo, 'sha512');
      assert.equal(active.os_hash_value, hash('sha512', DATA));
      assert.equal(active.os_glance_import_task, undefined, 'the lock is released');
      assert.deepEqual(active.locations, [{ url: `${base}/good`, metadata: {} }]);
      const got = await download(site.url, image.id, OWNER);
      assert.equal(got.sha512, active.os_hash_value);

      // GET /locations: the service role only (fetch_image_location).
      const listed = await call(site, 'GET', `/v2/images/${image.id}/locations`, { as: SERVICE });
      expectStatus(listed, 200);
      assert.deepEqual(listed.body, [{ url: `${base}/good`, metadata: {} }]);
      for (const as of [OWNER, {}]) {
        const refused = await call(site, 'GET', `/v2/images/${image.id}/locations`, { as });
        expectStatus(refused, 403);
        assert.match(refused.text, /fetch_image_location/);
      }
      // Only a queued image takes a location this way.
      const again = await call(site, 'POST', `/v2/images/${image.id}/locations`, { as: OWNER, json: { url: `${base}/good` } });
      expectStatus(again, 409);
      assert.match(again.text, /It's not allowed to add locations if image status is active\./);
    });

    it('copy-image of an image located only at an http URL copies the verified bytes into a store', async () => {
      const image = await queued();
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/locations`, { as: OWNER, json: { url: `${base}/good` } }), 202);
      assert.equal((await waitTask(image.id)).status, 'success');
      expectStatus(await call(site, 'POST', `/v2/images/${image.id}/import`, { json: { method: { name: 'copy-image' }, stores: ['central'] } }), 202);
      let copied: ImageJson | undefined;
      for (let i = 0; i < 400 && copied?.stores !== 'central'; i++) {
        await sleep(25);
        copied = await getImage(site, image.id);
      }
      assert.equal(copied?.stores, 'central');
      assert.deepEqual(copied?.locations.map((l: { url: string }) => l.url), [storeUrl(site, image.id), `${base}/good`]);
      assert.ok(existsSync(join(site.dataDir, 'stores', 'central', image.id)));
    });

    it('checks validation_data with the algorithm it names; a mismatch fails the task and the image is queued again', async () => {
      const ok = await queued();
      expectStatus(await call(site, 'POST', `/v2/images/${ok.id}/locations`, {
        as: OWNER, json: { url: `${base}/good`, validation_data: { os_hash_algo: 'sha256', os_hash_value: hash('sha256', DATA) } },
      }), 202);
      assert.equal((await waitTask(ok.id)).status, 'success');
      assert.equal((await getImage(site, ok.id, OWNER)).os_hash_value, hash('sha512', DATA));

      const bad = await queued();
      const wrong = hash('sha512', OTHER);
      expectStatus(await call(site, 'POST', `/v2/images/${bad.id}/locations`, {
        as: OWNER, json: { url: `${base}/good`, validation_data: { os_hash_algo: 'sha512', os_hash_value: wrong } },
      }), 202);
      const task = await waitTask(bad.id);
      assert.equal(task.status, 'failure');
      assert.equal(task.message, `os_hash_value: (${wrong}) not matched with actual os_hash_value: (${hash('sha512', DATA)})`);
      const after = await getImage(site, bad.id, OWNER);
      assert.equal(after.status, 'queued');
      assert.deepEqual(after.locations, []);
      assert.equal(after.os_glance_import_task, undefined);
    });

    it('refuses as Glance does: body, status, policy, non-http URLs for users, hash form', async () => {
      const image = await queued();
      const post = (json: unknown, as: Record<string, string> = OWNER) => call(site, 'POST', `/v2/images/${image.id}/locations`, { as, json });
      for (const [json, as, status, message] of [
        [{}, OWNER, 400, /Provided object does not match schema 'location': 'url' is a required property/],
        [{ url: `${base}/good`, validation_data: { os_hash_algo: 'crc32', os_hash_value: 'ab' } }, OWNER, 400, /'crc32' is not one of \['sha1', 'sha256', 'sha512', 'md5'\]/],
        [{ url: `${base}/good`, validation_data: { os_hash_algo: 'sha512', os_hash_value: 'xyz1' } }, OWNER, 400, /os_hash_value \(xyz1\) is not a valid hexadecimal value/],
        [{ url: `${base}/good`, validation_data: { os_hash_algo: 'sha256', os_hash_value: 'ab' } }, OWNER, 400, /os_hash_value: \(ab\) is not the correct size for \(sha256\) \(should be \(32\) bytes\)/],
        [{ url: 'swift://x/y' }, OWNER, 403, /http store must be enabled to use location API by normal user\./],
        [{ url: 'swift://x/y' }, SERVICE, 400, /Invalid location/],
        [{ url: `${base}/good` }, project('p2'), 404, /No image found/],
        [{ url: `${base}/good` }, project('p1', 'reader'), 403, /You are not authorized to complete add_image_location action\./],
      ] as const) {
        const res = await post(json, as);
        expectStatus(res, status);
        assert.match(res.text, message);
      }
      assert.deepEqual(await getImage(site, image.id, OWNER), image);
      assert.deepEqual(await imageTasks(site, image.id), []);
    });
  });

  describe('at an edge', () => {
    let edge: TestSite;
    before(async () => {
      edge = await startTestSite({ role: 'edge', site: 'edge-1', parent: site.url, show_multiple_locations: true });
    });
    after(async () => { await edge?.close(); });

    it('locations replicate; POST and PATCH are passed up; the bytes come through the edge\'s cache from central, which reads the URL', async () => {
      const image = await createImage(edge, { disk_format: 'raw', container_format: 'bare' }, OWNER);
      expectStatus(await call(edge, 'POST', `/v2/images/${image.id}/locations`, { as: OWNER, json: { url: `${base}/edge` } }), 202);
      let shown: ImageJson | undefined;
      for (let i = 0; i < 400 && shown?.status !== 'active'; i++) {
        await sleep(25);
        shown = await getImage(edge, image.id, OWNER);
      }
      assert.equal(shown?.status, 'active');
      assert.deepEqual(shown?.locations, [{ url: `${base}/edge`, metadata: {} }]);
      assert.equal(shown?.os_hash_value, hash('sha512', AT_EDGE));
      const listed = await call(edge, 'GET', `/v2/images/${image.id}/locations`, { as: SERVICE });
      expectStatus(listed, 200);
      assert.deepEqual(listed.body, [{ url: `${base}/edge`, metadata: {} }]);

      requests = [];
      const got = await download(edge.url, image.id, OWNER);
      assert.equal(got.status, 200);
      assert.equal(got.broken, false);
      assert.equal(got.sha512, hash('sha512', AT_EDGE));
      assert.ok(requests.some((r) => r.startsWith('GET /edge')), 'central read the URL');

      const meta = await patch(edge, image.id, [{ op: 'replace', path: '/locations', value: [{ url: `${base}/edge`, metadata: { at: 'edge' } }] }], OWNER);
      expectStatus(meta, 200);
      assert.deepEqual(meta.body.locations, [{ url: `${base}/edge`, metadata: { at: 'edge' } }]);
      assert.deepEqual((await getImage(site, image.id, OWNER)).locations, meta.body.locations);
    });
  });

  it('glance location-add and location-delete (glanceclient) work', { skip: cliSkip }, async () => {
    const home = await tempDir('outpost-glance-home-');
    try {
      const env = { ...process.env, HOME: home, PYTHONWARNINGS: 'ignore' };
      const glance = async (...args: string[]) => (await run('glance', [
        '--os-image-api-version', '2', '--os-image-url', site.url, '--os-auth-token', 'none', ...args,
      ], { env, cwd: home })).stdout;
      const image = await createActiveImage(site, DATA);
      const added = await glance('location-add', image.id, '--url', `${base}/good`, '--metadata', '{"via": "cli"}');
      assert.match(added, new RegExp(`${base}/good`));
      let shown = await getImage(site, image.id);
      assert.deepEqual(shown.locations.map((l: { url: string }) => l.url), [storeUrl(site, image.id), `${base}/good`]);
      await glance('location-delete', image.id, '--url', storeUrl(site, image.id));
      shown = await getImage(site, image.id);
      assert.deepEqual(shown.locations, [{ url: `${base}/good`, metadata: { via: 'cli' } }]);
      assert.equal(shown.status, 'active');
      // The last one cannot go.
      await assert.rejects(glance('location-delete', image.id, '--url', `${base}/good`), /Cannot remove last location in the image/);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
