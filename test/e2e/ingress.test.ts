import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bytesOf } from '../helpers/glance-client.ts';
import { download, eventually, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;

/**
 * An edge's incoming bandwidth cap (`ingress_max_bytes_per_s`, issue 13): while a policy's copy
 * comes in, a client's miss is served first — the copy makes next to no progress until the client
 * has its image.
 */
describe('ingress cap: a client waiting on a miss goes before a policy\'s copy', { timeout: 120_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let edge: ServeProcess;
  const json = async (res: Response) => {
    assert.ok(res.ok, `${res.status} ${await res.clone().text()}`);
    return res.status === 204 ? undefined : res.json() as Promise<any>;
  };
  const upload = async (name: string, data: Buffer) => {
    const image = await json(await fetch(`${central.url}/v2/images`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, disk_format: 'raw', container_format: 'bare', visibility: 'public' }),
    }));
    await json(await fetch(`${central.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data }));
    return image.id as string;
  };
  /** Bytes of the image the edge has so far in a running transfer (undefined when none runs). */
  const progress = async (id: string) => {
    const t = ((await json(await fetch(`${edge.url}/outpost/v1/transfers`))).transfers as { image_id: string; state: string; reused: number; zeros: number; fetched: number }[])
      .find((x) => x.image_id === id && x.state === 'running');
    return t === undefined ? undefined : t.reused + t.zeros + t.fetched;
  };

  before(async () => {
    work = await tempDir('outpost-e2e-ingress-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', central.url, '--label', 'region=x'],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_INGRESS_MAX_BYTES_PER_S: String(2 * MiB) });
  });
  after(async () => {
    if (edge !== undefined) await stopProcess(edge);
    if (central !== undefined) await stopProcess(central);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('the copy waits while the client\'s image comes in, then goes on', async () => {
    const big = await upload('bulk', bytesOf(24 * MiB, 61));
    const small = bytesOf(4 * MiB, 62);
    const wanted = await upload('wanted-now', small);
    await json(await fetch(`${central.url}/outpost/v1/policies`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bulk', images: { tags: ['bulk'] }, sites: { labels: 'region=x' }, mode: 'replicate' }),
    }));
    await eventually('the small image reached the edge', 30_000, async () => (await fetch(`${edge.url}/v2/images/${wanted}`)).status === 200);
    await json(await fetch(`${central.url}/v2/images/${big}/tags/bulk`, { method: 'PUT' }));
    await eventually('the policy\'s copy is coming in', 60_000, async () => ((await progress(big)) ?? 0) > 2 * MiB);

    const before = (await progress(big))!;
    const got = await download(edge.url, wanted);
    const during = (await progress(big)) ?? Infinity;
    assert.equal(got.status, 200);
    assert.equal(got.length, small.length);
    assert.ok(during - before < small.length / 4,
      `the copy took ${during - before} bytes of the link while the client's ${small.length} came in (it had ${before})`);
    await eventually('the copy completes afterwards', 60_000, async () =>
      ((await json(await fetch(`${central.url}/v2/images/${big}`))).stores as string).split(',').includes('edge-1'));
  });
});
