import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../core/describe-error.ts';
import type { ReconcileRequest, ReconcileResult } from '../core/offline-writes.ts';
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
  /** Has the replica audited against the parent (Follower.audit): after a refusal, it brings central's version. */
  audit?(): Promise<unknown>;
  /** How often the marks are looked at, ms (default 1000). */
  intervalMs?: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * An edge's writes made while it was cut off, sent to central once its parent answers again
 * (issue 17): each marked image as it stands here, in the order the images were first written,
 * `POST {parent}/outpost/v1/images/{id}/reconcile` (OfflineReconciliation decides), with the
 * versions sent before whose answers were lost (recorded before each call), then central's answer
 * applied here and the mark ended (OfflineWriteStore.settleOffline) — unless the image was written
 * here again meanwhile, which goes in the next round. Central's answer is the last word when it
 * kept its own version (a conflict) or refused the call (4xx: the mark ends, the refusal is
 * logged, and an audit of the replica brings central's version). The marks are in the catalog's
 * database, so a restart (kill -9 included) loses nothing: the next start replays them. A call
 * that fails otherwise (no answer, 5xx) is tried again at the next look.
 */
export class OfflineReplayer {
  readonly #o: OfflineReplayerOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;
  /** Images whose last call failed: warned of once, not at every look. */
  readonly #failing = new Set<string>();

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
        this.#failing.delete(mark.image_id);
      } catch (error) {
        if (signal.aborted) return;
        if (!this.#failing.has(mark.image_id)) {
          this.#failing.add(mark.image_id);
          this.#o.log.warn({ image: mark.image_id, err: describeError(error) }, 'offline writes: could not reconcile an image with central yet; trying again every look (said once)');
        }
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
    const id = mark.image_id;
    const image = (await this.#o.catalog.getImage(id, { signal })) ?? null;
    const version = image?.updated_at ?? null;
    await this.#o.marks.sendingOffline(id, version, { signal });
    const request: ReconcileRequest = { site: this.#o.site, image, base_updated_at: mark.base_updated_at, sent_updated_at: mark.sent };
    const res = await this.#o.parent.fetch(`/outpost/v1/images/${encodeURIComponent(id)}/reconcile`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(request),
    }, { signal });
    const text = await res.text();
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
      // Refused for good (the image is not this site's to reconcile, or its version is not one
      // central can take): this site's writes to it are dropped, and an audit of the replica
      // brings central's version (or takes the image away if central has none).
      await this.#o.marks.settleOffline(id, version, undefined, { final: true, signal });
      await this.#o.audit?.().catch((error: unknown) => this.#o.log.warn({ err: describeError(error) }, 'offline writes: the audit after a refusal failed; the next one repairs the replica'));
      this.#o.log.warn({ image: id, status: res.status, refusal: text.slice(0, 300) },
        'offline writes: central refused this site\'s version of an image written here while cut off; this site took central\'s (conflict)');
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
    const answer = JSON.parse(text) as ReconcileResult;
    const final = answer.result === 'conflict';
    const settled = await this.#o.marks.settleOffline(id, version, answer.image, { final, signal });
    if (final) {
      this.#o.log.warn({ image: id, conflict: answer.conflict }, 'offline writes: central kept its own version of an image written here while cut off');
    } else {
      this.#o.log.info({ image: id, result: answer.result, settled }, 'offline writes: reconciled an image written here while cut off');
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}
