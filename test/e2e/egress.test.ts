import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;
const IMAGE = 64 * MiB;
const BUDGET = 20_000_000;
const EDGE_ENV = { OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_STORAGE_SYNC: 'false' };

interface Child { id: string; parent: string; proc?: ServeProcess; wan?: FaultProxy }

/**
 * Central's egress budget (issue 13): four children of central each need the same 64 MiB image,
 * and two far edges below the first child need it too. Central sends at most
 * `egress_max_bytes_per_s` (measured at the proxies in front of it), the four share it fairly,
 * and the far edges are served by their own parent, not by central.
 */
describe('egress budget: a parent never sends its children more than its budget, and shares it fairly', { timeout: 240_000 }, () => {
  let work: string;
  let central: ServeProcess;
  const children: Child[] = [
    { id: 'c-1', parent: 'central' }, { id: 'c-2', parent: 'central' }, { id: 'c-3', parent: 'central' }, { id: 'c-4', parent: 'central' },
    { id: 'f-1', parent: 'c-1' }, { id: 'f-2', parent: 'c-1' },
  ];
  const ofCentral = children.filter((c) => c.parent === 'central');
  const json = async (res: Response) => {
    assert.ok(res.ok, `${res.status} ${await res.clone().text()}`);
    return res.status === 204 ? undefined : res.json() as Promise<any>;
  };
  const post = (path: string, body: unknown, type = 'application/json', method = 'POST') =>
    fetch(`${central.url}${path}`, { method, headers: { 'content-type': type, accept: 'application/json' }, body: JSON.stringify(body) }).then(json);

  before(async () => {
    work = await tempDir('outpost-e2e-egress-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_EGRESS_MAX_BYTES_PER_S: String(BUDGET) });
    for (const c of children) {
      const parentUrl = c.parent === 'central' ? central.url : children.find((p) => p.id === c.parent)!.proc!.url;
      c.wan = await FaultProxy.start({ target: loopbackTarget(parentUrl) });
      c.proc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, c.id), '--role', 'edge', '--site', c.id, '--parent', c.wan.url,
        '--label', 'region=eu'], EDGE_ENV);
    }
    await eventually('every child registered', 30_000, async () => (await json(await fetch(`${central.url}/outpost/v1/sites`))).sites.length === 7);
  });
  after(async () => {
    for (const c of [...children].reverse()) if (c.proc !== undefined) await stopProcess(c.proc);
    if (central !== undefined) await stopProcess(central);
    for (const c of children) await c.wan?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('four children get a 64 MiB image at no more than 20 MB/s from central together, each a fair share; the far edges get it from their parent', async () => {
    const image = await post('/v2/images', { name: 'big', disk_format: 'raw', container_format: 'bare', visibility: 'public' });
    await json(await fetch(`${central.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytesOf(IMAGE, 51) }));
    await post('/outpost/v1/policies', { name: 'everywhere', images: { tags: ['big'] }, sites: { labels: 'region=eu' }, mode: 'replicate' });
    for (const c of children) c.wan!.resetStats();

    // Sampled every 250 ms: bytes central sent through each child's proxy.
    const samples: { t: number; bytes: number[] }[] = [];
    const sample = () => samples.push({ t: performance.now(), bytes: ofCentral.map((c) => c.wan!.stats().toClient.forwarded) });
    const sampler = setInterval(sample, 250);
    try {
      sample();
      await json(await fetch(`${central.url}/v2/images/${image.id}/tags/big`, { method: 'PUT' }));
      await eventually('all six children hold the image', 180_000, async () => {
        const fleet = await json(await fetch(`${central.url}/outpost/v1/fleet?image=${image.id}`));
        return fleet.fleet.length === 6 && fleet.fleet.every((e: { state: string }) => e.state === 'held');
      });
      sample();
    } finally {
      clearInterval(sampler);
    }

    const total = (s: { bytes: number[] }) => s.bytes.reduce((a, b) => a + b, 0);
    const sent = total(samples.at(-1)!);
    // Each of the four crossed central's uplink once (plus HTTP and the change feed); the far
    // edges' copies did not cross it at all.
    assert.ok(sent >= 4 * IMAGE && sent < 4.2 * IMAGE, `central sent ${sent} bytes for 4 copies of ${IMAGE}`);
    for (const far of children.filter((c) => c.parent !== 'central')) {
      assert.ok(far.wan!.stats().toClient.forwarded >= IMAGE, `${far.id} got its copy through its own parent's link`);
    }
    // Never above the budget: over any 2 s window (give or take two 64 KiB slices per child, HTTP and the change feed).
    let worst = 0;
    for (let i = 0; i < samples.length; i++) {
      const j = samples.findIndex((s) => s.t >= samples[i]!.t + 2000);
      if (j < 0) break;
      const rate = (total(samples[j]!) - total(samples[i]!)) / ((samples[j]!.t - samples[i]!.t) / 1000);
      worst = Math.max(worst, rate);
    }
    assert.ok(worst <= BUDGET * 1.05, `central sent ${Math.round(worst / 1e6)} MB/s over a 2 s window; the budget is ${BUDGET / 1e6} MB/s`);
    const elapsed = (samples.at(-1)!.t - samples[0]!.t) / 1000;
    assert.ok(elapsed >= (4 * IMAGE) / BUDGET * 0.9, `4 copies took ${elapsed.toFixed(1)} s: at the budget they take ${((4 * IMAGE) / BUDGET).toFixed(1)} s`);
    // Fair: when the first child had its whole copy, every other had at least half as much.
    const first = samples.find((s) => s.bytes.some((b) => b >= IMAGE))!;
    const least = Math.min(...first.bytes);
    assert.ok(least >= IMAGE / 2, `when one child had its copy, another had only ${least} bytes (${first.bytes.join(', ')})`);
  });
});
