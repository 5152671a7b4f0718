import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  COUNTED_METRICS, READ_METRICS, type CacheUsage, type ChildReading, type CounterName, type HistogramName, type LabelsOf,
  type MetricSpec, type ParentLinkReading, type SiteReadings, type TransferTotals,
} from '../core/metrics.ts';
import type { Metrics } from '../core/ports.ts';

/** What one scrape read from the site's components: each reading once, so that one exposition is consistent. */
interface Scrape {
  transfers?: TransferTotals;
  cache?: CacheUsage;
  parent?: ParentLinkReading;
  children?: readonly ChildReading[];
}

type ReadName = keyof typeof READ_METRICS;
/** What a metric read at scrape time is made with (a prom-client Counter's or Gauge's configuration). */
interface ReadConfig<M> {
  name: string;
  help: string;
  labelNames: string[];
  registers: Registry[];
  collect(this: M): void;
}

/**
 * The Metrics port over prom-client, one registry per site (never prom-client's global one): the
 * counted metrics (COUNTED_METRICS) are kept as they are counted; the others (READ_METRICS) are
 * read from the site's components when scraped (`readFrom`), at no cost in between.
 * `exposition()` is what GET /metrics answers, in Prometheus' text format.
 *
 * Cost of a count: prom-client's label hash (a short string) and a map update, well under a
 * microsecond; callers count a few times per request or transfer, never per chunk.
 */
export class PrometheusMetrics implements Metrics {
  readonly #registry = new Registry();
  readonly #counters = new Map<string, Counter>();
  readonly #histograms = new Map<string, Histogram>();
  readonly #site: string;
  readonly #now: () => number;
  readonly #startedMs: number;
  #readings: SiteReadings | undefined;
  #scrape: Scrape = {};

  /** `site`: the site's own id (left out of the per-site metrics). */
  constructor(opts: { site: string; now?: () => number }) {
    this.#site = opts.site;
    this.#now = opts.now ?? Date.now;
    this.#startedMs = this.#now();
    const registers = [this.#registry];
    for (const [name, spec] of Object.entries(COUNTED_METRICS) as [string, MetricSpec][]) {
      const labelNames = Object.keys(spec.labels);
      if (spec.type === 'histogram') {
        this.#histograms.set(name, new Histogram({ name, help: spec.help, labelNames, buckets: [...spec.buckets!], registers }));
        continue;
      }
      const counter = new Counter({ name, help: spec.help, labelNames, registers });
      this.#counters.set(name, counter);
      // Where every label has a closed list of values, each series starts at 0, so that rate()
      // and increase() see its first events.
      for (const labels of closedLabelSets(spec)) counter.inc(labels, 0);
    }
  }

  count<N extends CounterName>(name: N, labels: LabelsOf<N>, by = 1): void {
    if (!Number.isFinite(by) || by < 0) return; // (prom-client would take NaN, spoiling the series for good)
    try {
      this.#counters.get(name)?.inc(labels as Record<string, string>, by);
    } catch {
      // A count that cannot be kept (a negative or non-finite amount) is dropped: never the caller's failure.
    }
  }

  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, value: number): void {
    if (!Number.isFinite(value)) return;
    try {
      this.#histograms.get(name)?.observe(labels as Record<string, string>, value);
    } catch {
      // As count().
    }
  }

