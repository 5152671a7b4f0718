/**
 * Iterates `source`, failing with the signal's reason as soon as it aborts — also while the
 * source is waiting for bytes that may never come (a stalled client or parent). When iteration
 * stops early, the source is released (`return()`), without waiting for a read still pending.
 */
export async function* abortableSource<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined): AsyncGenerator<T> {
  if (signal === undefined) {
    yield* source;
    return;
  }
  const iterator = source[Symbol.asyncIterator]();
  let done = false;
  let reading = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      reading = true;
      const next = await nextOrAbort(iterator, signal);
      reading = false;
      if (next.done === true) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!done) {
      const released = iterator.return?.();
      if (reading) released?.catch(() => undefined);
      else await released;
    }
  }
}

/** One `next()`, rejected early by an abort. (A listener per read: no reactions pile up on a long upload.) */
function nextOrAbort<T>(iterator: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T>> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    iterator.next().then(
      (r) => { signal.removeEventListener('abort', onAbort); resolve(r); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}
