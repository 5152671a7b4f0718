import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DeleteBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BadRequestError, NotFoundError, ServiceUnavailableError } from '../../src/core/errors.ts';
import { partSizeFor, S3BlobDriver } from '../../src/storage/drivers/s3-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { createTestBucket, s3Skip, type TestBucket } from '../helpers/s3.ts';

// S3BlobDriver's own behaviour, beyond the BlobStore conformance suite: against the S3 server of
// scripts/test-servers.sh (Swift's s3api), except the part-size schedule.

const MiB = 1 << 20;
const skip = s3Skip || undefined;

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** A source that yields `before`, then waits for release(). */
function gated(before: Uint8Array[], after: Uint8Array[]) {
  const gate = Promise.withResolvers<void>();
  const reached = Promise.withResolvers<void>();
  async function* source() {
    yield* before;
    reached.resolve();
    await gate.promise;
    yield* after;
  }
  return { source: source(), reached: reached.promise, release: () => gate.resolve() };
}

describe('S3BlobDriver: part sizes', () => {
  it('starts at the part size and doubles every tenth of the most parts, up to 5 GiB', () => {
    assert.equal(partSizeFor(1, 8 * MiB, 10_000), 8 * MiB);
    assert.equal(partSizeFor(1000, 8 * MiB, 10_000), 8 * MiB);
    assert.equal(partSizeFor(1001, 8 * MiB, 10_000), 16 * MiB);
    assert.equal(partSizeFor(101, 8 * MiB, 1000), 16 * MiB);
    assert.equal(partSizeFor(1000, 8 * MiB, 1000), 4096 * MiB);
    assert.equal(partSizeFor(10_000, 64 * MiB, 10_000), 5120 * MiB);
    let total = 0;
    for (let n = 1; n <= 1000; n++) total += partSizeFor(n, 8 * MiB, 1000);
    assert.ok(total > 700 * 1024 * MiB, 'Swift s3api\'s 1,000 parts of 8 MiB growing hold hundreds of GiB');
  });
});

