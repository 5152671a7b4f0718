import { setTimeout as sleep } from 'node:timers/promises';
import type { Image } from '../core/image.ts';
import type { Catalog, ChangeLog } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';

export interface CacheInvalidationOptions {
  /** The site's own catalog (at an edge, the replica the follower writes). */
  catalog: Catalog;
  changeLog: ChangeLog;
  /** Ids of the images the site holds copies of that are not located here (its cache). */
  held(): string[];
  /** Drops every copy the site holds of a deleted image (cached or located in its stores). */
  drop(imageId: string): Promise<void>;
  /**
   * A held image changed (or is checked at start): drops its cached copy when the image no longer
   * has those bytes (PullThroughImages.revalidate).
   */
  revalidate?(image: Image): Promise<void>;
  log: { warn(obj: object, msg: string): void };
}

/**
 * The bytes of an active image never change, so a cached copy needs no TTL: it goes when its
 * image does. This loop follows the site's own change log (which the replica's follower appends
 * to) and drops the copies of every image deleted — cached ones, and at an edge the bytes of an
 * image uploaded there, which central's delete cannot reach; at start, and whenever the log was
 * trimmed past its position, it checks every cached copy against the catalog instead. A held
 * image that changed is checked too: a copy of bytes the image no longer has (it went back to
 * queued, to be given other bytes) goes. A deactivated image's copy is kept but blocked: only an
 * active image's bytes are served from the cache.
 */
export class CacheInvalidation {
  readonly #o: CacheInvalidationOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(opts: CacheInvalidationOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#running = this.#loop();
  }

  async #loop(): Promise<void> {
    const { catalog, changeLog, log } = this.#o;
    const signal = this.#stop.signal;
    let position = -1;
    while (!signal.aborted) {
      try {
        if (position < 0 || position < (await changeLog.firstSeq({ signal })) - 1) {
          position = await changeLog.lastSeq({ signal });
          for (const id of this.#o.held()) {
            const image = await catalog.getImage(id, { signal });
            if (image === undefined) await this.#o.drop(id);
            else await this.#o.revalidate?.(image);
          }
        }
        await changeLog.waitForChange(position, 60_000, { signal });
        const changes = await catalog.changesSince(position, 1000, { signal });
        const held = new Set(this.#o.held());
        for (const c of changes) {
          if (c.entity !== 'image') continue;
          if (c.op === 'delete') {
            await this.#o.drop(c.id);
          } else if (held.has(c.id) && this.#o.revalidate !== undefined) {
            const image = await catalog.getImage(c.id, { signal });
            if (image !== undefined) await this.#o.revalidate(image);
          }
        }
        position = changes.at(-1)?.seq ?? position;
      } catch (error) {
        if (signal.aborted) return;
        log.warn({ err: describeError(error) }, 'cache invalidation failed; retrying');
        position = -1;
        await sleep(1000, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}
