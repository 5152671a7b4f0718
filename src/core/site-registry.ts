import type { RequestContext } from './context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from './errors.ts';
import type { Catalog, InventoryStore, IoOptions, Site, StoreDescription } from './ports.ts';
import { storesOwnedElsewhere } from './region-stores.ts';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/**
 * The region's sites. Each edge registers itself with its parent on start and refreshes the
 * registration as a heartbeat; registrations are forwarded up to central, which keeps the tree
 * (any depth) and refuses unknown or cyclic parents. Sites replicate down like every entity — but
 * a refresh that changes nothing but when the site was heard from is a heartbeat, kept at central
 * outside the change log, so that the feed carries no traffic that grows with sites × sites.
 */
export class SiteRegistry {
  readonly #catalog: Catalog;
  readonly #heartbeats: Pick<InventoryStore, 'putHeartbeat' | 'listHeartbeats'>;
  readonly #now: () => Date;

  constructor(catalog: Catalog, heartbeats: Pick<InventoryStore, 'putHeartbeat' | 'listHeartbeats'>, now: () => Date = () => new Date()) {
    this.#catalog = catalog;
    this.#heartbeats = heartbeats;
    this.#now = now;
  }

  /** Central's own record (no parent). */
  async registerSelf(site: Omit<Site, 'registered_at' | 'last_contact' | 'lag_changes' | 'parent'>, opts: IoOptions = {}): Promise<void> {
    const now = this.#now().toISOString();
    assertOwnStores(site.id, site.stores, await this.#catalog.listSites(opts));
    const existing = await this.#catalog.getSite(site.id, opts);
    await this.#catalog.upsertSite({ ...site, parent: null, registered_at: existing?.registered_at ?? now, last_contact: now, lag_changes: null }, opts);
  }

  /** POST /outpost/v1/sites at central: register or refresh a site (idempotent). */
  async register(ctx: RequestContext, body: unknown, opts: IoOptions = {}): Promise<Site> {
    if (!ctx.isAdmin && !ctx.roles.includes('service')) throw new ForbiddenError('Only sites and administrators register sites.');
    const b = (body ?? {}) as Record<string, unknown>;
    const id = b.id;
    const parent = b.parent;
    if (typeof id !== 'string' || !ID_RE.test(id)) throw new BadRequestError('A site needs an id of 1-64 letters, digits, \'_\' or \'-\'.');
    if (typeof parent !== 'string' || parent === '') throw new BadRequestError(`Site ${id} needs a parent site id.`);
    const labels = b.labels ?? {};
    if (labels === null || typeof labels !== 'object' || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string')) {
      throw new BadRequestError('Site labels must be an object of strings.');
    }
    const stores = b.stores ?? [];
    if (!Array.isArray(stores) || stores.some((s) => typeof s !== 'string')) throw new BadRequestError('Site stores must be a list of store ids.');
    const details = b.store_details ?? [];
    if (!Array.isArray(details) || details.some((d) => d === null || typeof d !== 'object' || typeof d.id !== 'string' || !(stores as unknown[]).includes(d.id))) {
      throw new BadRequestError('Site store_details must be a list of store descriptions, one per store id.');
    }
    const heartbeat = b.heartbeat_seconds;
    if (heartbeat !== undefined && (typeof heartbeat !== 'number' || !Number.isSafeInteger(heartbeat) || heartbeat < 1)) {
      throw new BadRequestError('heartbeat_seconds must be a whole number of seconds, at least 1.');
    }
    const lag = b.lag_changes ?? null;
    if (lag !== null && (typeof lag !== 'number' || !Number.isSafeInteger(lag) || lag < 0)) throw new BadRequestError('lag_changes must be a whole number.');

    const now = this.#now().toISOString();
    const candidate = (existing: Site | undefined): Site => ({
      id, parent, labels: labels as Record<string, string>, stores: stores as string[], store_details: details as StoreDescription[],
      public_url: typeof b.public_url === 'string' ? b.public_url : '',
      version: typeof b.version === 'string' ? b.version : '',
      ...(heartbeat === undefined ? {} : { heartbeat_seconds: heartbeat }),
      registered_at: existing?.registered_at ?? now, last_contact: now, lag_changes: lag as number | null,
    });
    const record = (s: Site) => JSON.stringify({ ...s, last_contact: undefined, lag_changes: undefined });
    // A heartbeat (nothing but when it was heard from changed) was checked when the record was written.
    const known = await this.#catalog.getSite(id, opts);
    if (known !== undefined && record(known) === record(candidate(known))) {
      await this.#heartbeats.putHeartbeat(id, { last_contact: now, lag_changes: lag as number | null }, opts);
      return candidate(known);
    }

    // The parent must be known, and walking up from it must reach central without meeting `id`.
    const sites = new Map((await this.#catalog.listSites(opts)).map((s) => [s.id, s]));
    if (!sites.has(parent)) throw new ConflictError(`Site ${id} names an unknown parent site ${parent}.`);
    for (let at: string | null = parent, hops = 0; at !== null; at = sites.get(at)?.parent ?? null, hops++) {
      if (at === id || hops > sites.size) throw new ConflictError(`Site ${id} cannot have parent ${parent}: that would make a cycle.`);
    }
    const existing = sites.get(id);
    if (existing?.parent === null) throw new ConflictError(`Site ${id} is central; it has no parent.`);
    assertOwnStores(id, stores as string[], [...sites.values()]);
    const site = candidate(existing);
    await this.#catalog.upsertSite(site, opts);
    await this.#heartbeats.putHeartbeat(id, { last_contact: now, lag_changes: site.lag_changes }, opts);
    return site;
  }

  /**
   * Every site, with when it was last heard from and its lag as of then: at central, from its
   * heartbeats; elsewhere, as of the site's last registration that changed its record.
   */
  async list(opts: IoOptions = {}): Promise<Site[]> {
    const [sites, heartbeats] = await Promise.all([this.#catalog.listSites(opts), this.#heartbeats.listHeartbeats(opts)]);
    return sites.map((s) => withHeartbeat(s, heartbeats.get(s.id)));
  }

  /** GET /outpost/v1/sites/{id}: one site, with its last heartbeat; NotFoundError if none has that id. */
  async get(id: string, opts: IoOptions = {}): Promise<Site> {
    const [site, heartbeats] = await Promise.all([this.#catalog.getSite(id, opts), this.#heartbeats.listHeartbeats(opts)]);
    if (site === undefined) throw new NotFoundError(`No site ${id} is registered.`);
    return withHeartbeat(site, heartbeats.get(id));
  }
}

/** A site's record with its last heartbeat, when that is newer. */
function withHeartbeat(site: Site, beat: Pick<Site, 'last_contact' | 'lag_changes'> | undefined): Site {
  return beat === undefined || beat.last_contact < site.last_contact ? site : { ...site, ...beat };
}

/** A store id is unique in the region: a site may not declare a store another site owns (409). */
function assertOwnStores(id: string, stores: readonly string[], sites: readonly Site[]): void {
  const taken = storesOwnedElsewhere(id, stores, sites);
  if (taken.length > 0) {
    throw new ConflictError(`Site ${id} cannot have ${taken.map((t) => `store ${t.store} (site ${t.owner} has it)`).join(', ')}: `
      + 'store ids are unique in the region; start the site with --store naming stores of its own.');
  }
}
