import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataMismatchError, ServiceUnavailableError } from '../../src/core/errors.ts';
import type { BlobDriver, BlobWriter } from '../../src/core/ports.ts';
import { S3BlobDriver } from '../../src/storage/drivers/s3-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { createTestBucket, s3Skip, type TestBucket } from '../helpers/s3.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

// The S3 store against a real S3 server (Swift's s3api, from scripts/test-servers.sh): large
// uploads stay invisible until verified, a cut link fails fast and leaves nothing visible, and
// `outpost serve` runs with an S3 store.

const MiB = 1 << 20;
const GiB = 1 << 30;
const skip = s3Skip || undefined;

/** 1 MiB of random bytes the generated streams repeat. */
const PATTERN = randomBytes(MiB);

/** `size` bytes in 1 MiB chunks, generated (PATTERN in one buffer, reused), each chunk stamped with its index. */
async function* generated(size: number, onChunk?: (index: number) => void | Promise<void>): AsyncGenerator<Uint8Array> {
  const chunk = Buffer.from(PATTERN);
  for (let i = 0; i * MiB < size; i++) {
    await onChunk?.(i);
    chunk.writeUInt32BE(i, 0);
    yield chunk.subarray(0, Math.min(MiB, size - i * MiB));
  }
}

/** A driver whose writers note when their commit begins (the bytes are verified by then). */
function noteCommits(driver: BlobDriver, commits: number[]): BlobDriver {
  return Object.assign(Object.create(driver) as BlobDriver, {
    id: driver.id,
    openWriter: async (key: string, opts?: { signal?: AbortSignal }): Promise<BlobWriter> => {
      const writer = await driver.openWriter(key, opts);
      return {
        get written() { return writer.written; },
        write: (bytes, o) => writer.write(bytes, o),
        commit: (o) => { commits.push(performance.now()); return writer.commit(o); },
        cancel: () => writer.cancel(),
      };
    },
    get: driver.get.bind(driver), stat: driver.stat.bind(driver), delete: driver.delete.bind(driver), list: driver.list.bind(driver),
    removePartial: driver.removePartial.bind(driver), urlFor: driver.urlFor.bind(driver),
  });
}

describe('S3 store: uploads are invisible until verified', { skip, timeout: 600_000 }, () => {
  const hashers = new WorkerHasherFactory();
  let bucket: TestBucket;
  let driver: S3BlobDriver;
  before(async () => {
    bucket = await createTestBucket();
    driver = await S3BlobDriver.create(bucket.driverOptions('s3-big', { prefix: 'images' }));
  });
  after(async () => {
    await driver?.close();
    await bucket?.remove();
    hashers.close();
  });

  it('a 1 GiB upload to an S3 store is never visible before it is verified', async () => {
    const commits: number[] = [];
    const store = new VerifyingBlobStore(noteCommits(driver, commits), hashers);
    const md5 = createHash('md5');
    let done = false;
    const sightings: { at: number; how: string }[] = [];
    let polls = 0;
    let uploadsSeen = 0;
    let peakArrayBuffers = 0;
    // A client of its own polls the object's name (HEAD, and a listing) until the put resolves.
    const poll = (async () => {
      while (!done) {
        const [head, listing, pending] = await Promise.all([
          bucket.client.send(new HeadObjectCommand({ Bucket: bucket.bucket, Key: 'images/big' })).then(() => true, () => false),
          bucket.client.send(new ListObjectsV2Command({ Bucket: bucket.bucket, Prefix: 'images/' })),
          bucket.uploads('images/'),
        ]);
        const at = performance.now();
        polls++;
        if (head) sightings.push({ at, how: 'HeadObject' });
        if ((listing.Contents ?? []).some((o) => o.Key === 'images/big')) sightings.push({ at, how: 'ListObjectsV2' });
        if (pending.some((u) => u.key === 'images/big')) uploadsSeen++;
        peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers);
        await sleep(50);
      }
    })();
    const started = performance.now();
    let digest;
    try {
      digest = await store.put('big', generated(GiB), {});
    } finally {
      done = true;
      await poll;
    }
    const seconds = (performance.now() - started) / 1000;
    for await (const c of generated(GiB)) md5.update(c);
    assert.equal(digest.size, GiB);
    assert.equal(digest.md5, md5.digest('hex'));
    assert.equal(commits.length, 1);
    const early = sightings.filter((s) => s.at < commits[0]);
    assert.deepEqual(early, [], 'the object was visible before its bytes were verified');
    assert.ok(polls >= 20, `the name was polled throughout the upload (${polls} polls)`);
    assert.ok(uploadsSeen > 0, 'the bytes went as a multipart upload, seen in progress');
    assert.ok(peakArrayBuffers < 256 * MiB, `memory stays bounded (peak arrayBuffers ${(peakArrayBuffers / MiB).toFixed(0)} MiB)`);
    assert.deepEqual(await driver.stat('big'), { size: GiB });
    assert.deepEqual(await bucket.uploads('images/'), [], 'no incomplete upload is left');
    // Spot checks of the stored bytes, across part boundaries.
    for (const at of [0, 8 * MiB - 3, 100 * MiB + 1, GiB - 5]) {
      const got = Buffer.concat(await (await driver.get('big', { start: at, end: at + 4 })).toArray());
      const index = Math.floor(at / MiB);
      assert.equal(got.length, Math.min(5, GiB - at));
      if (at % MiB === 0) assert.equal(got.readUInt32BE(0), index);
    }
    console.log(`# 1 GiB put to Swift s3api: ${seconds.toFixed(1)} s (${(GiB / MiB / seconds).toFixed(0)} MiB/s), ${polls} polls, peak arrayBuffers ${(peakArrayBuffers / MiB).toFixed(0)} MiB`);
    await driver.delete('big');
  });

  it('a put with a wrong expected md5/sha512 leaves no object and no incomplete multipart upload', async () => {
    const store = new VerifyingBlobStore(driver, hashers);
    const wrong = { md5: '0'.repeat(32), sha512: '0'.repeat(128) };
    await assert.rejects(store.put('mismatch', generated(64 * MiB), { expected: wrong }), DataMismatchError);
    assert.equal(await driver.stat('mismatch'), undefined);
    assert.deepEqual(await bucket.objects('images/'), []);
    assert.deepEqual(await bucket.uploads('images/'), []);
  });
});

