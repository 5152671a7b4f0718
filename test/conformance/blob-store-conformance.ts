import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BadRequestError, NotFoundError, PayloadTooLargeError, DataMismatchError } from '../../src/core/errors.ts';
import type { BlobStore } from '../../src/core/ports.ts';
import { validateManifest } from '../../src/core/chunk-manifest.ts';

/** A freshly opened, empty store and how to inspect and dispose of it. */
export interface BlobStoreHandle {
  store: BlobStore;
  /**
   * Every object the driver holds, committed or not (for a directory: every file under the root,
   * including temporary ones; for S3: objects plus pending multipart uploads), as sorted names,
   * a committed blob under its key. Used to check that failed writes leave nothing behind.
   */
  residue(): Promise<string[]>;
  /**
   * Everything around the store that a path-traversal key could reach (for a directory: the
   * files beside and above the root, in a sandbox `open` created), as sorted names.
   */
  surroundings?(): Promise<string[]>;
  /**
   * Leaves what a process that died while writing `key` would have left (for a directory: a
   * temporary file; for S3: a pending multipart upload), for the removePartial tests.
   */
  leavePartial(key: string): Promise<void>;
  /** Removes what `open` created. */
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Skip the whole suite with this message (e.g. "S3 tests need TEST_S3_URL"). */
  skip?: string;
}

const MiB = 1 << 20;

function digestOf(bytes: Uint8Array): { size: number; md5: string; sha512: string } {
  return {
    size: bytes.length,
    md5: createHash('md5').update(bytes).digest('hex'),
    sha512: createHash('sha512').update(bytes).digest('hex'),
  };
}

/** Cuts `bytes` into chunks of the given sizes (cycled), as views into one buffer. */
async function* chunked(bytes: Uint8Array, sizes: number[] = [64 * 1024]): AsyncGenerator<Uint8Array> {
  let i = 0;
  for (let offset = 0; offset < bytes.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]);
    yield bytes.subarray(offset, offset + n);
    offset += n;
    if (i % 16 === 0) await Promise.resolve();
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** A source that yields `before`, then waits until `release()` is called, then yields `after`. */
function gatedSource(before: Uint8Array[], after: Uint8Array[]) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let reachedGate!: () => void;
  const reached = new Promise<void>((resolve) => { reachedGate = resolve; });
  let finished = false;
  async function* source() {
    try {
      for (const chunk of before) yield chunk;
      reachedGate();
      await gate;
      for (const chunk of after) yield chunk;
    } finally {
      finished = true;
    }
  }
  return { source: source(), release, reached, get finished() { return finished; } };
}

/** Keys the port must refuse: anything outside [A-Za-z0-9._-], '..' and hidden names. */
export const INVALID_KEYS = [
  '../x', '..', '.', 'a/b', '/etc/passwd', '', '.hidden', '.incomplete', 'a\0b', '\0', '../../outside', 'x/../y',
  'a..b', 'a\\b', '..\\x', 'a b', 'key\n', 'ä',
];

/**
 * The contract of the `BlobStore` port (src/core/ports.ts), run against one driver. Every test
 * opens its own empty store with `open`.
 */
/** Readers at once in the atomic-overwrite test. */
const READERS_IN_FLIGHT = 16;

