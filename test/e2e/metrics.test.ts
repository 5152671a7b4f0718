// GET /metrics with real processes: central ← wanA (FaultProxy) ← edge-1. A cold download at the
// edge (a cache fill from central) is scraped while it runs and after: the edge's byte counters
// move by the image's size as the WAN carries it, a repeat download counts as a cache hit, and the
// lag gauges at both ends follow the link — cut and healed.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { bytesOf, call, createActiveImage, type ImageJson } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { samples } from '../helpers/metrics.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const MiB = 1 << 20;
const CHILD_ENV = { OUTPOST_PARENT_TIMEOUT_MS: '1500', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };
const FILE_ROUTE = 'outpost_http_requests_total{method="GET",route="/v2/images/:id/file",status="200"}';

/** The site's metrics now: `name{labels}` → value. */
async function scrape(site: TestSite): Promise<Map<string, number>> {
  const res = await fetch(`${site.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return samples(await res.text());
}

/** How much each sample grew from `from` to `to` (absent: 0). */
const growth = (from: Map<string, number>, to: Map<string, number>) => (key: string) => (to.get(key) ?? 0) - (from.get(key) ?? 0);

describe('metrics during a cache fill, and the lag gauges of a cut link', { timeout: 180_000 }, () => {
  let work: string;
  const procs: ServeProcess[] = [];
  let wanA: FaultProxy | undefined;
  let central: TestSite;
  let edge: TestSite;

  before(async () => {
    work = await tempDir('outpost-e2e-metrics-');
    const c = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central'], { OUTPOST_STORAGE_SYNC: 'false' });
    procs.push(c);
    wanA = await FaultProxy.start({ target: loopbackTarget(c.url) });
    const e = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', wanA.url], CHILD_ENV);
    procs.push(e);
    central = siteAt(c.url);
    edge = siteAt(e.url);
  });
  after(async () => {
    for (const p of [...procs].reverse()) await stopProcess(p);
    await wanA?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('a cold download at the edge moves its fetched and served bytes by the image\'s size, as the WAN carried them; a repeat is a cache hit', async () => {
    const image: ImageJson = await createActiveImage(central, bytesOf(16 * MiB, 21), { name: 'scraped' });
    const size = image.size as number;
    await eventually('the image reached the edge', 30_000, async () => (await call<ImageJson>(edge, 'GET', `/v2/images/${image.id}`)).body.status === 'active');
    const edge0 = await scrape(edge);
    const central0 = await scrape(central);
    wanA!.resetStats();
    // 8 MiB/s: the fill runs about 2 s, long enough to be scraped half-way.
    wanA!.bandwidth(8 * MiB);
    let midway: number | undefined;
    try {
      const got = download(edge.url, image.id);
      await eventually('a scrape during the fill sees part of the image fetched', 30_000, async () => {
        const during = growth(edge0, await scrape(edge));
        const fetched = during('outpost_transfer_bytes_total{kind="fetched"}');
        if (fetched > 0 && fetched < size) {
          midway = fetched;
          assert.equal(during('outpost_transfers_running'), 1, 'one transfer running during the fill');
          assert.ok(wanA!.stats().toClient.forwarded >= midway, 'no more fetched than the WAN carried');
        }
        return midway !== undefined;
      });
      const body = await got;
      assert.equal(body.status, 200);
      assert.equal(body.length, size);
      assert.equal(body.sha512, image.os_hash_value);
    } finally {
      wanA!.pass();
    }
    const carried = wanA!.stats().toClient.forwarded;
    let edge1 = new Map<string, number>();
    await eventually('the fill committed', 30_000, async () => growth(edge0, edge1 = await scrape(edge))('outpost_fills_total{outcome="committed"}') === 1);
    const grew = growth(edge0, edge1);
    assert.equal(grew('outpost_transfer_bytes_total{kind="fetched"}'), size, 'fetched: the whole image, once');
    assert.ok(carried >= size && carried < size + MiB, `the WAN carried ${carried} bytes for an image of ${size}`);
    assert.equal(grew('outpost_transfer_bytes_total{kind="reused"}'), 0);
    assert.equal(grew('outpost_transfers_total{outcome="done"}'), 1);
    assert.equal(grew('outpost_transfers_running'), 0);
    assert.equal(grew('outpost_image_downloads_total{source="fill"}'), 1);
    assert.equal(grew('outpost_image_served_bytes_total{source="fill"}'), size, 'served while filling: the whole image');
    assert.equal(grew('outpost_image_served_bytes_total{source="cache"}'), 0);
    assert.equal(grew(FILE_ROUTE), 1);
    assert.equal(grew('outpost_cache_used_bytes'), size);
    assert.equal(grew('outpost_cache_copies'), 1);
    // Central served the edge's transfer from its store.
    assert.equal(growth(central0, await scrape(central))('outpost_image_served_bytes_total{source="store"}'), size);

    // Again: from the held copy, nothing over the WAN.
    wanA!.resetStats();
    const again = await download(edge.url, image.id);
    assert.equal(again.length, size);
    const edge2 = await scrape(edge);
    const hit = growth(edge1, edge2);
    assert.equal(hit('outpost_image_downloads_total{source="cache"}'), 1);
    assert.equal(hit('outpost_image_served_bytes_total{source="cache"}'), size);
    assert.equal(hit('outpost_transfer_bytes_total{kind="fetched"}'), 0);
    assert.equal(hit(FILE_ROUTE), 1);
    assert.ok(wanA!.stats().toClient.forwarded < MiB);
    // And three at once on a fresh image: one fill, the others join it.
    const other = await createActiveImage(central, bytesOf(8 * MiB, 22), { name: 'joined' });
    await eventually('the second image reached the edge', 30_000, async () => (await call<ImageJson>(edge, 'GET', `/v2/images/${other.id}`)).body.status === 'active');
    wanA!.bandwidth(8 * MiB);
    try {
      const bodies = await Promise.all([0, 1, 2].map(() => download(edge.url, other.id)));
      for (const b of bodies) assert.equal(b.sha512, other.os_hash_value);
    } finally {
      wanA!.pass();
    }
    const joined = growth(edge2, await scrape(edge));
    assert.equal(joined('outpost_fill_joins_total'), 2);
    assert.equal(joined('outpost_image_served_bytes_total{source="fill"}'), 3 * other.size);
    assert.equal(joined('outpost_transfer_bytes_total{kind="fetched"}'), other.size);
  });

  it('the edge\'s own lag and contact age, and central\'s per-site gauges, follow the link: cut, then healed', async () => {
    await eventually('central lists the edge\'s lag', 45_000, async () => (await scrape(central)).has('outpost_site_lag_changes{site="edge-1"}'));
    const c = await scrape(central);
    assert.ok(c.get('outpost_site_lag_changes{site="edge-1"}')! >= 0);
    assert.ok(c.get('outpost_site_contact_age_seconds{site="edge-1"}')! < 60);
    assert.equal([...c.keys()].some((k) => k.startsWith('outpost_parent_')), false, 'central has no parent');
    let e = await scrape(edge);
    assert.ok(e.has('outpost_replication_lag_changes'));
    assert.ok(e.get('outpost_parent_contact_age_seconds')! < 10, `contact age ${e.get('outpost_parent_contact_age_seconds')}`);
    assert.equal(e.get('outpost_parent_reachable'), 1);

    wanA!.blackhole();
    try {
      await eventually('the edge sees its parent away', 60_000, async () => {
        e = await scrape(edge);
        return e.get('outpost_parent_reachable') === 0 && e.get('outpost_parent_contact_age_seconds')! >= 5;
      });
      // Meanwhile central moves on: the edge learns how far behind it is once it hears again.
      await createActiveImage(central, bytesOf(1024, 23), { name: 'while-cut' });
    } finally {
      wanA!.heal();
    }
    await eventually('the edge hears its parent again and catches up', 60_000, async () => {
      e = await scrape(edge);
      return e.get('outpost_parent_reachable') === 1 && e.get('outpost_parent_contact_age_seconds')! < 5 && e.get('outpost_replication_lag_changes') === 0;
    });
  });
});
