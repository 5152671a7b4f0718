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
  /**
   * When the sink fails (a full disk, a size limit) — not the stream, not the signal — the rest
   * of the stream is read and thrown away for up to this many ms before it is destroyed, rather
   * than destroyed at once: an HTTP client still sending its body then reads the error answered
   * meanwhile, instead of a connection reset that hides it (a lingering close, as nginx does).
   */
  linger?: number;
}

/**
 * Reads `stream` to its end in flowing mode: each chunk goes to the sink as the stream emits it
 * (no promise per chunk), and the stream is paused while the sink asks to wait. Resolves at the
 * end of the stream; rejects with the stream's error, the sink's, or the signal's reason. If it
 * stops before the end, the stream is destroyed, as breaking out of `for await` over it does.
 */
export function drainReadable(stream: Readable, sink: ChunkSink, opts: DrainOptions = {}): Promise<void> {
  const { signal, release = false, linger = 0 } = opts;
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  let settled = false;
  const stop = (error?: unknown, bySink = false) => {
    if (settled) return;
    settled = true;
    stream.off('data', onData);
    signal?.removeEventListener('abort', onAbort);
    stopWatching();
    if (error === undefined) {
      resolve();
      return;
    }
    if (bySink && linger > 0 && !stream.destroyed) discard(stream, linger);
    else stream.destroy();
    reject(error);
  };
  const onAbort = () => stop(signal!.reason);
  const sinkFailed = (error: unknown) => stop(error, true);
  const onData = (chunk: Uint8Array) => {
    try {
      const more = sink.add(chunk);
      if (release && stream.listenerCount('data') === 1) releaseChunk(chunk);
      if (!more) {
        stream.pause();
        sink.ready().then(() => { if (!settled) stream.resume(); }, sinkFailed);
      }
    } catch (error) {
      sinkFailed(error);
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

/** Reads the rest of `stream` into nothing, destroying it if it has not ended within `ms`. */
function discard(stream: Readable, ms: number): void {
  const timer = setTimeout(() => stream.destroy(), ms);
  timer.unref();
  finished(stream, { writable: false }, () => clearTimeout(timer));
  stream.resume();
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
