import assert from 'node:assert/strict';
import { request as httpRequest, createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { FaultProxy } from '../test-support/fault-proxy.ts';

/**
 * The fault proxy observed as a client sees it, against a real node:http server on 127.0.0.1.
 * Each test gets its own proxy (so no pooled connection leaks from one mode into the next).
 */

/** Deterministic body bytes: byte i is i mod 251. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

interface Origin {
  server: Server;
  port: number;
  /** Requests that reached the origin, by path. */
  seen: string[];
  /** What GET /state answers: "changes made at central". */
  state: { version: number };
}

async function startOrigin(): Promise<Origin> {
  const seen: string[] = [];
  const state = { version: 1 };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin');
    seen.push(url.pathname);
    if (url.pathname === '/bytes') {
      const body = pattern(Number(url.searchParams.get('n') ?? '0'));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    } else if (url.pathname === '/slow') {
      const timer = setTimeout(() => res.end('late'), Number(url.searchParams.get('ms') ?? '1000'));
      res.on('close', () => clearTimeout(timer));
    } else if (url.pathname === '/state') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(state));
    } else if (url.pathname === '/echo') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen, state };
}

/** A GET with node:http on a fresh connection (no pooling): resolves the body or rejects with the socket error. */
function rawGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function getBytes(url: string, init?: RequestInit): Promise<Buffer> {
  const res = await fetch(url, init);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

function isConnectionError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNREFUSED';
}

