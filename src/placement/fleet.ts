import { BadRequestError } from '../core/errors.ts';
import { parseLabelSelector } from '../core/label-selector.ts';
import { RegionPlacement, type Convergence, type DriftCounts, type FleetEntry, type FleetFilter, type FleetReport, type PlacementStateName } from '../core/fleet-state.ts';
import { policyOf } from '../core/placement-policy.ts';
import type { InventoryStore, IoOptions } from '../core/ports.ts';
import type { PlacementCatalog } from './placement-catalog.ts';

export interface FleetOptions {
  catalog: Pick<PlacementCatalog, 'read'>;
  inventories: Pick<InventoryStore, 'listInventories' | 'inventoryRevisions'>;
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
  /** The region's desired state for the catalog version it was worked out from. */
  #region: { version: number; placement: RegionPlacement } | undefined;
  /**
   * Each site's last report as read, with the revision read before it (so the report is at least
   * that new): a view re-reads only the reports whose revision changed since.
   */
  readonly #reports = new Map<string, { revision: number; report: FleetReport; drift: DriftCounts | undefined }>();

  constructor(opts: FleetOptions) {
    this.#o = opts;
  }

  /** Parses GET /outpost/v1/fleet's query — its filters and page (BadRequestError naming the parameter). */
  static query(params: ReadonlyMap<string, readonly string[]>): FleetFilter {
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
    // The marker is the `next` of the previous page: `{image_id}/{site}`.
    const marker = one('marker');
    const slash = marker?.indexOf('/') ?? -1;
    if (marker !== undefined && (slash <= 0 || slash === marker.length - 1)) throw new BadRequestError('marker must be the next of a previous page ({image_id}/{site}).');
    const after = marker === undefined ? undefined : { image_id: marker.slice(0, slash), site: marker.slice(slash + 1) };
    // tag: every one given (Glance's `tag` on GET /v2/images); site_labels: a policy's selector syntax.
    const tags = params.get('tag');
    const labels = one('site_labels');
    return {
      image: one('image'), site: one('site'), policy: one('policy'), state: state as PlacementStateName | undefined, limit, after,
      ...(tags === undefined ? {} : { tags: [...tags] }),
      ...(labels === undefined ? {} : { siteLabels: parseLabelSelector(labels, 'site_labels') }),
    };
  }

  async view(query: FleetFilter, opts: IoOptions = {}): Promise<FleetPage> {
    const [catalog] = await Promise.all([this.#o.catalog.read(opts), this.#readReports(opts)]);
    if (this.#region?.version !== catalog.version) {
      const policies = [...catalog.policies.values()].map(policyOf);
      this.#region = { version: catalog.version, placement: new RegionPlacement(catalog.sites.values(), catalog.images.values(), policies) };
    }
    const reports = new Map([...this.#reports].map(([site, r]) => [site, r.report]));
    const { entries, more, convergence } = this.#region.placement.view(reports, query);
    const last = entries.at(-1);
    const drift = [...this.#reports].flatMap(([site, r]) => (r.drift === undefined ? [] : [{ site, ...r.drift }])).sort((a, b) => (a.site < b.site ? -1 : 1));
    return { fleet: entries, next: more && last !== undefined ? `${last.image_id}/${last.site}` : null, convergence, drift };
  }

  async #readReports(opts: IoOptions): Promise<void> {
    const revisions = await this.#o.inventories.inventoryRevisions(opts);
    for (const site of this.#reports.keys()) if (!revisions.has(site)) this.#reports.delete(site);
    const stale = [...revisions].flatMap(([site, revision]) => (this.#reports.get(site)?.revision === revision ? [] : [site]));
    if (stale.length === 0) return;
    for (const r of await this.#o.inventories.listInventories({ ...opts, sites: stale })) {
      this.#reports.set(r.site, {
        revision: revisions.get(r.site)!,
        report: { reported_at: r.reported_at, cached: r.images.flatMap((i) => (i.state === 'stored' ? [] : [i.image_id])), placements: r.placements ?? [] },
        drift: r.drift,
      });
    }
  }
}
