import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const PASSWORD = 'peers secret';
const ENV = { OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_PARENT_TIMEOUT_MS: '2000', OUTPOST_STORAGE_SYNC: 'false', OUTPOST_AUTH: 'keystone' };

/** A port nothing listens on now (for a site whose address its peer's proxy must know before it starts). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Sibling fetch (issue 17), real processes: central, and two edges of one metro — metro-a, which
 * lists metro-b as its peer, and metro-b, which a placement policy has hold the images in its
 * store. metro-a reaches central through wanA and metro-b through `lan` (whose address is the one
 * metro-b registers), both FaultProxies. Keystone authentication: each edge presents the site
 * credential central issued it, to its parent and to its peer alike.
 */
describe('an edge fetches from a peer while its parent is cut off', { timeout: 240_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let metroA: ServeProcess;
  let metroB: ServeProcess;
  let wanA: FaultProxy;
  let wanB: FaultProxy;
  let lan: FaultProxy;
  let admin: string;

  const json = async (url: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json', accept: 'application/json', 'x-auth-token': admin },
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
    return text === '' ? undefined : JSON.parse(text);
  };
  /** A public image of `data` uploaded at central; its id. */
  const uploaded = async (name: string, data: Buffer, tags: string[] = []) => {
    const image = await json(central.url, 'POST', '/v2/images', { name, disk_format: 'raw', container_format: 'bare', visibility: 'public', tags });
    const res = await fetch(`${central.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'x-auth-token': admin }, body: data });
    assert.equal(res.status, 204);
    return image.id as string;
  };
  /** An image of `data` at central, tagged for the metro policy; resolves once metro-a's replica locates metro-b's copy. */
  const heldAtPeer = async (name: string, data: Buffer) => {
    const id = await uploaded(name, data, ['metro']);
    await eventually(`metro-a knows metro-b holds ${name}`, 60_000, async () => String((await json(metroA.url, 'GET', `/v2/images/${id}`)).stores).split(',').includes('metro-b'));
    return id;
  };

  before(async () => {
    work = await tempDir('outpost-e2e-peers-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { ...ENV, OUTPOST_ADMIN_PASSWORD: PASSWORD });
    const res = await fetch(`${central.url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } } }),
    });
    admin = res.headers.get('x-subject-token')!;
    const credential = async (site: string) => ({ OUTPOST_SITE_TOKEN: (await json(central.url, 'POST', `/outpost/v1/sites/${site}/credential`)).token as string });
    wanA = await FaultProxy.start({ target: loopbackTarget(central.url) });
    wanB = await FaultProxy.start({ target: loopbackTarget(central.url) });
    const portB = await freePort();
    lan = await FaultProxy.start({ target: { host: '127.0.0.1', port: portB } });
    metroB = await spawnServe(['--listen', `127.0.0.1:${portB}`, '--public-url', lan.url, '--data', join(work, 'metro-b'), '--role', 'edge', '--site', 'metro-b',
      '--parent', wanB.url, '--label', 'holds=metro'], { ...ENV, ...await credential('metro-b') });
    metroA = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'metro-a'), '--role', 'edge', '--site', 'metro-a', '--parent', wanA.url, '--peer', 'metro-b'], { ...ENV, ...await credential('metro-a') });
    await json(central.url, 'POST', '/outpost/v1/policies', { name: 'metro', images: { tags: ['metro'] }, sites: { labels: 'holds=metro' }, mode: 'replicate' });
  });
  after(async () => {
    for (const p of [metroA, metroB, central]) if (p !== undefined) await stopProcess(p);
    for (const w of [wanA, wanB, lan]) await w?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('with its parent link blackholed, a cold download at the edge is served from the peer\'s verified copy', async () => {
    const data = bytesOf(24 * MiB + 5, 71);
    const id = await heldAtPeer('from-the-peer', data);
    lan.resetStats();
    wanA.blackhole();
    try {
      const got = await download(metroA.url, id, { 'x-auth-token': admin });
      assert.deepEqual([got.status, got.broken, got.length, got.sha512], [200, false, data.length, sha512(data)]);
      assert.ok(lan.stats().toClient.forwarded >= data.length, `the peer link carried ${lan.stats().toClient.forwarded} bytes`);
      // Its transfer names the peer that sent the bytes.
      const transfer = ((await json(metroA.url, 'GET', '/outpost/v1/transfers')).transfers as { image_id: string; source: string }[]).find((t) => t.image_id === id);
      assert.match(transfer?.source ?? '', /, from site metro-b$/);
      // Kept at metro-a, verified: served again with no link at all.
      lan.refuse();
      await eventually('metro-a keeps the copy', 30_000, async () => ((await json(metroA.url, 'GET', '/v2/cache')).cached_images as { image_id: string }[]).some((c) => c.image_id === id));
      const again = await download(metroA.url, id, { 'x-auth-token': admin });
      assert.deepEqual([again.status, again.sha512], [200, sha512(data)]);
    } finally {
      lan.pass();
      wanA.pass();
    }
  });

  it('a peer whose bytes fail their check is abandoned: nothing unverified is kept or served whole, and the image comes from the parent once it is back', async () => {
    const data = bytesOf(24 * MiB, 72);
    const id = await heldAtPeer('corrupt-peer', data);
    wanA.blackhole();
    // Past the first 256 KiB of each answer (a manifest passes), one byte in 100,000 flipped.
    lan.corrupt({ afterBytes: 256 * 1024, everyNth: 100_000 });
    try {
      const got = await download(metroA.url, id, { 'x-auth-token': admin });
      assert.ok(got.status !== 200 || got.broken, `the corrupt copy must not be served whole: ${got.status}, ${got.length} bytes, broken ${got.broken}`);
      assert.notEqual(got.sha512, sha512(data));
      assert.ok(lan.stats().toClient.corrupted > 0, 'the peer link flipped bytes');
      await eventually('metro-a says it abandoned the peer', 30_000, async () => /a site sent bytes of the image that failed their check/.test(metroA.stdout()));
      assert.equal(((await json(metroA.url, 'GET', '/v2/cache')).cached_images as { image_id: string }[]).some((c) => c.image_id === id), false, 'nothing kept');
      // Asked again while the parent is still away: the peer is not asked (no bytes cross the LAN).
      lan.resetStats();
      const retry = await download(metroA.url, id, { 'x-auth-token': admin });
      assert.notEqual(retry.status === 200 && !retry.broken ? retry.sha512 : '', sha512(data));
      assert.equal(lan.stats().toClient.forwarded, 0, 'the distrusted peer was not asked again');
    } finally {
      lan.pass();
      wanA.pass();
    }
    await eventually('metro-a serves the image from its parent once it is back', 60_000, async () => {
      const got = await download(metroA.url, id, { 'x-auth-token': admin });
      return got.status === 200 && !got.broken && got.sha512 === sha512(data);
    });
  });

  it('a parent link slower than the peer\'s: once both were measured, cold downloads come from the peer while the parent answers', async () => {
    const images: { data: Buffer; id: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const data = bytesOf(6 * MiB + i, 80 + i);
      images.push({ data, id: await heldAtPeer(`faster-peer-${i}`, data) });
    }
    // A fresh metro-a (it has measured nothing), its parent link at 3 MB/s, the LAN as fast as loopback.
    await stopProcess(metroA);
    metroA = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'metro-a'), '--role', 'edge', '--site', 'metro-a', '--parent', wanA.url, '--peer', 'metro-b'],
      { ...ENV, OUTPOST_SITE_TOKEN: (await json(central.url, 'POST', '/outpost/v1/sites/metro-a/credential')).token as string });
    wanA.bandwidth(3e6);
    try {
      const fetchAt = async (i: number) => {
        wanA.resetStats();
        lan.resetStats();
        const got = await download(metroA.url, images[i]!.id, { 'x-auth-token': admin });
        assert.deepEqual([got.status, got.broken, got.sha512], [200, false, sha512(images[i]!.data)]);
        return { parent: wanA.stats().toClient.forwarded, peer: lan.stats().toClient.forwarded };
      };
      const size = images[0]!.data.length;
      // Nothing measured: the parent, which is measured on the way.
      const first = await fetchAt(0);
      assert.ok(first.parent >= size && first.peer < size / 10, `the parent sent ${first.parent}, the peer ${first.peer} bytes`);
      // The peer is tried once to learn its rate, and then asked first: it is faster.
      for (const i of [1, 2]) {
        const next = await fetchAt(i);
        assert.ok(next.peer >= size && next.parent < size / 10, `image ${i}: the peer sent ${next.peer}, the parent ${next.parent} bytes`);
      }
    } finally {
      wanA.pass();
    }
  });

  it('an image the peer holds only in its cache: with the parent link blackholed, it comes from that copy; one the peer does not hold is not fetched by the peer on the edge\'s behalf', async () => {
    const data = bytesOf(8 * MiB + 9, 74);
    const id = await uploaded('cached-at-peer', data);
    const elsewhere = await uploaded('held-by-no-edge', bytesOf(2 * MiB, 75));
    const active = async (url: string, image: string) => {
      const res = await fetch(`${url}/v2/images/${image}`, { headers: { 'x-auth-token': admin } });
      return res.ok && (await res.json() as { status: string }).status === 'active';
    };
    for (const [site, url] of [['metro-a', metroA.url], ['metro-b', metroB.url]] as const) {
      await eventually(`${site} has both images`, 30_000, async () => await active(url, id) && await active(url, elsewhere));
    }
    // A client at metro-b: the image is in metro-b's cache, not in a store (the catalog does not know of it).
    assert.equal((await download(metroB.url, id, { 'x-auth-token': admin })).sha512, sha512(data));
    const cachedAt = async (url: string, image: string) => ((await json(url, 'GET', '/v2/cache')).cached_images as { image_id: string }[]).some((c) => c.image_id === image);
    await eventually('metro-b keeps it in its cache', 30_000, () => cachedAt(metroB.url, id));
    assert.doesNotMatch(String((await json(metroA.url, 'GET', `/v2/images/${id}`)).stores), /metro-b/);

    wanA.blackhole();
    try {
      lan.resetStats();
      const got = await download(metroA.url, id, { 'x-auth-token': admin });
      assert.deepEqual([got.status, got.broken, got.sha512], [200, false, sha512(data)]);
      assert.ok(lan.stats().toClient.forwarded >= data.length, `the peer link carried ${lan.stats().toClient.forwarded} bytes`);
      const transfer = ((await json(metroA.url, 'GET', '/outpost/v1/transfers')).transfers as { image_id: string; source: string }[]).find((t) => t.image_id === id);
      assert.match(transfer?.source ?? '', /, from site metro-b$/);
      // An image metro-b holds neither way: metro-b answers that it has none, rather than fetch it
      // from central over its own link for metro-a; metro-a says its parent cannot be reached.
      const none = await fetch(`${metroA.url}/v2/images/${elsewhere}/file`, { headers: { 'x-auth-token': admin } });
      assert.equal(none.status, 503, await none.text());
      assert.equal(await cachedAt(metroB.url, elsewhere), false);
      const atB = (await json(metroB.url, 'GET', '/outpost/v1/transfers')).transfers as { image_id: string }[];
      assert.equal(atB.some((t) => t.image_id === elsewhere), false, 'metro-b started no transfer of it');
    } finally {
      wanA.pass();
    }
  });
});
