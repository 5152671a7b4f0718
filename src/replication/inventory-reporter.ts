import { setTimeout as sleep } from 'node:timers/promises';
import type { DriftCounts, PlacementReport } from '../core/fleet-state.ts';
import { MAX_REPORTED_TRANSFERS, type AuditCounts, type TransferRecord } from '../core/site-report.ts';
import type { CacheEntry, Catalog, InventoryItem, IoOptions } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';
import type { ParentClient } from '../links/parent-client.ts';

/** What a site sends up: what it holds, and where its placements stand. */
export interface InventoryReport {
  images: InventoryItem[];
  placements?: PlacementReport[];
  drift?: DriftCounts;
  transfers?: TransferRecord[];
  audit?: AuditCounts;
  cache_budget_bytes?: number;
  link_bytes_per_second?: number;
}

export interface InventoryReporterOptions {
  catalog: Catalog;
  /** The site's stores; cached copies live in `cacheStore`. */
  storeIds: readonly string[];
  cacheStore: string;
  cache: { entries(): CacheEntry[] };
  /** Where the copies the site's placement agent works on stand (an edge). */
  placements?(): PlacementReport[];
  /** What its drift checks found (an edge). */
  drift?(): DriftCounts;
  /** Its transfers of image bytes, running then recent (TransferLog.list). */
  transfers?(): TransferRecord[];
  /** What the audits of its replica found (an edge). */
  audit?(): AuditCounts;
  /** Its cache's budget, and the bytes per second its transfers fetch over its link now. */
  gauges?(): { cache_budget_bytes: number; link_bytes_per_second: number };
  /** Delivers the inventory: to the parent (an edge), or into central's own InventoryStore. */
  send(report: InventoryReport, opts: IoOptions): Promise<void>;
  /**
   * Whether the reports include the copies located in the site's stores (default true). Central's
   * are its catalog's locations already, and are every image it has: it reports its cache only.
   */
  reportLocated?: boolean;
  /** How often the inventory is looked at, ms (default 2000). */
  checkMs?: number;
  /** An unchanged inventory is sent again after this, ms, with its hit counts (default 60 s). */
  refreshMs?: number;
  log: { warn(obj: object, msg: string): void };
}

/**
 * Keeps central told what this site holds: the copies located in its stores (uploads here) and
 * its cached copies. The inventory is looked at every `checkMs` and sent when a copy came or went
 * (or a pin changed), and in any case every `refreshMs`; a failed send is retried at the next look.
 */
export class InventoryReporter {
  readonly #o: InventoryReporterOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(opts: InventoryReporterOptions) {
    this.#o = opts;
  }

  /** What the site holds now (`located`: with the copies located in its stores). */
  async current(opts: IoOptions & { located?: boolean } = {}): Promise<InventoryItem[]> {
    const { storeIds, cacheStore } = this.#o;
    const stored = opts.located === false ? [] : (await this.#o.catalog.imagesInStores(storeIds, opts)).flatMap((image) => image.locations
      .filter((l) => storeIds.includes(l.store))
      .map((l): InventoryItem => ({
        image_id: image.id, store: l.store, size: image.size ?? 0, state: 'stored', since: image.updated_at, hits: null, last_accessed: null,
      })));
    const cached = this.#o.cache.entries().map((e): InventoryItem => ({
      image_id: e.image_id, store: cacheStore, size: e.size, state: e.pinned ? 'pinned' : 'cached', since: e.cached_at,
      hits: e.hits, last_accessed: e.last_accessed,
    }));
    return [...stored, ...cached];
  }

  /** The report this site sends up now: what it holds (`located` as for current), and where its placements stand. */
  async report(opts: IoOptions & { located?: boolean } = {}): Promise<InventoryReport> {
    const images = await this.current(opts);
    const placements = this.#o.placements?.();
    const drift = this.#o.drift?.();
    const transfers = this.#o.transfers?.().slice(0, MAX_REPORTED_TRANSFERS);
    const audit = this.#o.audit?.();
    return {
      images, ...(placements === undefined ? {} : { placements }), ...(drift === undefined ? {} : { drift }),
      ...(transfers === undefined ? {} : { transfers }), ...(audit === undefined ? {} : { audit }), ...this.#o.gauges?.(),
    };
  }

  start(): void {
    this.#running = this.#loop();
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    let sentKey: string | undefined;
    let sentAt = 0;
    while (!signal.aborted) {
      // A look every interval, the first one interval after start (the site registers first).
      await sleep(this.#o.checkMs ?? 2000, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      try {
        const report = await this.report({ signal, located: this.#o.reportLocated ?? true });
        const { images, placements, transfers } = report;
        // Sent when a copy, a placement's or a transfer's state changed, an audit repaired the
        // replica or the link fell idle, at every look while a transfer runs or the link carries
        // bytes (their progress, its rate), and in any case every refreshMs.
        const linkBusy = (report.link_bytes_per_second ?? 0) > 0;
        const key = JSON.stringify([
          images.map((i) => [i.image_id, i.store, i.state]), placements?.map((p) => [p.image_id, p.state, p.reason]), report.drift?.lost, report.drift?.extra,
          transfers?.map((t) => [t.image_id, t.started_at, t.state]), report.audit?.repairs, linkBusy,
        ]);
        const moving = linkBusy || placements?.some((p) => p.state === 'transferring') === true || transfers?.some((t) => t.state === 'running') === true;
        if (key !== sentKey || moving || Date.now() - sentAt >= (this.#o.refreshMs ?? 60_000)) {
          await this.#o.send(report, { signal });
          sentKey = key;
          sentAt = Date.now();
        }
      } catch (error) {
        if (signal.aborted) return;
        this.#o.log.warn({ err: describeError(error) }, 'could not report this site\'s inventory; retrying');
      }
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}

/** An edge's InventoryReporter `send`: `PUT {parent}/outpost/v1/sites/{site}/inventory`, which each parent passes up to central. */
export function parentInventorySink(parent: Pick<ParentClient, 'fetch'>, site: string): InventoryReporterOptions['send'] {
  const path = `/outpost/v1/sites/${encodeURIComponent(site)}/inventory`;
  return async (report, opts) => {
    const res = await parent.fetch(path, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      // sent_at: the site's clock as the report leaves, by which central reads the report's times.
      body: JSON.stringify({ ...report, sent_at: new Date().toISOString() }),
    }, opts);
    const text = await res.text();
    if (!res.ok) throw new Error(`the parent answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  };
}
