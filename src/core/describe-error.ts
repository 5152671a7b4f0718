/**
 * An error as one line, with the chain of its causes: `fetch failed: connect ECONNREFUSED
 * 127.0.0.1:9292` where `error.message` alone says `fetch failed` (undici's fetch rejects with a
 * TypeError whose `cause` says what went wrong). An AggregateError (several addresses tried)
 * contributes each of its errors. For log lines and messages to operators.
 */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    if (message !== '' && message !== parts.at(-1)) parts.push(message);
    if (e instanceof AggregateError && e.errors.length > 0) {
      parts.push([...new Set(e.errors.map(describeError))].join('; '));
      break;
    }
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}
