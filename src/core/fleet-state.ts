import { DesiredPlacement, type DesiredCopy, type PlacementSite } from './desired-placement.ts';
import type { Image } from './image.ts';
import { selectorMatches, type LabelSelector } from './label-selector.ts';
import type { PlacementPolicy } from './placement-policy.ts';

/** Where one copy a site should hold stands, as the site reports it (and the fleet view shows it). */
export type PlacementStateName = 'pending' | 'transferring' | 'held' | 'failed';

/**
 * A site's report of one copy its placement agent works on (sent up with its inventory):
 * `pending` — not started, or waiting to try again after the site could not reach its parent;
 * `transferring`; `held`; `failed` — the last attempt failed for another reason (a verification
 * error, a refusal), tried again later. `reason` says why for pending and failed.
 */
export interface PlacementReport {
  image_id: string;
  state: PlacementStateName;
  reason: string | null;
  /** Since when the copy is in this state (ISO 8601). */
  since: string;
  /** While transferring: bytes of the image the site has so far, and how fast they come. */
  bytes_done: number | null;
  bytes_per_second: number | null;
}

/** What a site's drift checks found since it started (the copies in its stores against the catalog). */
export interface DriftCounts {
  /** Recorded copies whose bytes were missing or of the wrong size: fetched again. */
  lost: number;
  /** Image bytes no record wanted in its stores: deleted. */
  extra: number;
  checked_at: string | null;
}

/** One (image, site) pair of the desired state, and where it stands. */
export interface FleetEntry {
  image_id: string;
  image_name: string | null;
  site: string;
  mode: DesiredCopy['mode'];
  priority: number;
  /** The policies that want it (their names), and `outpost_placement`. */
  reasons: string[];
  state: PlacementStateName;
  bytes_done: number;
  bytes_total: number;
  bytes_per_second: number | null;
  since: string | null;
  reason: string | null;
}

/** A site's last inventory report, as the fleet view reads it. */
export interface FleetReport {
  reported_at: string;
  /** Ids of the images it holds in its cache (cached or pinned), for `cache` copies. */
  cached: readonly string[];
  placements: readonly PlacementReport[];
}

/** Which pairs a fleet view shows: all given must hold; a page of at most `limit` after `after`. */
export interface FleetFilter {
  image?: string;
  site?: string;
  /** A policy's name (or `outpost_placement`, `copy-image`). */
  policy?: string;
  state?: PlacementStateName;
  /** Images carrying every one of these tags (as Glance's `tag` filter on GET /v2/images). */
  tags?: readonly string[];
  /** Sites whose labels match this selector (the syntax of a policy's `sites.labels`). */
  siteLabels?: LabelSelector;
  /** Only pairs after this one in the view's order. */
  after?: { image_id: string; site: string };
  limit: number;
}

/** How far a group of pairs has converged: held of desired, in percent (100 for none desired). */
export interface Convergence {
  id: string;
  held: number;
  desired: number;
  percent: number;
}

export interface FleetView {
  /** The page: pairs matching the filter, ordered by image id, then site id. */
  entries: FleetEntry[];
  /** Whether more pairs match after the page. */
  more: boolean;
  /** Convergence of the whole region (not only the filter) per image, per reason (policy) and per site. */
  convergence: { images: Convergence[]; policies: Convergence[]; sites: Convergence[] };
}

