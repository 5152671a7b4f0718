import { DesiredPlacement, type DesiredCopy, type PlacementSite } from './desired-placement.ts';
import type { Image } from './image.ts';
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

/** What central knows of one site for the fleet view. */
export interface FleetSite extends PlacementSite {
  /** The site's stores: a copy located in one of them is held. */
  stores: readonly string[];
  /** The site's last inventory report, when it sent one. */
  report?: {
    reported_at: string;
    /** Images it holds in its cache (cached or pinned), for `cache` copies. */
    cached: ReadonlySet<string>;
    placements: ReadonlyMap<string, PlacementReport>;
  };
}

/**
 * The desired state of the whole region (every site's `desiredAt`), each pair with where it
 * stands: `held` when the catalog locates a copy in one of the site's stores (or, for a `cache`
 * copy, the site reports it cached); otherwise what the site last reported for it; otherwise
 * `pending`, saying whether the site has reported at all. Ordered by `{image_id}/{site}`.
 */
export function fleetEntries(sites: readonly FleetSite[], images: readonly Image[], policies: readonly PlacementPolicy[]): FleetEntry[] {
  const byId = new Map(images.map((i) => [i.id, i]));
  const placement = new DesiredPlacement(images, policies);
  const entries: FleetEntry[] = [];
  for (const site of sites) {
    for (const [imageId, want] of placement.at(site)) {
      const image = byId.get(imageId)!;
      const total = image.size ?? 0;
      const located = image.locations.some((l) => site.stores.includes(l.store));
      const held = located || (want.mode === 'cache' && site.report?.cached.has(imageId) === true);
      const reported = site.report?.placements.get(imageId);
      const base = { image_id: imageId, image_name: image.name, site: site.id, mode: want.mode, priority: want.priority, reasons: want.reasons, bytes_total: total };
      if (held) {
        entries.push({ ...base, state: 'held', bytes_done: total, bytes_per_second: null, since: reported?.state === 'held' ? reported.since : null, reason: null });
      } else if (reported !== undefined && reported.state !== 'held') {
        entries.push({
          ...base, state: reported.state, bytes_done: reported.bytes_done ?? 0, bytes_per_second: reported.bytes_per_second,
          since: reported.since, reason: reported.reason,
        });
      } else {
        const reason = site.report === undefined ? `site ${site.id} has not reported yet` : `not started at site ${site.id} as of its report at ${site.report.reported_at}`;
        entries.push({ ...base, state: 'pending', bytes_done: 0, bytes_per_second: null, since: null, reason });
      }
    }
  }
  const key = (e: FleetEntry) => `${e.image_id}/${e.site}`;
  return entries.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** How far a group of pairs has converged: held of desired, in percent (100 for none desired). */
export interface Convergence {
  id: string;
  held: number;
  desired: number;
  percent: number;
}

/** Convergence per image, per policy (its name; `outpost_placement` too) and per site. */
export function convergence(entries: readonly FleetEntry[]): { images: Convergence[]; policies: Convergence[]; sites: Convergence[] } {
  const images = new Map<string, [number, number]>();
  const policies = new Map<string, [number, number]>();
  const sites = new Map<string, [number, number]>();
  const count = (m: Map<string, [number, number]>, key: string, held: boolean) => {
    const c = m.get(key) ?? [0, 0];
    if (held) c[0]++;
    c[1]++;
    m.set(key, c);
  };
  for (const e of entries) {
    const held = e.state === 'held';
    count(images, e.image_id, held);
    count(sites, e.site, held);
    for (const r of e.reasons) count(policies, r, held);
  }
  const list = (m: Map<string, [number, number]>) => [...m].sort(([a], [b]) => a.localeCompare(b))
    .map(([id, [held, desired]]) => ({ id, held, desired, percent: desired === 0 ? 100 : Math.floor((held / desired) * 1000) / 10 }));
  return { images: list(images), policies: list(policies), sites: list(sites) };
}
