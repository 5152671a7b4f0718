import { Worker } from 'node:worker_threads';
import type { ChunkManifest } from '../core/chunk-manifest.ts';
import type { Hasher, HasherFactory } from '../core/ports.ts';
import type { HashReply, HashRequest } from './hash-worker.ts';

/** One thread each; `manifest` (the chunk manifest) only for the streams that ask for it. */
const ALGORITHMS = ['md5', 'sha512', 'manifest'] as const;
const BATCH = 1 << 20;
/** Bytes one stream may have handed to each hashing thread and not yet seen hashed. */
const MAX_IN_FLIGHT = 16 << 20;
/** Shared chunks at least this large are hashed in place; smaller ones are copied into a batch. */
const SHARED_MIN = 64 << 10;
/** Shared memory given back and kept for the next streams (VerifyingBlobStore takes 20 MiB per put). */
const MAX_SPARE = 64 << 20;
/** Distinct shared memory a pair of threads may have been shown before new streams get a fresh pair. */
const RETIRE_AFTER = 128 << 20;

/**
 * A pair of hashing threads (one per algorithm). Every SharedArrayBuffer posted to a thread stays
 * alive until that thread's garbage collector drops the message's copy of it; V8 does not count
 * shared memory towards a thread's heap, and a hashing thread allocates next to nothing, so it
 * seldom collects: when each put had fresh buffers, an edge held 12-16 MiB per cold miss until
 * then (every 20-30 misses; 480 MiB after 30 misses of a 64 MiB image). Hence the shared memory the threads
 * read is lent by the factory and reused by stream after stream (lend / giveBack), and a pair that
 * was shown more than RETIRE_AFTER bytes of distinct buffers anyway (after a burst of concurrent
 * streams, or buffers not given back) is retired: new streams start a fresh pair, and the old one
 * exits with its last stream, which releases all it held. Starting a pair costs ~0.25 CPU-s.
 */
interface Threads {
  workers: Worker[];
  /** Streams started on these threads and not yet ended. */
  streams: number;
  /** Shared memory posted to these threads, each buffer once: they hold it until they exit. */
  readonly seen: WeakSet<SharedArrayBuffer>;
  seenBytes: number;
}

/** Bytes posted to the hashing threads: one of the stream's own batches, or a caller's shared memory. */
interface Posted {
  buffer: SharedArrayBuffer;
  /** Set for a caller's bytes: called once every thread has hashed them. */
  done?: () => void;
}

interface Stream {
  /** Bytes posted and not yet acknowledged, summed over the threads. */
  inFlight: number;
  waiters: (() => void)[];
  /** Resolvers of the digest of each algorithm, by thread index. */
  digests: ((value: string | ChunkManifest) => void)[];
  /** Bytes posted and not yet acknowledged by every thread, oldest first. */
  posted: Posted[];
  /** Acknowledgements received per thread and not yet matched to a posted batch. */
  acks: number[];
  /**
   * Batches every thread is done with, to be filled again: reusing them (at most the in-flight
   * window's worth) spares a fresh 1 MiB allocation, its page faults and its GC per batch.
   */
  free: SharedArrayBuffer[];
}

/**
 * Computes md5 and sha512 at the same time on two worker threads (one per algorithm), so an
 * upload is hashed at the speed of the slower hash instead of the sum of both, and the event loop
 * stays free. Bytes are copied once, into a SharedArrayBuffer both threads read — or not at all
 * when the caller's chunk already lives in shared memory (a view of a SharedArrayBuffer of at
 * least SHARED_MIN bytes, best one lent by lend()): both threads then read the caller's memory, and
 * the promise update() returns resolves only once they are done with it, so the caller must not
 * change those bytes before. (For a copied chunk it resolves as soon as the chunk is copied and
 * the threads are not too far behind.) Either way, update()'s promise settling means the hasher
 * no longer needs the chunk.
 */
export class WorkerHasherFactory implements HasherFactory {
  /** The pair new streams start on. */
  #current: Threads | undefined;
  /** Every pair not yet terminated: the current one, and retired ones with streams left. */
  readonly #live = new Set<Threads>();
  readonly #streams = new Map<number, Stream>();
  /** Shared memory given back, by size, to be lent again. */
  readonly #spare = new Map<number, SharedArrayBuffer[]>();
  #spareBytes = 0;
  #nextId = 1;

  /** Shared memory of `size` bytes, to hash in place; giveBack() it once no hasher needs it. */
  lend(size: number): Buffer {
    const buffer = this.#spare.get(size)?.pop();
    if (buffer === undefined) return Buffer.from(new SharedArrayBuffer(size));
    this.#spareBytes -= size;
    return Buffer.from(buffer);
  }

