import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bytesOf, call, createImage, expectStatus, getImage, sleep, type ImageJson } from '../helpers/glance-client.ts';
import { NOTHING_STORED, imageTasks, runImport, startImport, storeFiles, type TaskJson } from '../helpers/import-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

const MAX_SIZE = 64 * 1024;
const TIMEOUT_MS = 400;
const DATA = bytesOf(40_000, 41);

interface Recorded {
  server: Server;
  port: number;
  requests: string[];
  connections: number;
}

/** A local HTTP server on 127.0.0.1 recording every connection and request it gets. */
async function recordingServer(handle: (url: URL, res: import('node:http').ServerResponse, req: import('node:http').IncomingMessage) => void): Promise<Recorded> {
  const rec: Recorded = { server: createServer(), port: 0, requests: [], connections: 0 };
  rec.server.on('connection', () => { rec.connections++; });
  rec.server.on('request', (req, res) => {
    rec.requests.push(`${req.headers.host} ${req.url}${req.headers.range === undefined ? '' : ` range=${req.headers.range}`}`);
    handle(new URL(req.url ?? '/', 'http://x'), res, req);
  });
  await new Promise<void>((resolve) => rec.server.listen(0, '127.0.0.1', resolve));
  rec.port = (rec.server.address() as AddressInfo).port;
  return rec;
}

/**
 * web-download through the import filter (Glance `[import_filtering_opts]`, bug 2138602): a
 * local source server on 127.0.0.1 that the site is configured to allow, and a second local
 * server on a port the filter does not allow, which must never be contacted. Every refusal leaves
 * the image as it was: queued, no location, nothing stored or staged, the store listed in
 * os_glance_failed_import when the refusal happened in the task.
 */
