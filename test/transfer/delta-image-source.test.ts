import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import type { ChunkManifest } from '../../src/core/chunk-manifest.ts';
import type { ParentImageBytes, ParentImageSource, SourceOptions } from '../../src/core/ports.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';
import { DeltaImageSource } from '../../src/transfer/delta-image-source.ts';
import { TransferLog } from '../../src/transfer/transfer-log.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { tempDir } from '../helpers/site.ts';

const MiB = 1 << 20;
const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');
const quiet = { info: () => undefined, warn: () => undefined };

/**
 * A source of one image's bytes in memory, as a parent's ranged GETs give them: it counts the
 * answers open at once (asked and not yet read to the end or closed), and can fail asks.
 */
class RangedSource implements ParentImageSource {
  openNow = 0;
  mostOpen = 0;
  asks = 0;
  closedUnread = 0;
  failAsk: (n: number) => boolean = () => false;
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  async manifest(): Promise<unknown> {
    throw new Error('not asked in these tests');
  }

  async open(_imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const n = ++this.asks;
    if (this.failAsk(n)) throw new Error(`ask ${n} refused`);
    const start = opts.start ?? 0;
    const end = opts.end ?? this.#bytes.length - 1;
    this.openNow++;
    this.mostOpen = Math.max(this.mostOpen, this.openNow);
    // As an HTTP answer's body: read in pieces, and ended by return() whether or not it was
    // started (HttpParentImageSource's contract).
    const bytes = this.#bytes.subarray(start, end + 1);
    let at = 0;
    let ended = false;
    const finish = (read: boolean) => {
      if (ended) return;
      ended = true;
      this.openNow--;
      if (!read) this.closedUnread++;
    };
    const iterator: AsyncIterableIterator<Uint8Array> = {
      next: async () => {
        await new Promise((r) => setImmediate(r));
        if (at >= bytes.length) {
          finish(true);
          return { done: true, value: undefined };
        }
        const piece = bytes.subarray(at, at + (64 << 10));
        at += piece.length;
        return { done: false, value: piece };
      },
      return: async () => {
        finish(at >= bytes.length);
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return { stream: iterator };
  }
}

/**
 * DeltaImageSource's plan against a site that holds an older version: runs of missing chunks are
 * asked of the source a few at a time (issue 12: "a few requests in flight to fill a long fat
 * link"), never all at once, and what was asked ahead and never read is closed.
 */
describe('DeltaImageSource: ranges in flight', () => {
  let dir: string;
  let catalog: SqlCatalog;
  const hashers = new WorkerHasherFactory();
  const local = new VerifyingBlobStore(new MemoryBlobDriver('local'), hashers);
  let v2: Buffer;
  let manifest: ChunkManifest;

  before(async () => {
    dir = await tempDir();
    catalog = await openCatalog(join(dir, 'catalog.sqlite'));
    // v1 held here; v2 has 6 of its 32 1 MiB blocks rewritten, far apart: 6 runs to fetch.
    const v1 = bytesOf(32 * MiB, 61);
    v2 = Buffer.from(v1);
    for (const block of [2, 7, 12, 17, 22, 27]) bytesOf(MiB, 300 + block).copy(v2, block * MiB);
    const held = await local.put('v1', (async function* () { yield v1; })(), { manifest: true });
    await catalog.addHeldCopy('local', 'v1', held.manifest!);
    const scratch = new VerifyingBlobStore(new MemoryBlobDriver('scratch'), hashers);
    manifest = (await scratch.put('v2', (async function* () { yield v2; })(), { manifest: true })).manifest!;
  });
  after(async () => {
    await catalog.close();
    await hashers.close();
    await rm(dir, { recursive: true, force: true });
  });

  const deltaFrom = (upstream: RangedSource) => new DeltaImageSource({
    upstream, manifestOf: async () => manifest, chunks: catalog, blobs: (id) => (id === 'local' ? local : undefined),
    transfers: new TransferLog(), sourceName: 'memory', log: quiet, backoffMs: 1,
  });

  async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(Buffer.from(part));
    return Buffer.concat(parts);
  }

  it('asks for the runs of missing chunks three at a time, and the bytes are v2\'s', async () => {
    const upstream = new RangedSource(v2);
    const { stream } = await deltaFrom(upstream).open('image');
    assert.equal(sha512(await readAll(stream)), sha512(v2));
    assert.ok(upstream.asks >= 6, `${upstream.asks} ranges asked`);
    assert.equal(upstream.mostOpen, 3, 'three ranges in flight at most, and at some point three');
    assert.equal(upstream.openNow, 0);
  });

  it('a run whose early ask failed is asked again in its turn', async () => {
    const upstream = new RangedSource(v2);
    upstream.failAsk = (n) => n === 2 || n === 3;
    const { stream } = await deltaFrom(upstream).open('image');
    assert.equal(sha512(await readAll(stream)), sha512(v2));
    assert.equal(upstream.openNow, 0);
  });

  it('a transfer left part-way closes the ranges it asked for ahead', async () => {
    const upstream = new RangedSource(v2);
    const { stream } = await deltaFrom(upstream).open('image');
    let got = 0;
    for await (const part of stream) {
      got += part.length;
      if (got > 4 * MiB) break;
    }
    assert.equal(upstream.openNow, 0, 'no answer is left open');
    assert.ok(upstream.closedUnread >= 1, `${upstream.closedUnread} answers closed unread`);
  });
});
