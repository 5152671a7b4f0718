import assert from 'node:assert/strict';
import { request as httpRequest, Agent } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { exchange, statusLines } from '../helpers/raw-http.ts';
import {
  bytesOf, call, createActiveImage, createImage, expectStatus, project,
} from '../helpers/glance-client.ts';
import { eventually, loopbackTarget, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

/** The edge's parent timeout: reads must not wait for it once the parent is known to be away. */
const PARENT_TIMEOUT_MS = 3000;

/**
 * How a site answers HTTP at both roles: central and an edge, each its own `outpost serve`
 * process, the edge's --parent a FaultProxy in front of central.
 */
describe('edge answers (central ← wan ← edge, separate processes)', { timeout: 120_000 }, () => {
  let work: string;
  let centralProc: ServeProcess;
  let edgeProc: ServeProcess;
  let wan: FaultProxy;
  let central: TestSite;
  let edge: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-answers-');
    centralProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    wan = await FaultProxy.start({ target: loopbackTarget(centralProc.url) });
    edgeProc = await spawnServe(['--role', 'edge', '--site', 'edge-1', '--parent', wan.url, '--listen', '127.0.0.1:0', '--data', join(work, 'edge')], {
      OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: String(PARENT_TIMEOUT_MS), OUTPOST_FEED_WAIT_SECONDS: '2',
      OUTPOST_METADATA_MAX_STALENESS: '1',
    });
    central = siteAt(centralProc.url);
    edge = siteAt(edgeProc.url);
  });

  after(async () => {
    if (edgeProc !== undefined) await stopProcess(edgeProc);
    if (centralProc !== undefined) await stopProcess(centralProc);
    await wan?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  /** The image, once the edge's replica has it. */
  /**
   * Waits until the edge's replica holds image `id` at the status central gives it: an image
   * created and then uploaded reaches the edge first as queued. The edge's list answers from its
   * replica; a single-image GET may be answered by central (metadata_max_staleness).
   */
  async function atEdge(id: string): Promise<void> {
    const status = (await call(central, 'GET', `/v2/images/${id}`)).body?.status;
    await eventually(`the edge's replica has image ${id} (${status})`, 30_000, async () => {
      const listed = (await call(edge, 'GET', '/v2/images?limit=1000')).body?.images as { id: string; status: string }[] | undefined;
      return listed?.some((image) => image.id === id && image.status === status) === true;
    });
  }

  describe('a request body over the limit (item 3)', () => {
    const big = JSON.stringify({ name: 'x'.repeat(2 << 20) });

    /** `requests` sent one after the other on a keep-alive connection (a new one if the server closed it); the answers. */
    async function onOneConnection(url: string, requests: { method: string; path: string; body: string; type: string }[]) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const answers: { status: number; text: string; type: string }[] = [];
        for (const r of requests) {
          answers.push(await new Promise((resolve, reject) => {
            const req = httpRequest(`${url}${r.path}`, {
              method: r.method, agent, headers: { 'content-type': r.type, 'content-length': Buffer.byteLength(r.body), accept: 'application/json' },
            }, (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (d) => { text += d; });
              res.on('end', () => resolve({ status: res.statusCode!, text, type: String(res.headers['content-type']) }));
              res.on('error', reject);
            });
            req.on('error', reject);
            req.end(r.body);
          }));
        }
        return answers;
      } finally {
        agent.destroy();
      }
    }

    it('is answered 413 in Glance\'s (or Keystone\'s) shape at the edge as at central, without the parent, on one keep-alive connection', async () => {
      const image = await createImage(central, { name: 'limits' });
      await atEdge(image.id);
      const requests = [
        { method: 'POST', path: '/v2/images', body: big, type: 'application/json' },
        { method: 'POST', path: `/v2/images/${image.id}/members`, body: JSON.stringify({ member: 'x'.repeat(2 << 20) }), type: 'application/json' },
        { method: 'PATCH', path: `/v2/images/${image.id}`, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'x'.repeat(2 << 20) }]), type: 'application/openstack-images-v2.1-json-patch' },
        { method: 'POST', path: '/identity/v3/auth/tokens', body: big, type: 'application/json' },
        { method: 'GET', path: `/v2/images/${image.id}`, body: '', type: 'application/json' },
      ];
      for (const [name, site] of [['central', central], ['edge', edge]] as const) {
        const before = wan.stats().toTarget.received;
        const answers = await onOneConnection(site.url, requests);
        for (const a of answers.slice(0, 3)) {
          assert.equal(a.status, 413, `${name}: ${a.text.slice(0, 300)}`);
          assert.equal(JSON.parse(a.text).code, '413 Payload Too Large');
        }
        assert.equal(answers[3].status, 413, `${name} (identity): ${answers[3].text.slice(0, 300)}`);
        assert.equal(JSON.parse(answers[3].text).error.code, 413);
        assert.equal(answers[4].status, 200, `${name}: the connection still serves the next request`);
        if (site === edge) assert.ok(wan.stats().toTarget.received - before < 1 << 20, 'the edge passed none of the bodies on');
      }
    });

    it('a chunked body that grows past the limit is refused at the edge too', async () => {
      const chunks = [Buffer.from('{"name":"'), ...Array.from({ length: 24 }, () => Buffer.alloc(100 << 10, 'x')), Buffer.from('"}')];
      const res = await fetch(`${edge.url}/v2/images`, {
        method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: new ReadableStream({ pull(c) { const next = chunks.shift(); if (next === undefined) c.close(); else c.enqueue(next); } }),
        duplex: 'half',
      } as RequestInit);
      assert.equal(res.status, 413, await res.clone().text());
      assert.equal(((await res.json()) as { code: string }).code, '413 Payload Too Large');
    });
  });

  describe('unknown methods (item 4)', () => {
    for (const method of ['TRACE', 'PROPFIND', 'OPTIONS']) {
      it(`${method} on a known path is 405 with Allow at both roles; on an unknown path 404`, async () => {
        const image = await createImage(central, { name: `m-${method}` });
        await atEdge(image.id);
        for (const site of [central, edge]) {
          for (const [path, allow] of [['/v2/images', 'GET, POST'], [`/v2/images/${image.id}`, 'GET, PATCH, DELETE']]) {
            const received = await exchange(site.url, `${method} ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
            assert.deepEqual(statusLines(received), ['HTTP/1.1 405 Method Not Allowed'], `${site === edge ? 'edge' : 'central'} ${method} ${path}: ${received}`);
            assert.match(received, new RegExp(`\\r\\nallow: ${allow}\\r\\n`, 'i'));
          }
          const unknown = await exchange(site.url, `${method} /v2/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n`);
          assert.deepEqual(statusLines(unknown), ['HTTP/1.1 404 Not Found'], unknown);
        }
      });
    }
  });

  describe('a parent known to be away (item 5)', () => {
    it('with metadata_max_staleness, single-image reads answer from the replica at once, not after parent_timeout_ms each', async () => {
      const image = await createImage(central, { name: 'before-cut' });
      await atEdge(image.id);
      wan.blackhole();
      try {
        expectStatus(await call(central, 'PATCH', `/v2/images/${image.id}`, {
          body: JSON.stringify([{ op: 'replace', path: '/name', value: 'after-cut' }]), headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
        }), 200);
        // Reads for 7 s: well past the 1 s staleness bound and two parent timeouts.
        const cutAt = performance.now();
        const times: number[] = [];
        while (performance.now() - cutAt < 7000) {
          const t0 = performance.now();
          const res = await call(edge, 'GET', `/v2/images/${image.id}`);
          times.push(Math.round(performance.now() - t0));
          expectStatus(res, 200);
          assert.equal(res.body.name, 'before-cut', 'the replica answers');
        }
        // One read may wait for the parent (that is how the edge learns it is away); no other does.
        assert.ok(times.filter((ms) => ms >= 1000).length <= 1, `read times (ms): ${times.join(', ')}`);
      } finally {
        wan.heal();
      }
      await eventually('the edge answers with the parent\'s view once it is back', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.name === 'after-cut');
    });
  });

  describe('a cold miss the parent cannot fill', () => {
    it('answers before any byte, as central would: 204 when the parent has no data, 503 when it is away, never a 200 cut short', async () => {
      const data = bytesOf(2 << 20, 9);
      const image = await createActiveImage(central, data, { name: 'lost-at-central' });
      await atEdge(image.id);
      // The bytes vanish from central's store (a store moved behind its back): central answers 204.
      const store = join(work, 'central', 'stores', 'central');
      await rm(join(store, image.id), { force: true });
      for (const [name, site] of [['central', central], ['edge', edge]] as const) {
        const res = await site.request(`/v2/images/${image.id}/file`);
        assert.equal(res.status, 204, `${name}: ${await res.text()}`);
        assert.equal(res.headers.get('content-md5'), null, `${name}: no checksum of bytes that are not sent`);
        assert.equal((await res.arrayBuffer()).byteLength, 0);
      }
      const listed = (await call(edge, 'GET', '/v2/cache')).body as { cached_images: { image_id: string }[]; queued_images: string[] };
      assert.ok(!listed.cached_images.some((c) => c.image_id === image.id) && !listed.queued_images.includes(image.id), 'nothing was kept');

      // HEAD of a cold image announces it without fetching anything.
      const announced = await createActiveImage(central, data, { name: 'head-only' });
      await atEdge(announced.id);
      wan.resetStats();
      const head = await edge.request(`/v2/images/${announced.id}/file`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(data.length));
      assert.equal(head.headers.get('accept-ranges'), 'bytes');
      const after = (await call(edge, 'GET', '/v2/cache')).body as { queued_images: string[] };
      assert.deepEqual(after.queued_images, [], 'no fill started');
      assert.ok(wan.stats().toClient.forwarded < 64 << 10, 'no image bytes crossed the link');

      const cold = await createActiveImage(central, data, { name: 'cold-while-away' });
      await atEdge(cold.id);
      wan.refuse();
      try {
        const res = await edge.request(`/v2/images/${cold.id}/file`, { headers: { accept: 'application/json' } });
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('content-md5'), null);
        assert.match(await res.text(), /could not be reached/);
      } finally {
        wan.heal();
      }
    });
  });

  describe('deactivated images (item 6)', () => {
    it('an admin downloads a deactivated image at the edge (200 with the data), as at central; others get 403', async () => {
      const data = bytesOf(64 << 10, 6);
      const owner = project('p-deact');
      const image = await createActiveImage(central, data, { name: 'deact', visibility: 'community' }, owner);
      expectStatus(await call(central, 'POST', `/v2/images/${image.id}/actions/deactivate`), 204);
      await eventually('the edge sees the image deactivated', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'deactivated');
      for (const [name, site] of [['central', central], ['edge', edge]] as const) {
        const res = await site.request(`/v2/images/${image.id}/file`);
        const got = Buffer.from(await res.arrayBuffer());
        assert.equal(res.status, 200, `${name}: ${got.toString().slice(0, 200)}`);
        assert.ok(got.equals(data), `${name}: the image's bytes`);
        expectStatus(await call(site, 'GET', `/v2/images/${image.id}/file`, { as: owner }), 403);
      }
      // What an edge presents to its parent with auth keystone: a site (the `service` role), which
      // applies the admin rule to its own callers.
      expectStatus(await call(central, 'GET', `/v2/images/${image.id}/file`, { as: project('service', 'service') }), 200);
      // A range, and the copy the edge holds once the image is active again, serve an admin too.
      const ranged = await edge.request(`/v2/images/${image.id}/file`, { headers: { range: 'bytes=10-19' } });
      assert.equal(ranged.status, 206);
      assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 20)));
      expectStatus(await call(central, 'POST', `/v2/images/${image.id}/actions/reactivate`), 204);
      await eventually('the edge sees the image active', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'active');
      assert.ok(Buffer.from(await (await edge.request(`/v2/images/${image.id}/file`)).arrayBuffer()).equals(data));
      expectStatus(await call(central, 'POST', `/v2/images/${image.id}/actions/deactivate`), 204);
      await eventually('the edge sees the image deactivated again', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'deactivated');
      wan.refuse();
      try {
        const held = await edge.request(`/v2/images/${image.id}/file`);
        assert.equal(held.status, 200, 'the copy the edge holds serves an admin with the parent away');
        assert.ok(Buffer.from(await held.arrayBuffer()).equals(data));
        expectStatus(await call(edge, 'GET', `/v2/images/${image.id}/file`, { as: owner }), 403);
      } finally {
        wan.heal();
      }
    });
  });
});
