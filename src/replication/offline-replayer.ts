import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../core/describe-error.ts';
import type { ReconcileResult } from '../core/offline-writes.ts';
import type { Catalog, OfflineMark, OfflineWriteStore } from '../core/ports.ts';
import type { ParentClient } from '../links/parent-client.ts';

export interface OfflineReplayerOptions {
  /** This edge's id. */
  site: string;
  marks: OfflineWriteStore;
  catalog: Pick<Catalog, 'getImage'>;
  /** The link to the parent (with this site's credential), which passes the call on up to central. */
  parent: Pick<ParentClient, 'fetch'>;
  /** Whether the parent is known to answer now (its ParentReachability). */
  parentReachable(): boolean;
  /** How often the marks are looked at, ms (default 1000). */
  intervalMs?: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * An edge's writes made while it was cut off, sent to central once its parent answers again
 * (issue 17): each marked image as it stands here, in the order the images were first written,
 * `POST {parent}/outpost/v1/images/{id}/reconcile` (OfflineReconciliation decides), then central's
 * answer applied here and the mark ended (OfflineWriteStore.settleOffline) — unless the image was
 * written here again meanwhile, which goes in the next round. The marks are in the catalog's
 * database, so a restart (kill -9 included) loses nothing: the next start replays them. A call
 * that fails is tried again at the next look.
 */
export class OfflineReplayer {
  readonly #o: OfflineReplayerOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(opts: OfflineReplayerOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#running = this.#loop();
  }

  /** Sends every marked image now (when the parent answers); resolves once each was tried. */
  async replay(): Promise<void> {
    const signal = this.#stop.signal;
    for (const mark of await this.#o.marks.offlineMarks({ signal })) {
      if (signal.aborted || !this.#o.parentReachable()) return;
      try {
        await this.#one(mark, signal);
      } catch (error) {
        if (signal.aborted) return;
        this.#o.log.warn({ image: mark.image_id, err: describeError(error) }, 'offline writes: could not reconcile an image with central yet; trying again');
      }
    }
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      if (this.#o.parentReachable()) await this.replay();
      await sleep(this.#o.intervalMs ?? 1000, undefined, { signal }).catch(() => undefined);
    }
  }

  async #one(mark: OfflineMark, signal: AbortSignal): Promise<void> {
    const image = (await this.#o.catalog.getImage(mark.image_id, { signal })) ?? null;
    const res = await this.#o.parent.fetch(`/outpost/v1/images/${encodeURIComponent(mark.image_id)}/reconcile`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ site: this.#o.site, image, base_updated_at: mark.base_updated_at }),
    }, { signal });
    const text = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
    const answer = JSON.parse(text) as ReconcileResult;
    const settled = await this.#o.marks.settleOffline(mark.image_id, image?.updated_at ?? null, answer.image, { signal });
    if (answer.result === 'conflict') {
      this.#o.log.warn({ image: mark.image_id, conflict: answer.conflict }, 'offline writes: central kept its own version of an image written here while cut off');
    } else {
      this.#o.log.info({ image: mark.image_id, result: answer.result, settled }, 'offline writes: reconciled an image written here while cut off');
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}
