import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { bytesOf, call, createActiveImage, type ImageJson } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, siteAt, startSiteChain, type SiteChain } from '../helpers/multi-site.ts';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';
import type { TransferRecord } from '../../src/core/site-report.ts';

const MiB = 1 << 20;
const run = promisify(execFile);

/**
 * Transfers planned from chunk manifests (issue 12): central ← wanA ← edge, real processes; the
 * bytes that cross wanA are what the edge's transfer fetched.
 */
describe('transfers by chunk manifest: delta, resume, sparse', { timeout: 300_000 }, () => {
  let work: string;
  let chain: SiteChain;

  before(async () => {
    work = await tempDir('outpost-e2e-transfers-');
    chain = await startSiteChain(work, { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2' });
  });
  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  const transfers = async (site: SiteChain['edge']) => (await call<{ transfers: TransferRecord[] }>(site, 'GET', '/outpost/v1/transfers')).body.transfers;
  const atEdge = (id: string) => eventually(`${id} at the edge`, 30_000, async () => (await call<ImageJson>(chain.edge, 'GET', `/v2/images/${id}`)).body?.status === 'active');
  const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');

  it('a new version of an image held at the edge crosses the link as the chunks that changed (≤ 10% of it)', async () => {
    const { central, edge, wanA } = chain;
    const v1 = bytesOf(64 * MiB, 51);
    // v2: 5% of v1's 1 MiB blocks rewritten, and a few short insertions that shift what follows.
    const parts: Buffer[] = [];
    for (let block = 0; block < 64; block++) {
      const b = v1.subarray(block * MiB, (block + 1) * MiB);
      parts.push([7, 29, 50].includes(block) ? bytesOf(MiB, 100 + block) : b);
      if ([12, 40].includes(block)) parts.push(bytesOf(37 + block, 200 + block));
    }
    const v2 = Buffer.concat(parts);
    const first = await createActiveImage(central, v1, { name: 'v1' });
    await atEdge(first.id);
    assert.equal((await download(edge.url, first.id)).sha512, sha512(v1));
    const second = await createActiveImage(central, v2, { name: 'v2' });
    await atEdge(second.id);
    wanA.resetStats();
    const got = await download(edge.url, second.id);
    assert.equal(got.status, 200);
    assert.equal(got.sha512, sha512(v2), 'the bytes are v2\'s');
    const moved = wanA.stats().toClient.forwarded;
    const record = (await transfers(edge)).find((t) => t.image_id === second.id)!;
    const warnings = chain.output('edge').split('\n').filter((l) => /"level":[45]0/.test(l)).join('\n');
    assert.ok(moved <= 0.1 * v2.length, `${moved} bytes crossed the link for a ${v2.length}-byte image: ${JSON.stringify(record)}\n${warnings}`);
    await eventually('the verified copy of v2 is kept', 30_000, async () => ((await call(edge, 'GET', '/v2/cache')).body as { cached_images: { image_id: string }[] })
      .cached_images.some((c) => c.image_id === second.id));
    // What the edge says it did.
    assert.equal(record.state, 'done');
    assert.equal(record.method, 'manifest');
    assert.equal(record.planned, v2.length);
    assert.equal(record.reused + record.zeros + record.fetched, v2.length);
    assert.ok(record.reused >= 0.85 * v2.length, `reused ${record.reused}`);
    assert.ok(record.fetched <= moved, `fetched ${record.fetched}, moved ${moved}`);
  });

  it('central lists every site\'s transfers with the site: what the edge fetched and what it reused, also asked through the far edge and with `outpost transfers --region`', async () => {
    const { central, edge, far } = chain;
    const atEdge = (await transfers(edge)).filter((t) => t.state === 'done');
    assert.ok(atEdge.length >= 2, 'the edge moved v1 and v2');
    type Listed = TransferRecord & { site: string };
    const region = async (site: SiteChain['edge'], query = '') => (await call<{ transfers: Listed[] }>(site, 'GET', `/outpost/v1/fleet/transfers${query}`)).body.transfers;
    // Each as the edge reported it (its report follows within a few seconds).
    await eventually('central lists the edge\'s transfers as the edge reported them', 30_000, async () => {
      const listed = await region(central);
      return atEdge.every((t) => listed.some((x) => x.site === 'edge-1' && x.image_id === t.image_id && x.state === 'done' && x.fetched === t.fetched && x.reused === t.reused));
    });
    const v2 = atEdge[0]!;
    const forImage = await region(central, `?image=${v2.image_id}`);
    assert.deepEqual(forImage.map((t) => [t.site, t.image_id, t.reused, t.fetched]), [['edge-1', v2.image_id, v2.reused, v2.fetched]]);
    assert.ok(v2.reused > v2.fetched, 'v2 was mostly reused from v1');
    // The far edge passes the question up to central, which answers for the whole region.
    assert.deepEqual((await region(far, `?image=${v2.image_id}&site=edge-1`)).map((t) => t.site), ['edge-1']);
    assert.equal((await call(central, 'GET', '/outpost/v1/fleet/transfers?state=moving')).status, 400);
    // The site's numbers in the summaries: its cache against its budget, and its link's rate over
    // the last 10 s, which falls to 0 now that nothing moves.
    const summary = async () => (await call<{ summaries: { site: string; cache_budget_bytes: number; link_bytes_per_second: number }[] }>(central, 'GET', '/outpost/v1/inventory-summaries'))
      .body.summaries.find((x) => x.site === 'edge-1')!;
    await eventually('central shows the edge\'s link idle', 60_000, async () => (await summary()).link_bytes_per_second === 0);
    assert.equal((await summary()).cache_budget_bytes, 10 * 1024 ** 3);
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), 'transfers', '--region', '--image', v2.image_id, '--url', central.url], { encoding: 'utf8' });
    assert.match(stdout, new RegExp(`^edge-1\\t${v2.image_id}\\tdone\\tmanifest\\t`, 'm'));
  });

  it('a fill whose link is reset five times resumes each time: the image crosses the link about once (≤ 1.1×)', async () => {
    const { central, edge, wanA } = chain;
    const data = bytesOf(96 * MiB, 52);
    const image = await createActiveImage(central, data, { name: 'cut-five-times' });
    await atEdge(image.id);
    wanA.resetStats();
    wanA.bandwidth(24 * MiB);
    try {
      const pending = download(edge.url, image.id);
      for (let cut = 1; cut <= 5; cut++) {
        await eventually(`transfer past ${cut * 14} MiB`, 60_000, async () => wanA.stats().toClient.forwarded > cut * 14 * MiB);
        wanA.cut();
      }
      const got = await pending;
      assert.equal(got.status, 200);
      assert.equal(got.sha512, sha512(data));
    } finally {
      wanA.pass();
    }
    const moved = wanA.stats().toClient.forwarded;
    assert.ok(wanA.stats().connections.cut >= 5, `${wanA.stats().connections.cut} connections were cut`);
    assert.ok(moved <= 1.1 * data.length, `${moved} bytes crossed the link for ${data.length}`);
    const record = (await transfers(edge)).find((t) => t.image_id === image.id)!;
    assert.equal(record.state, 'done');
    assert.ok(record.resumes >= 5, `resumes: ${record.resumes}`);
    // The operator's view: `outpost transfers` lists it.
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), 'transfers', '--url', edge.url], { encoding: 'utf8' });
    const line = stdout.split('\n').find((l) => l.startsWith(image.id));
    assert.ok(line !== undefined, stdout);
    assert.match(line!, /\tdone\tmanifest\t100\.7\t/);
  });

  it('kill -9 of an edge mid-fill: after a restart, the next download takes what the first one received (≤ 1.2× the image over the link)', async () => {
    const { central } = chain;
    const wan = await FaultProxy.start({ target: loopbackTarget(central.url) });
    const args = ['--role', 'edge', '--site', 'edge-k', '--parent', wan.url, '--listen', '127.0.0.1:0', '--data', join(work, 'edge-k')];
    const env = { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2' };
    let edge: ServeProcess | undefined = await spawnServe(args, env);
    try {
      const data = bytesOf(96 * MiB, 53);
      const image = await createActiveImage(central, data, { name: 'killed-mid-fill' });
      await eventually('the image at edge-k', 30_000, async () => (await call<ImageJson>(siteAt(edge!.url), 'GET', `/v2/images/${image.id}`)).body?.status === 'active');
      wan.resetStats();
      wan.bandwidth(24 * MiB);
      const first = download(edge.url, image.id);
      await eventually('half of the image received', 60_000, async () => wan.stats().toClient.forwarded > 48 * MiB);
      await edge.stop('SIGKILL');
      const broken = await first;
      assert.ok(broken.broken || broken.length < data.length, 'the first download did not complete');
      wan.pass();
      edge = await spawnServe(args, env);
      const got = await download(edge.url, image.id);
      assert.equal(got.status, 200);
      assert.equal(got.sha512, sha512(data));
      const moved = wan.stats().toClient.forwarded;
      assert.ok(moved <= 1.2 * data.length, `${moved} bytes crossed the link for ${data.length} over the two downloads`);
      const record = (await transfers(siteAt(edge.url))).find((t) => t.image_id === image.id)!;
      assert.ok(record.reused >= 32 * MiB, `reused what the first fill received: ${record.reused}`);
    } finally {
      await edge?.stop();
      await wan.close();
    }
  });

  it('a range of a cold image is answered at once, and the edge goes on to fetch and keep the whole image', async () => {
    const { central, edge, wanA } = chain;
    const data = bytesOf(64 * MiB, 54);
    const image = await createActiveImage(central, data, { name: 'booted-by-range' });
    await atEdge(image.id);
    wanA.resetStats();
    wanA.bandwidth(8 * MiB);
    try {
      const start = data.length - 2 * MiB;
      const res = await fetch(`${edge.url}/v2/images/${image.id}/file`, { headers: { range: `bytes=${start}-${start + MiB - 1}` } });
      const part = Buffer.from(await res.arrayBuffer());
      const movedThen = wanA.stats().toClient.forwarded;
      assert.equal(res.status, 206);
      assert.ok(part.equals(data.subarray(start, start + MiB)), 'the range\'s bytes');
      assert.ok(movedThen < start, `answered after ${movedThen} bytes crossed the link: not by waiting for the fill to reach byte ${start}`);
      await eventually('the whole image kept at the edge', 60_000, async () => ((await call(edge, 'GET', '/v2/cache')).body as { cached_images: { image_id: string }[] }).cached_images.some((c) => c.image_id === image.id));
    } finally {
      wanA.pass();
    }
    const moved = wanA.stats().toClient.forwarded;
    assert.ok(moved <= data.length + 3 * MiB, `${moved} bytes crossed the link for ${data.length} and a 1 MiB range`);
    assert.equal((await download(edge.url, image.id)).sha512, sha512(data));
  });

  it('a range read while the fill runs crosses the link once: the fill takes the range\'s chunks instead of fetching them again', async () => {
    const { central, edge, wanA } = chain;
    const data = bytesOf(64 * MiB, 55);
    const image = await createActiveImage(central, data, { name: 'read-ahead-of-its-fill' });
    await atEdge(image.id);
    wanA.resetStats();
    wanA.bandwidth(16 * MiB);
    try {
      const start = 40 * MiB + 12345;
      const end = start + 20 * MiB - 1;
      const res = await fetch(`${edge.url}/v2/images/${image.id}/file`, { headers: { range: `bytes=${start}-${end}` } });
      assert.equal(res.status, 206);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data.subarray(start, end + 1)), 'the range\'s bytes');
      await eventually('the whole image kept at the edge', 60_000, async () => ((await call(edge, 'GET', '/v2/cache')).body as { cached_images: { image_id: string }[] }).cached_images.some((c) => c.image_id === image.id));
    } finally {
      wanA.pass();
    }
    // The range's chunks (whole chunks: at most 1 MiB more on each side) cross once; what the fill
    // had in flight when it reached them is all that is lost.
    const moved = wanA.stats().toClient.forwarded;
    assert.ok(moved <= data.length + 8 * MiB, `${moved} bytes crossed the link for ${data.length} and a 20 MiB range read while the fill ran`);
    assert.equal((await download(edge.url, image.id)).sha512, sha512(data));
  });

  it('a mostly empty raw image (90% zeros) moves only its data (≤ 15% of its size)', async () => {
    const { central, edge, wanA } = chain;
    const data = Buffer.alloc(64 * MiB);
    for (const at of [0, 20, 45]) bytesOf(2 * MiB + 1000, 300 + at).copy(data, at * MiB + 12345);
    const image = await createActiveImage(central, data, { name: 'sparse' });
    await atEdge(image.id);
    wanA.resetStats();
    const got = await download(edge.url, image.id);
    assert.equal(got.sha512, sha512(data));
    const moved = wanA.stats().toClient.forwarded;
    assert.ok(moved <= 0.15 * data.length, `${moved} bytes crossed the link for a ${data.length}-byte image`);
    // The zeros are holes in the edge's copy, and in central's.
    for (const file of [join(work, 'edge', 'stores', 'edge-1', `${image.id}.cached`), join(work, 'central', 'stores', 'central', image.id)]) {
      const s = await stat(file);
      assert.equal(s.size, data.length);
      assert.ok(s.blocks * 512 < 0.25 * data.length, `${file} takes ${s.blocks * 512} bytes of disk`);
    }
  });
});
