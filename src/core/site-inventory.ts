import type { RequestContext } from './context.ts';
import { BadRequestError, ForbiddenError, NotFoundError } from './errors.ts';
import type { DriftCounts, PlacementReport, PlacementStateName } from './fleet-state.ts';
import type { Catalog, InventoryItem, InventoryStore, IoOptions, SiteInventory } from './ports.ts';
import { MAX_REPORTED_TRANSFERS, TRANSFER_STATES, type AuditCounts, type TransferRecord } from './site-report.ts';

const STATES: readonly InventoryItem['state'][] = ['stored', 'pinned', 'cached'];

/**
 * What each site holds, as it reports it up to central (`PUT /outpost/v1/sites/{id}/inventory`,
 * forwarded by every parent) and as central answers for it (`GET …/inventory`). Central also uses
 * the reports to show, in an image's `stores`, every site that holds a verified copy.
 */
/** What a site holds, in numbers (GET /outpost/v1/inventory-summaries). */
export interface InventorySummary {
  site: string;
  reported_at: string;
  cached: { copies: number; bytes: number };
  stored: { copies: number; bytes: number };
  /** Its transfers running now, and those of its recent ones that failed. */
  transfers: { running: number; failed: number };
  /** What its replica's audits repaired (an edge; null where none reported). */
  audit: AuditCounts | null;
  /** What its drift checks repaired (null where none reported). */
  drift: DriftCounts | null;
  /** Its cache's budget (null where none reported). */
  cache_budget_bytes: number | null;
  /** Image bytes its transfers fetched over its link per second as it reported (null where none reported). */
  link_bytes_per_second: number | null;
}

/** One transfer of image bytes to a site, as GET /outpost/v1/fleet/transfers lists it. */
export interface SiteTransfer extends TransferRecord {
  site: string;
}

/** Which transfers GET /outpost/v1/fleet/transfers lists: all given must hold. */
export interface TransferFilter {
  image?: string;
  site?: string;
  state?: TransferRecord['state'];
}

export class SiteInventories {
  readonly #catalog: Catalog;
  readonly #store: InventoryStore;
  readonly #now: () => Date;

  constructor(catalog: Catalog, store: InventoryStore, now: () => Date = () => new Date()) {
    this.#catalog = catalog;
    this.#store = store;
    this.#now = now;
  }

