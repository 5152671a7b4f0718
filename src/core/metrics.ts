/**
 * The metrics a site keeps: every name, its type, what it counts, and its labels with the values
 * each may take. This is the one list — the Metrics port (ports.ts) takes only these names and
 * these label sets, the Prometheus adapter (src/observability/) makes exactly these metrics, and
 * docs/operations.md ("Metrics") is checked against it. A label's values are bounded: a closed
 * list, or (`null`) a set bounded by what the site serves (route patterns, HTTP methods and status
 * codes, the region's site ids) — never an image id, a project id or a raw URL.
 *
 * Names follow Prometheus' conventions: `outpost_` prefix, the unit in the name (`_bytes`,
 * `_seconds`, `_changes`), `_total` for counters.
 */

/** A metric's definition. `labels`: each label's values, or null where they are bounded otherwise (see above). */
export interface MetricSpec {
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  labels: Readonly<Record<string, readonly string[] | null>>;
  /** Histograms: the upper bounds of the buckets. */
  buckets?: readonly number[];
}

/** Where a download's bytes came from (outpost_image_downloads_total, outpost_image_served_bytes_total). */
export const DOWNLOAD_SOURCES = ['store', 'cache', 'fill', 'passthrough'] as const;
export type DownloadSource = (typeof DOWNLOAD_SOURCES)[number];

/**
 * Metrics counted where their event happens, through the Metrics port (`count`, `observe`): a
 * few per request, never per chunk of bytes.
 */
export const COUNTED_METRICS = {
  outpost_http_requests_total: {
    type: 'counter',
    help: 'HTTP requests answered, by method, route (the registered pattern such as /v2/images/:id/file; "unmatched" when no route took the request) and status code.',
    labels: { method: null, route: null, status: null },
  },
  outpost_http_request_duration_seconds: {
    type: 'histogram',
    help: 'Time from a request\'s arrival until its response was sent in full (a download\'s includes its body; a change-feed long poll its wait), by method and route.',
    labels: { method: null, route: null },
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  },
  outpost_token_checks_total: {
    type: 'counter',
    help: 'Callers of the API checked (a token with auth keystone, identity headers with auth none), by result: valid, missing (no token where one is needed), refused (an invalid, expired or revoked token), unavailable (an external Keystone did not answer), error.',
    labels: { result: ['valid', 'missing', 'refused', 'unavailable', 'error'] },
  },
  outpost_image_downloads_total: {
    type: 'counter',
    help: 'Image data reads (GET /v2/images/{id}/file, ranges included), by where the bytes came from: store (a copy located in one of the site\'s stores), cache (the site\'s cached copy), fill (streamed from a cache fill in progress, the reader\'s own or one it joined), passthrough (straight from the parent or the sites holding a copy, not kept: ranges ahead of a fill, an image the cache budget cannot admit).',
    labels: { source: DOWNLOAD_SOURCES },
  },
  outpost_image_served_bytes_total: {
    type: 'counter',
    help: 'Bytes of image data given out in full to readers, by source (as outpost_image_downloads_total); counted when a read has given its last byte, so a read cut short or failed counts none.',
    labels: { source: DOWNLOAD_SOURCES },
  },
  outpost_fill_joins_total: {
    type: 'counter',
    help: 'Reads that joined a fill already running (single flight: another read, a prefetch, a pin or a placement policy started it) instead of asking the source again.',
    labels: {},
  },
  outpost_fills_total: {
    type: 'counter',
    help: 'Fills ended (a whole image brought into the cache or a store, verified before it is kept), by outcome: committed, failed.',
    labels: { outcome: ['committed', 'failed'] },
  },
  outpost_cache_evictions_total: {
    type: 'counter',
    help: 'Cached copies removed, by reason: budget (least recently used, to make room), prune (POST /v2/cache/prune), request (DELETE /v2/cache), invalidated (the image was deleted or its bytes changed).',
    labels: { reason: ['budget', 'prune', 'request', 'invalidated'] },
  },
} as const satisfies Record<string, MetricSpec>;

/**
 * Metrics read from the site's components when they are scraped (SiteReadings): no cost between
 * scrapes. A reading a site does not have (the parent link at central, the children at an edge)
 * leaves its metrics without samples.
 */