const STATE_CODES: readonly PlacementStateName[] = ['pending', 'transferring', 'held', 'failed'];
const HELD_CODE = STATE_CODES.indexOf('held') + 1;

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The desired state of a whole region (every site's `DesiredPlacement.at`) for one state of the
 * catalog, worked out once and laid out flat in the view's order (image id, then site id): what
 * the fleet view walks for each request with the sites' latest reports. A view costs one pass
 * over the pairs and over the reports, and builds entries only for its page.
 */
export class RegionPlacement {
  readonly #sites: PlacementSite[];
  readonly #siteIndex: Map<string, number>;
  /** Images with at least one desired pair, by id; image k's pairs are #start[k] .. #start[k + 1] - 1. */
  readonly #images: Image[] = [];
  readonly #start: number[] = [0];
  /** Per pair: its site (index into #sites), what is wanted, whether the catalog locates a copy in the site's stores. */
  readonly #site: number[] = [];
  readonly #want: DesiredCopy[] = [];
  readonly #located: boolean[] = [];
  /** Per pair: its reasons as an index into #reasonSets, the distinct lists of reasons (indexes into #reasons, the names). */
  readonly #reasonSet: number[] = [];
  readonly #reasonSets: number[][] = [];
  readonly #reasons: string[] = [];
  /** Per site: its pairs by image id. */
  readonly #pairOf: Map<string, number>[];

  constructor(sites: Iterable<PlacementSite>, images: Iterable<Image>, policies: readonly PlacementPolicy[]) {
    this.#sites = [...sites].sort((a, b) => byCodeUnits(a.id, b.id));
    this.#siteIndex = new Map(this.#sites.map((site, s) => [site.id, s]));
    this.#pairOf = this.#sites.map(() => new Map());
    const all = [...images].sort((a, b) => byCodeUnits(a.id, b.id));
    const placement = new DesiredPlacement(all, policies);
    const wanted = new Map<string, { site: number; want: DesiredCopy }[]>();
    this.#sites.forEach((site, s) => {
      for (const [id, want] of placement.at(site)) {
        const list = wanted.get(id);
        if (list === undefined) wanted.set(id, [{ site: s, want }]);
        else list.push({ site: s, want });
      }
    });
    const siteOfStore = new Map<string, number>();
    this.#sites.forEach((site, s) => { for (const store of site.stores) siteOfStore.set(store, s); });
    const reasonIndex = new Map<string, number>();
    const setIndex = new Map<string, number>();
    const reasonSetOf = (reasons: readonly string[]) => {
      const key = reasons.join('\n');
      let set = setIndex.get(key);
      if (set === undefined) {
        setIndex.set(key, set = this.#reasonSets.length);
        this.#reasonSets.push(reasons.map((r) => {
          let i = reasonIndex.get(r);
          if (i === undefined) { reasonIndex.set(r, i = this.#reasons.length); this.#reasons.push(r); }
          return i;
        }));
      }
      return set;
    };
    for (const image of all) {
      const list = wanted.get(image.id);
      if (list === undefined) continue;
      const located = new Set(image.locations.map((l) => siteOfStore.get(l.store)));
      for (const { site, want } of list) {
        this.#pairOf[site]!.set(image.id, this.#site.length);
        this.#site.push(site);
        this.#want.push(want);
        this.#located.push(located.has(site));
        this.#reasonSet.push(reasonSetOf(want.reasons));
      }
      this.#images.push(image);
      this.#start.push(this.#site.length);
    }
  }

  /** How many (image, site) pairs are desired. */
  get size(): number {
    return this.#site.length;
  }

  /**
   * Each desired pair with where it stands: `held` when the catalog locates a copy in one of the
   * site's stores (or, for a `cache` copy, the site reports it cached); otherwise what the site
   * last reported for it; otherwise `pending`, saying whether the site has reported at all.
   */
  view(reports: ReadonlyMap<string, FleetReport>, filter: FleetFilter): FleetView {
    // The reports laid out by pair, a site at a time: its report and its state (a STATE_CODES index + 1; 0 for none).
    const reported: (PlacementReport | undefined)[] = new Array<PlacementReport | undefined>(this.size).fill(undefined);
    const reportedState = new Uint8Array(this.size);
    const cached = new Uint8Array(this.size);
    const siteReports: (FleetReport | undefined)[] = this.#sites.map(() => undefined);
    for (const [id, report] of reports) {
      const s = this.#siteIndex.get(id);
      if (s === undefined) continue;
      siteReports[s] = report;
      const pairOf = this.#pairOf[s]!;
      for (const p of report.placements) {
        const g = pairOf.get(p.image_id);
        if (g === undefined) continue;
        reported[g] = p;
        reportedState[g] = STATE_CODES.indexOf(p.state) + 1;
      }
      for (const imageId of report.cached) {
        const g = pairOf.get(imageId);
        if (g !== undefined) cached[g] = 1;
      }
    }

    const entries: FleetEntry[] = [];
    let more = false;
    const imageCounts: Convergence[] = [];
    const siteCounts = this.#sites.map((s) => ({ id: s.id, held: 0, desired: 0, percent: 100 }));
    const setHeld = new Uint32Array(this.#reasonSets.length);
    const setDesired = new Uint32Array(this.#reasonSets.length);
    const after = filter.after;
    const { tags, siteLabels } = filter;
    const siteWanted = this.#sites.map((site) => (filter.site === undefined || filter.site === site.id) && (siteLabels === undefined || selectorMatches(siteLabels, site.labels)));
    for (let k = 0; k < this.#images.length; k++) {
      const image = this.#images[k]!;
      const counts = { id: image.id, held: 0, desired: 0, percent: 100 };
      imageCounts.push(counts);
      const imageWanted = (filter.image === undefined || filter.image === image.id) && (tags === undefined || tags.every((t) => image.tags.includes(t)));
      const imageAfter = after === undefined ? 1 : byCodeUnits(image.id, after.image_id);
      for (let g = this.#start[k]!; g < this.#start[k + 1]!; g++) {
        const s = this.#site[g]!;
        const want = this.#want[g]!;
        const held = this.#located[g]! || (want.mode === 'cache' && cached[g] === 1);
        const code = reportedState[g]!;
        const state: PlacementStateName = held ? 'held' : code !== 0 && code !== HELD_CODE ? STATE_CODES[code - 1]! : 'pending';
        const siteCount = siteCounts[s]!;
        counts.desired++;
        siteCount.desired++;
        setDesired[this.#reasonSet[g]!]!++;
        if (held) { counts.held++; siteCount.held++; setHeld[this.#reasonSet[g]!]!++; }
        const site = this.#sites[s]!;
        if (!imageWanted || !siteWanted[s] || (filter.state !== undefined && filter.state !== state)
          || (filter.policy !== undefined && !want.reasons.includes(filter.policy))
          || imageAfter < 0 || (imageAfter === 0 && byCodeUnits(site.id, after!.site) <= 0)) continue;
        if (entries.length === filter.limit) { more = true; continue; }
        const report = reported[g];
        const total = image.size ?? 0;
        const base = { image_id: image.id, image_name: image.name, site: site.id, mode: want.mode, priority: want.priority, reasons: want.reasons, bytes_total: total };
        if (held) {
          entries.push({ ...base, state, bytes_done: total, bytes_per_second: null, since: report?.state === 'held' ? report.since : null, reason: null });
        } else if (report !== undefined && report.state !== 'held') {
          entries.push({ ...base, state, bytes_done: report.bytes_done ?? 0, bytes_per_second: report.bytes_per_second, since: report.since, reason: report.reason });
        } else {
          const siteReport = siteReports[s];
          const reason = siteReport === undefined ? `site ${site.id} has not reported yet` : `not started at site ${site.id} as of its report at ${siteReport.reported_at}`;
          entries.push({ ...base, state, bytes_done: 0, bytes_per_second: null, since: null, reason });
        }
      }
    }
    const reasonCounts = this.#reasons.map((id) => ({ id, held: 0, desired: 0, percent: 100 }));
    this.#reasonSets.forEach((set, i) => {
      for (const r of set) { reasonCounts[r]!.held += setHeld[i]!; reasonCounts[r]!.desired += setDesired[i]!; }
    });
    const done = (list: Convergence[]) => list.filter((c) => c.desired > 0)
      .map((c) => ({ ...c, percent: Math.floor((c.held / c.desired) * 1000) / 10 }));
    return {
      entries, more,
      convergence: { images: done(imageCounts), policies: done(reasonCounts.sort((a, b) => byCodeUnits(a.id, b.id))), sites: done(siteCounts) },
    };
  }
}
