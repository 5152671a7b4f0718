import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { bytesOf, call, createActiveImage } from '../helpers/glance-client.ts';
import { eventually, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

/** Every request must be over (answered, or aborted by its client) within this, ms. */
const BOUND_MS = 30_000;
const CLIENTS = 32;
const REQUESTS_PER_CLIENT = 30;

interface Odd {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** The client sends this much of the body (when there is one) or reads one chunk of the answer, then goes away. */
  abort?: boolean;
}

let work: string;
let centralProc: ServeProcess;
let edgeProc: ServeProcess;

before(async () => {
  work = await tempDir('outpost-e2e-load-');
  centralProc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
  edgeProc = await spawnServe(['--role', 'edge', '--site', 'edge-1', '--parent', centralProc.url, '--listen', '127.0.0.1:0', '--data', join(work, 'edge')], {
    OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2',
  });
});

after(async () => {
  if (edgeProc !== undefined) await stopProcess(edgeProc);
  if (centralProc !== undefined) await stopProcess(centralProc);
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

/** Sends `r` on `agent`'s keep-alive connections; resolves when it is over, however it ended. */
function send(url: string, agent: Agent, r: Odd): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${url}${r.path}`, { method: r.method, agent, headers: r.headers }, (res) => {
      res.on('data', () => { if (r.abort === true) req.destroy(); });
      res.on('close', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
    req.on('close', () => { if (req.destroyed) resolve(); });
    if (r.abort === true && r.body !== undefined) req.write(r.body, () => req.destroy());
    else req.end(r.body);
  });
}

it('many keep-alive clients with odd requests, some going away mid-request: every request ends in time, and no disconnect is logged as an error', { timeout: 180_000 }, async () => {
  const central = siteAt(centralProc.url);
  const image = await createActiveImage(central, bytesOf(256 << 10, 7), { name: 'load' });
  const edge = siteAt(edgeProc.url);
  await eventually('the edge has the image active', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).body?.status === 'active');
  const json = { 'content-type': 'application/json' };
  const odd: Odd[] = [
    { method: 'GET', path: '/v2/images?id=1' },
    { method: 'HEAD', path: '/v2/images/constructor' },
    { method: 'GET', path: '/v2/images/__proto__' },
    { method: 'GET', path: '/v2/images?marker=nope&sort=name:asc,size:desc' },
    { method: 'GET', path: `/v2/images/${image.id}` },
    { method: 'GET', path: `/v2/images/${image.id}/file` },
    { method: 'GET', path: `/v2/images/${image.id}/file`, abort: true },
    { method: 'POST', path: '/v2/images', headers: json, body: Buffer.from('{"name":"made-under-load"}') },
    { method: 'POST', path: '/v2/images', headers: { ...json, 'content-length': '100' }, body: Buffer.from('{"name":'), abort: true },
    { method: 'PATCH', path: `/v2/images/${image.id}`, headers: { ...json, 'content-length': '100' }, body: Buffer.from('[{"op":'), abort: true },
    { method: 'PUT', path: `/v2/images/${image.id}/file`, headers: { 'content-type': 'application/octet-stream', 'content-length': '100000' }, body: Buffer.alloc(1000), abort: true },
    { method: 'DELETE', path: '/v2/images/nope' },
    { method: 'GET', path: '/v2/schemas/image' },
    { method: 'GET', path: '/v2/images/%zz' },
  ];
  const slow: string[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  try {
    await Promise.all(Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = 0; i < REQUESTS_PER_CLIENT; i++) {
        const r = odd[(client * 5 + i) % odd.length];
        const t0 = performance.now();
        await Promise.race([send(edge.url, agent, r), new Promise((resolve) => setTimeout(resolve, BOUND_MS).unref())]);
        const ms = performance.now() - t0;
        if (ms >= BOUND_MS) slow.push(`${r.method} ${r.path}${r.abort === true ? ' (client went away)' : ''}: over ${BOUND_MS} ms`);
      }
    }));
  } finally {
    agent.destroy();
  }
  assert.deepEqual(slow, [], 'every request ended within the bound');
  // The edge still answers at once afterwards.
  const t0 = performance.now();
  assert.equal((await edge.request('/v2/images?id=1')).status, 200);
  assert.ok(performance.now() - t0 < 5000);
  for (const [name, proc] of [['edge', edgeProc], ['central', centralProc]] as const) {
    const errors = proc.output().split('\n').filter((line) => /"level":(50|60)/.test(line));
    assert.deepEqual(errors.slice(0, 3), [], `${name} logged ${errors.length} lines at level ≥ 50`);
  }
});
