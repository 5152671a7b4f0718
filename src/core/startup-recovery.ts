import { ImageNotFoundError } from './errors.ts';
import { scanImages } from './all-images.ts';
import type { Image } from './image.ts';
import { FAILED_PROPERTY, IMPORTING_PROPERTY, LOCK_PROPERTY, setStoreList, storeList } from './import-properties.ts';
import type { BlobStore, Catalog, ImageListQuery, IoOptions, OfflineWriteStore } from './ports.ts';
import type { StoreRegistry } from './stores.ts';
import type { NodeWork } from './node-work.ts';
import { isTerminal } from './task.ts';

export interface StartupRecoveryOptions {
  catalog: Catalog;
  stores: StoreRegistry;
  /** The node-local import staging area. */
  staging: BlobStore;
  /**
   * Whether this site's catalog is authoritative (central). Only there are interrupted images
   * returned to queued: an edge's catalog is a replica of central's, and central recovers them.
   */
  ownsCatalog: boolean;
  /** At an edge: the images it wrote while cut off (central does not have them yet), which it recovers itself as central would. */
  offline?: Pick<OfflineWriteStore, 'offlineMarks'>;
  /** The import runner's recovery (resumes the tasks no node runs); run first where the catalog is owned. */
  tasks: { recover(): Promise<number> };
  /** This node among several sharing the catalog: what a node that is alive claims is left alone. Absent: the only process. */
  work?: NodeWork;
  /**
   * Other nodes serve this site from the same catalog and stores (PostgreSQL): what a node that
   * dies leaves is reaped every `reapEveryMs` (default 10 s), not only at start — its partial
   * writes too, which the stores tell from another node's running write by their grace period.
   */
  shared?: { reapEveryMs?: number };
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Images read from the catalog at a time (default 500). */
  pageSize?: number;
  /** Copies checked at a time (default 8: the checks share libuv's threads with requests). */
  statConcurrency?: number;
  now?: () => Date;
}

/** What the check of recorded copies found: per store, the images whose bytes are not there. */
export interface CopyCheckReport {
  checked: number;
  missing: Map<string, string[]>;
}

/** Example image ids a warning names. */
const EXAMPLES = 5;

/**
 * What a site does at start about what the previous process left behind (docs/operations.md,
 * "Crash recovery" and "Stores that moved"):
 *
 * 1. Partial writes in every store and the staging area are removed (BlobStore.removePartial);
 *    committed copies are never touched, nor writes another node may be running (the stores'
 *    grace period). Every role: an edge cleans its own bytes.
 * 2. Where the catalog is authoritative (central), the import tasks no node runs are resumed (the
 *    import runner), then every image a stop left half-way goes back to `queued`, so that the
 *    client can upload or import again — as Glance does when an upload or import fails: `saving`
 *    (an interrupted PUT /file), `importing` with no unfinished task, `uploading` whose staged
 *    data is incomplete — unless a node that is alive is still at it (NodeWork claims). Bytes such
 *    an image has in this site's stores or staging area go with it. Where nodes share the catalog,
 *    this step runs again periodically, for the work of a node that died. An edge does the same for
 *    the images it wrote while cut off from its parent (not central's yet: an upload that kill -9
 *    cut short there goes back to `queued` there).
 * 3. In the background (so that a large catalog does not delay listening), each copy the catalog
 *    records in this site's stores is checked to be there with the image's size (no hashing),
 *    and a warning per store names how many are not, a few of them, and the fix.
 */
export class StartupRecovery {
  readonly #o: StartupRecoveryOptions;
  readonly #now: () => Date;
  readonly #pageSize: number;
  readonly #stop = new AbortController();
  #checking: Promise<unknown> = Promise.resolve();
  #reaper: NodeJS.Timeout | undefined;
  #reaping = false;

  constructor(opts: StartupRecoveryOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
    this.#pageSize = opts.pageSize ?? 500;
  }

