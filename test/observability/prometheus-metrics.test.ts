import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { register } from 'prom-client';
import { COUNTED_METRICS, READ_METRICS } from '../../src/core/metrics.ts';
import { PrometheusMetrics } from '../../src/observability/prometheus-metrics.ts';
import { samples } from '../helpers/metrics.ts';

describe('PrometheusMetrics', () => {
  it('exposes what was counted and observed, by name and labels, in Prometheus text format', async () => {
    const metrics = new PrometheusMetrics({ site: 'edge-1' });
    metrics.count('outpost_http_requests_total', { method: 'GET', route: '/v2/images/:id/file', status: '200' });
    metrics.count('outpost_http_requests_total', { method: 'GET', route: '/v2/images/:id/file', status: '200' });
    metrics.count('outpost_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' });
    metrics.observe('outpost_http_request_duration_seconds', { method: 'GET', route: '/v2/images/:id/file' }, 0.003);
    metrics.observe('outpost_http_request_duration_seconds', { method: 'GET', route: '/v2/images/:id/file' }, 2);
    metrics.count('outpost_image_served_bytes_total', { source: 'fill' }, 5 << 20);
    metrics.count('outpost_image_served_bytes_total', { source: 'fill' }, 1);
    metrics.count('outpost_token_checks_total', { result: 'refused' });
    metrics.count('outpost_fill_joins_total', {});
    const text = await metrics.exposition();
    assert.equal(metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(text, /^# HELP outpost_http_requests_total HTTP requests answered/m);
    assert.match(text, /^# TYPE outpost_http_requests_total counter$/m);
    assert.match(text, /^# TYPE outpost_http_request_duration_seconds histogram$/m);
    const s = samples(text);
    assert.equal(s.get('outpost_http_requests_total{method="GET",route="/v2/images/:id/file",status="200"}'), 2);
    assert.equal(s.get('outpost_http_requests_total{method="GET",route="unmatched",status="404"}'), 1);
    assert.equal(s.get('outpost_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v2/images/:id/file"}'), 1);
    assert.equal(s.get('outpost_http_request_duration_seconds_bucket{le="2.5",method="GET",route="/v2/images/:id/file"}'), 2);
    assert.equal(s.get('outpost_http_request_duration_seconds_count{method="GET",route="/v2/images/:id/file"}'), 2);
    assert.equal(s.get('outpost_http_request_duration_seconds_sum{method="GET",route="/v2/images/:id/file"}'), 2.003);
    assert.equal(s.get('outpost_image_served_bytes_total{source="fill"}'), (5 << 20) + 1);
    assert.equal(s.get('outpost_token_checks_total{result="refused"}'), 1);
    assert.equal(s.get('outpost_fill_joins_total'), 1);
    // Series of closed label sets start at 0, so that rate() sees their first events.
    assert.equal(s.get('outpost_image_served_bytes_total{source="cache"}'), 0);
    assert.equal(s.get('outpost_token_checks_total{result="valid"}'), 0);
    assert.equal(s.get('outpost_cache_evictions_total{reason="budget"}'), 0);
  });

  it('never fails its caller: a negative or non-finite amount is dropped', async () => {
    const metrics = new PrometheusMetrics({ site: 'central' });
    metrics.count('outpost_image_served_bytes_total', { source: 'store' }, -1);
    metrics.count('outpost_image_served_bytes_total', { source: 'store' }, Number.NaN);
    metrics.observe('outpost_http_request_duration_seconds', { method: 'GET', route: '/metrics' }, Number.POSITIVE_INFINITY);
    metrics.count('outpost_image_served_bytes_total', { source: 'store' }, 7);
    assert.equal(samples(await metrics.exposition()).get('outpost_image_served_bytes_total{source="store"}'), 7);
  });

  it('reads transfers, the cache, the parent link and the other sites when scraped; only the readings given exist', async () => {
    let now = 1_000_000_000_000;
    const edge = new PrometheusMetrics({ site: 'edge-1', now: () => now });
    const transfers = { fetched: 100, refetched: 3, reused: 40, zeros: 7, resumes: 1, done: 2, failed: 1, running: 1 };
    let lastContact: Date | null = null;
    edge.readFrom({
      transfers: () => transfers,
      cache: () => ({ usedBytes: 900, pinnedBytes: 300, budgetBytes: 1000, copies: 2 }),
      parent: () => ({ lagChanges: 12, lastContact, reachable: false, auditRepairs: 2 }),
    });
    now += 90_000;
    let s = samples(await edge.exposition());
    assert.equal(s.get('outpost_transfer_bytes_total{kind="fetched"}'), 100);
    assert.equal(s.get('outpost_transfer_bytes_total{kind="refetched"}'), 3);
    assert.equal(s.get('outpost_transfer_bytes_total{kind="reused"}'), 40);
    assert.equal(s.get('outpost_transfer_bytes_total{kind="zeros"}'), 7);
    assert.equal(s.get('outpost_transfer_resumes_total'), 1);
    assert.equal(s.get('outpost_transfers_total{outcome="done"}'), 2);
    assert.equal(s.get('outpost_transfers_total{outcome="failed"}'), 1);
    assert.equal(s.get('outpost_transfers_running'), 1);
    assert.equal(s.get('outpost_cache_used_bytes'), 900);
    assert.equal(s.get('outpost_cache_pinned_bytes'), 300);
    assert.equal(s.get('outpost_cache_budget_bytes'), 1000);
    assert.equal(s.get('outpost_cache_copies'), 2);
    assert.equal(s.get('outpost_replication_lag_changes'), 12);
    assert.equal(s.get('outpost_parent_contact_age_seconds'), 90, 'before the first contact: since the start');
    assert.equal(s.get('outpost_parent_reachable'), 0);
    assert.equal(s.get('outpost_audit_repairs_total'), 2);
    assert.equal([...s.keys()].some((k) => k.startsWith('outpost_site_')), false, 'an edge has no per-site metrics');
    // Read afresh at every scrape.
    transfers.fetched = 250;
    lastContact = new Date(now - 4_500);
    s = samples(await edge.exposition());
    assert.equal(s.get('outpost_transfer_bytes_total{kind="fetched"}'), 250);
    assert.equal(s.get('outpost_parent_contact_age_seconds'), 4.5);
    assert.throws(() => edge.readFrom({}), /once/);

    const central = new PrometheusMetrics({ site: 'central', now: () => now });
    let asked: AbortSignal | undefined;
    central.readFrom({
      children: async (signal) => {
        asked = signal;
        return [
          { id: 'central', lag_changes: null, last_contact: new Date(now - 3_600_000).toISOString() },
          { id: 'edge-1', lag_changes: 3, last_contact: new Date(now - 10_000).toISOString() },
          { id: 'far-1', lag_changes: null, last_contact: new Date(now - 400_000).toISOString() },
        ];
      },
    });
    const signal = new AbortController().signal;
    s = samples(await central.exposition(signal));
    assert.equal(asked, signal);
    assert.equal(s.get('outpost_site_lag_changes{site="edge-1"}'), 3);
    assert.equal(s.has('outpost_site_lag_changes{site="far-1"}'), false, 'no lag reported: no sample');
    assert.equal(s.get('outpost_site_contact_age_seconds{site="edge-1"}'), 10);
    assert.equal(s.get('outpost_site_contact_age_seconds{site="far-1"}'), 400);
    assert.equal([...s.keys()].some((k) => k.includes('site="central"')), false, 'the site itself is not one of the others');
    assert.equal([...s.keys()].some((k) => k.startsWith('outpost_parent_') || k.startsWith('outpost_replication_')), false, 'central has no parent link');
  });

  it('keeps each site\'s metrics in a registry of its own, never prom-client\'s global one', async () => {
    const a = new PrometheusMetrics({ site: 'a' });
    const b = new PrometheusMetrics({ site: 'b' });
    a.count('outpost_fill_joins_total', {}, 3);
    assert.equal(samples(await a.exposition()).get('outpost_fill_joins_total'), 3);
    assert.equal(samples(await b.exposition()).get('outpost_fill_joins_total'), 0);
    assert.equal(register.getMetricsAsArray().length, 0);
  });

  it('names every metric outpost_*, with its unit, and counters _total', () => {
    for (const [name, spec] of Object.entries({ ...COUNTED_METRICS, ...READ_METRICS })) {
      assert.match(name, /^outpost_[a-z_]+$/);
      if (spec.type === 'counter') assert.match(name, /_total$/, name);
      else assert.doesNotMatch(name, /_total$/, name);
      if (name.includes('bytes')) assert.match(name, /_bytes(_total)?$/, name);
    }
  });
});