export const READ_METRICS = {
  outpost_transfer_bytes_total: {
    type: 'counter',
    help: 'Bytes of whole-image transfers to this site (GET /outpost/v1/transfers), by how each byte was had: fetched (from the source: the parent, or at central the sites holding a copy or its own stores), refetched (fetched again after a failed chunk check or a cut), reused (copied from a copy this site holds, by chunk), zeros (all-zero chunks made here). Running transfers count as they go.',
    labels: { kind: ['fetched', 'refetched', 'reused', 'zeros'] },
  },
  outpost_transfer_resumes_total: {
    type: 'counter',
    help: 'Ranges asked of a source again after it broke off (a cut or stalled link).',
    labels: {},
  },
  outpost_transfers_total: {
    type: 'counter',
    help: 'Whole-image transfers to this site ended, by outcome: done, failed.',
    labels: { outcome: ['done', 'failed'] },
  },
  outpost_transfers_running: {
    type: 'gauge',
    help: 'Whole-image transfers to this site in progress.',
    labels: {},
  },
  outpost_cache_used_bytes: {
    type: 'gauge',
    help: 'Bytes of the cached copies the site holds.',
    labels: {},
  },
  outpost_cache_pinned_bytes: {
    type: 'gauge',
    help: 'Bytes of the cached copies that are never evicted (pinned, or held for a cache placement policy).',
    labels: {},
  },
  outpost_cache_budget_bytes: {
    type: 'gauge',
    help: 'Bytes the cached copies may take together (cache_max_bytes).',
    labels: {},
  },
  outpost_cache_copies: {
    type: 'gauge',
    help: 'Cached copies the site holds.',
    labels: {},
  },
  outpost_replication_lag_changes: {
    type: 'gauge',
    help: 'An edge\'s own lag: changes of its parent\'s change log its replica has not applied yet, as of the parent\'s last answer.',
    labels: {},
  },
  outpost_parent_contact_age_seconds: {
    type: 'gauge',
    help: 'An edge: seconds since its parent last answered its change feed (since the site started, before the first answer).',
    labels: {},
  },
  outpost_parent_reachable: {
    type: 'gauge',
    help: 'An edge: 1 while its parent answers, 0 from a failed exchange until the next answer.',
    labels: {},
  },
  outpost_audit_repairs_total: {
    type: 'counter',
    help: 'An edge: audits that found its replica different from its parent\'s catalog and repaired it from the snapshot.',
    labels: {},
  },
  outpost_site_lag_changes: {
    type: 'gauge',
    help: 'Central: each other site\'s replication lag in changes, as it reported at its last heartbeat.',
    labels: { site: null },
  },
  outpost_site_contact_age_seconds: {
    type: 'gauge',
    help: 'Central: seconds since each other site was last heard from (registration or heartbeat, every 30 s while it reaches its parent).',
    labels: { site: null },
  },
} as const satisfies Record<string, MetricSpec>;

/** Every metric a site keeps. */
export const METRICS: Readonly<Record<string, MetricSpec>> = { ...COUNTED_METRICS, ...READ_METRICS };

export type CounterName = { [N in keyof typeof COUNTED_METRICS]: (typeof COUNTED_METRICS)[N]['type'] extends 'counter' ? N : never }[keyof typeof COUNTED_METRICS];
export type HistogramName = { [N in keyof typeof COUNTED_METRICS]: (typeof COUNTED_METRICS)[N]['type'] extends 'histogram' ? N : never }[keyof typeof COUNTED_METRICS];

/** The labels of a counted metric, each with the values it may take. */
export type LabelsOf<N extends keyof typeof COUNTED_METRICS> = {
  readonly [K in keyof (typeof COUNTED_METRICS)[N]['labels']]: (typeof COUNTED_METRICS)[N]['labels'][K] extends readonly (infer V)[] ? V : string;
};

/** Totals of the transfers to a site since it started, running ones included as they stand. */
export interface TransferTotals {
  fetched: number;
  refetched: number;
  reused: number;
  zeros: number;
  resumes: number;
  done: number;
  failed: number;
  running: number;
}

/** What a site's cache holds. */
export interface CacheUsage {
  usedBytes: number;
  pinnedBytes: number;
  budgetBytes: number;
  copies: number;
}

/** An edge's link to its parent as its follower sees it. */
export interface ParentLinkReading {
  /** Changes behind the parent's log (null before the parent first answered). */
  lagChanges: number | null;
  /** When the parent last answered the feed (null: not yet). */
  lastContact: Date | null;
  reachable: boolean;
  auditRepairs: number;
}

/** The reading of an edge's parent link from its follower's status and the link's reachability. */
export function parentLinkReading(
  status: { position: number; parentSeq: number | null; lastContact: Date | null; audit: { repairs: number } }, reachable: boolean,
): ParentLinkReading {
  return {
    lagChanges: status.parentSeq === null ? null : Math.max(0, status.parentSeq - status.position),
    lastContact: status.lastContact, reachable, auditRepairs: status.audit.repairs,
  };
}

/** One site as its parent last heard from it. */
export interface ChildReading {
  id: string;
  lag_changes: number | null;
  /** ISO 8601. */
  last_contact: string;
}

/** Where the metrics read at scrape time (READ_METRICS) come from; each is optional. */
export interface SiteReadings {
  transfers?(): TransferTotals;
  cache?(): CacheUsage;
  /** An edge. */
  parent?(): ParentLinkReading;
  /** Central: every site of the region (the site itself is left out). */
  children?(signal: AbortSignal): Promise<readonly ChildReading[]>;
}