  /** Steps 1 and 2, then starts step 3 (and, shared, steps 1 and 2 again and again) in the background (stopped by close()). */
  async recover(opts: IoOptions = {}): Promise<void> {
    await this.removePartials(opts);
    if (this.#o.ownsCatalog) await this.reap(opts);
    else if (this.#o.offline !== undefined) {
      const marked = new Set((await this.#o.offline.offlineMarks(opts)).map((m) => m.image_id));
      if (marked.size > 0) await this.revertInterrupted(opts, marked);
    }
    if (this.#o.shared !== undefined) {
      this.#reaper = setInterval(() => {
        if (this.#reaping) return;
        this.#reaping = true;
        const signal = this.#stop.signal;
        this.removePartials({ signal })
          .then(() => (this.#o.ownsCatalog ? this.reap({ signal }) : undefined))
          .catch((error: unknown) => {
            if (!signal.aborted) this.#o.log.warn({ err: error }, 'taking over the work of stopped nodes failed; trying again');
          })
          .finally(() => { this.#reaping = false; });
      }, this.#o.shared.reapEveryMs ?? 10_000);
    }
    this.#checking = this.checkCopies({ signal: this.#stop.signal })
      .catch((error: unknown) => {
        if (!this.#stop.signal.aborted) this.#o.log.warn({ err: error }, 'the check of the stores\' recorded copies failed');
      });
  }

  async close(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#reaper);
    await this.#checking;
  }

  /** Step 2: resumes the tasks no node runs, then reverts the images no node is at. */
  async reap(opts: IoOptions = {}): Promise<void> {
    await this.#o.tasks.recover();
    await this.revertInterrupted(opts);
  }

  /** Removes the partial writes left in every store and the staging area that no node is writing; returns how many. */
  async removePartials(opts: IoOptions = {}): Promise<number> {
    let total = 0;
    const stores = this.#o.stores.list().map((s) => this.#o.stores.blobs(s.id));
    for (const blobs of [...stores, this.#o.staging]) {
      const removed = await blobs.removePartial(opts);
      if (removed > 0) this.#o.log.info({ store: blobs.id, removed }, 'removed partial writes a stopped process left');
      total += removed;
    }
    return total;
  }

  /** Returns the images a stop left `saving`, `importing` or half-staged to `queued` (only those in `only`, if given); their ids. */
  async revertInterrupted(opts: IoOptions = {}, only?: ReadonlySet<string>): Promise<string[]> {
    const reverted: string[] = [];
    const candidates: Image[] = [];
    for await (const image of this.#images({ status: { kind: 'in', values: ['saving', 'importing', 'uploading'] } }, opts)) {
      if (only === undefined || only.has(image.id)) candidates.push(image);
    }
    for (const image of candidates) {
      if (image.status === 'uploading' && image.size !== null && (await this.#o.staging.stat(image.id, opts))?.size === image.size) {
        continue; // staged completely: glance-direct can still import it
      }
      if (await this.#inProgress(image, opts)) continue;
      let dropped: string[] | undefined;
      await this.#o.catalog.updateImage(image.id, (current) => {
        if (current.status !== image.status) return current;
        dropped = current.locations.map((l) => l.store);
        const next: Image = {
          ...current, status: 'queued', size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null,
          locations: [], properties: { ...current.properties }, updated_at: this.#now().toISOString(),
        };
        if (current.status === 'importing') {
          // As a failed import task leaves it (ImportTaskRunner): lock released, targets failed.
          const targets = storeList(current, IMPORTING_PROPERTY);
          delete next.properties[LOCK_PROPERTY];
          setStoreList(next, IMPORTING_PROPERTY, []);
          setStoreList(next, FAILED_PROPERTY, [...storeList(current, FAILED_PROPERTY).filter((s) => !targets.includes(s)), ...targets]);
        }
        return next;
      }, opts).catch((error: unknown) => {
        if (!(error instanceof ImageNotFoundError)) throw error; // deleted meanwhile
      });
      if (dropped === undefined) continue;
      // Bytes of the interrupted write: a copy committed before its location was recorded, the
      // copies an unfinished import had made, and staged data.
      for (const s of this.#o.stores.list()) await this.#o.stores.blobs(s.id).delete(image.id, opts);
      await this.#o.staging.delete(image.id, opts);
      this.#o.log.warn({ image: image.id, was: image.status, stores: dropped },
        `image ${image.id} was left ${image.status} by a stop: it is queued again and its partial data is removed; upload or import it again`);
      reverted.push(image.id);
    }
    return reverted;
  }

  /** Whether a node is still at the image: its upload or staging claimed by a node that is alive, its import task unfinished. */
  async #inProgress(image: Image, opts: IoOptions): Promise<boolean> {
    if (image.status === 'importing') {
      const lock = image.properties[LOCK_PROPERTY];
      if (lock === undefined || lock === '') return false;
      const task = await this.#o.catalog.getTask(lock, opts);
      // No task yet: a node that is alive is between taking the lock and recording its task.
      return task === undefined ? (await this.#o.work?.isClaimed('task', lock, opts)) === true : !isTerminal(task.status);
    }
    return (await this.#o.work?.isClaimed(image.status === 'saving' ? 'upload' : 'stage', image.id, opts)) === true;
  }

  /**
   * Checks that each copy the catalog records in this site's stores is there with the image's
   * size, a page of images and a few copies at a time; warns once per store with missing copies.
   */
  async checkCopies(opts: IoOptions = {}): Promise<CopyCheckReport> {
    const report: CopyCheckReport = { checked: 0, missing: new Map() };
    const concurrency = this.#o.statConcurrency ?? 8;
    let batch: (() => Promise<void>)[] = [];
    const flush = async () => {
      for (let i = 0; i < batch.length; i += concurrency) await Promise.all(batch.slice(i, i + concurrency).map((f) => f()));
      batch = [];
    };
    for await (const image of this.#images({}, opts)) {
      for (const location of image.locations) {
        if (!this.#o.stores.has(location.store)) continue;
        batch.push(async () => {
          const stat = await this.#o.stores.blobs(location.store).stat(image.id, opts);
          report.checked++;
          if (stat !== undefined && (image.size === null || stat.size === image.size)) return;
          const ids = report.missing.get(location.store) ?? [];
          ids.push(image.id);
          report.missing.set(location.store, ids);
        });
      }
      if (batch.length >= this.#pageSize) await flush();
    }
    await flush();
    if (report.missing.size === 0) this.#o.log.info({ checked: report.checked }, 'every copy recorded in this site\'s stores is present');
    for (const [store, ids] of report.missing) {
      const path = this.#o.stores.list().find((s) => s.id === store)?.properties.data_dir;
      this.#o.log.warn({ store, path, missing: ids.length, examples: ids.slice(0, EXAMPLES) },
        `${ids.length} image(s) recorded in store ${store} have no data there (file missing or of another size), e.g. ${ids.slice(0, EXAMPLES).join(', ')}; `
        + `downloads of them answer 204 No Content. If the store's path changed, point store ${store} back at its old path, or move the image files `
        + `from the old path into ${typeof path === 'string' ? path : 'the new one'}, and restart (docs/operations.md, "Stores that moved")`);
    }
    return report;
  }

  /** Every image matching `base` (any visibility, any owner), a page at a time, by id. */
  #images(base: ImageListQuery['base'], opts: IoOptions): AsyncGenerator<Image> {
    return scanImages(this.#o.catalog, base, this.#pageSize, opts);
  }
}
