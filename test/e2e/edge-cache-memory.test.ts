import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspectEnv, MemoryProbe } from '../../test-support/memory-probe.ts';
import { bytesOf, call, createActiveImage, expectStatus, type ImageJson } from '../helpers/glance-client.ts';
import { download, eventually, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess, type TestSite } from '../helpers/site.ts';

const MiB = 1 << 20;

/**
 * An edge's memory over many cold misses (issue 11, item 13): each fill used to leave its store's
 * and hasher's shared batches alive in the hashing threads for ever (16 MiB per 64 MiB image). The
 * edge runs as its own process; its memory is read after a forced full GC through the inspector.
 */
describe('edge cache memory: cold misses leave nothing behind', { timeout: 240_000 }, () => {
  let work: string;
  let procs: ServeProcess[] = [];
  let central: TestSite;
  let edge: ServeProcess;
  let probe: MemoryProbe | undefined;

  before(async () => {
    work = await tempDir('outpost-e2e-cache-memory-');
    const c = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central'], { OUTPOST_STORAGE_SYNC: 'false' });
    procs.push(c);
    central = siteAt(c.url);
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', c.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2', ...inspectEnv() });
    procs.push(edge);
    probe = await MemoryProbe.connect({ output: edge.output() });
  });
  after(async () => {
    probe?.close();
    for (const p of procs.reverse()) await stopProcess(p);
    procs = [];
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('20 cold misses of an 8 MiB image: ArrayBuffer memory after a full GC does not grow with them', async () => {
    const image = await createActiveImage(central, bytesOf(8 * MiB + 3, 7));
    const site = siteAt(edge.url);
    await eventually('the image replicated to the edge', 30_000, async () => (await call<ImageJson>(site, 'GET', `/v2/images/${image.id}`)).body.status === 'active');
    const coldMiss = async () => {
      const d = await download(edge.url, image.id);
      assert.equal(d.sha512, image.os_hash_value);
      expectStatus(await call(site, 'DELETE', `/v2/cache/${image.id}`), 204); // the next GET is a cold miss again
    };
    for (let i = 0; i < 5; i++) await coldMiss(); // warm-up: pools and code settle
    const first = await probe!.measure();
    // After each miss: before the fix, the hashing threads let go of what they held only when they
    // happened to collect (every 20-30 misses), so the highest sample is the one that tells.
    let highest = first;
    for (let i = 0; i < 15; i++) {
      await coldMiss();
      const m = await probe!.measure();
      if (m.arrayBuffers > highest.arrayBuffers) highest = m;
    }
    const grew = (highest.arrayBuffers - first.arrayBuffers) / MiB;
    // Before the fix: ~9 MiB per miss (two 4 MiB store batches and a 1 MiB hasher batch), 135 MiB here.
    assert.ok(grew < 24, `ArrayBuffers after GC grew by up to ${grew.toFixed(1)} MiB over 15 cold misses (${(first.arrayBuffers / MiB).toFixed(1)} → ${(highest.arrayBuffers / MiB).toFixed(1)} MiB)`);
  });
});
