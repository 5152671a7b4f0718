import { DataMismatchError, NotFoundError, ServiceUnavailableError } from '../core/errors.ts';
import type { IoOptions, ParentImageBytes, ParentImageSource, SourceOptions } from '../core/ports.ts';
import type { IngressBudget } from './ingress-budget.ts';
import { describeError } from '../core/describe-error.ts';
import type { ParentClient } from '../links/parent-client.ts';

export interface HttpParentImageSourceOptions {
  /** The link to the parent site (its URL, the site's credential, TLS trust). */
  parent: Pick<ParentClient, 'url' | 'fetch'>;
  /** The parent must start answering within this, and never pause longer mid-body, ms. */
  timeoutMs: number;
  /** How messages name the source (default "the parent site URL"). */
  name?: string;
  /** The site's cap on incoming bytes (`ingress_max_bytes_per_s`), served by TransferPriority. */
  ingress?: IngressBudget;
  /**
   * Ask only for what the site holds (HELD_ONLY_HEADER): a peer's cached copy, which the catalog
   * does not record; a site without one answers "no data" rather than fetching it from its parent.
   */
  heldOnly?: boolean;
}

/** Request header: answer from what this site holds, or not at all (ImageService's `heldOnly`). */
export const HELD_ONLY_HEADER = 'x-outpost-held-only';

/**
 * An edge's parent as a source of image bytes: `GET {parent}/v2/images/{id}/file` (with `Range`
 * for part of it). The parent may itself be an edge that pulls through from its own parent. A
 * parent that does not answer within `timeoutMs`, or stalls mid-body for as long, fails the
 * transfer with ServiceUnavailableError naming it — a cut link never hangs a client.
 */
export class HttpParentImageSource implements ParentImageSource {
  readonly #o: HttpParentImageSourceOptions;

  constructor(opts: HttpParentImageSourceOptions) {
    this.#o = opts;
  }

  /** GET {parent}/outpost/v1/images/{id}/manifest: its JSON (the caller checks it); 404 → NotFoundError. */
  async manifest(imageId: string, opts: IoOptions = {}): Promise<unknown> {
    const name = this.#o.name ?? `The parent site ${this.#o.parent.url}`;
    let res: Response;
    try {
      res = await this.#o.parent.fetch(`/outpost/v1/images/${encodeURIComponent(imageId)}/manifest`, {
        headers: { accept: 'application/json', ...(this.#o.heldOnly === true ? { [HELD_ONLY_HEADER]: '1' } : {}) }, signal: opts.signal,
      }, { timeoutMs: this.#o.timeoutMs });
    } catch (error) {
      opts.signal?.throwIfAborted();
      throw new ServiceUnavailableError(`${name} could not be reached (${describeError(error)}) for the chunk manifest of image ${imageId}.`);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      throw new NotFoundError(`${name} has no chunk manifest for image ${imageId}.`);
    }
    if (!res.ok) {
      const text = (await res.text().catch(() => '')).slice(0, 200);
      throw new ServiceUnavailableError(`${name} answered HTTP ${res.status} for the chunk manifest of image ${imageId}${text === '' ? '' : `: ${text}`}`);
    }
    return res.json();
  }

  async open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const idle = new AbortController();
    let timer = setTimeout(() => idle.abort(), this.#o.timeoutMs);
    const signal = opts.signal === undefined ? idle.signal : AbortSignal.any([opts.signal, idle.signal]);
    const unreachable = (why: string) =>
      new ServiceUnavailableError(`${this.#o.name ?? `The parent site ${this.#o.parent.url}`} could not be reached (${why}); only images this site holds can be downloaded now.`);
    const headers: Record<string, string> = this.#o.heldOnly === true ? { [HELD_ONLY_HEADER]: '1' } : {};
    if (opts.start !== undefined || opts.end !== undefined) headers.range = `bytes=${opts.start ?? 0}-${opts.end ?? ''}`;
    let res: Response;
    try {
      res = await this.#o.parent.fetch(`/v2/images/${encodeURIComponent(imageId)}/file`, { headers, signal }, { timeoutMs: null });
    } catch (error) {
      clearTimeout(timer);
      opts.signal?.throwIfAborted();
      throw unreachable(idle.signal.aborted ? `no answer within ${this.#o.timeoutMs} ms` : (error as Error).message);
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
    // A range must come back as asked: 206 from its first byte (or the whole image, from byte 0).
    const from = opts.start ?? 0;
    const answered = res.status === 206 ? /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1] : res.status === 200 ? '0' : undefined;
    if (headers.range !== undefined && Number(answered) !== from) {
      clearTimeout(timer);
      await res.body.cancel();
      throw new DataMismatchError(`${this.#o.name ?? 'The parent site'} answered a request for the bytes of image ${imageId} from ${from} with other bytes (HTTP ${res.status}, Content-Range ${res.headers.get('content-range')}).`);
    }
    // The body is read through the Response, which must stay referenced until it is: fetch
    // (undici) cancels the body of a Response that is garbage-collected unread, and a range opened
    // ahead of its turn (DeltaImageSource) would then end early, with no error.
    const response = res;
    const body = res.body;
    const timeoutMs = this.#o.timeoutMs;
    const ingress = this.#o.ingress;
    async function* stream(): AsyncGenerator<Uint8Array> {
      let done = false;
      try {
        for await (const chunk of response.body ?? body) {
          clearTimeout(timer);
          // Waiting for the site's incoming bandwidth is not the parent stalling.
          await ingress?.take((chunk as Uint8Array).length, opts.priority ?? 'client', opts.signal);
          timer = setTimeout(() => idle.abort(), timeoutMs);
          yield chunk as Uint8Array;
        }
        done = true;
      } catch (error) {
        opts.signal?.throwIfAborted();
        throw idle.signal.aborted ? unreachable(`the transfer stalled for ${timeoutMs} ms`) : unreachable(`the transfer broke: ${describeError(error)}`);
      } finally {
        clearTimeout(timer);
        // Left early (the reader found what it needed, or a bad chunk): stop the transfer now,
        // rather than let the rest of the body keep coming into the socket.
        if (!done) await body.cancel().catch(() => undefined);
      }
    }
    // An answer closed before it was read at all (a range asked ahead of its turn, a transfer
    // stopped meanwhile) ends its request too: a generator's return() before its first next()
    // runs none of its body, the cancel above included.
    const bytes = stream();
    let started = false;
    const iterator: AsyncIterableIterator<Uint8Array> = {
      next: () => {
        started = true;
        return bytes.next();
      },
      return: async (value?: unknown) => {
        if (!started) {
          clearTimeout(timer);
          await body.cancel().catch(() => undefined);
        }
        return bytes.return(value);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return { stream: iterator };
  }
}
