import { finished, type Readable } from 'node:stream';

/** What drainReadable feeds: add() takes a chunk (false: wait for ready() before the next one). */
export interface ChunkSink {
  add(chunk: Uint8Array): boolean;
  ready(): Promise<void>;
}

export interface DrainOptions {
  /** Fails the drain with the signal's reason as soon as it aborts, also while no bytes come. */
  signal?: AbortSignal;
  /**
   * The stream's chunks are this reader's alone once emitted (an http.IncomingMessage read by
   * nothing else): each one that is the whole of its ArrayBuffer is released (detached, its memory
   * freed) right after sink.add() took it. Only if the sink copies what it keeps.
   */
  release?: boolean;
}

/**
 * Reads `stream` to its end in flowing mode: each chunk goes to the sink as the stream emits it
 * (no promise per chunk), and the stream is paused while the sink asks to wait. Resolves at the
 * end of the stream; rejects with the stream's error, the sink's, or the signal's reason. If it
 * stops before the end, the stream is destroyed, as breaking out of `for await` over it does.
 */
export function drainReadable(stream: Readable, sink: ChunkSink, opts: DrainOptions = {}): Promise<void> {
  const { signal, release = false } = opts;
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let settled = false;
  const stop = (error?: unknown) => {
    if (settled) return;
    settled = true;
    stream.off('data', onData);
    signal?.removeEventListener('abort', onAbort);
    stopWatching();
    if (error === undefined) {
      resolve();
    } else {
      stream.destroy();
      reject(error);
    }
  };
  const onAbort = () => stop(signal!.reason);
  const onData = (chunk: Uint8Array) => {
    try {
      const more = sink.add(chunk);
      if (release && stream.listenerCount('data') === 1) releaseChunk(chunk);
      if (!more) {
        stream.pause();
        sink.ready().then(() => { if (!settled) stream.resume(); }, stop);
      }
    } catch (error) {
      stop(error);
    }
  };
  const stopWatching = finished(stream, { writable: false }, (error) => stop(error ?? undefined));
  if (signal?.aborted) {
    stop(signal.reason);
    return promise;
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  stream.on('data', onData);
  stream.resume();
  return promise;
}

/** Frees a chunk's memory now if the chunk is the whole of a detachable ArrayBuffer. */
function releaseChunk(chunk: Uint8Array): void {
  const { buffer } = chunk;
  if (!(buffer instanceof ArrayBuffer) || chunk.byteOffset !== 0 || chunk.byteLength !== buffer.byteLength) return;
  try {
    buffer.transfer(0);
  } catch {
    // Not detachable (memory Node or V8 manages otherwise): left to the garbage collector.
  }
}
