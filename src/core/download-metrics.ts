import type { Readable } from 'node:stream';
import type { DownloadSource } from './metrics.ts';
import type { Metrics } from './ports.ts';

/** The label set of each source, made once (a download costs no allocation for its labels). */
const BY_SOURCE: Readonly<Record<DownloadSource, { readonly source: DownloadSource }>> = Object.freeze({
  store: Object.freeze({ source: 'store' }),
  cache: Object.freeze({ source: 'cache' }),
  fill: Object.freeze({ source: 'fill' }),
  passthrough: Object.freeze({ source: 'passthrough' }),
});

/**
 * Counts a read of image data from `source` now, and its `bytes` once the stream has given its
 * last byte ('end'): a read cut short (the client went away) or failed (a fill that broke off)
 * counts no bytes. Listens only for 'end', which leaves the stream's flow and its zero-copy send
 * (PumpedReadable) as they are: nothing is done per chunk. Returns the stream.
 */
export function countDownload(metrics: Metrics, source: DownloadSource, stream: Readable, bytes: number): Readable {
  const labels = BY_SOURCE[source];
  metrics.count('outpost_image_downloads_total', labels);
  if (bytes > 0) stream.once('end', () => metrics.count('outpost_image_served_bytes_total', labels, bytes));
  return stream;
}