export function blobStoreConformance(name: string, open: () => Promise<BlobStoreHandle>, options: ConformanceOptions = {}): void {
  const withStore = (fn: (h: BlobStoreHandle) => Promise<void>) => async () => {
    const handle = await open();
    try {
      await fn(handle);
    } finally {
      await handle.cleanup();
    }
  };
  const put = (store: BlobStore, key: string, bytes: Uint8Array, sizes?: number[]) => store.put(key, chunked(bytes, sizes));
  const read = async (store: BlobStore, key: string, range: { start?: number; end?: number } = {}) => readAll(await store.get(key, range));
  const list = async (store: BlobStore) => {
    const keys: string[] = [];
    for await (const key of store.list()) keys.push(key);
    return keys.sort();
  };
  /** After a failed put of `key`: the key is absent and the store holds exactly what it held before. */
  const assertNothingLeft = async (h: BlobStoreHandle, key: string, residueBefore: string[]) => {
    assert.equal(await h.store.stat(key), undefined, `no ${key} after a failed put`);
    await assert.rejects(h.store.get(key), NotFoundError);
    assert.ok(!(await list(h.store)).includes(key));
    assert.deepEqual(await h.residue(), residueBefore, 'no temporary or partial object is left behind');
  };

  describe(`BlobStore conformance: ${name}`, { skip: options.skip }, () => {
    describe('put / get / stat', () => {
      it('round-trips bytes and returns size, md5 and sha512 as node:crypto computes them', withStore(async ({ store }) => {
        const bytes = randomBytes(100_003);
        const digest = await put(store, 'small-blob', bytes, [1, 7, 4096, 65_536, 13]);
        assert.deepEqual(digest, digestOf(bytes));
        assert.deepEqual(await read(store, 'small-blob'), bytes);
        assert.deepEqual(await store.stat('small-blob'), { size: bytes.length });
      }));

      it('with manifest: returns the chunk manifest of the bytes, the same however they arrive, each chunk\'s sha256 right', withStore(async ({ store }) => {
        const bytes = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(3 * MiB), randomBytes(MiB + 17)]);
        const one = await store.put('with-manifest', chunked(bytes, [64 * 1024]), { manifest: true });
        const two = await store.put('with-manifest-2', chunked(bytes, [1, 999_999, 4096, 3 * MiB]), { manifest: true });
        assert.ok(one.manifest !== undefined);
        const manifest = validateManifest(one.manifest, bytes.length);
        assert.deepEqual(two.manifest, manifest, 'the same manifest for the same bytes');
        assert.deepEqual({ ...one, manifest: undefined }, { ...digestOf(bytes), manifest: undefined });
        for (const c of manifest.chunks) {
          const part = bytes.subarray(c.offset, c.offset + c.length);
          assert.equal(c.sha256, createHash('sha256').update(part).digest('hex'));
          assert.equal(c.zero === true, part.every((b) => b === 0), `chunk at ${c.offset}: zero is ${c.zero}`);
        }
        assert.ok(manifest.chunks.some((c) => c.zero), 'the zeros make at least one zero chunk');
        assert.equal((await put(store, 'without-manifest', bytes)).manifest, undefined, 'no manifest unless asked');
      }));

      it('round-trips runs of zeros (leading, inner, trailing, whole batches of them)', withStore(async ({ store }) => {
        const bytes = Buffer.concat([Buffer.alloc(5 * MiB), randomBytes(1000), Buffer.alloc(9 * MiB + 3), randomBytes(17), Buffer.alloc(4 * MiB + 1)]);
        assert.deepEqual(await put(store, 'zeros', bytes, [MiB, 3 * MiB + 5]), digestOf(bytes));
        assert.ok((await read(store, 'zeros')).equals(bytes));
        assert.deepEqual(await store.stat('zeros'), { size: bytes.length });
        const tail = await read(store, 'zeros', { start: bytes.length - 10 });
        assert.ok(tail.equals(Buffer.alloc(10)));
      }));

      it('stores an empty blob', withStore(async ({ store }) => {
        const digest = await store.put('empty', (async function* () { /* nothing */ })());
        assert.deepEqual(digest, digestOf(new Uint8Array(0)));
        assert.equal(digest.md5, 'd41d8cd98f00b204e9800998ecf8427e');
        assert.deepEqual(await store.stat('empty'), { size: 0 });
        assert.equal((await read(store, 'empty')).length, 0);
        const withEmptyChunks = await store.put('empty-chunks', (async function* () { yield new Uint8Array(0); yield Buffer.alloc(0); })());
        assert.deepEqual(withEmptyChunks, digestOf(new Uint8Array(0)));
      }));

      it('stores a multi-MiB blob sent as many chunks of varied sizes (views into larger buffers)', withStore(async ({ store }) => {
        const bytes = randomBytes(20 * MiB + 12_345); // enough to exercise hashing backpressure
        const digest = await put(store, 'big-blob', bytes, [1, 65_536, 1000, 3 * MiB + 1, 17, 256 * 1024, MiB - 1]);
        assert.deepEqual(digest, digestOf(bytes));
        assert.deepEqual(digestOf(await read(store, 'big-blob')), digestOf(bytes));
        assert.deepEqual(await store.stat('big-blob'), { size: bytes.length });
      }));

      it('accepts keys made of [A-Za-z0-9._-]', withStore(async ({ store }) => {
        const keys = ['0b1c2d3e-aaaa-4bbb-8ccc-123456789abc', 'A.b_c-D9', 'x', 'image.part-1', 'Z_', '9'];
        for (const key of keys) await put(store, key, Buffer.from(key));
        for (const key of keys) assert.deepEqual(await read(store, key), Buffer.from(key));
        assert.deepEqual(await list(store), [...keys].sort());
        for (const key of keys) assert.equal(typeof store.urlFor(key), 'string');
      }));

      it('returns NotFoundError for get of a missing key and undefined for its stat', withStore(async ({ store }) => {
        await assert.rejects(store.get('missing'), NotFoundError);
        await assert.rejects(store.get('missing', { start: 0, end: 10 }), NotFoundError);
        assert.equal(await store.stat('missing'), undefined);
      }));

      it('serves byte ranges [start, end], both inclusive', withStore(async ({ store }) => {
        const bytes = randomBytes(3 * MiB + 5);
        await put(store, 'ranged', bytes, [100_000]);
        const last = bytes.length - 1;
        const ranges: [number | undefined, number | undefined][] = [
          [0, 0], [0, 9], [10, 19], [last, last], [last - 99, last], [5, undefined], [undefined, 99], [undefined, undefined],
          [MiB - 3, MiB + 3], [2 * MiB + 17, 3 * MiB + 4], [0, last], [12_345, 12_345],
        ];
        for (const [start, end] of ranges) {
          const got = await read(store, 'ranged', { start, end });
          const expected = bytes.subarray(start ?? 0, end === undefined ? undefined : end + 1);
          assert.equal(got.length, expected.length, `length of [${start}, ${end}]`);
          assert.ok(got.equals(expected), `bytes of [${start}, ${end}]`);
        }
      }));
    });

    describe('delete / list', () => {
      it('deletes a key; deleting again or deleting a key never written is not an error', withStore(async ({ store }) => {
        await put(store, 'doomed', Buffer.from('bye'));
        await put(store, 'kept', Buffer.from('hi'));
        await store.delete('doomed');
        assert.equal(await store.stat('doomed'), undefined);
        await assert.rejects(store.get('doomed'), NotFoundError);
        await store.delete('doomed');
        await store.delete('never-written');
        assert.deepEqual(await read(store, 'kept'), Buffer.from('hi'));
        assert.deepEqual(await list(store), ['kept']);
      }));

      it('lists exactly the committed keys', withStore(async ({ store }) => {
        assert.deepEqual(await list(store), []);
        const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`);
        for (const key of keys) await put(store, key, Buffer.from(key));
        await put(store, 'empty', new Uint8Array(0));
        await store.delete('key-3');
        assert.deepEqual(await list(store), [...keys.filter((k) => k !== 'key-3'), 'empty'].sort());
      }));

      it('does not show a key while its upload is in progress', withStore(async ({ store }) => {
        await put(store, 'other', Buffer.from('x'));
        const gated = gatedSource([randomBytes(300_000), randomBytes(300_000)], [randomBytes(1000)]);
        const pending = store.put('in-progress', gated.source);
        await gated.reached;
        await sleep(20);
        assert.equal(await store.stat('in-progress'), undefined);
        await assert.rejects(store.get('in-progress'), NotFoundError);
        assert.deepEqual(await list(store), ['other']);
        gated.release();
        assert.equal((await pending).size, 601_000);
        assert.deepEqual(await list(store), ['in-progress', 'other']);
      }));
    });

    describe('removePartial', () => {
      it('removes what a dead writer left and keeps every committed key and its bytes', withStore(async (h) => {
        const bytes = randomBytes(100_000);
        await put(h.store, 'kept', bytes);
        await put(h.store, 'dead', Buffer.from('committed before the writer died'));
        const committed = await h.residue();
        await h.leavePartial('dead');
        await h.leavePartial('other');
        assert.notDeepEqual(await h.residue(), committed, 'leavePartial leaves something');
        assert.equal(await h.store.removePartial(), 2);
        assert.deepEqual(await h.residue(), committed);
        assert.deepEqual(await list(h.store), ['dead', 'kept']);
        assert.deepEqual(await read(h.store, 'kept'), bytes);
        assert.equal(await h.store.removePartial(), 0);
      }));

      it('leaves a write in progress alone: it commits afterwards', withStore(async (h) => {
        const gated = gatedSource([randomBytes(300_000)], [randomBytes(1000)]);
        const pending = h.store.put('in-progress', gated.source);
        await gated.reached;
        await h.leavePartial('in-progress');
        assert.equal(await h.store.removePartial(), 1);
        gated.release();
        assert.equal((await pending).size, 301_000);
        assert.deepEqual(await list(h.store), ['in-progress']);
        assert.deepEqual(await h.residue(), ['in-progress']);
      }));
    });

    describe('failed writes leave nothing behind', () => {
      it('an AbortSignal aborted while the source is still yielding', withStore(async (h) => {
        const before = await h.residue();
        const controller = new AbortController();
        let yielded = 0;
        let finished = false;
        async function* source() {
          try {
            for (;;) {
              yield randomBytes(64 * 1024);
              if (++yielded === 20) controller.abort();
              await Promise.resolve();
            }
          } finally {
            finished = true;
          }
        }
        await assert.rejects(h.store.put('aborted', source(), { signal: controller.signal }), { name: 'AbortError' });
        assert.ok(yielded < 100, 'the upload stops soon after the abort');
        assert.ok(finished, 'the source is released');
        await assertNothingLeft(h, 'aborted', before);
      }));

      it('an AbortSignal aborted while the source is waiting for bytes', withStore(async (h) => {
        const before = await h.residue();
        const controller = new AbortController();
        const gated = gatedSource([randomBytes(200_000)], [randomBytes(10)]);
        const pending = h.store.put('stalled', gated.source, { signal: controller.signal });
        await gated.reached;
        controller.abort();
        try {
          const outcome = await Promise.race([pending.then(() => 'resolved', (e: Error) => e.name), sleep(2000, 'still pending')]);
          assert.equal(outcome, 'AbortError', 'put rejects promptly when aborted, even if the source never yields again');
          await assertNothingLeft(h, 'stalled', before);
        } finally {
          gated.release();
          await pending.catch(() => undefined);
        }
      }));

      it('an AbortSignal already aborted before put', withStore(async (h) => {
        const before = await h.residue();
        await assert.rejects(h.store.put('pre-aborted', chunked(randomBytes(1000)), { signal: AbortSignal.abort() }), { name: 'AbortError' });
        await assertNothingLeft(h, 'pre-aborted', before);
      }));

      it('a source that throws mid-way', withStore(async (h) => {
        const before = await h.residue();
        class SourceFailure extends Error {}
        async function* source() {
          for (let i = 0; i < 10; i++) yield randomBytes(100_000);
          throw new SourceFailure('connection reset');
        }
        await assert.rejects(h.store.put('broken', source()), SourceFailure);
        await assertNothingLeft(h, 'broken', before);
      }));

      it('expectedSize not met: fewer bytes → BadRequestError', withStore(async (h) => {
        const before = await h.residue();
        await assert.rejects(h.store.put('short', chunked(randomBytes(1000)), { expectedSize: 1001 }), BadRequestError);
        await assertNothingLeft(h, 'short', before);
        await assert.rejects(h.store.put('short', chunked(new Uint8Array(0)), { expectedSize: 1 }), BadRequestError);
        await assertNothingLeft(h, 'short', before);
      }));

      it('expectedSize exceeded: more bytes → BadRequestError, without reading the whole source', withStore(async (h) => {
        const before = await h.residue();
        await assert.rejects(h.store.put('long', chunked(randomBytes(1001)), { expectedSize: 1000 }), BadRequestError);
        await assertNothingLeft(h, 'long', before);
        let finished = false;
        async function* endless() {
          try {
            for (;;) yield randomBytes(MiB);
          } finally {
            finished = true;
          }
        }
        await assert.rejects(h.store.put('long', endless(), { expectedSize: 3 * MiB + 1 }), BadRequestError);
        assert.ok(finished, 'the source is released');
        await assertNothingLeft(h, 'long', before);
      }));

      it('expectedSize met exactly succeeds (also 0)', withStore(async ({ store }) => {
        const bytes = randomBytes(5000);
        assert.deepEqual(await store.put('exact', chunked(bytes, [999]), { expectedSize: 5000 }), digestOf(bytes));
        assert.deepEqual(await store.put('zero', chunked(new Uint8Array(0)), { expectedSize: 0 }), digestOf(new Uint8Array(0)));
      }));

      it('expected hashes: a match commits; a mismatch → DataMismatchError, nothing visible, the old bytes kept', withStore(async (h) => {
        const bytes = randomBytes(7000);
        const digest = digestOf(bytes);
        assert.deepEqual(await h.store.put('verified', chunked(bytes), { expected: { md5: digest.md5, sha512: digest.sha512 } }), digest);
        const before = await h.residue();
        const other = Buffer.from(bytes);
        other[6999] ^= 1;
        await assert.rejects(h.store.put('verified', chunked(other), { expected: { md5: digest.md5, sha512: digest.sha512 } }), DataMismatchError);
        assert.deepEqual(Buffer.concat(await (await h.store.get('verified')).toArray()), bytes);
        await assert.rejects(h.store.put('unverified', chunked(other), { expected: { md5: digest.md5, sha512: digest.sha512 } }), DataMismatchError);
        await assertNothingLeft(h, 'unverified', before);
      }));

      it('maxSize exceeded → PayloadTooLargeError as soon as too many bytes arrive', withStore(async (h) => {
        const before = await h.residue();
        await assert.rejects(h.store.put('huge', chunked(randomBytes(1001)), { maxSize: 1000 }), PayloadTooLargeError);
        await assertNothingLeft(h, 'huge', before);
        let finished = false;
        let yielded = 0;
        async function* endless() {
          try {
            for (;;) { yielded++; yield randomBytes(MiB); }
          } finally {
            finished = true;
          }
        }
        await assert.rejects(h.store.put('huge', endless(), { maxSize: 2 * MiB }), PayloadTooLargeError);
        assert.ok(finished, 'the source is released');
        assert.ok(yielded <= 4, `reading stops at the limit (read ${yielded} MiB)`);
        await assertNothingLeft(h, 'huge', before);
        const bytes = randomBytes(1000);
        assert.deepEqual(await h.store.put('fits', chunked(bytes), { maxSize: 1000 }), digestOf(bytes));
      }));

      it('a failed overwrite keeps the previous bytes', withStore(async (h) => {
        const old = randomBytes(10_000);
        await put(h.store, 'keep', old);
        const before = await h.residue();
        await assert.rejects(h.store.put('keep', chunked(randomBytes(20_000)), { maxSize: 15_000 }), PayloadTooLargeError);
        await assert.rejects(h.store.put('keep', chunked(randomBytes(20_000)), { expectedSize: 5 }), BadRequestError);
        assert.deepEqual(await read(h.store, 'keep'), old);
        assert.deepEqual(await h.residue(), before);
      }));
    });

    describe('keys', () => {
      it('rejects invalid and path-traversal keys with BadRequestError for put, get, stat, delete and urlFor', withStore(async (h) => {
        await put(h.store, 'x', Buffer.from('inside'));
        const residue = await h.residue();
        const surroundings = await h.surroundings?.();
        for (const key of INVALID_KEYS) {
          const label = JSON.stringify(key);
          await assert.rejects(h.store.put(key, chunked(Buffer.from('evil'))), BadRequestError, `put ${label}`);
          await assert.rejects(h.store.get(key), BadRequestError, `get ${label}`);
          await assert.rejects(h.store.stat(key), BadRequestError, `stat ${label}`);
          await assert.rejects(h.store.delete(key), BadRequestError, `delete ${label}`);
          assert.throws(() => h.store.urlFor(key), BadRequestError, `urlFor ${label}`);
        }
        assert.deepEqual(await h.residue(), residue, 'nothing written inside the store');
        assert.deepEqual(await h.surroundings?.(), surroundings, 'nothing written or removed outside the store');
        assert.deepEqual(await read(h.store, 'x'), Buffer.from('inside'));
        assert.deepEqual(await list(h.store), ['x']);
      }));
    });

    describe('concurrency', () => {
      it('overwriting a key is atomic: readers see the old or the new bytes, never a mix', withStore(async ({ store }) => {
        const oldBytes = Buffer.alloc(2 * MiB + 3, 'a');
        const newBytes = Buffer.alloc(3 * MiB + 7, 'b');
        await put(store, 'image', oldBytes, [MiB]);
        const half = newBytes.length >> 1;
        const gated = gatedSource([newBytes.subarray(0, half)], [newBytes.subarray(half)]);
        const overwrite = store.put('image', gated.source);
        await gated.reached;
        // Mid-upload: the old bytes, completely.
        assert.ok((await read(store, 'image')).equals(oldBytes));
        assert.deepEqual(await store.stat('image'), { size: oldBytes.length });
        // A reader that opened the blob before the commit keeps reading the old bytes.
        const early = await store.get('image');
        const readers: Promise<Buffer>[] = [];
        gated.release();
        let committed = false;
        void overwrite.then(() => { committed = true; });
        // A reader opened every millisecond until the commit, at most READERS_IN_FLIGHT at once: a
        // commit that takes seconds on a busy machine would otherwise open hundreds of
        // connections at once to an S3 server, which is not what is tested here.
        const inFlight = new Set<Promise<unknown>>();
        while (!committed) {
          const reader = read(store, 'image');
          readers.push(reader);
          const settled: Promise<unknown> = reader.then(() => inFlight.delete(settled), () => inFlight.delete(settled));
          inFlight.add(settled);
          if (inFlight.size >= READERS_IN_FLIGHT) await Promise.race(inFlight);
          await sleep(1);
        }
        readers.push(readAll(early));
        assert.deepEqual(await overwrite, digestOf(newBytes));
        for (const got of await Promise.all(readers)) {
          assert.ok(got.equals(oldBytes) || got.equals(newBytes), `a reader saw ${got.length} bytes that are neither version`);
        }
        assert.ok((await readAll(await store.get('image'))).equals(newBytes));
        assert.deepEqual(await store.stat('image'), { size: newBytes.length });
      }));

      it('concurrent puts of the same key leave one complete version', withStore(async (h) => {
        const versions = Array.from({ length: 6 }, (_, i) => Buffer.alloc(500_000 + i * 1000, i + 1));
        const digests = await Promise.all(versions.map((v) => put(h.store, 'contended', v, [32 * 1024])));
        digests.forEach((d, i) => assert.deepEqual(d, digestOf(versions[i])));
        const got = await read(h.store, 'contended');
        assert.ok(versions.some((v) => v.equals(got)), 'the stored bytes are exactly one of the versions');
        assert.deepEqual(await list(h.store), ['contended']);
        assert.deepEqual(await h.residue(), await list(h.store), 'no temporary object is left behind');
      }));

      it('concurrent puts of different keys all land intact', withStore(async ({ store }) => {
        const blobs = Array.from({ length: 16 }, (_, i) => ({ key: `blob-${i}`, bytes: randomBytes(50_000 + i * 37_000) }));
        const digests = await Promise.all(blobs.map((b, i) => put(store, b.key, b.bytes, [4096 + i * 1000, 77])));
        blobs.forEach((b, i) => assert.deepEqual(digests[i], digestOf(b.bytes)));
        const reads = await Promise.all(blobs.map((b) => read(store, b.key)));
        blobs.forEach((b, i) => assert.ok(reads[i].equals(b.bytes), b.key));
        assert.deepEqual(await list(store), blobs.map((b) => b.key).sort());
      }));
    });
  });
}