describe('S3 store: a cut link fails the upload with a clear error and leaves no visible object', { skip, timeout: 120_000 }, () => {
  const hashers = new WorkerHasherFactory();
  let bucket: TestBucket;
  let proxy: FaultProxy;
  let driver: S3BlobDriver;
  before(async () => {
    bucket = await createTestBucket();
    const target = new URL(bucket.endpoint);
    proxy = await FaultProxy.start({ target: { host: target.hostname, port: Number(target.port) } });
    driver = await S3BlobDriver.create(bucket.driverOptions('s3-far', {
      endpoint: proxy.url, prefix: 'images', partSize: 5 * MiB, connectTimeoutMs: 1000, idleTimeoutMs: 2000, maxAttempts: 2,
    }));
  });
  after(async () => {
    await driver?.close();
    await proxy?.close();
    await bucket?.remove();
    hashers.close();
  });

  /** Puts 256 MiB through the proxy, calling `cut` once 24 MiB were taken; the error and how long it took to come. */
  const cutPut = async (key: string, cut: () => void) => {
    const store = new VerifyingBlobStore(driver, hashers);
    let cutAt = 0;
    const outcome = await store.put(key, generated(256 * MiB, async (i) => {
      if (i === 24) {
        // Parts are on the wire: the upload exists, as its listing shows.
        while (!(await bucket.uploads('images/')).some((u) => u.key === `images/${key}`)) await sleep(20);
        cutAt = performance.now();
        cut();
      }
    })).then(() => undefined, (error: unknown) => error);
    return { error: outcome, seconds: (performance.now() - cutAt) / 1000 };
  };

  it('connections reset and refused: put rejects promptly with ServiceUnavailableError naming the store; removePartial cleans up once the link is back', async () => {
    const { error, seconds } = await cutPut('reset', () => proxy.refuse());
    assert.ok(error instanceof ServiceUnavailableError, `a ServiceUnavailableError, not ${String(error)}`);
    assert.match(error.message, new RegExp(`^the S3 store s3-far at ${proxy.url.replace(/\./g, '\\.')} is unreachable: could not upload part \\d+ of reset: `));
    assert.ok(seconds < 10, `the put failed ${seconds.toFixed(1)} s after the cut`);
    assert.equal(await driver.stat('reset').catch((e: Error) => e.constructor.name), 'ServiceUnavailableError', 'the store answers 503 while cut');
    // Looked at directly (not through the cut link): nothing visible; the upload could not be aborted.
    assert.deepEqual(await bucket.objects('images/'), []);
    assert.equal((await bucket.uploads('images/')).length, 1);
    proxy.heal();
    assert.equal(await driver.removePartial(), 1, 'the abandoned upload is aborted, grace period or not');
    assert.deepEqual(await bucket.uploads('images/'), []);
  });

  it('a silent cut (nothing moves): put rejects within the idle timeout and its retries', async () => {
    const { error, seconds } = await cutPut('silent', () => proxy.blackhole());
    try {
      assert.ok(error instanceof ServiceUnavailableError, `a ServiceUnavailableError, not ${String(error)}`);
      assert.match(error.message, /^the S3 store s3-far at http:\/\/127\.0\.0\.1:\d+ is unreachable: could not upload part \d+ of silent: .*timed out/);
      assert.ok(seconds < 15, `the put failed ${seconds.toFixed(1)} s after the cut`);
      assert.deepEqual(await bucket.objects('images/'), []);
    } finally {
      proxy.heal();
    }
    await driver.removePartial();
    assert.deepEqual(await bucket.uploads('images/'), []);
  });
});

