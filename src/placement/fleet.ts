import { BadRequestError } from '../core/errors.ts';
import { convergence, fleetEntries, type Convergence, type DriftCounts, type FleetEntry, type FleetSite, type PlacementStateName } from '../core/fleet-state.ts';
import { allImages } from '../core/all-images.ts';
import { policyOf } from '../core/placement-policy.ts';
import type { Catalog, InventoryStore, IoOptions } from '../core/ports.ts';

export interface FleetOptions {
  catalog: Pick<Catalog, 'listImages' | 'listPolicies' | 'listSites'>;
  inventories: Pick<InventoryStore, 'listInventories'>;
}

/** GET /outpost/v1/fleet's filters and page. */
export interface FleetQuery {
  image?: string;
  site?: string;
  /** A policy's name (or `outpost_placement`). */
  policy?: string;
  state?: PlacementStateName;
  limit: number;
  /** Continue after this entry (`{image_id}/{site}`, the `next` of the previous page). */
  marker?: string;
}

export interface FleetPage {
  fleet: FleetEntry[];
  /** The marker of the next page; null on the last. */
  next: string | null;
  /** Convergence over the whole region (not only this page or filter). */
  convergence: { images: Convergence[]; policies: Convergence[]; sites: Convergence[] };
  /** What each site's drift checks repaired since it started (sites that reported any), by site. */
  drift: ({ site: string } & DriftCounts)[];
}

const STATES: readonly PlacementStateName[] = ['pending', 'transferring', 'held', 'failed'];
const MAX_LIMIT = 1000;

/**
 * The fleet view at central (issue 13): every (image, site) pair the placement policies and
 * `outpost_placement` want, with where it stands — from central's catalog (copies located in a
 * site's stores are held) and from each site's last report (its cached copies, its transfers'
 * progress, pending and failed copies with their reason) — and convergence per image, policy
 * and site.
 */
export class Fleet {
  readonly #o: FleetOptions;

  constructor(opts: FleetOptions) {
    this.#o = opts;
  }

  /** Parses GET /outpost/v1/fleet's query (BadRequestError naming the parameter). */
  static query(params: ReadonlyMap<string, readonly string[]>): FleetQuery {
    const one = (name: string) => {
      const values = params.get(name);
      if (values !== undefined && values.length > 1) throw new BadRequestError(`${name} may be given once.`);
      return values?.[0];
    };
    const state = one('state');
    if (state !== undefined && !STATES.includes(state as PlacementStateName)) throw new BadRequestError(`state must be one of ${STATES.join(', ')}.`);
    const limitText = one('limit');
    if (limitText !== undefined && !/^\d+$/.test(limitText)) throw new BadRequestError('limit must be a whole number.');
    const limit = limitText === undefined ? 100 : Math.min(Number(limitText), MAX_LIMIT);
    return { image: one('image'), site: one('site'), policy: one('policy'), state: state as PlacementStateName | undefined, limit, marker: one('marker') };
  }

  async view(query: FleetQuery, opts: IoOptions = {}): Promise<FleetPage> {
    const [policies, sites, inventories, images] = await Promise.all([
      this.#o.catalog.listPolicies(opts), this.#o.catalog.listSites(opts), this.#o.inventories.listInventories(opts), allImages(this.#o.catalog, opts),
    ]);
    const reports = new Map(inventories.map((i) => [i.site, i]));
    const fleetSites: FleetSite[] = sites.map((s) => {
      const r = reports.get(s.id);
      return {
        id: s.id, labels: s.labels, stores: s.stores,
        report: r === undefined ? undefined : {
          reported_at: r.reported_at,
          cached: new Set(r.images.filter((i) => i.state !== 'stored').map((i) => i.image_id)),
          placements: new Map((r.placements ?? []).map((p) => [p.image_id, p])),
        },
      };
    });
    const all = fleetEntries(fleetSites, images, policies.map(policyOf));
    const matching = all.filter((e) => (query.image === undefined || e.image_id === query.image)
      && (query.site === undefined || e.site === query.site)
      && (query.policy === undefined || e.reasons.includes(query.policy))
      && (query.state === undefined || e.state === query.state));
    const start = query.marker === undefined ? 0 : matching.findIndex((e) => `${e.image_id}/${e.site}` > query.marker!);
    const page = start < 0 ? [] : matching.slice(start, start + query.limit);
    const last = page.at(-1);
    const more = start >= 0 && start + query.limit < matching.length;
    const drift = inventories.flatMap((i) => (i.drift === undefined ? [] : [{ site: i.site, ...i.drift }]));
    return { fleet: page, next: more && last !== undefined ? `${last.image_id}/${last.site}` : null, convergence: convergence(all), drift };
  }
}