describe('FaultProxy', () => {
  let origin: Origin;
  let proxy: FaultProxy | undefined;
  const startProxy = async () => {
    proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: origin.port } });
    return proxy;
  };

  before(async () => { origin = await startOrigin(); });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    origin.seen.length = 0;
    origin.state.version = 1;
  });
  after(async () => {
    origin.server.closeAllConnections();
    await new Promise<void>((resolve) => origin.server.close(() => resolve()));
  });

  it('refuses targets that are not loopback address literals, before opening anything', async () => {
    for (const host of ['10.0.0.1', '192.168.1.1', '0.0.0.0', '::', 'example.com', 'localhost', '']) {
      await assert.rejects(FaultProxy.start({ target: { host, port: 80 } }), RangeError, host);
    }
    await assert.rejects(FaultProxy.start({ target: { host: '127.0.0.1', port: 0 } }), RangeError);
    for (const host of ['127.0.0.1', '127.1.2.3', '::1']) {
      const p = await FaultProxy.start({ target: { host, port: origin.port } });
      await p.close();
    }
  });

  it('listens on 127.0.0.1 and forwards unchanged in pass mode, counting bytes per direction', async () => {
    const p = await startProxy();
    assert.match(p.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(p.url, `http://127.0.0.1:${p.port}`);
    assert.equal(p.mode.fault, 'none');
    const body = await getBytes(`${p.url}/bytes?n=100000`);
    assert.deepEqual(body, pattern(100_000));
    const s = p.stats();
    assert.equal(s.connections.accepted, 1);
    assert.ok(s.toClient.forwarded > 100_000, `toClient ${s.toClient.forwarded}`);
    assert.equal(s.toClient.forwarded, s.toClient.received);
    assert.ok(s.toTarget.forwarded > 20 && s.toTarget.forwarded < 2000, `toTarget ${s.toTarget.forwarded}`);
    assert.equal(s.toTarget.forwarded, s.toTarget.received);
    assert.equal(s.toClient.corrupted, 0);
    p.resetStats();
    assert.equal(p.stats().toClient.forwarded, 0);
  });

  it('latency: a round trip takes at least twice the one-way delay, and pass() removes it at runtime', async () => {
    const p = await startProxy();
    await getBytes(`${p.url}/state`); // warm: connection pooled
    p.latency(100);
    assert.equal(p.mode.latencyMs, 100);
    let t = performance.now();
    await getBytes(`${p.url}/state`);
    const slow = performance.now() - t;
    assert.ok(slow >= 195, `round trip ${slow} ms under latency(100)`);
    p.pass();
    t = performance.now();
    await getBytes(`${p.url}/state`);
    const fast = performance.now() - t;
    assert.ok(fast < 150, `round trip ${fast} ms after pass()`);
  });

  it('latency with jitter keeps byte order', async () => {
    const p = await startProxy();
    p.latency(5, 5);
    const sent = pattern(2 * 1024 * 1024);
    const echoed = await getBytes(`${p.url}/echo`, { method: 'POST', body: sent });
    assert.equal(echoed.length, sent.length);
    assert.ok(echoed.equals(sent), 'echoed bytes differ');
  });

  it('bandwidth limits throughput, shared by concurrent connections', async () => {
    const p = await startProxy();
    const rate = 400_000;
    p.bandwidth(rate);
    assert.equal(p.mode.bytesPerSecond, rate);
    let t = performance.now();
    const one = await getBytes(`${p.url}/bytes?n=400000`);
    let took = (performance.now() - t) / 1000;
    assert.equal(one.length, 400_000);
    assert.ok(took >= 0.85 && took < 2, `400 kB at 400 kB/s took ${took} s`);

    t = performance.now();
    const both = await Promise.all([getBytes(`${p.url}/bytes?n=200000`, { headers: { 'x-n': '1' } }), rawGet(`${p.url}/bytes?n=200000`)]);
    took = (performance.now() - t) / 1000;
    assert.equal(both[0].length + both[1].body.length, 400_000);
    assert.ok(took >= 0.85 && took < 2, `2 × 200 kB concurrently at 400 kB/s took ${took} s`);

    p.bandwidth(Infinity);
    t = performance.now();
    await getBytes(`${p.url}/bytes?n=400000`);
    took = (performance.now() - t) / 1000;
    assert.ok(took < 0.5, `unlimited again: ${took} s`);
  });

  it('refuse: new connections are reset at once, open ones are cut, the origin sees nothing', async () => {
    const p = await startProxy();
    const pending = rawGet(`${p.url}/slow?ms=3000`);
    await new Promise((r) => setTimeout(r, 100));
    p.refuse();
    assert.equal(p.mode.fault, 'refuse');
    await assert.rejects(pending, isConnectionError);
    const seenBefore = origin.seen.length;
    const t = performance.now();
    await assert.rejects(rawGet(`${p.url}/state`), isConnectionError);
    await assert.rejects(fetch(`${p.url}/state`), TypeError);
    assert.ok(performance.now() - t < 1000);
    assert.equal(origin.seen.length, seenBefore);
    const s = p.stats();
    assert.equal(s.connections.refused, 2);
    assert.equal(s.connections.cut, 1);
    p.heal();
    assert.equal((await rawGet(`${p.url}/state`)).status, 200);
  });

  it('blackhole: requests and writes hang until the client times out while the proxy stays up; heal() brings changes made meanwhile', async () => {
    const p = await startProxy();
    assert.deepEqual(JSON.parse((await getBytes(`${p.url}/state`)).toString()), { version: 1 }); // a pooled connection
    p.blackhole();
    const seenBefore = origin.seen.length;
    // Existing (pooled) connection, then a new one, then a write: all time out.
    await assert.rejects(fetch(`${p.url}/state`, { signal: AbortSignal.timeout(300) }), { name: 'TimeoutError' });
    await assert.rejects(rawGet(`${p.url}/state`, 300), { name: 'AbortError' });
    await assert.rejects(
      fetch(`${p.url}/echo`, { method: 'POST', body: 'x'.repeat(10_000), signal: AbortSignal.timeout(300) }),
      { name: 'TimeoutError' },
    );
    assert.equal(origin.seen.length, seenBefore, 'nothing crossed the blackhole');
    // The proxy still accepts TCP connections: a cut, not a refusal.
    await new Promise<void>((resolve, reject) => {
      const s = connect(p.port, '127.0.0.1', () => { s.destroy(); resolve(); });
      s.on('error', reject);
    });
    assert.ok(p.stats().connections.active >= 1);

    origin.state.version = 2; // changed at "central" during the cut
    p.heal();
    assert.equal(p.mode.fault, 'none');
    assert.deepEqual(JSON.parse((await getBytes(`${p.url}/state`)).toString()), { version: 2 });
    assert.ok(p.stats().connections.cut >= 2, 'the stalled connections were reset');
  });

  it('heal() resets connections the blackhole held, so their clients fail fast instead of waiting', async () => {
    const p = await startProxy();
    p.blackhole();
    const held = rawGet(`${p.url}/state`, 10_000);
    await new Promise((r) => setTimeout(r, 100));
    const t = performance.now();
    p.heal();
    await assert.rejects(held, isConnectionError);
    assert.ok(performance.now() - t < 1000);
    assert.ok(p.stats().connections.cut >= 1);
  });

  it('pass() after a blackhole lets held connections resume where they stopped', async () => {
    const p = await startProxy();
    p.blackhole();
    const held = rawGet(`${p.url}/bytes?n=5000`, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(origin.seen.length, 0);
    p.pass();
    const res = await held;
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, pattern(5000));
  });

  it('cut() resets open connections once and keeps the mode', async () => {
    const p = await startProxy();
    const pending = rawGet(`${p.url}/slow?ms=3000`);
    await new Promise((r) => setTimeout(r, 100));
    p.cut();
    await assert.rejects(pending, isConnectionError);
    assert.equal(p.stats().connections.cut, 1);
    assert.equal(p.mode.fault, 'none');
    assert.equal((await rawGet(`${p.url}/state`)).status, 200);
  });

  it('corrupt: bytes of the response differ after the offset, lengths kept; limit 1 flips a single bit', async () => {
    const p = await startProxy();
    p.corrupt({ afterBytes: 4096 });
    assert.deepEqual(p.mode.corrupt, { afterBytes: 4096, everyNth: 1, limit: Infinity });
    const want = pattern(65_536);
    const got = (await rawGet(`${p.url}/bytes?n=65536`)).body; // headers (< 4096 bytes) intact
    assert.equal(got.length, want.length);
    const firstDiff = got.findIndex((b, i) => b !== want[i]);
    assert.ok(firstDiff > 3000 && firstDiff < 4096, `first differing body byte at ${firstDiff}`);
    assert.ok(got.subarray(0, firstDiff).equals(want.subarray(0, firstDiff)));
    for (let i = firstDiff; i < got.length; i++) assert.equal(got[i] ^ want[i], 0x01);
    assert.equal(p.stats().toClient.corrupted, want.length - firstDiff);

    p.corrupt({ afterBytes: 4096, everyNth: 1000, limit: 1 });
    const once = (await rawGet(`${p.url}/bytes?n=65536`)).body;
    const diffs = [...once.keys()].filter((i) => once[i] !== want[i]);
    assert.equal(diffs.length, 1);
    assert.equal(once[diffs[0]] ^ want[diffs[0]], 0x01);

    p.pass();
    assert.ok((await rawGet(`${p.url}/bytes?n=65536`)).body.equals(want));
  });

  it('a target that is down looks like a reset connection', async () => {
    const gone = createServer();
    await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
    const port = (gone.address() as AddressInfo).port;
    await new Promise<void>((resolve) => gone.close(() => resolve()));
    proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port } });
    await assert.rejects(rawGet(`${proxy.url}/`), isConnectionError);
    assert.equal(proxy.stats().connections.failed, 1);
  });

  it('close() stops listening, ends open connections, is idempotent; an abort signal closes it too', async () => {
    const p = await startProxy();
    p.blackhole();
    const held = rawGet(`${p.url}/state`, 10_000);
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all([p.close(), p.close()]);
    await assert.rejects(held, isConnectionError);
    await assert.rejects(rawGet(`${p.url}/state`), { code: 'ECONNREFUSED' });

    const controller = new AbortController();
    const q = await FaultProxy.start({ target: { host: '127.0.0.1', port: origin.port }, signal: controller.signal });
    assert.equal((await rawGet(`${q.url}/state`)).status, 200);
    controller.abort();
    await q.close();
    await assert.rejects(rawGet(`${q.url}/state`), { code: 'ECONNREFUSED' });
    await assert.rejects(
      FaultProxy.start({ target: { host: '127.0.0.1', port: origin.port }, signal: AbortSignal.abort() }),
      { name: 'AbortError' },
    );
  });
});