  /** A site's report: replaces what it reported before. Sites (the `service` role) and administrators only. */
  async report(ctx: RequestContext, siteId: string, body: unknown, opts: IoOptions = {}): Promise<void> {
    if (!ctx.isAdmin && !ctx.roles.includes('service')) throw new ForbiddenError('Only sites and administrators report inventories.');
    const site = await this.#catalog.getSite(siteId, opts);
    if (site === undefined) throw new NotFoundError(`No site ${siteId} is registered.`);
    const images = (body as { images?: unknown } | null)?.images;
    if (!Array.isArray(images)) throw new BadRequestError('An inventory is {"images": [...]}.');
    const { placements, drift, transfers, audit, sent_at: sentAt } = body as { placements?: unknown; drift?: unknown; transfers?: unknown; audit?: unknown; sent_at?: unknown };
    const gauges: Pick<SiteInventory, 'cache_budget_bytes' | 'link_bytes_per_second'> = {};
    for (const name of ['cache_budget_bytes', 'link_bytes_per_second'] as const) {
      const v = (body as Record<string, unknown>)[name];
      if (v === undefined) continue;
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw new BadRequestError(`${name} must be a whole number.`);
      gauges[name] = v as number;
    }
    if (placements !== undefined && !Array.isArray(placements)) throw new BadRequestError('placements must be a list.');
    if (transfers !== undefined && (!Array.isArray(transfers) || transfers.length > MAX_REPORTED_TRANSFERS)) throw new BadRequestError(`transfers must be a list of at most ${MAX_REPORTED_TRANSFERS}.`);
    if (sentAt !== undefined && (typeof sentAt !== 'string' || Number.isNaN(Date.parse(sentAt)))) throw new BadRequestError('sent_at must be a time.');
    const now = this.#now();
    // The site's times are on its own clock: moved onto central's by how far the site's clock was
    // from central's when the report was sent (to within the report's transit time), so that they
    // compare with central's times (copyFailures) and show alike in the fleet view.
    const skewMs = sentAt === undefined ? 0 : now.getTime() - Date.parse(sentAt);
    const moved = (t: string) => new Date(Date.parse(t) + skewMs).toISOString();
    const onCentralClock = (p: PlacementReport): PlacementReport => (skewMs === 0 ? p : { ...p, since: moved(p.since) });
    const withMoved = <T extends object, K extends keyof T>(x: T, key: K): T => (skewMs === 0 || x[key] === null ? x : { ...x, [key]: moved(x[key] as string) });
    const transferOnCentralClock = (t: TransferRecord): TransferRecord => (skewMs === 0 ? t : { ...t, started_at: moved(t.started_at), ended_at: t.ended_at === null ? null : moved(t.ended_at) });
    await this.#store.putInventory({
      site: siteId, reported_at: now.toISOString(), images: images.map((i, n) => parseItem(i, n, site.stores)),
      ...(placements === undefined ? {} : { placements: placements.map(parsePlacement).map(onCentralClock) }),
      ...(drift === undefined ? {} : { drift: withMoved(parseDrift(drift), 'checked_at') }),
      ...(transfers === undefined ? {} : { transfers: (transfers as unknown[]).map(parseTransfer).map(transferOnCentralClock) }),
      ...(audit === undefined ? {} : { audit: withMoved(parseAudit(audit), 'last_at') }),
      ...gauges,
    }, opts);
  }

  /** GET /outpost/v1/sites/{id}/inventory at central: the site's last report (empty before its first). */
  async get(siteId: string, opts: IoOptions = {}): Promise<SiteInventory | { site: string; reported_at: null; images: [] }> {
    if ((await this.#catalog.getSite(siteId, opts)) === undefined) throw new NotFoundError(`No site ${siteId} is registered.`);
    return (await this.#store.getInventory(siteId, opts)) ?? { site: siteId, reported_at: null, images: [] };
  }

  /**
   * GET /outpost/v1/inventory-summaries at central: per site that has reported, how many copies it
   * holds cached (or pinned) and stored, and their bytes — what the dashboard's site tree shows, in
   * one answer rather than one per site. Central's own comes from `local` (it holds it, reports
   * nothing).
   */
  async summaries(local: SiteInventory, opts: IoOptions = {}): Promise<InventorySummary[]> {
    const reports = (await this.#store.listInventories(opts)).filter((r) => r.site !== local.site);
    return [local, ...reports].map((r) => {
      const cached = r.images.filter((i) => i.state !== 'stored');
      const stored = r.images.filter((i) => i.state === 'stored');
      const sum = (xs: typeof r.images) => xs.reduce((n, i) => n + i.size, 0);
      const transfers = r.transfers ?? [];
      return {
        site: r.site, reported_at: r.reported_at, cached: { copies: cached.length, bytes: sum(cached) }, stored: { copies: stored.length, bytes: sum(stored) },
        transfers: { running: transfers.filter((t) => t.state === 'running').length, failed: transfers.filter((t) => t.state === 'failed').length },
        audit: r.audit ?? null, drift: r.drift ?? null, cache_budget_bytes: r.cache_budget_bytes ?? null, link_bytes_per_second: r.link_bytes_per_second ?? null,
      };
    });
  }

  /**
   * GET /outpost/v1/fleet/transfers at central: the transfers of image bytes every site last
   * reported (central's own from `local`) — running ones first, oldest first, then the ended ones,
   * newest first — with the site each went to: what moved where, how much was fetched and how much
   * reused, and why one failed.
   */
  async transfers(local: SiteInventory, filter: TransferFilter, opts: IoOptions = {}): Promise<SiteTransfer[]> {
    const reports = filter.site === undefined
      ? [local, ...(await this.#store.listInventories(opts)).filter((r) => r.site !== local.site)]
      : filter.site === local.site ? [local] : await this.#store.listInventories({ ...opts, sites: [filter.site] });
    const all = reports.flatMap((r) => (r.transfers ?? []).map((t) => ({ ...t, site: r.site })))
      .filter((t) => (filter.image === undefined || t.image_id === filter.image) && (filter.state === undefined || t.state === filter.state));
    const running = all.filter((t) => t.state === 'running').sort((a, b) => a.started_at.localeCompare(b.started_at) || a.site.localeCompare(b.site));
    const ended = all.filter((t) => t.state !== 'running').sort((a, b) => b.ended_at!.localeCompare(a.ended_at!) || a.site.localeCompare(b.site));
    return [...running, ...ended];
  }

  /**
   * copy-image to other sites' stores (issue 13): of `stores`, those whose site last reported its
   * copy of `imageId` as `failed` (a real failure — a verification error, a refusal — not an
   * unreachable parent, which stays `pending`) since `since` (ISO 8601, central's clock: reports
   * are moved onto it as they arrive), with the site's reason.
   */
  async copyFailures(imageId: string, stores: readonly string[], since: string, opts: IoOptions = {}): Promise<Map<string, string>> {
    const failures = new Map<string, string>();
    if (stores.length === 0) return failures;
    for (const site of await this.#catalog.listSites(opts)) {
      const mine = stores.filter((s) => site.stores.includes(s));
      if (mine.length === 0) continue;
      const failed = (await this.#store.getInventory(site.id, opts))?.placements?.find((p) => p.image_id === imageId && p.state === 'failed' && p.since >= since);
      if (failed !== undefined) for (const store of mine) failures.set(store, `site ${site.id}: ${failed.reason ?? 'failed'}`);
    }
    return failures;
  }

  /** Per image, the stores of the sites that reported a verified copy of it. */
  storesHolding(imageIds: readonly string[], opts: IoOptions = {}): Promise<Map<string, string[]>> {
    return this.#store.storesHolding(imageIds, opts);
  }
}

const PLACEMENT_STATES: readonly PlacementStateName[] = ['pending', 'transferring', 'held', 'failed'];

function parsePlacement(raw: unknown, n: number): PlacementReport {
  const p = (raw ?? {}) as Record<string, unknown>;
  const bad = (what: string) => new BadRequestError(`Placement ${n}: ${what}.`);
  const count = (v: unknown, name: string) => {
    if (v !== null && v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0)) throw bad(`${name} must be a whole number or null`);
    return (v ?? null) as number | null;
  };
  if (typeof p.image_id !== 'string' || p.image_id === '') throw bad('image_id is required');
  if (!PLACEMENT_STATES.includes(p.state as PlacementStateName)) throw bad(`state must be one of ${PLACEMENT_STATES.join(', ')}`);
  if (p.reason !== null && p.reason !== undefined && typeof p.reason !== 'string') throw bad('reason must be a string or null');
  if (typeof p.since !== 'string' || Number.isNaN(Date.parse(p.since))) throw bad('since must be a time');
  return {
    image_id: p.image_id, state: p.state as PlacementStateName, reason: (p.reason ?? null) as string | null, since: p.since,
    bytes_done: count(p.bytes_done, 'bytes_done'), bytes_per_second: count(p.bytes_per_second, 'bytes_per_second'),
  };
}

const TRANSFER_COUNTS = ['planned', 'reused', 'zeros', 'fetched', 'refetched', 'resumes', 'bytes_per_second'] as const;

function parseTransfer(raw: unknown, n: number): TransferRecord {
  const t = (raw ?? {}) as Record<string, unknown>;
  const bad = (what: string) => new BadRequestError(`Transfer ${n}: ${what}.`);
  const time = (v: unknown) => typeof v === 'string' && !Number.isNaN(Date.parse(v));
  if (typeof t.image_id !== 'string' || t.image_id === '') throw bad('image_id is required');
  if (typeof t.source !== 'string') throw bad('source must be a string');
  if (t.method !== 'manifest' && t.method !== 'stream') throw bad('method must be manifest or stream');
  if (!TRANSFER_STATES.includes(t.state as TransferRecord['state'])) throw bad(`state must be one of ${TRANSFER_STATES.join(', ')}`);
  for (const k of TRANSFER_COUNTS) if (!Number.isSafeInteger(t[k]) || (t[k] as number) < 0) throw bad(`${k} must be a whole number`);
  if (!time(t.started_at)) throw bad('started_at must be a time');
  if (t.state === 'running' ? t.ended_at !== null : !time(t.ended_at)) throw bad('ended_at must be a time once the transfer ended, and null before');
  if (t.error !== null && typeof t.error !== 'string') throw bad('error must be a string or null');
  const counts = Object.fromEntries(TRANSFER_COUNTS.map((k) => [k, t[k] as number])) as Pick<TransferRecord, typeof TRANSFER_COUNTS[number]>;
  return {
    image_id: t.image_id, source: t.source, method: t.method, state: t.state as TransferRecord['state'], ...counts,
    started_at: t.started_at as string, ended_at: t.ended_at as string | null, error: t.error as string | null,
  };
}

function parseAudit(raw: unknown): AuditCounts {
  const a = (raw ?? {}) as Record<string, unknown>;
  if (!Number.isSafeInteger(a.repairs) || (a.repairs as number) < 0) throw new BadRequestError('audit.repairs must be a whole number.');
  const at = a.last_at ?? null;
  if (at !== null && (typeof at !== 'string' || Number.isNaN(Date.parse(at)))) throw new BadRequestError('audit.last_at must be a time or null.');
  const mismatch = a.last_mismatch ?? null;
  if (mismatch !== null && (!Array.isArray(mismatch) || !mismatch.every((k) => typeof k === 'string'))) throw new BadRequestError('audit.last_mismatch must be a list of names or null.');
  return { last_at: at as string | null, last_mismatch: mismatch as string[] | null, repairs: a.repairs as number };
}

function parseDrift(raw: unknown): DriftCounts {
  const d = (raw ?? {}) as Record<string, unknown>;
  for (const k of ['lost', 'extra'] as const) {
    if (!Number.isSafeInteger(d[k]) || (d[k] as number) < 0) throw new BadRequestError(`drift.${k} must be a whole number.`);
  }
  const at = d.checked_at ?? null;
  if (at !== null && (typeof at !== 'string' || Number.isNaN(Date.parse(at)))) throw new BadRequestError('drift.checked_at must be a time or null.');
  return { lost: d.lost as number, extra: d.extra as number, checked_at: at as string | null };
}

function parseItem(raw: unknown, n: number, stores: readonly string[]): InventoryItem {
  const i = (raw ?? {}) as Record<string, unknown>;
  const bad = (what: string) => new BadRequestError(`Inventory item ${n}: ${what}.`);
  if (typeof i.image_id !== 'string' || i.image_id === '') throw bad('image_id is required');
  if (typeof i.store !== 'string' || !stores.includes(i.store)) throw bad(`store must be one of the site's stores (${stores.join(', ')})`);
  if (!Number.isSafeInteger(i.size) || (i.size as number) < 0) throw bad('size must be a whole number');
  if (!STATES.includes(i.state as InventoryItem['state'])) throw bad(`state must be one of ${STATES.join(', ')}`);
  if (typeof i.since !== 'string' || Number.isNaN(Date.parse(i.since))) throw bad('since must be a time');
  const hits = i.hits ?? null;
  if (hits !== null && (!Number.isSafeInteger(hits) || (hits as number) < 0)) throw bad('hits must be a whole number');
  const last = i.last_accessed ?? null;
  if (last !== null && (typeof last !== 'string' || Number.isNaN(Date.parse(last)))) throw bad('last_accessed must be a time');
  return {
    image_id: i.image_id, store: i.store, size: i.size as number, state: i.state as InventoryItem['state'], since: i.since,
    hits: hits as number | null, last_accessed: last as string | null,
  };
}
