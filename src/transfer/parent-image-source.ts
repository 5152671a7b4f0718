import { NotFoundError, ServiceUnavailableError } from '../core/errors.ts';
import type { GetOptions, ParentImageBytes, ParentImageSource } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';

export interface HttpParentImageSourceOptions {
  /** The parent site's base URL. */
  parentUrl: string;
  /** Headers every request carries (the site's credential). */
  headers?: Record<string, string>;
  /** The parent must start answering within this, and never pause longer mid-body, ms. */
  timeoutMs: number;
  /** How messages name the source (default "the parent site URL"). */
  name?: string;
}

/**
 * An edge's parent as a source of image bytes: `GET {parent}/v2/images/{id}/file` (with `Range`
 * for part of it). The parent may itself be an edge that pulls through from its own parent. A
 * parent that does not answer within `timeoutMs`, or stalls mid-body for as long, fails the
 * transfer with ServiceUnavailableError naming it — a cut link never hangs a client.
 */
export class HttpParentImageSource implements ParentImageSource {
  readonly #o: HttpParentImageSourceOptions;
  readonly #base: string;

  constructor(opts: HttpParentImageSourceOptions) {
    this.#o = opts;
    this.#base = opts.parentUrl.replace(/\/+$/, '');
  }

  async open(imageId: string, opts: GetOptions = {}): Promise<ParentImageBytes> {
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), this.#o.timeoutMs);
    const signal = opts.signal === undefined ? idle.signal : AbortSignal.any([opts.signal, idle.signal]);
    const unreachable = (why: string) =>
      new ServiceUnavailableError(`${this.#o.name ?? `The parent site ${this.#base}`} could not be reached (${why}); only images this site holds can be downloaded now.`);
    const headers: Record<string, string> = { ...this.#o.headers };
    if (opts.start !== undefined || opts.end !== undefined) headers.range = `bytes=${opts.start ?? 0}-${opts.end ?? ''}`;
    let res: Response;
    try {
      res = await fetch(`${this.#base}/v2/images/${encodeURIComponent(imageId)}/file`, { headers, signal });
    } catch (error) {
      clearTimeout(timer);
      opts.signal?.throwIfAborted();
      throw unreachable(idle.signal.aborted ? `no answer within ${this.#o.timeoutMs} ms` : String(((error as Error).cause as Error | undefined)?.message ?? error));
    }
    if (res.status === 404 || res.status === 204 || res.body === null) {
      clearTimeout(timer);
      await res.body?.cancel();
      throw new NotFoundError(`${this.#o.name ?? 'The parent site'} has no data for image ${imageId}.`);
    }
    if (!res.ok) {
      clearTimeout(timer);
      const text = (await res.text().catch(() => '')).slice(0, 200);
      throw unreachable(`HTTP ${res.status}${text === '' ? '' : `: ${text}`}`);
    }
    const body = res.body;
    const timeoutMs = this.#o.timeoutMs;
    async function* stream(): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of body) {
          clearTimeout(timer);
          timer = setTimeout(() => idle.abort(), timeoutMs);
          yield chunk as Uint8Array;
        }
      } catch (error) {
        opts.signal?.throwIfAborted();
        throw idle.signal.aborted ? unreachable(`the transfer stalled for ${timeoutMs} ms`) : unreachable(`the transfer broke: ${describeError(error)}`);
      } finally {
        clearTimeout(timer);
      }
    }
    return { stream: stream() };
  }
}
