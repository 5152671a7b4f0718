import { allImages } from '../core/all-images.ts';
import { ADMIN_CONTEXT } from '../core/context.ts';
import { describeError } from '../core/describe-error.ts';
import { COPY_IMAGE_REASON, DesiredPlacement, type DesiredCopy, type PlacementSite } from '../core/desired-placement.ts';
import { NotFoundError, OutpostError, ServiceUnavailableError } from '../core/errors.ts';
import type { DriftCounts, PlacementReport, PlacementStateName } from '../core/fleet-state.ts';
import type { Image } from '../core/image.ts';
import { policyOf } from '../core/placement-policy.ts';
import type { Catalog, ChangeLog, ChunkIndex, CopyRegistry, ManifestIndex } from '../core/ports.ts';
import type { StoreRegistry } from '../core/stores.ts';
import type { ImageFills } from '../transfer/image-fills.ts';

export interface SiteAgentOptions {
  /** This site, with the labels policies select it by. */
  site: PlacementSite;
  /**
   * The site's stores: replicated copies are kept under the image's id in the default one, or in
   * the one a copy-image named.
   */
  stores: Pick<StoreRegistry, 'defaultId' | 'blobs'>;
  /** The site's replica of the catalog (images, policies) and its change log, which wakes the agent. */
  catalog: Pick<Catalog, 'listImages' | 'listPolicies'>;
  changeLog: Pick<ChangeLog, 'lastSeq' | 'waitForChange'>;
  /** The site's transfers of image bytes (shared with its cache: one fill per image). */
  fills: ImageFills;
  /** Central's record of copies: through the parent at an edge, central's own catalog at central. */
  copies: CopyRegistry;
  /**
   * Whether the copies copy-image asks of this site's stores are the agent's to make: an edge's
   * are (default); central's import runner makes central's itself.
   */
  copyImage?: boolean;
  /**
   * Several nodes serve this site (central on PostgreSQL): a copy is placed by the node that
   * claims it (NodeWork, kind `place`); the others leave it alone while that node is alive.
   */
  work?: { claim(kind: 'place', id: string, opts?: { signal?: AbortSignal }): Promise<boolean>; release(kind: 'place', id: string): Promise<void> };
  manifests: ManifestIndex;
  chunks: ChunkIndex;
  /** Build each copy's manifest as it is fetched (`chunk_manifests`). */
  buildManifests: boolean;
  /** The site's cache: `cache` copies are held there for the policies; a replicated copy replaces a cached one. */
  cache: {
    holdForPolicy(image: Image, opts?: { signal?: AbortSignal }): Promise<void>;
    releaseForPolicy(imageId: string, opts?: { signal?: AbortSignal }): Promise<void>;
    heldForPolicy(): Set<string>;
    evict(imageId: string): Promise<boolean>;
  };
  /** Copies fetched at the same time. */
  concurrency: number;
  /** How long with nothing changing before the desired state is looked at again, ms. */
  retryMs: number;
  /**
   * How often the copies in the site's stores are checked against the catalog (drift), ms; null:
   * never (central, whose stores hold its own uploads and imports, checked at its start).
   */
  driftCheckMs: number | null;
  /** A running transfer's progress: bytes of the image here so far, and their rate. */
  progress(imageId: string): { bytes_done: number; bytes_per_second: number } | undefined;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** Where one wanted copy stands at this site (what it reports up with its inventory). */
export interface PlacementState extends PlacementReport {
  mode: DesiredCopy['mode'];
  priority: number;
  reasons: string[];
}

/** The reason of a copy fetched again because its bytes were lost. */
const REPAIR_REASON = 'repair';

/** A copy this agent recorded is not taken for an extra one while the replica may not show it yet, ms. */
const RECORDED_GRACE_MS = 10 * 60_000;

/** After the n-th failure in a row a copy waits RETRY_BASE_MS × 2^(n-1), at most RETRY_MAX_MS. */
const RETRY_BASE_MS = 5000;
const RETRY_MAX_MS = 300_000;

/** Another node of this site claimed the copy (WorkKind `place`) and is placing it. */
class PlacedElsewhere extends Error {
  constructor() {
    super('another node of this site is placing it');
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A site's placement agent (issue 13): keeps the copies the placement policies (and
 * `outpost_placement`) want at this site in its store, and only those. It computes its desired
 * state from its own replica of the catalog — policies, images and its own labels all replicate —
 * so it needs nothing from central to know what to hold, and a site that joins later with
 * matching labels converges with no change at central.
 *
 * What it lacks it pulls from its parent through the transfer engine (ImageFills: verified,
 * resumable, delta from chunks held here), highest priority first, `concurrency` at a time, and
 * records each copy at central as placed by policy (so the image's `stores` lists it) before it
 * counts as held. A copy no policy wants any more is unrecorded at central first, then deleted.
 * `cache` copies are fetched into the site's cache and held there (never evicted) while a policy
 * wants them, then released to the cache's LRU.
 * It never touches a copy it did not place (an upload here). While the parent cannot be reached
 * a wanted copy stays `pending`, and is tried again every `retryMs` and on every change.
 */
export class SiteAgent {
  readonly #o: SiteAgentOptions;
  readonly #stop = new AbortController();
  readonly #states = new Map<string, PlacementState>();
  /** The copies being placed now, by image. */
  readonly #placing = new Map<string, Promise<void>>();
  /** Copies whose last attempts failed: how many in a row, and not before when to try again. */
  readonly #failures = new Map<string, { count: number; retryAt: number }>();
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  /** `store \n image id` of the copies located in this site's stores at the last look. */
  #located: Set<string> | undefined;
  /** Copies recorded here whose bytes were lost, by image: the store they are fetched again into. */
  readonly #lost = new Map<string, string>();
  /** When this agent last recorded, or removed, a copy of each image (RECORDED_GRACE_MS): its replica may lag. */
  readonly #recorded = new Map<string, number>();
  readonly #removed = new Map<string, number>();
  #lastDriftCheck = 0;
  readonly #drift: DriftCounts = { lost: 0, extra: 0, checked_at: null };

  constructor(opts: SiteAgentOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#running = this.#loop();
  }

  /** Where each copy this site should hold stands, highest priority first (with transfers' progress). */
  states(): PlacementState[] {
    return [...this.#states.values()]
      .map((s) => (s.state === 'transferring' ? { ...s, ...this.#o.progress(s.image_id) } : s))
      .sort((a, b) => b.priority - a.priority || a.image_id.localeCompare(b.image_id));
  }

  /** What the drift checks found since the site started. */
  drift(): DriftCounts {
    return { ...this.#drift };
  }

  /** Stops, aborting the transfers it started (a copy not committed is not kept). */
  async close(): Promise<void> {
    this.#stop.abort();
    this.#wake?.();
    await this.#running;
    await Promise.all(this.#placing.values());
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let seq = 0;
      try {
        seq = await this.#o.changeLog.lastSeq({ signal });
        await this.#reconcile(signal);
      } catch (error) {
        if (signal.aborted) return;
        this.#o.log.warn({ err: describeError(error) }, 'placement: could not reconcile this site\'s copies; trying again');
      }
      // Until the catalog changes, a transfer ends, or retryMs passes.
      const round = new AbortController();
      const woken = new Promise<void>((resolve) => { this.#wake = resolve; });
      await Promise.race([
        this.#o.changeLog.waitForChange(seq, this.#o.retryMs, { signal: AbortSignal.any([signal, round.signal]) }).catch(() => undefined),
        woken,
      ]);
      round.abort();
    }
  }

  async #reconcile(signal: AbortSignal): Promise<void> {
    const { site, stores } = this.#o;
    const policies = (await this.#o.catalog.listPolicies({ signal })).map(policyOf);
    const images = new Map((await allImages(this.#o.catalog, { signal })).map((i) => [i.id, i]));
    const desired = new DesiredPlacement(images.values(), policies).at(site);
    if (this.#o.copyImage === false) {
      for (const [id, want] of desired) if (want.reasons.includes(COPY_IMAGE_REASON)) desired.delete(id);
    }
    const now = new Date().toISOString();
    const target = (want: DesiredCopy) => want.store ?? stores.defaultId;
    const wantedIn = (id: string, store: string) => {
      const want = desired.get(id);
      return want?.mode === 'replicate' && target(want) === store;
    };

    // Copies no policy wants replicated any more: unrecorded at central, then deleted here.
    for (const image of images.values()) {
      const placed = image.locations.some((l) => l.store === stores.defaultId && l.placed_by === 'policy');
      if (!placed || wantedIn(image.id, stores.defaultId)) continue;
      try {
        await this.#remove(image, signal);
      } catch (error) {
        if (signal.aborted) throw error;
        this.#o.log.warn({ image: image.id, err: describeError(error) }, 'placement: could not remove a copy no policy wants; trying again');
      }
    }
    // Copies whose record central removed (DELETE /v2/stores/{store}/{image} there): their bytes go too.
    const located = new Set([...images.values()].flatMap((i) => i.locations.filter((l) => site.stores.includes(l.store)).map((l) => `${l.store}\n${i.id}`)));
    for (const key of this.#located ?? []) {
      const [store, id] = key.split('\n') as [string, string];
      if (located.has(key) || !images.has(id) || wantedIn(id, store) || this.#placing.has(id)) continue;
      await this.#o.chunks.removeHeldCopy(store, id, { signal });
      await stores.blobs(store).delete(id, { signal });
      this.#o.log.info({ image: id, store }, 'placement: deleted the bytes of a copy no longer recorded here');
    }
    this.#located = located;
    if (this.#o.driftCheckMs !== null && Date.now() - this.#lastDriftCheck >= this.#o.driftCheckMs) {
      this.#lastDriftCheck = Date.now();
      await this.#checkDrift(images, wantedIn, signal);
    }
    // Cached copies held for a policy none wants as `cache` any more: evictable again.
    for (const id of this.#o.cache.heldForPolicy()) {
      if (desired.get(id)?.mode !== 'cache') await this.#o.cache.releaseForPolicy(id, { signal });
    }
    const cacheHeld = this.#o.cache.heldForPolicy();
    for (const id of this.#states.keys()) {
      if (desired.has(id) || this.#placing.has(id)) continue;
      this.#states.delete(id);
      this.#failures.delete(id);
    }

    const missing: { image: Image; want: DesiredCopy }[] = [];
    for (const [id, store] of this.#lost) {
      const image = images.get(id);
      if (image === undefined || !image.locations.some((l) => l.store === store)) this.#lost.delete(id);
      else if (!this.#placing.has(id) && !desired.has(id) && (this.#failures.get(id)?.retryAt ?? 0) <= Date.now()) {
        missing.push({ image, want: { mode: 'replicate', priority: 90, reasons: [REPAIR_REASON], store } });
      }
    }
    for (const [id, want] of desired) {
      const image = images.get(id)!;
      // A `cache` copy is held in the cache, or by a copy in the store that is not a policy's (an upload here).
      const held = want.mode === 'replicate'
        ? image.locations.some((l) => l.store === target(want)) && this.#lost.get(id) !== target(want)
        : cacheHeld.has(id) || image.locations.some((l) => l.store === stores.defaultId && l.placed_by !== 'policy');
      const previous = this.#states.get(id);
      const state: PlacementStateName = held ? 'held' : this.#placing.has(id) ? 'transferring' : previous?.state === 'failed' ? 'failed' : 'pending';
      this.#states.set(id, {
        image_id: id, mode: want.mode, priority: want.priority, reasons: want.reasons, state,
        reason: held ? null : previous?.reason ?? null, since: previous?.state === state ? previous.since : now,
        bytes_done: null, bytes_per_second: null,
      });
      if (held) this.#failures.delete(id);
      const waiting = (this.#failures.get(id)?.retryAt ?? 0) > Date.now();
      if (!held && !this.#placing.has(id) && !waiting) missing.push({ image, want });
    }
    missing.sort((a, b) => b.want.priority - a.want.priority || a.image.id.localeCompare(b.image.id));
    for (const { image, want } of missing.slice(0, Math.max(0, this.#o.concurrency - this.#placing.size))) this.#place(image, want);
  }

  /**
   * Drift (issue 13): every copy recorded in the site's stores must have its bytes there — one
   * whose bytes are gone or of another size is fetched again — and bytes no record wants there
   * (an image deleted while the site was off, a copy whose record went meanwhile) are deleted.
   * Bytes of an image not yet active (an upload being recorded) and of a copy this agent
   * recorded lately (its replica may not show the record yet) are left alone.
   */
  async #checkDrift(images: Map<string, Image>, wantedIn: (id: string, store: string) => boolean, signal: AbortSignal): Promise<void> {
    const now = Date.now();
    for (const recent of [this.#recorded, this.#removed]) for (const [id, at] of recent) if (now - at > RECORDED_GRACE_MS) recent.delete(id);
    for (const store of this.#o.site.stores) {
      const blobs = this.#o.stores.blobs(store);
      for (const image of images.values()) {
        if (!image.locations.some((l) => l.store === store) || this.#placing.has(image.id) || this.#lost.has(image.id) || this.#removed.has(image.id)) continue;
        if ((await blobs.stat(image.id, { signal }))?.size === image.size) continue;
        this.#drift.lost++;
        this.#lost.set(image.id, store);
        this.#o.log.warn({ image: image.id, store }, 'placement: the bytes of a copy recorded here are missing or of another size; fetching them again');
      }
      for await (const key of blobs.list({ signal })) {
        if (!UUID.test(key) || this.#placing.has(key) || this.#recorded.has(key) || wantedIn(key, store)) continue;
        const image = images.get(key);
        if (image !== undefined && (image.locations.some((l) => l.store === store) || (image.status !== 'active' && image.status !== 'deactivated'))) continue;
        await this.#o.chunks.removeHeldCopy(store, key, { signal });
        await blobs.delete(key, { signal });
        this.#drift.extra++;
        this.#o.log.warn({ image: key, store }, 'placement: deleted image bytes no record wants in this store');
      }
    }
    this.#drift.checked_at = new Date().toISOString();
  }

  /**
   * Places one copy in the background: `replicate` into the store, `cache` into the cache; held
   * once done, pending or failed (and tried again later) when not.
   */
  #place(image: Image, want: DesiredCopy): void {
    const signal = this.#stop.signal;
    this.#setState(image.id, 'transferring', null);
    const { work } = this.#o;
    const placed = async () => {
      if (work !== undefined && !(await work.claim('place', image.id, { signal }))) throw new PlacedElsewhere();
      try {
        await (want.mode === 'cache' ? this.#hold(image, signal) : this.#replicate(image, want, signal));
      } finally {
        await work?.release('place', image.id).catch(() => undefined);
      }
    };
    const placing = placed().then(() => {
      this.#o.log.info({ image: image.id, mode: want.mode, size: image.size, reasons: want.reasons }, 'placement: holds a copy a policy wants');
      this.#failures.delete(image.id);
      this.#lost.delete(image.id);
      this.#setState(image.id, 'held', null);
    }, (error: unknown) => {
      if (signal.aborted) return;
      if (error instanceof PlacedElsewhere) {
        // Looked at again after retryMs (or a change): by then that node holds it, or is gone.
        this.#failures.set(image.id, { count: 0, retryAt: Date.now() + this.#o.retryMs });
        this.#setState(image.id, 'transferring', error.message);
        return;
      }
      // Not reaching the parent leaves a copy pending; anything else (a verification error, a
      // refusal) is a failure. Either way it is tried again, later after each failure in a row.
      const offline = error instanceof ServiceUnavailableError || !(error instanceof OutpostError);
      const count = (this.#failures.get(image.id)?.count ?? 0) + 1;
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (count - 1));
      this.#failures.set(image.id, { count, retryAt: Date.now() + delay });
      this.#o.log.warn({ image: image.id, err: describeError(error), retry_in_ms: delay }, `placement: could not place a copy a policy wants; it is ${offline ? 'pending' : 'failed'}`);
      this.#setState(image.id, offline ? 'pending' : 'failed', describeError(error));
    }).finally(() => {
      this.#placing.delete(image.id);
      this.#wake?.();
    });
    this.#placing.set(image.id, placing);
  }

  /**
   * A `replicate` copy: fetched into its store (or found there), then recorded at central — as
   * placed by policy unless a copy-image asked for it — and a cached copy then goes.
   */
  async #replicate(image: Image, want: DesiredCopy, signal: AbortSignal): Promise<void> {
    const { fills } = this.#o;
    const store = this.#o.stores.blobs(want.store ?? this.#o.stores.defaultId);
    // One fill per image at a site: one a client's miss started (into the cache) ends first;
    // its chunks are then copied from the cached copy rather than fetched again.
    for (let other = fills.get(image.id); other !== undefined; other = fills.get(image.id)) await other.ended;
    signal.throwIfAborted();
    // The bytes may be here already (recorded nowhere, after a stop between the two): record them.
    if ((await store.stat(image.id, { signal }))?.size !== image.size) {
      if (fills.get(image.id) !== undefined) throw new Error('another transfer of the image started meanwhile');
      const fill = fills.start(image, { blobs: store, key: image.id, manifest: this.#o.buildManifests, priority: 'replicate' }, {
        committed: async (digest) => {
          if (digest.manifest === undefined) return;
          await this.#o.manifests.putManifest(image.id, digest.sha512, digest.manifest, { signal });
          await this.#o.chunks.addHeldCopy(store.id, image.id, digest.manifest, { signal });
        },
      });
      const stop = () => fill.abort.abort();
      signal.addEventListener('abort', stop);
      await fill.ended.finally(() => signal.removeEventListener('abort', stop));
      if (fill.state !== 'committed') throw fill.error ?? new Error('the transfer ended without a copy');
    }
    await this.#o.copies.record(ADMIN_CONTEXT, image.id, {
      store: store.id, url: store.urlFor(image.id), size: image.size!, checksum: image.checksum!, os_hash_algo: 'sha512',
      os_hash_value: image.os_hash_value!, virtual_size: image.virtual_size,
      // A repaired copy keeps what its record says; a new one is a policy's unless copy-image asked for it.
      ...((image.locations.find((l) => l.store === store.id)?.placed_by === 'policy' || !want.reasons.some((r) => r === COPY_IMAGE_REASON || r === REPAIR_REASON))
        ? { placed_by: 'policy' as const } : {}),
    }, { signal });
    this.#recorded.set(image.id, Date.now());
    await this.#o.cache.evict(image.id).catch(() => false);
  }

  /** A `cache` copy: fetched into the site's cache if need be, and held there for the policy. */
  async #hold(image: Image, signal: AbortSignal): Promise<void> {
    await this.#o.cache.holdForPolicy(image, { signal });
  }

  async #remove(image: Image, signal: AbortSignal): Promise<void> {
    const store = this.#o.stores.blobs(this.#o.stores.defaultId);
    try {
      await this.#o.copies.remove(ADMIN_CONTEXT, image.id, store.id, { signal });
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    this.#removed.set(image.id, Date.now());
    await this.#o.chunks.removeHeldCopy(store.id, image.id, { signal });
    await store.delete(image.id, { signal });
    this.#o.log.info({ image: image.id, store: store.id }, 'placement: removed a copy no policy wants any more');
  }

  #setState(imageId: string, state: PlacementStateName, reason: string | null): void {
    const current = this.#states.get(imageId);
    if (current === undefined) return;
    this.#states.set(imageId, { ...current, state, reason, since: current.state === state ? current.since : new Date().toISOString() });
  }
}