  /** Takes back memory from lend() (or a stream's batch) that no hasher and no caller uses any more. */
  giveBack(memory: Buffer | SharedArrayBuffer): void {
    const buffer = memory instanceof SharedArrayBuffer ? memory : memory.buffer;
    if (!(buffer instanceof SharedArrayBuffer) || this.#spareBytes + buffer.byteLength > MAX_SPARE) return;
    const list = this.#spare.get(buffer.byteLength) ?? [];
    this.#spare.set(buffer.byteLength, list);
    list.push(buffer);
    this.#spareBytes += buffer.byteLength;
  }

  #threads(): Threads {
    if (this.#current !== undefined && this.#current.seenBytes <= RETIRE_AFTER) return this.#current;
    const retired = this.#current;
    if (retired !== undefined && retired.streams === 0) void this.#terminate(retired);
    const workers = ALGORITHMS.map((_, index) => {
      const w = new Worker(new URL('./hash-worker.ts', import.meta.url));
      w.unref();
      w.on('message', (m: HashReply) => this.#onReply(index, m));
      return w;
    });
    this.#current = { workers, streams: 0, seen: new WeakSet(), seenBytes: 0 };
    this.#live.add(this.#current);
    return this.#current;
  }

  #terminate(threads: Threads): Promise<unknown> {
    this.#live.delete(threads);
    return Promise.all(threads.workers.map((w) => w.terminate()));
  }

  #onReply(index: number, m: HashReply): void {
    const s = this.#streams.get(m.id);
    if (s === undefined) return;
    if (m.type === 'digest') {
      s.digests[index](m.value);
      return;
    }
    s.inFlight -= m.length;
    // Each thread acknowledges batches in the order they were posted.
    s.acks[index]++;
    while (s.posted.length > 0 && s.acks.every((n) => n > 0)) {
      const hashed = s.posted.shift()!;
      if (hashed.done === undefined) s.free.push(hashed.buffer);
      else hashed.done();
      for (let i = 0; i < s.acks.length; i++) s.acks[i]--;
    }
    if (s.inFlight <= MAX_IN_FLIGHT * s.acks.length) for (const wake of s.waiters.splice(0)) wake();
  }

  create(opts: { manifest?: boolean } = {}): Hasher {
    const threads = this.#threads();
    const workers = opts.manifest === true ? threads.workers : threads.workers.slice(0, 2);
    threads.streams++;
    const id = this.#nextId++;
    const stream: Stream = { inFlight: 0, waiters: [], digests: [], posted: [], acks: workers.map(() => 0), free: [] };
    const results = workers.map((_, i) => new Promise<string | ChunkManifest>((resolve) => { stream.digests[i] = resolve; }));
    this.#streams.set(id, stream);
    workers.forEach((w, i) => w.postMessage({ type: 'start', id, algorithm: ALGORITHMS[i] } satisfies HashRequest));

    let batch: SharedArrayBuffer | undefined;
    let filled = 0;
    const post = (buffer: SharedArrayBuffer, offset: number, length: number, done?: () => void) => {
      if (!threads.seen.has(buffer)) {
        threads.seen.add(buffer);
        threads.seenBytes += buffer.byteLength;
      }
      for (const w of workers) w.postMessage({ type: 'data', id, buffer, offset, length } satisfies HashRequest);
      stream.inFlight += length * workers.length;
      stream.posted.push({ buffer, done });
    };
    const flush = () => {
      if (filled === 0) return;
      post(batch!, 0, filled);
      batch = undefined;
      filled = 0;
    };
    /** Once: the stream's batches go back to the factory, and a retired pair exits with its last stream. */
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.#streams.delete(id);
      for (const b of stream.free.splice(0)) this.giveBack(b);
      if (batch !== undefined) this.giveBack(batch); // (never posted)
      threads.streams--;
      if (threads.streams === 0 && threads !== this.#current) void this.#terminate(threads);
    };

    return {
      update: async (chunk: Uint8Array) => {
        if (chunk.buffer instanceof SharedArrayBuffer && chunk.length >= SHARED_MIN) {
          flush(); // bytes copied earlier go first
          const { promise, resolve } = Promise.withResolvers<void>();
          post(chunk.buffer, chunk.byteOffset, chunk.length, resolve);
          return promise;
        }
        for (let offset = 0; offset < chunk.length;) {
          batch ??= stream.free.pop() ?? this.lend(BATCH).buffer as SharedArrayBuffer;
          const n = Math.min(BATCH - filled, chunk.length - offset);
          new Uint8Array(batch, filled, n).set(chunk.subarray(offset, offset + n));
          filled += n;
          offset += n;
          if (filled === BATCH) flush();
        }
        if (stream.inFlight > MAX_IN_FLIGHT * workers.length) {
          await new Promise<void>((resolve) => stream.waiters.push(resolve));
        }
      },
      digest: async () => {
        flush();
        for (const w of workers) w.postMessage({ type: 'end', id } satisfies HashRequest);
        const [md5, sha512, manifest] = await Promise.all(results);
        end();
        return { md5: md5 as string, sha512: sha512 as string, ...(manifest === undefined ? {} : { manifest: manifest as ChunkManifest }) };
      },
      abort: () => {
        for (const w of workers) w.postMessage({ type: 'abort', id } satisfies HashRequest);
        for (const wake of stream.waiters.splice(0)) wake();
        // Shared chunks not yet hashed: settled now, so no caller waits for a digest that will not
        // come. A thread may still be reading one; what it computes is thrown away with the hash
        // (and a stream that reuses the memory is hashed after it: a thread takes messages in order).
        for (const p of stream.posted.splice(0)) p.done?.();
        end();
      },
    };
  }

  async close(): Promise<void> {
    this.#current = undefined;
    this.#spare.clear();
    this.#spareBytes = 0;
    await Promise.all([...this.#live].map((t) => this.#terminate(t)));
  }
}