describe('S3BlobDriver against Swift s3api', { skip, timeout: 180_000 }, () => {
  const hashers = new WorkerHasherFactory();
  let bucket: TestBucket;
  const drivers: S3BlobDriver[] = [];
  const open = async (id: string, overrides: Parameters<TestBucket['driverOptions']>[1] = {}) => {
    const driver = await S3BlobDriver.create(bucket.driverOptions(id, { prefix: 'p', ...overrides }));
    drivers.push(driver);
    return driver;
  };
  before(async () => {
    bucket = await createTestBucket();
  });
  after(async () => {
    for (const d of drivers) await d.close();
    await bucket?.remove();
    hashers.close();
  });

  it('ranged get returns exactly the bytes asked, across the parts of a multipart object', async () => {
    const driver = await open('ranges', { partSize: 5 * MiB });
    const store = new VerifyingBlobStore(driver, hashers);
    const bytes = randomBytes(17 * MiB + 3);
    await store.put('multi', (async function* () { for (let at = 0; at < bytes.length; at += 777_777) yield bytes.subarray(at, at + 777_777); })());
    assert.deepEqual(await bucket.objects('p/'), ['p/multi']);
    const last = bytes.length - 1;
    const ranges: [number | undefined, number | undefined][] = [
      [0, 0], [5 * MiB - 1, 5 * MiB], [5 * MiB - 10, 10 * MiB + 10], [10 * MiB, 10 * MiB], [15 * MiB + 1, undefined], [undefined, 5 * MiB],
      [last, last], [last - 4, last + 100], [3, 3 * 5 * MiB + 2], [undefined, undefined],
    ];
    for (const [start, end] of ranges) {
      const got = await readAll(await driver.get('multi', { start, end }));
      const expected = bytes.subarray(start ?? 0, end === undefined ? undefined : Math.min(end, last) + 1);
      assert.ok(got.equals(expected), `bytes [${start}, ${end}]: ${got.length} bytes, ${expected.length} expected`);
    }
    assert.equal((await readAll(await driver.get('multi', { start: bytes.length }))).length, 0, 'a range from the end on: no bytes');
    await assert.rejects(driver.get('absent', { start: 1, end: 2 }), NotFoundError);
  });

  it('names objects PREFIX/KEY, lists only keys under the prefix, and gives s3:// URLs', async () => {
    const driver = await open('names', { prefix: 'deep/er' });
    const top = await open('top', { prefix: '' });
    const store = new VerifyingBlobStore(driver, hashers);
    await store.put('k1', (async function* () { yield Buffer.from('one'); })());
    await bucket.put('deep/er/not a key', 'x');
    await bucket.put('deep/er/nested/k2', 'x');
    await bucket.put('deep/k3', 'x');
    const keys: string[] = [];
    for await (const k of driver.list()) keys.push(k);
    assert.deepEqual(keys, ['k1']);
    assert.equal(driver.urlFor('k1'), `s3://${bucket.bucket}/deep/er/k1`);
    assert.equal(top.urlFor('k1'), `s3://${bucket.bucket}/k1`);
    assert.throws(() => driver.urlFor('../k1'), BadRequestError);
    await driver.delete('never-there');
    await driver.delete('k1');
    assert.equal(await driver.stat('k1'), undefined);
  });

  it('lists and cleans up across pages: every key and every dead upload, however many pages they take', async () => {
    // A page of 2 stands for S3's 1000: the same continuation tokens and markers, on 7 keys and 5 uploads.
    const driver = await open('paged', { prefix: 'paged', listPageSize: 2, partialGraceMs: 0 });
    const names = Array.from({ length: 7 }, (_, i) => `k${i}`);
    for (const name of names) await bucket.put(`paged/${name}`, name);
    for (let i = 0; i < 5; i++) await bucket.leavePartial(`paged/dead-${i % 2}`);
    const keys: string[] = [];
    for await (const k of driver.list()) keys.push(k);
    assert.deepEqual(keys.sort(), names);
    assert.equal(await driver.removePartial(), 5);
    assert.deepEqual(await bucket.uploads('paged/'), []);
  });

  it('sends up to partsInFlight parts of an upload at a time, over a link with latency', async () => {
    const target = new URL(bucket.endpoint);
    const link = await FaultProxy.start({ target: { host: target.hostname, port: Number(target.port) } });
    try {
      link.latency(40);
      const driver = await open('in-flight', { endpoint: link.url, partSize: 5 * MiB, partsInFlight: 3 });
      const store = new VerifyingBlobStore(driver, hashers);
      let most = 0;
      let watching = true;
      const watch = (async () => {
        while (watching) {
          most = Math.max(most, link.stats().connections.active);
          await sleep(5);
        }
      })();
      const data = randomBytes(40 * MiB);
      const digest = await store.put('many-parts', (async function* () { for (let at = 0; at < data.length; at += MiB) yield data.subarray(at, at + MiB); })());
      watching = false;
      await watch;
      assert.equal(digest.size, data.length);
      assert.ok((await readAll(await driver.get('many-parts'))).equals(data));
      assert.ok(most >= 3, `at most ${most} connections at once: the parts went one after the other`);
    } finally {
      await link.close();
    }
  });

  it('an abort mid multipart upload rejects with AbortError and leaves no upload and no object', async () => {
    const driver = await open('aborts', { partSize: 5 * MiB });
    const store = new VerifyingBlobStore(driver, hashers);
    const controller = new AbortController();
    const source = gated([randomBytes(12 * MiB)], [randomBytes(MiB)]);
    const pending = store.put('aborted', source.source, { signal: controller.signal });
    await source.reached;
    while ((await bucket.uploads('p/')).length === 0) await sleep(20);
    controller.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    source.release();
    assert.deepEqual(await bucket.uploads('p/'), []);
    assert.equal(await driver.stat('aborted'), undefined);
  });

  it('removePartial leaves a running write and another node\'s fresh upload alone, and aborts uploads past the grace period', async () => {
    const node1 = await open('node1', { partSize: 5 * MiB, partialGraceMs: 3000 });
    const node2 = await open('node2', { partSize: 5 * MiB, partialGraceMs: 3000 });
    const store1 = new VerifyingBlobStore(node1, hashers);
    // node1 is writing (its multipart upload exists); a dead writer left another upload.
    const source = gated([randomBytes(11 * MiB)], [randomBytes(1000)]);
    const writing = store1.put('running', source.source);
    await source.reached;
    while ((await bucket.uploads('p/')).length === 0) await sleep(20);
    const dead = await bucket.leavePartial('p/dead');
    assert.equal(await node2.removePartial(), 0, 'both are younger than the grace period: either could be another node\'s running write');
    assert.equal(await node1.removePartial(), 0);
    await sleep(4200);
    assert.equal(await node2.removePartial(), 2, 'past the grace period, node2 takes both for dead (node1\'s too: it is not its own)');
    assert.deepEqual(await bucket.uploads('p/'), []);
    source.release();
    await assert.rejects(writing, (e: Error) => e instanceof ServiceUnavailableError && /could not (upload part|complete the upload)/.test(e.message));
    assert.equal(await node1.stat('running'), undefined);
    assert.ok(dead.uploadId.length > 0);

    // With no grace at all, a node still never aborts its own running write.
    const eager = await open('eager', { partSize: 5 * MiB, partialGraceMs: 0 });
    const store = new VerifyingBlobStore(eager, hashers);
    const again = gated([randomBytes(11 * MiB)], [randomBytes(1000)]);
    const pending = store.put('kept', again.source);
    await again.reached;
    while ((await bucket.uploads('p/')).length === 0) await sleep(20);
    await bucket.leavePartial('p/kept');
    assert.equal(await eager.removePartial(), 1, 'the dead upload of the same key goes, the running one stays');
    again.release();
    assert.equal((await pending).size, 11 * MiB + 1000);
    assert.deepEqual(await bucket.uploads('p/'), []);
    assert.deepEqual(await eager.stat('kept'), { size: 11 * MiB + 1000 });
  });

  it('creates its bucket when it is missing; says why when it cannot reach it', async () => {
    const name = `${bucket.bucket}-new`;
    const driver = await S3BlobDriver.create(bucket.driverOptions('fresh', { bucket: name }));
    drivers.push(driver);
    await bucket.client.send(new HeadBucketCommand({ Bucket: name }));
    await bucket.client.send(new DeleteBucketCommand({ Bucket: name }));

    const started = performance.now();
    await assert.rejects(S3BlobDriver.create(bucket.driverOptions('dead', { endpoint: 'http://127.0.0.1:9', maxAttempts: 2 })), (e: Error) => {
      assert.ok(e instanceof ServiceUnavailableError);
      assert.match(e.message, /^the S3 store dead at http:\/\/127\.0\.0\.1:9 is unreachable: could not reach bucket outpost-test-\w+: .*ECONNREFUSED/);
      return true;
    });
    assert.ok(performance.now() - started < 5000, 'a refused connection fails within seconds');
    await assert.rejects(S3BlobDriver.create(bucket.driverOptions('denied', { credentials: { ...bucket.credentials, secretAccessKey: 'wrong' } })), (e: Error) => {
      assert.ok(e instanceof ServiceUnavailableError);
      assert.match(e.message, /^the S3 store denied at http:\/\/127\.0\.0\.1:\d+ refused the credentials or access to bucket outpost-test-\w+: could not reach bucket/);
      return true;
    });
  });
});
