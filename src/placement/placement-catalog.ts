import type { Image } from '../core/image.ts';
import type { PolicyRecord } from '../core/placement-policy.ts';
import type { Change, ChangeLog, IoOptions, Site } from '../core/ports.ts';

/** What placement reads of the catalog, at one position of its change log (never changed once read). */
export interface PlacementCatalogState {
  seq: number;
  /** Every image that is not deleted, by id. */
  images: ReadonlyMap<string, Image>;
  policies: ReadonlyMap<string, PolicyRecord>;
  sites: ReadonlyMap<string, Site>;
  /** Bumped whenever images, policies or sites' labels or stores changed (not on a site's refresh alone). */
  version: number;
}

export interface PlacementCatalogOptions {
  changeLog: Pick<ChangeLog, 'lastSeq' | 'firstSeq' | 'snapshot'> & { changesSince(since: number, limit: number, opts?: IoOptions): Promise<Change[]> };
  /** Read the whole snapshot again rather than this many changes (default 20,000). */
  reloadAfter?: number;
}

const PAGE = 1000;

interface MutableState { seq: number; images: Map<string, Image>; policies: Map<string, PolicyRecord>; sites: Map<string, Site>; version: number }

/**
 * The images, policies and sites of a catalog, kept in memory and brought up to date from its
 * change log (issue 13: the desired state is computed at central incrementally). A read costs
 * one `lastSeq` when nothing changed and the changes since the last read otherwise; the whole
 * snapshot is read at first, when the log no longer holds the changes since (truncated), or when
 * more than `reloadAfter` are to be applied. One refresh runs at a time; concurrent reads share it.
 */
export class PlacementCatalog {
  readonly #o: PlacementCatalogOptions;
  #state: MutableState | undefined;
  #refreshing: Promise<PlacementCatalogState> | undefined;

  constructor(opts: PlacementCatalogOptions) {
    this.#o = opts;
  }

  /** The catalog as of now (at least as new as any change committed before the call). */
  async read(opts: IoOptions = {}): Promise<PlacementCatalogState> {
    // A refresh under way may have read lastSeq before this call: wait for it, then look again.
    while (this.#refreshing !== undefined) await this.#refreshing.catch(() => undefined);
    const refreshing = this.#refresh(opts);
    this.#refreshing = refreshing;
    try {
      return await refreshing;
    } finally {
      if (this.#refreshing === refreshing) this.#refreshing = undefined;
    }
  }

  async #refresh(opts: IoOptions): Promise<PlacementCatalogState> {
    const state = this.#state;
    const last = await this.#o.changeLog.lastSeq(opts);
    if (state !== undefined && state.seq === last) return state;
    const reloadAfter = this.#o.reloadAfter ?? 20_000;
    if (state === undefined || last - state.seq > reloadAfter || (await this.#o.changeLog.firstSeq(opts)) > state.seq + 1) {
      const snap = await this.#o.changeLog.snapshot(opts);
      this.#state = {
        seq: snap.seq,
        images: new Map(snap.images.map((i) => [i.id, i])),
        policies: new Map((snap.policies ?? []).map((p) => [p.id, p])),
        sites: new Map(snap.sites.map((s) => [s.id, s])),
        version: (state?.version ?? 0) + 1,
      };
      return this.#state;
    }
    // Changes are applied in seq order onto a copy of the state they follow (a state once read
    // never changes), so the result is the catalog at the last change's seq.
    const next = { ...state, images: new Map(state.images), policies: new Map(state.policies), sites: new Map(state.sites) };
    let changed = false;
    for (;;) {
      const changes = await this.#o.changeLog.changesSince(next.seq, PAGE, opts);
      for (const change of changes) {
        changed = apply(next, change) || changed;
        next.seq = change.seq;
      }
      if (changes.length < PAGE) break;
    }
    if (changed) next.version++;
    this.#state = next;
    return next;
  }
}

/** Applies one change; whether it changed what placement computes from. */
function apply(state: MutableState, change: Change): boolean {
  switch (change.entity) {
    case 'image':
      if (change.op === 'delete') return state.images.delete(change.id);
      state.images.set(change.id, change.body as Image);
      return true;
    case 'policy':
      if (change.op === 'delete') return state.policies.delete(change.id);
      state.policies.set(change.id, change.body as PolicyRecord);
      return true;
    case 'site': {
      const before = state.sites.get(change.id);
      if (change.op === 'delete') return state.sites.delete(change.id);
      const site = change.body as Site;
      state.sites.set(change.id, site);
      return before === undefined || JSON.stringify([before.labels, before.stores]) !== JSON.stringify([site.labels, site.stores]);
    }
    default:
      return false;
  }
}
