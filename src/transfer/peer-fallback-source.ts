import { NotFoundError, ServiceUnavailableError } from '../core/errors.ts';
import type { IoOptions, ParentImageBytes, ParentImageSource, SourceOptions } from '../core/ports.ts';

export interface PeerFallbackSourceOptions {
  /** The edge's parent. */
  parent: ParentImageSource;
  /** The edge's peers holding a verified copy (a SiteImageSource limited to `peers`). */
  peers: ParentImageSource;
  /** Whether the parent is known to answer now (its ParentReachability). */
  parentReachable(): boolean;
  log: { info(obj: object, msg: string): void };
}

/**
 * An edge's source of image bytes with peers (`peers`, issue 17): its parent while the parent
 * answers; a peer holding a verified copy in its store when the parent cannot be reached — asked
 * first once the parent is known to be away, so a cold miss does not wait out the parent's
 * timeout each time. Whatever a peer sends is checked as the parent's is (each chunk against the
 * manifest, the whole image against the catalog's size, md5 and sha512 before it is kept); a peer
 * whose bytes fail their check is not asked again for the image for a while (`distrust`).
 *
 * A parent that answers "no such image" (404) is believed: peers are not asked. When neither can
 * give the bytes, the parent's error is the one reported (it says the link is down).
 */
export class PeerFallbackSource implements ParentImageSource {
  readonly #o: PeerFallbackSourceOptions;

  constructor(opts: PeerFallbackSourceOptions) {
    this.#o = opts;
  }

  open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    return this.#either(imageId, opts, (source) => source.open(imageId, opts));
  }

  manifest(imageId: string, opts: IoOptions = {}): Promise<unknown> {
    return this.#either(imageId, opts, (source) => source.manifest(imageId, opts));
  }

  distrust(imageId: string, from: string): void {
    this.#o.peers.distrust?.(imageId, from);
  }

  async #either<T>(imageId: string, opts: IoOptions, ask: (source: ParentImageSource) => Promise<T>): Promise<T> {
    const { parent, peers } = this.#o;
    if (!this.#o.parentReachable()) {
      try {
        return await ask(peers);
      } catch (error) {
        opts.signal?.throwIfAborted();
        if (!(error instanceof NotFoundError || error instanceof ServiceUnavailableError)) throw error;
        // No peer has it (or none answers): the parent may be back.
        return ask(parent);
      }
    }
    try {
      return await ask(parent);
    } catch (error) {
      opts.signal?.throwIfAborted();
      if (!(error instanceof ServiceUnavailableError)) throw error;
      try {
        const got = await ask(peers);
        this.#o.log.info({ image: imageId }, 'the parent could not be reached: image bytes come from a peer');
        return got;
      } catch (fromPeers) {
        opts.signal?.throwIfAborted();
        if (fromPeers instanceof NotFoundError || fromPeers instanceof ServiceUnavailableError) throw error;
        throw fromPeers;
      }
    }
  }
}
