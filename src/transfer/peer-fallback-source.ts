import { NotFoundError, ServiceUnavailableError } from '../core/errors.ts';
import type { IoOptions, ParentImageBytes, ParentImageSource, SourceOptions } from '../core/ports.ts';

export interface PeerFallbackSourceOptions {
  /** The edge's parent. */
  parent: ParentImageSource;
  /** The edge's peers holding a verified copy (a SiteImageSource limited to `peers`). */
  peers: ParentImageSource;
  /** Whether the parent is known to answer now (its ParentReachability). */
  parentReachable(): boolean;
  now?: () => number;
  log: { info(obj: object, msg: string): void };
}

/** Only answers of at least this many bytes measure a source's rate (smaller ones measure its round trip). */
const MEASURED_MIN_BYTES = 1 << 20;
/** A measured rate is believed for this long, ms. */
const RATE_FRESH_MS = 10 * 60_000;
/** Peers are asked first while the parent answers when one of them is this many times faster. */
const FASTER = 1.5;
/** The key of the parent's rate (the peers' are their site ids). */
const PARENT = '';

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
 *
 * Slower than a peer: the rate of each source is measured on the answers it gives (those of
 * MEASURED_MIN_BYTES or more, from the request to the last byte; the latest answer counts, so a
 * link that changes is followed at the next transfer). While the parent answers, the
 * image's bytes are asked of the peers first when one of them was measured FASTER times the
 * parent's rate in the last RATE_FRESH_MS; to learn a peer's rate, once the parent's is known and
 * no peer's is, one transfer in RATE_FRESH_MS is asked of the peers first. The manifest always
 * comes from the parent while it answers.
 */
export class PeerFallbackSource implements ParentImageSource {
  readonly #o: PeerFallbackSourceOptions;
  readonly #now: () => number;
  /** Bytes per second by source (PARENT, or a peer's site id), with when it was measured. */
  readonly #rates = new Map<string, { bps: number; at: number }>();
  #probedAt = Number.NEGATIVE_INFINITY;
  #peersFirst = false;

  constructor(opts: PeerFallbackSourceOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  async open(imageId: string, opts: SourceOptions = {}): Promise<ParentImageBytes> {
    const asked = this.#now();
    if (this.#o.parentReachable() && this.#choosePeers()) {
      try {
        const got = await this.#o.peers.open(imageId, opts);
        this.#probedAt = this.#now();
        return this.#measured(got, asked);
      } catch (error) {
        opts.signal?.throwIfAborted();
        if (!(error instanceof NotFoundError || error instanceof ServiceUnavailableError)) throw error;
        // No peer holds it (or none answers): the parent, as usual.
      }
    }
    const started = this.#now();
    return this.#measured(await this.#either(imageId, opts, (source) => source.open(imageId, opts)), started);
  }

  manifest(imageId: string, opts: IoOptions = {}): Promise<unknown> {
    return this.#either(imageId, opts, (source) => source.manifest(imageId, opts));
  }

  distrust(imageId: string, from: string): void {
    this.#o.peers.distrust?.(imageId, from);
  }

  /** A peer's manifest may have been the wrong one (the parent's is believed: it is the image's source). */
  manifestMismatched(imageId: string): void {
    this.#o.peers.manifestMismatched?.(imageId);
  }

  /** Whether the peers are asked first while the parent answers: one is faster, or one is to be measured. */
  #choosePeers(): boolean {
    const now = this.#now();
    const fresh = (key: string) => {
      const r = this.#rates.get(key);
      return r !== undefined && now - r.at < RATE_FRESH_MS ? r.bps : undefined;
    };
    const parent = fresh(PARENT);
    if (parent === undefined) return false;
    const peers = [...this.#rates.keys()].filter((k) => k !== PARENT).map(fresh).filter((r): r is number => r !== undefined);
    const faster = peers.some((r) => r > parent * FASTER);
    if (faster !== this.#peersFirst) {
      this.#peersFirst = faster;
      this.#o.log.info({ parent_bytes_per_second: Math.round(parent), peers_bytes_per_second: peers.map(Math.round) },
        faster ? 'a peer is faster than the parent: image bytes are asked of the peers first' : 'the parent is as fast as the peers again: image bytes are asked of it first');
    }
    return faster || (peers.length === 0 && now - this.#probedAt >= RATE_FRESH_MS);
  }

  /** The answer, its rate recorded under its sender once it was read to the end (MEASURED_MIN_BYTES or more). */
  #measured(got: ParentImageBytes, started: number): ParentImageBytes {
    const key = got.from ?? PARENT;
    const rates = this.#rates;
    const now = this.#now;
    async function* counted(): AsyncGenerator<Uint8Array> {
      let bytes = 0;
      for await (const part of got.stream) {
        bytes += part.length;
        yield part;
      }
      const seconds = (now() - started) / 1000;
      if (bytes < MEASURED_MIN_BYTES || seconds <= 0) return;
      rates.set(key, { bps: bytes / seconds, at: now() });
    }
    return { ...got, stream: counted() };
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
