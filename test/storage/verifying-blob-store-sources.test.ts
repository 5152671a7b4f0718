import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PayloadTooLargeError } from '../../src/core/errors.ts';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';

// VerifyingBlobStore.put (over a directory) beyond the BlobStore conformance suite: how it reads a Node stream, which
// chunks it releases (only an HTTP request's own), and the hasher reading shared memory in place.

const MiB = 1 << 20;
const hashers = new WorkerHasherFactory();
let dir: string;
let store: VerifyingBlobStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'outpost-sources-'));
  store = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'sources', root: dir }), hashers);
});
after(async () => {
  await hashers.close();
  await rm(dir, { recursive: true, force: true });
});

const digestOf = (bytes: Uint8Array) => ({
  size: bytes.length,
  md5: createHash('md5').update(bytes).digest('hex'),
  sha512: createHash('sha512').update(bytes).digest('hex'),
});
const partials = () => readdir(join(dir, '.incomplete'));

/** Runs `handler` for one PUT of `body` (sent in `piece`-byte writes) on a loopback server; its result. */
async function withRequest<T>(body: Uint8Array, piece: number, handler: (req: IncomingMessage) => Promise<T>): Promise<T> {
  let result!: Promise<T>;
  const server = createServer((req, res) => {
    result = handler(req);
    result.then(() => res.end('ok'), () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => {
      const req = request({ port, host: '127.0.0.1', method: 'PUT', headers: { 'content-length': String(body.length) } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', () => resolve());
      (async () => {
        for (let offset = 0; offset < body.length; offset += piece) {
          if (!req.write(body.subarray(offset, offset + piece))) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })();
    });
    return await result;
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('VerifyingBlobStore.put with a Node stream', () => {
  it('stores an HTTP request body and releases each chunk of it once copied', async () => {
    const body = randomBytes(37 * MiB + 4321); // several 4 MiB batches, so the stream is paused and resumed
    const seen: Uint8Array[] = [];
    const digest = await withRequest(body, 256 * 1024, async (req) => {
      const push = req.push.bind(req);
      req.push = (chunk: Uint8Array | null) => { if (chunk !== null) seen.push(chunk); return push(chunk); };
      return store.put('request-body', req);
    });
    assert.deepEqual(digest, digestOf(body));
    assert.deepEqual(await readFile(join(dir, 'request-body')), body);
    assert.ok(seen.length > 10);
    assert.equal(new Set(seen.map((c) => c.buffer)).size, seen.length, 'each chunk has an ArrayBuffer of its own');
    assert.deepEqual(seen.filter((c) => c.byteLength !== 0), [], 'every chunk was released after it was copied');
  });

  it('leaves the chunks of a request that another listener also reads', async () => {
    const body = randomBytes(3 * MiB);
    const seen: Buffer[] = [];
    const digest = await withRequest(body, 64 * 1024, async (req) => {
      // Listens once the store reads the stream (a listener before would take chunks from it).
      req.once('resume', () => req.on('data', (chunk: Buffer) => seen.push(chunk)));
      return store.put('observed', req);
    });
    assert.deepEqual(digest, digestOf(body));
    const tail = Buffer.concat(seen);
    assert.ok(tail.length > 0);
    assert.deepEqual(tail, body.subarray(body.length - tail.length), 'what the other listener got is intact');
  });

  it('leaves the chunks of any other stream and of an async iterable as they were', async () => {
    const chunks = Array.from({ length: 40 }, () => randomBytes(256 * 1024));
    const copies = chunks.map((c) => Buffer.from(c));
    const bytes = Buffer.concat(copies);
    const pass = new PassThrough();
    const put = store.put('pass-through', pass);
    for (const c of chunks) if (!pass.write(c)) await new Promise((r) => pass.once('drain', r));
    pass.end();
    assert.deepEqual(await put, digestOf(bytes));
    assert.deepEqual(await store.put('generator', (async function* () { yield* chunks; })()), digestOf(bytes));
    assert.deepEqual(chunks, copies, 'the producers still have their bytes');
  });

  it('fails with the stream\'s error and leaves nothing behind', async () => {
    class Broken extends Error {}
    const source = new Readable({ read() { /* pushed below */ } });
    const put = store.put('broken-stream', source);
    source.push(randomBytes(5 * MiB));
    await sleep(10);
    source.destroy(new Broken('reset'));
    await assert.rejects(put, Broken);
    assert.deepEqual(await partials(), []);
    assert.equal(await store.stat('broken-stream'), undefined);
  });

  it('fails with the error of a stream that fails before the file is open, and leaves nothing behind', async () => {
    class Broken extends Error {}
    const source = new Readable({ read() { /* never more */ } });
    const put = store.put('early-broken-stream', source);
    source.destroy(new Broken('reset while opening'));
    await assert.rejects(put, Broken);
    assert.deepEqual(await partials(), []);
    assert.equal(await store.stat('early-broken-stream'), undefined);
  });

  it('stops a stream that waits for bytes when the signal aborts, and destroys it', async () => {
    const source = new Readable({ read() { /* never more */ } });
    source.push(randomBytes(100_000));
    const controller = new AbortController();
    const put = store.put('stalled-stream', source, { signal: controller.signal });
    await sleep(20);
    controller.abort();
    const outcome = await Promise.race([put.then(() => 'resolved', (e: Error) => e.name), sleep(2000, 'still pending')]);
    assert.equal(outcome, 'AbortError');
    assert.ok(source.destroyed, 'the stream is destroyed, as leaving for-await over it does');
    assert.deepEqual(await partials(), []);
  });

  it('stops at maxSize without reading the rest of the stream', async () => {
    let pushed = 0;
    const source = new Readable({ read() { pushed++; this.push(randomBytes(MiB)); } });
    await assert.rejects(store.put('too-large', source, { maxSize: 10 * MiB }), PayloadTooLargeError);
    assert.ok(source.destroyed);
    assert.ok(pushed < 40, `read ${pushed} MiB`);
    assert.deepEqual(await partials(), []);
  });

  it('takes chunks larger than a batch, and empty streams', async () => {
    const big = randomBytes(19 * MiB + 7);
    assert.deepEqual(await store.put('one-big-chunk', Readable.from([big], { objectMode: false })), digestOf(big));
    assert.deepEqual(await store.put('empty-stream', Readable.from([], { objectMode: false })), digestOf(new Uint8Array(0)));
  });
});

describe('WorkerHasherFactory', () => {
  it('hashes shared memory in place and copied chunks, in the order given', async () => {
    const shared = new Uint8Array(new SharedArrayBuffer(3 * MiB));
    shared.set(randomBytes(shared.length));
    const parts = [randomBytes(1000), shared.subarray(0, MiB), randomBytes(70_000), shared.subarray(MiB + 5), randomBytes(3)];
    const hasher = hashers.create();
    await Promise.all(parts.map((part) => hasher.update(part))); // each call takes its bytes before returning
    const expected = digestOf(Buffer.concat(parts));
    assert.deepEqual(await hasher.digest(), { md5: expected.md5, sha512: expected.sha512 });
  });
});