  /**
   * Where the metrics read at scrape time come from, once the site's components exist (the
   * composition root calls it once). Only the metrics of the readings given exist: a site
   * without a parent has no parent-link metrics, rather than zeros that would read as "cut off".
   */
  readFrom(readings: SiteReadings): void {
    if (this.#readings !== undefined) throw new Error('PrometheusMetrics.readFrom is called once');
    this.#readings = readings;
    if (readings.transfers !== undefined) this.#defineTransfers();
    if (readings.cache !== undefined) this.#defineCache();
    if (readings.parent !== undefined) this.#defineParent();
    if (readings.children !== undefined) this.#defineChildren();
  }

  /** The Content-Type of the exposition (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.#registry.contentType;
  }

  /** Every metric in Prometheus' text format, with the readings read now. */
  async exposition(signal?: AbortSignal): Promise<string> {
    const r = this.#readings;
    const children = await r?.children?.(signal ?? new AbortController().signal);
    this.#scrape = {
      transfers: r?.transfers?.(), cache: r?.cache?.(), parent: r?.parent?.(),
      children: children?.filter((c) => c.id !== this.#site),
    };
    return this.#registry.metrics();
  }

  // -- the metrics read at scrape time: each set from this.#scrape in its collect callback --------

  #defineTransfers(): void {
    this.#counter('outpost_transfer_bytes_total', (c, { transfers: t }) => {
      if (t !== undefined) for (const kind of ['fetched', 'refetched', 'reused', 'zeros'] as const) c.inc({ kind }, t[kind]);
    });
    this.#counter('outpost_transfer_resumes_total', (c, { transfers: t }) => {
      if (t !== undefined) c.inc(t.resumes);
    });
    this.#counter('outpost_transfers_total', (c, { transfers: t }) => {
      if (t === undefined) return;
      c.inc({ outcome: 'done' }, t.done);
      c.inc({ outcome: 'failed' }, t.failed);
    });
    this.#gauge('outpost_transfers_running', (g, { transfers: t }) => {
      if (t !== undefined) g.set(t.running);
    });
  }

  #defineCache(): void {
    const cache = (name: ReadName, of: (u: CacheUsage) => number) => this.#gauge(name, (g, { cache: u }) => {
      if (u !== undefined) g.set(of(u));
    });
    cache('outpost_cache_used_bytes', (u) => u.usedBytes);
    cache('outpost_cache_pinned_bytes', (u) => u.pinnedBytes);
    cache('outpost_cache_budget_bytes', (u) => u.budgetBytes);
    cache('outpost_cache_copies', (u) => u.copies);
  }

  #defineParent(): void {
    this.#gauge('outpost_replication_lag_changes', (g, { parent: p }) => {
      if (p !== undefined && p.lagChanges !== null) g.set(p.lagChanges);
    });
    this.#gauge('outpost_parent_contact_age_seconds', (g, { parent: p }) => {
      if (p !== undefined) g.set(Math.max(0, this.#now() - (p.lastContact?.getTime() ?? this.#startedMs)) / 1000);
    });
    this.#gauge('outpost_parent_reachable', (g, { parent: p }) => {
      if (p !== undefined) g.set(p.reachable ? 1 : 0);
    });
    this.#counter('outpost_audit_repairs_total', (c, { parent: p }) => {
      if (p !== undefined) c.inc(p.auditRepairs);
    });
  }

  #defineChildren(): void {
    this.#gauge('outpost_site_lag_changes', (g, { children }) => {
      for (const s of children ?? []) if (s.lag_changes !== null) g.set({ site: s.id }, s.lag_changes);
    });
    this.#gauge('outpost_site_contact_age_seconds', (g, { children }) => {
      const now = this.#now();
      for (const s of children ?? []) {
        const at = Date.parse(s.last_contact);
        if (Number.isFinite(at)) g.set({ site: s.id }, Math.max(0, now - at) / 1000);
      }
    });
  }

  #counter(name: ReadName, fill: (metric: Counter, scrape: Scrape) => void): void {
    this.#read(Counter, name, fill);
  }

  #gauge(name: ReadName, fill: (metric: Gauge, scrape: Scrape) => void): void {
    this.#read(Gauge, name, fill);
  }

  /** Defines one of READ_METRICS in the registry, its samples set afresh by `fill` at each scrape. */
  #read<M extends Counter | Gauge>(Kind: new (config: ReadConfig<M>) => M, name: ReadName, fill: (metric: M, scrape: Scrape) => void): void {
    const spec: MetricSpec = READ_METRICS[name];
    const scrape = () => this.#scrape;
    new Kind({
      name, help: spec.help, labelNames: Object.keys(spec.labels), registers: [this.#registry],
      collect(this: M) {
        this.reset();
        fill(this, scrape());
      },
    });
  }
}

/** Every combination of a metric's label values, when each label has a closed list of them (none otherwise). */
function closedLabelSets(spec: MetricSpec): Record<string, string>[] {
  if (Object.keys(spec.labels).length === 0) return [];
  let sets: Record<string, string>[] = [{}];
  for (const [label, values] of Object.entries(spec.labels)) {
    if (values === null) return [];
    sets = sets.flatMap((set) => values.map((v) => ({ ...set, [label]: v })));
  }
  return sets;
}