describe('web-download: import filtering and remote failures', () => {
  let source: Recorded;
  let forbidden: Recorded;
  let site: TestSite;
  let strict: TestSite;
  let named: TestSite;
  let base: string;

  before(async () => {
    forbidden = await recordingServer((_url, res) => res.end('you should not be here'));
    source = await recordingServer((url, res, req) => {
      switch (url.pathname) {
        case '/bytes':
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': DATA.length });
          res.end(DATA);
          return;
        case '/chunked':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.write(DATA.subarray(0, 10_000));
          res.end(DATA.subarray(10_000));
          return;
        case '/redirect-same':
          res.writeHead(302, { location: '/bytes' }).end();
          return;
        case '/redirect-port':
          res.writeHead(302, { location: `http://127.0.0.1:${forbidden.port}/bytes` }).end();
          return;
        case '/redirect-host':
          res.writeHead(301, { location: `http://localhost:${forbidden.port}/bytes` }).end();
          return;
        case '/redirect-scheme':
          res.writeHead(307, { location: `ftp://127.0.0.1:${forbidden.port}/bytes` }).end();
          return;
        case '/redirect-loop':
          res.writeHead(302, { location: `/redirect-loop?n=${Number(url.searchParams.get('n') ?? 0) + 1}` }).end();
          return;
        case '/big':
          res.writeHead(200, { 'content-length': MAX_SIZE + 1 });
          res.end(Buffer.alloc(MAX_SIZE + 1, 7));
          return;
        case '/big-chunked': {
          res.writeHead(200);
          const block = Buffer.alloc(16 * 1024, 9);
          for (let i = 0; i < 8; i++) res.write(block);
          res.end();
          return;
        }
        case '/flaky-ranged': { // breaks off the whole body part-way; serves Range requests
          const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
          if (range === null) {
            res.writeHead(200, { 'content-length': DATA.length, 'accept-ranges': 'bytes' });
            res.write(DATA.subarray(0, 15_000));
            setTimeout(() => res.destroy(), 50);
            return;
          }
          const from = Number(range[1]);
          res.writeHead(206, { 'content-range': `bytes ${from}-${DATA.length - 1}/${DATA.length}`, 'content-length': DATA.length - from });
          res.end(DATA.subarray(from));
          return;
        }
        case '/short': // announces more than it sends
          res.writeHead(200, { 'content-length': DATA.length });
          res.write(DATA.subarray(0, 1000));
          setTimeout(() => res.destroy(), 50);
          return;
        case '/slow': // some bytes, then silence for far longer than timeout_ms
          res.writeHead(200);
          res.write(DATA.subarray(0, 1000));
          setTimeout(() => res.end(DATA.subarray(1000)), TIMEOUT_MS * 6).unref();
          return;
        case '/silent': // headers never come
          setTimeout(() => res.end(), TIMEOUT_MS * 6).unref();
          return;
        case '/trickle': { // slow but never silent for timeout_ms
          res.writeHead(200);
          let offset = 0;
          const step = () => {
            if (offset >= DATA.length) return void res.end();
            res.write(DATA.subarray(offset, offset + 8000));
            offset += 8000;
            setTimeout(step, TIMEOUT_MS / 4);
          };
          step();
          return;
        }
        default:
          res.writeHead(404).end('no such thing');
      }
    });
    base = `http://127.0.0.1:${source.port}`;
    site = await startTestSite({
      import_filter: {
        allowed_hosts: ['127.0.0.1'], allowed_ports: [source.port], max_size: MAX_SIZE, timeout_ms: TIMEOUT_MS, max_redirects: 3,
      },
    });
    strict = await startTestSite(); // the default filter: http(s) on ports 80/443, no internal address
    // Any host on the source's port: names are allowed, internal addresses are not.
    named = await startTestSite({ import_filter: { allowed_ports: [source.port], timeout_ms: TIMEOUT_MS } });
  });
  after(async () => {
    await site?.close();
    await strict?.close();
    await named?.close();
    source?.server.closeAllConnections();
    forbidden?.server.closeAllConnections();
    await new Promise((r) => source?.server.close(r));
    await new Promise((r) => forbidden?.server.close(r));
  });

  const storeDir = (s: TestSite) => join(s.dataDir, 'stores', 'central');
  async function staged(s: TestSite, id: string): Promise<string[]> {
    return (await readdir(join(s.dataDir, 'staging'))).filter((f) => f.startsWith(id));
  }
  const newImage = (s: TestSite = site) => createImage(s, { disk_format: 'raw', container_format: 'bare' });

  /** The URI is refused at once (400, no task, image untouched) and no server saw a request. */
  async function refusedSynchronously(s: TestSite, uri: string, reason: RegExp): Promise<void> {
    const image = await newImage(s);
    const requestsBefore = source.requests.length;
    const res = await startImport(s, image.id, { method: { name: 'web-download', uri } });
    expectStatus(res, 400);
    assert.match(res.body.message, /^URI for web-download does not pass filtering: /);
    assert.match(res.body.message, reason);
    assert.deepEqual(await getImage(s, image.id), image, 'the image is unchanged');
    assert.deepEqual(await imageTasks(s, image.id), [], 'no task was started');
    await sleep(50);
    assert.equal(source.requests.length, requestsBefore, `no request for ${uri}`);
    assert.equal(forbidden.connections, 0);
  }

  /** The import is accepted, then its task fails with `reason`, leaving the image as it was. */
  async function failsInTask(path: string, reason: RegExp, s: TestSite = site, uri = `${base}${path}`): Promise<TaskJson> {
    const image = await newImage(s);
    const task = await runImport(s, image.id, { method: { name: 'web-download', uri } });
    assert.equal(task.status, 'failure', `expected a failure for ${uri}, got ${task.status}: ${task.message}`);
    assert.match(task.message, reason);
    assert.equal(task.result, null);
    await assertUntouched(image, s);
    return task;
  }

  async function assertUntouched(before: ImageJson, s: TestSite): Promise<void> {
    const after = await getImage(s, before.id);
    assert.equal(after.status, 'queued');
    assert.equal(after.stores, undefined);
    for (const k of ['size', 'virtual_size', 'checksum', 'os_hash_algo', 'os_hash_value'] as const) assert.equal(after[k], null, k);
    assert.equal(after.os_glance_failed_import, 'central');
    assert.equal(after.os_glance_importing_to_stores, '');
    assert.equal(Object.hasOwn(after, 'os_glance_import_task'), false);
    assert.deepEqual(await storeFiles(storeDir(s), before.id), NOTHING_STORED);
    assert.deepEqual(await staged(s, before.id), []);
    expectStatus(await call(s, 'GET', `/v2/images/${before.id}/file`), 204);
    assert.equal(forbidden.connections, 0, 'the forbidden server was never contacted');
    assert.deepEqual(forbidden.requests, []);
  }

  describe('refused before any connection (400 "does not pass filtering")', () => {
    it('the link-local metadata address, whatever the allow lists say', async () => {
      await refusedSynchronously(site, 'http://169.254.169.254/latest/meta-data', /host 169\.254\.169\.254 is not allowed/);
      await refusedSynchronously(strict, 'http://169.254.169.254/latest/meta-data', /169\.254\.169\.254 is internal/);
    });

    it('localhost when only 127.0.0.1 is allowed', async () => {
      await refusedSynchronously(site, `http://localhost:${source.port}/bytes`, /host localhost is not allowed/);
    });

    it('a port that is not allowed', async () => {
      await refusedSynchronously(site, `http://127.0.0.1:${forbidden.port}/bytes`, new RegExp(`port ${forbidden.port} is not allowed`));
      await refusedSynchronously(site, 'http://127.0.0.1/bytes', /port 80 is not allowed/);
      await refusedSynchronously(strict, 'http://localhost:8080/x', /port 8080 is not allowed/);
    });

    it('loopback written as a decimal, hex, octal or short number, or as IPv6, when loopback is not allowed', async () => {
      for (const uri of [
        'http://2130706433/', 'http://0x7f000001/', 'http://0x7f.0.0.1/', 'http://0177.0.0.1/', 'http://127.1/',
        'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'http://0/', 'http://[::]/',
      ]) await refusedSynchronously(strict, uri, /is internal/);
    });

    it('other schemes, credentials in the URI, and what is not a URI', async () => {
      await refusedSynchronously(site, `ftp://127.0.0.1:${source.port}/bytes`, /scheme ftp/);
      await refusedSynchronously(site, 'file:///etc/passwd', /scheme file/);
      await refusedSynchronously(site, `http://user:pw@127.0.0.1:${source.port}/bytes`, /credentials/);
      await refusedSynchronously(site, 'not a uri', /not a valid URI/);
    });
  });

  describe('refused or failed while the task runs', () => {
    it('a redirect to a port that is not allowed: the target is never contacted', async () => {
      const task = await failsInTask('/redirect-port', /redirect to .* was refused: port \d+ is not allowed/);
      assert.ok(task.message.includes(`127.0.0.1:${forbidden.port}`));
    });

    it('a redirect to a host that is not allowed', async () => {
      await failsInTask('/redirect-host', /redirect to .* was refused: host localhost is not allowed/);
    });

    it('a redirect to another scheme', async () => {
      await failsInTask('/redirect-scheme', /redirect to .* was refused: scheme ftp/);
    });

    it('more redirects than max_redirects', async () => {
      const before = source.requests.filter((r) => r.includes('/redirect-loop')).length;
      await failsInTask('/redirect-loop', /too many redirects/);
      assert.equal(source.requests.filter((r) => r.includes('/redirect-loop')).length - before, 4, 'the first request and 3 redirects');
    });

    it('a body larger than max_size, announced by Content-Length', async () => {
      await failsInTask('/big', new RegExp(`${MAX_SIZE + 1} bytes, more than the ${MAX_SIZE} allowed`));
    });

    it('a body larger than max_size without Content-Length (cut off)', async () => {
      await failsInTask('/big-chunked', new RegExp(`sent more than the ${MAX_SIZE} bytes allowed`));
    });

    it('a host name that resolves to an internal address (checked at connection time, nothing sent)', async () => {
      const before = source.requests.length;
      await failsInTask('/bytes', /localhost resolves to internal address/, named, `http://localhost:${source.port}/bytes`);
      assert.equal(source.requests.length, before, 'the source got no request');
    });

    it('an HTTP 404 from the source', async () => {
      await failsInTask('/no-such-file', /answered HTTP 404/);
    });

    it('a source that closes before the whole body arrived', async () => {
      await failsInTask('/short', /closed the connection before the whole body arrived/);
    });

    it('a source that stops sending for longer than timeout_ms, in the body or before answering', async () => {
      await failsInTask('/slow', new RegExp(`sent nothing for ${TIMEOUT_MS} ms`));
      await failsInTask('/silent', new RegExp(`sent nothing for ${TIMEOUT_MS} ms`));
    });
  });

  describe('accepted downloads', () => {
    async function downloads(path: string): Promise<void> {
      const image = await newImage();
      const task = await runImport(site, image.id, { method: { name: 'web-download', uri: `${base}${path}` } });
      assert.equal(task.status, 'success', task.message);
      const done = await getImage(site, image.id);
      assert.equal(done.status, 'active');
      assert.equal(done.stores, 'central');
      assert.equal(done.size, DATA.length);
      assert.equal(done.checksum, md5(DATA));
      assert.equal(done.os_hash_algo, 'sha512');
      assert.equal(done.os_hash_value, sha512(DATA));
      assert.equal(done.os_glance_failed_import, '');
      assert.equal(done.os_glance_importing_to_stores, '');
      assert.equal(Object.hasOwn(done, 'os_glance_import_task'), false);
      assert.deepEqual(await staged(site, image.id), []);
      const got = await site.request(`/v2/images/${image.id}/file`);
      assert.equal(got.status, 200);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), DATA);
    }

    it('fetches the bytes, with size, checksum and os_hash_value of what was served', () => downloads('/bytes'));
    it('without Content-Length', () => downloads('/chunked'));
    it('following a redirect the filter allows', () => downloads('/redirect-same'));
    it('from a slow source that never stays silent for timeout_ms', () => downloads('/trickle'));
    it('from a source that breaks off part-way: the rest is asked with Range from the first byte not received', async () => {
      await downloads('/flaky-ranged');
      const asked = source.requests.filter((r) => r.includes('/flaky-ranged'));
      const from = asked.map((r) => Number(/ range=bytes=(\d+)-$/.exec(r)?.[1])).filter((n) => n > 0);
      assert.equal(from.length, 1, JSON.stringify(asked));
      assert.ok(from[0]! <= 15_000, `resumed from byte ${from[0]}, past what was sent before the break`);
    });

    it('the import goes to status importing synchronously', async () => {
      const image = await newImage();
      const res = await startImport(site, image.id, { method: { name: 'web-download', uri: `${base}/trickle` } });
      expectStatus(res, 202);
      const during = await getImage(site, image.id);
      assert.equal(during.status, 'importing');
      assert.equal(during.os_glance_importing_to_stores, 'central');
      for (const deadline = Date.now() + 60_000; (await getImage(site, image.id)).status === 'importing' && Date.now() < deadline;) await sleep(25);
      assert.equal((await getImage(site, image.id)).status, 'active');
    });
  });

  it('the forbidden server was never contacted by any test', () => {
    assert.equal(forbidden.connections, 0);
    assert.deepEqual(forbidden.requests, []);
  });
});
