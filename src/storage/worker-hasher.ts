import { Worker } from 'node:worker_threads';
import type { Hasher, HasherFactory } from '../core/ports.ts';
import type { HashReply, HashRequest } from './hash-worker.ts';

const ALGORITHMS = ['md5', 'sha512'] as const;
const BATCH = 1 << 20;
/** Bytes one stream may have handed to each hashing thread and not yet seen hashed. */
const MAX_IN_FLIGHT = 16 << 20;
/** Shared chunks at least this large are hashed in place; smaller ones are copied into a batch. */
const SHARED_MIN = 64 << 10;

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
  digests: ((hex: string) => void)[];
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
 * least SHARED_MIN bytes): both threads then read the caller's memory, and the promise update()
 * returns resolves only once they are done with it, so the caller must not change those bytes
 * before. (For a copied chunk it resolves as soon as the chunk is copied and the threads are not
 * too far behind.) Either way, update()'s promise settling means the hasher no longer needs the
 * chunk.
 */
export class WorkerHasherFactory implements HasherFactory {
  #workers: Worker[] | undefined;
  readonly #streams = new Map<number, Stream>();
  #nextId = 1;

  #start(): Worker[] {
    this.#workers ??= ALGORITHMS.map((_, index) => {
      const w = new Worker(new URL('./hash-worker.ts', import.meta.url));
      w.unref();
      w.on('message', (m: HashReply) => this.#onReply(index, m));
      return w;
    });
    return this.#workers;
  }

  #onReply(index: number, m: HashReply): void {
    const s = this.#streams.get(m.id);
    if (s === undefined) return;
    if (m.type === 'digest') {
      s.digests[index](m.hex);
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
    if (s.inFlight <= MAX_IN_FLIGHT * ALGORITHMS.length) for (const wake of s.waiters.splice(0)) wake();
  }

  create(): Hasher {
    const workers = this.#start();
    const id = this.#nextId++;
    const stream: Stream = { inFlight: 0, waiters: [], digests: [], posted: [], acks: workers.map(() => 0), free: [] };
    const results = ALGORITHMS.map((_, i) => new Promise<string>((resolve) => { stream.digests[i] = resolve; }));
    this.#streams.set(id, stream);
    workers.forEach((w, i) => w.postMessage({ type: 'start', id, algorithm: ALGORITHMS[i] } satisfies HashRequest));

    let batch = new SharedArrayBuffer(BATCH);
    let filled = 0;
    const post = (buffer: SharedArrayBuffer, offset: number, length: number, done?: () => void) => {
      for (const w of workers) w.postMessage({ type: 'data', id, buffer, offset, length } satisfies HashRequest);
      stream.inFlight += length * workers.length;
      stream.posted.push({ buffer, done });
    };
    const flush = () => {
      if (filled === 0) return;
      post(batch, 0, filled);
      batch = stream.free.pop() ?? new SharedArrayBuffer(BATCH);
      filled = 0;
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
        const [md5, sha512] = await Promise.all(results);
        this.#streams.delete(id);
        return { md5, sha512 };
      },
      abort: () => {
        for (const w of workers) w.postMessage({ type: 'abort', id } satisfies HashRequest);
        for (const wake of stream.waiters.splice(0)) wake();
        // Shared chunks not yet hashed: settled now, so no caller waits for a digest that will not
        // come. A thread may still be reading one; what it computes is thrown away with the hash.
        for (const p of stream.posted.splice(0)) p.done?.();
        this.#streams.delete(id);
      },
    };
  }

  async close(): Promise<void> {
    const workers = this.#workers;
    this.#workers = undefined;
    if (workers !== undefined) await Promise.all(workers.map((w) => w.terminate()));
  }
}