describe('outpost serve with an S3 store', { skip, timeout: 120_000 }, () => {
  let bucket: TestBucket;
  let server: ServeProcess | undefined;
  let work: string;
  before(async () => {
    bucket = await createTestBucket();
    work = await tempDir('outpost-s3-serve-');
  });
  after(async () => {
    await server?.stop();
    await bucket?.remove();
    await rm(work, { recursive: true, force: true });
  });

  it('stores an upload in the bucket under the prefix, serves it back, and shows no secret in the stores detail', async () => {
    const spec = `lake=s3://${bucket.bucket}/glance/images?endpoint=${bucket.endpoint}&region=us-east-1&path_style=true`;
    server = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'data'), '--store', spec], {
      AWS_ACCESS_KEY_ID: bucket.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: bucket.credentials.secretAccessKey,
    });
    const api = (path: string, init: RequestInit = {}) => fetch(`${server!.url}${path}`, init);
    const bytes = randomBytes(9 * MiB + 77);
    const created = await (await api('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'on-s3', disk_format: 'raw', container_format: 'bare' }),
    })).json() as { id: string };
    const put = await api(`/v2/images/${created.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    assert.equal(put.status, 204, await put.text());
    const image = await (await api(`/v2/images/${created.id}`)).json() as Record<string, unknown>;
    assert.equal(image.status, 'active');
    assert.equal(image.stores, 'lake');
    assert.equal(image.checksum, createHash('md5').update(bytes).digest('hex'));
    assert.deepEqual(await bucket.objects(), [`glance/images/${created.id}`]);
    const download = await api(`/v2/images/${created.id}/file`);
    assert.equal(download.status, 200);
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(bytes));
    const ranged = await api(`/v2/images/${created.id}/file`, { headers: { range: 'bytes=8388600-8388615' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(8388600, 8388616)));
    const detail = await api('/v2/info/stores/detail');
    const text = await detail.text();
    assert.equal(detail.status, 200, text);
    const lake = (JSON.parse(text) as { stores: { id: string; type: string; properties: Record<string, unknown> }[] }).stores.find((s) => s.id === 'lake');
    assert.equal(lake?.type, 's3');
    assert.deepEqual(lake?.properties, { bucket: bucket.bucket, prefix: 'glance/images', endpoint: bucket.endpoint, region: 'us-east-1', url: `s3://${bucket.bucket}/glance/images/` });
    assert.ok(!text.includes(bucket.credentials.secretAccessKey) && !text.includes(bucket.credentials.accessKeyId), 'no credential in the stores detail');
    const deleted = await api(`/v2/images/${created.id}`, { method: 'DELETE' });
    assert.equal(deleted.status, 204);
    assert.deepEqual(await bucket.objects(), []);
  });

  it('refuses to start, saying why, when the S3 endpoint is unreachable or refuses the credentials', async () => {
    const dead = `http://127.0.0.1:9`;
    await assert.rejects(spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'data-dead'), '--store', `lake=s3://${bucket.bucket}?endpoint=${dead}`], {
      AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y',
    }), (e: Error) => {
      assert.match(e.message, /store "lake": the S3 store lake at http:\/\/127\.0\.0\.1:9 is unreachable: could not reach bucket/);
      return true;
    });
    await assert.rejects(spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'data-denied'), '--store', `lake=s3://${bucket.bucket}?endpoint=${bucket.endpoint}`], {
      AWS_ACCESS_KEY_ID: bucket.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: 'not-the-secret',
    }), (e: Error) => {
      assert.match(e.message, /store "lake": the S3 store lake at http:\/\/127\.0\.0\.1:\d+ refused the credentials or access to bucket/);
      return true;
    });
  });
});
