import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { REPO_ROOT, spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const MiB = 1 << 20;
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const EDGE_ENV = { OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_PARENT_TIMEOUT_MS: '2000', OUTPOST_STORAGE_SYNC: 'false', OUTPOST_DRIFT_CHECK_SECONDS: '1' };

interface Edge { id: string; labels: string; parent?: string; proc?: ServeProcess; wan?: FaultProxy }

/**
 * Placement policies acted on (issue 13), with real processes: central and twelve edges with
 * `region` and `tier` labels, each behind a fault proxy; eu-far below eu-1 (cascading).
 */
describe('placement: sites hold exactly what the policies want', { timeout: 240_000 }, () => {
  let work: string;
  let central: ServeProcess;
  const edges: Edge[] = [
    { id: 'eu-1', labels: 'region=eu,tier=edge' },
    { id: 'eu-2', labels: 'region=eu,tier=edge' },
    { id: 'eu-far', labels: 'region=eu,tier=far', parent: 'eu-1' },
    { id: 'us-1', labels: 'region=us,tier=edge' },
    // Eight more, started together: twelve edges in all.
    ...['eu-3', 'eu-4', 'eu-5'].map((id) => ({ id, labels: 'region=eu,tier=edge' })),
    { id: 'eu-6', labels: 'region=eu,tier=far' },
    ...['us-2', 'us-3'].map((id) => ({ id, labels: 'region=us,tier=edge' })),
    ...['ap-1', 'ap-2'].map((id) => ({ id, labels: 'region=ap,tier=edge' })),
  ];
  /** The edges the golden-eu policy selects (region=eu,tier!=far), eu-2 once it has started. */
  const goldenEu = (withEu2: boolean) => ['eu-1', 'eu-3', 'eu-4', 'eu-5', ...(withEu2 ? ['eu-2'] : [])].sort();
  const usEdges = ['us-1', 'us-2', 'us-3'];
  const edge = (id: string) => edges.find((e) => e.id === id)!;

  const api = async (url: string, method: string, path: string, json?: unknown, type = 'application/json') => {
    const res = await fetch(`${url}${path}`, {
      method, body: json === undefined ? undefined : JSON.stringify(json),
      headers: { accept: 'application/json', ...(json === undefined ? {} : { 'content-type': type }) },
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) as any };
  };
  const ok = async (url: string, method: string, path: string, json?: unknown, type?: string) => {
    const res = await api(url, method, path, json, type);
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const startEdge = async (e: Edge) => {
    const parentUrl = e.parent === undefined ? central.url : edge(e.parent).proc!.url;
    e.wan ??= await FaultProxy.start({ target: loopbackTarget(parentUrl) });
    e.proc = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, e.id), '--role', 'edge', '--site', e.id, '--parent', e.wan.url,
      ...e.labels.split(',').flatMap((l) => ['--label', l])], EDGE_ENV);
  };
  /** The stores central lists for the image (`stores`), sorted. */
  const storesAtCentral = async (id: string) => String((await ok(central.url, 'GET', `/v2/images/${id}`)).stores ?? '').split(',').filter((s) => s !== '').sort();
  /** What a site says it holds in its store. */
  const storedAt = async (e: Edge) => ((await ok(e.proc!.url, 'GET', `/outpost/v1/sites/${e.id}/inventory`)).images as { image_id: string; state: string }[])
    .filter((i) => i.state === 'stored').map((i) => i.image_id);
  /** Whether the bytes are in the site's store on disk (`<data>/stores/<site>/<image id>`). */
  const onDisk = (e: Edge, id: string) => access(join(work, e.id, 'stores', e.id, id)).then(() => true, () => false);
  const createImage = async (name: string, data: Buffer) => {
    const image = await ok(central.url, 'POST', '/v2/images', { name, disk_format: 'raw', container_format: 'bare', visibility: 'public' });
    const res = await fetch(`${central.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(res.status, 204);
    return image.id as string;
  };
  type FleetEntry = { image_id: string; site: string; mode: string; state: string; reasons: string[]; bytes_done: number; bytes_total: number; reason: string | null };
  const fleet = async (query = '') => (await ok(central.url, 'GET', `/outpost/v1/fleet${query}`)) as {
    fleet: FleetEntry[]; next: string | null; convergence: Record<'images' | 'policies' | 'sites', { id: string; held: number; desired: number; percent: number }[]>;
    drift: { site: string; lost: number; extra: number }[];
  };
  const patch = (id: string, ops: unknown[]) => ok(central.url, 'PATCH', `/v2/images/${id}`, ops, 'application/openstack-images-v2.1-json-patch');

  const cli = async (...args: string[]) => (await run(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), ...args, '--url', central.url])).stdout;
  /** glanceclient with stdin closed (a non-TTY stdin would be taken for image data). */
  const glance = async (...args: string[]) => (await run('sh', [
    '-c', 'exec glance "$@" <&-', 'glance', '--os-image-api-version', '2', '--os-image-url', central.url, '--os-auth-token', 'none', ...args,
  ], { cwd: work })).stdout;

  let golden: string;
  let goldenData: Buffer;
  let policyId: string;

  before(async () => {
    work = await tempDir('outpost-e2e-placement-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], { OUTPOST_STORAGE_SYNC: 'false' });
    await startEdge(edge('eu-1'));
    await Promise.all(edges.filter((x) => x.id !== 'eu-2' && x.id !== 'eu-1').map(startEdge));
    await eventually('the edges registered', 60_000, async () => (await ok(central.url, 'GET', '/outpost/v1/sites')).sites.length === 12);
  });
  after(async () => {
    for (const e of [...edges].reverse()) if (e.proc !== undefined) await stopProcess(e.proc);
    if (central !== undefined) await stopProcess(central);
    for (const e of edges) await e.wan?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('a policy for tag golden to region=eu,tier!=far: once an image is tagged, exactly the matching sites hold it in their stores', async () => {
    policyId = (await ok(central.url, 'POST', '/outpost/v1/policies', {
      name: 'golden-eu', images: { tags: ['golden'] }, sites: { labels: 'region=eu,tier!=far' }, mode: 'replicate',
    })).id;
    goldenData = bytesOf(3 * MiB + 17, 31);
    golden = await createImage('golden', goldenData);
    const [centralStore] = await storesAtCentral(golden);
    assert.deepEqual(await storesAtCentral(golden), [centralStore], 'untagged: only central holds it');
    await ok(central.url, 'PUT', `/v2/images/${golden}/tags/golden`);
    await eventually('the matching edges hold the golden image in their stores', 60_000, async () => {
      const now = await storesAtCentral(golden);
      return goldenEu(false).every((id) => now.includes(id));
    });
    assert.deepEqual(await storesAtCentral(golden), [centralStore!, ...goldenEu(false)].sort());
    for (const id of goldenEu(false)) {
      // Central records the copy first; the edge's replica shows it once central's feed reaches it.
      await eventually(`${id}'s replica shows its copy`, 30_000, async () => (await storedAt(edge(id))).length > 0);
      assert.deepEqual(await storedAt(edge(id)), [golden], `${id} holds it`);
      assert.equal(await onDisk(edge(id), golden), true);
    }
    for (const id of edges.map((e) => e.id).filter((id) => id !== 'eu-2' && !goldenEu(false).includes(id))) {
      assert.deepEqual(await storedAt(edge(id)), [], `${id} holds nothing`);
      assert.equal(await onDisk(edge(id), golden), false);
    }
    const cache = await ok(edge('eu-1').proc!.url, 'GET', '/v2/cache');
    assert.deepEqual(cache.cached_images, [], 'the copy is in the store, not the cache');

    // The copy is the site's own: served with its link to central refused.
    edge('eu-1').wan!.refuse();
    try {
      const got = await download(edge('eu-1').proc!.url, golden);
      assert.deepEqual([got.status, got.sha512, got.broken], [200, sha512(goldenData), false]);
    } finally {
      edge('eu-1').wan!.pass();
    }

    // The fleet view at central agrees with each site's own inventory.
    const view = await fleet(`?image=${golden}`);
    assert.deepEqual(view.fleet.map((e) => [e.site, e.state, e.reasons, e.bytes_done, e.bytes_total]),
      goldenEu(false).map((id) => [id, 'held', ['golden-eu'], goldenData.length, goldenData.length]));
    for (const e of edges.filter((x) => x.proc !== undefined)) {
      const held = view.fleet.filter((f) => f.site === e.id && f.state === 'held').map((f) => f.image_id);
      assert.deepEqual(held, await storedAt(e), `the fleet view and ${e.id}'s inventory`);
    }
    assert.deepEqual(view.convergence.policies, [{ id: 'golden-eu', held: 4, desired: 4, percent: 100 }]);
    // outpost fleet filtered by tag and site labels; a selector that does not parse is refused naming it.
    const filtered = JSON.parse(await cli('fleet', '--tag', 'golden', '--site-labels', 'region in (eu),tier!=far', '-f', 'json')) as { fleet: FleetEntry[] };
    assert.deepEqual(filtered.fleet.map((e) => e.site), goldenEu(false));
    assert.deepEqual(JSON.parse(await cli('fleet', '--tag', 'golden', '--tag', 'silver', '-f', 'json')).fleet, []);
    await assert.rejects(cli('fleet', '--site-labels', 'region in (eu'), (e: { code: number; stderr: string }) => e.code === 1 && /site_labels: unbalanced parentheses/.test(e.stderr));
  });

  it('a site started later with matching labels converges with no change at central', async () => {
    await startEdge(edge('eu-2'));
    await eventually('eu-2 holds the golden image', 60_000, async () => (await storesAtCentral(golden)).includes('eu-2'));
    // The site's own inventory reads its replica, which shows the record once it has caught up.
    await eventually('eu-2\'s inventory lists the golden image', 30_000, async () => (await storedAt(edge('eu-2'))).includes(golden));
    assert.deepEqual(await storedAt(edge('eu-2')), [golden]);
    const got = await download(edge('eu-2').proc!.url, golden);
    assert.deepEqual([got.status, got.sha512, got.broken], [200, sha512(goldenData), false]);
  });

  it('drift: a copy whose bytes were lost is fetched again, bytes no record wants are deleted, and the fleet view counts both', async () => {
    const lostAt = edge('eu-3');
    await rm(join(work, 'eu-3', 'stores', 'eu-3', golden));
    const stray = join(work, 'eu-4', 'stores', 'eu-4', '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d');
    await writeFile(stray, 'bytes of an image deleted while the site was off');
    await eventually('eu-3 fetched its copy again', 60_000, async () => onDisk(lostAt, golden));
    await eventually('eu-4 deleted the stray bytes', 60_000, async () => access(stray).then(() => false, () => true));
    const got = await download(lostAt.proc!.url, golden);
    assert.deepEqual([got.status, got.sha512], [200, sha512(goldenData)]);
    await eventually('the fleet view counts the drift', 30_000, async () => {
      const drift = Object.fromEntries((await fleet()).drift.map((d) => [d.site, [d.lost, d.extra]]));
      return JSON.stringify([drift['eu-3'], drift['eu-4']]) === '[[1,0],[0,1]]';
    });
    const out = await cli('fleet', '--site', 'eu-3');
    assert.match(out, /drift at eu-3: 1 lost copies fetched again, 0 extra copies deleted/);
  });

  it('a cache policy: the far edge holds the image in its cache, pinned while the policy holds, fetched through eu-1 (one WAN crossing)', async () => {
    const far = edge('eu-far');
    const cachedAt = async () => ((await ok(far.proc!.url, 'GET', '/outpost/v1/sites/eu-far/inventory')).images as { image_id: string; state: string }[])
      .filter((i) => i.image_id === golden).map((i) => i.state);
    edge('eu-1').wan!.resetStats();
    const warm = (await ok(central.url, 'POST', '/outpost/v1/policies', {
      name: 'warm-far', images: { tags: ['golden'] }, sites: { labels: 'tier=far' }, mode: 'cache', priority: 20,
    })).id;
    await eventually('eu-far holds the golden image pinned in its cache', 60_000, async () => (await cachedAt()).join() === 'pinned');
    assert.equal(await onDisk(far, golden), false, 'not in its store');
    await eventually('the fleet view shows it held at both far edges', 30_000, async () =>
      JSON.stringify((await fleet(`?image=${golden}&policy=warm-far`)).fleet.map((e) => [e.site, e.mode, e.state])) === '[["eu-6","cache","held"],["eu-far","cache","held"]]');
    // eu-1 served it from its own copy: its link to central did not carry the image again.
    assert.ok(edge('eu-1').wan!.stats().toClient.forwarded < goldenData.length / 4, `eu-1's uplink carried ${edge('eu-1').wan!.stats().toClient.forwarded} bytes`);
    assert.equal((await api(central.url, 'DELETE', `/outpost/v1/policies/${warm}`)).status, 204);
    await eventually('the copy is released to the cache\'s LRU', 60_000, async () => (await cachedAt()).join() === 'cached');
    for (const e of [far, edge('eu-6')]) {
      await eventually(`${e.id} released it`, 30_000, async () => ((await ok(e.proc!.url, 'GET', `/outpost/v1/sites/${e.id}/inventory`)).images as { state: string }[]).every((i) => i.state !== 'pinned'));
      assert.equal((await api(e.proc!.url, 'DELETE', `/v2/cache/${golden}`)).status, 204);
    }
    await eventually('central no longer lists the far edges for the image', 30_000, async () => !(await storesAtCentral(golden)).some((s) => s === 'eu-far' || s === 'eu-6'));
  });

  it('outpost_placement on an image acts as a replicate policy for it', async () => {
    const data = bytesOf(MiB + 3, 32);
    const id = await createImage('us-only', data);
    await patch(id, [{ op: 'add', path: '/outpost_placement', value: 'region=us' }]);
    await eventually('the us edges hold the image', 60_000, async () => {
      const now = await storesAtCentral(id);
      return usEdges.every((e) => now.includes(e));
    });
    assert.deepEqual((await storesAtCentral(id)).filter((s) => s.includes('-')), usEdges, 'no other site');
    await patch(id, [{ op: 'remove', path: '/outpost_placement' }]);
    await eventually('us-1 let the copy go', 60_000, async () => !(await storedAt(edge('us-1'))).includes(id));
  });

  it('a site stopped while a policy wants a new copy there shows it pending, never failed, and converges once it is back', async () => {
    const us = edge('us-1');
    await eventually('us-1 has reported to central', 30_000, async () => (await ok(central.url, 'GET', '/outpost/v1/sites/us-1/inventory')).reported_at !== null);
    await stopProcess(us.proc!);
    const data = bytesOf(2 * MiB, 33);
    const id = await createImage('while-away', data);
    await patch(id, [{ op: 'add', path: '/outpost_placement', value: 'region=us' }]);
    // Its link is refused meanwhile too, as a cut WAN would leave it.
    const pending = (await fleet(`?image=${id}&site=us-1`)).fleet;
    assert.equal((await fleet(`?image=${id}`)).fleet.length, 3, 'us-1, us-2 and us-3 should hold it');
    assert.deepEqual(pending.map((e) => [e.site, e.state]), [['us-1', 'pending']]);
    assert.match(pending[0]!.reason!, /not started at site us-1 as of its report at/);
    assert.deepEqual((await fleet('?state=failed')).fleet, []);

    await startEdge(us);
    await eventually('us-1 holds the copy once it is back', 60_000, async () => (await fleet(`?image=${id}&site=us-1`)).fleet[0]?.state === 'held');
    await eventually('us-1\'s inventory lists the copy', 30_000, async () => (await storedAt(us)).includes(id));
    assert.deepEqual(await storedAt(us), [id]);
    assert.equal(await onDisk(us, id), true);

    // A transfer cut part-way: the site says the copy is pending (never failed), and it converges
    // once the link is back.
    const placementAtUs = async (image: string) =>
      ((await ok(us.proc!.url, 'GET', '/outpost/v1/sites/us-1/inventory')).placements as FleetEntry[]).find((p) => p.image_id === image);
    const slow = await createImage('cut-off', bytesOf(4 * MiB, 34));
    us.wan!.bandwidth(256 * 1024);
    await patch(slow, [{ op: 'add', path: '/outpost_placement', value: 'region=us' }]);
    await eventually('us-1 is transferring the copy', 60_000, async () => (await placementAtUs(slow))?.state === 'transferring');
    us.wan!.refuse();
    await eventually('us-1 has the copy pending because it cannot reach its parent', 60_000, async () => /could not be reached|ECONNRESET|terminated|socket/i.test((await placementAtUs(slow))?.reason ?? ''));
    assert.equal((await placementAtUs(slow))!.state, 'pending', `unreachable is pending, never failed: ${(await placementAtUs(slow))!.reason}`);
    us.wan!.pass();
    await eventually('us-1 holds the cut-off copy once its link is back', 60_000, async () => (await fleet(`?image=${slow}&site=us-1`)).fleet[0]?.state === 'held');
    assert.deepEqual((await fleet('?state=failed')).fleet, []);
    // outpost fleet prints the same.
    const out = await cli('fleet', '--image', id);
    assert.match(out, /while-away\tus-1\treplicate\theld\t█{20} 100%/);
    assert.match(out, /policy outpost_placement: (\d+)\/\1 held \(100%\)/);
  });

  it('copy-image to two sites\' stores with the glance CLI: os_glance_importing_to_stores shrinks as each site finishes, and the task ends as Glance\'s does', { skip: cliSkip }, async () => {
    const data = bytesOf(3 * MiB, 35);
    const id = await createImage('copied', data);
    // eu-2 is slow: eu-far finishes first, and the list shrinks to eu-2 alone.
    edge('eu-2').wan!.bandwidth(512 * 1024);
    try {
      const out = await glance('image-import', '--import-method', 'copy-image', '--stores', 'eu-far,eu-2', id);
      assert.match(out, /\| status +\| active/);
      const importing = async () => String((await ok(central.url, 'GET', `/v2/images/${id}`)).os_glance_importing_to_stores);
      await eventually('eu-far has its copy, eu-2 not yet', 60_000, async () => (await importing()) === 'eu-2');
      await eventually('eu-2 has its copy', 60_000, async () => (await importing()) === '');
    } finally {
      edge('eu-2').wan!.pass();
    }
    const image = await ok(central.url, 'GET', `/v2/images/${id}`);
    assert.equal(image.os_glance_failed_import, '');
    // eu-far's copy came through eu-1, which keeps a cached copy too.
    assert.deepEqual((await storesAtCentral(id)).filter((s) => s.startsWith('eu-')), ['eu-1', 'eu-2', 'eu-far']);
    await eventually('the task succeeded', 30_000, async () => / success /.test(await glance('image-tasks', id)));
    for (const id2 of ['eu-far', 'eu-2']) assert.equal(await onDisk(edge(id2), id), true, `${id2} holds it in its store`);
    // Explicit copies: untouched by the placement agents; stores-delete removes one.
    await glance('stores-delete', '--store', 'eu-far', id);
    await eventually('eu-far deleted its bytes', 30_000, async () => !(await onDisk(edge('eu-far'), id)));
    await eventually('central no longer lists eu-far', 30_000, async () => !(await storesAtCentral(id)).includes('eu-far'));
    assert.equal(await onDisk(edge('eu-2'), id), true);
  });

  it('a copy a site cannot verify is a real failure: copy-image lists the store in os_glance_failed_import, or fails its task when every store must succeed', async () => {
    const id = await createImage('damaged', bytesOf(MiB + 5, 36));
    // Damage central's bytes behind its back: every site fetching them finds they do not match the image's hashes.
    const [centralStore] = await storesAtCentral(id);
    const file = join(work, 'central', 'stores', centralStore!, id);
    const bytes = await readFile(file);
    bytes[1000] ^= 0xff;
    await writeFile(file, bytes);
    const importCopy = async (stores: string[], all: boolean) => {
      const res = await api(central.url, 'POST', `/v2/images/${id}/import`, { method: { name: 'copy-image' }, stores, all_stores_must_succeed: all });
      assert.equal(res.status, 202, JSON.stringify(res.body));
    };
    const lastTask = async () => ((await ok(central.url, 'GET', `/v2/images/${id}/tasks`)).tasks as { status: string; message: string; created_at: string }[])
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0]!;

    await importCopy(['ap-1', 'ap-2'], false);
    await eventually('both stores failed', 90_000, async () => {
      const image = await ok(central.url, 'GET', `/v2/images/${id}`);
      return image.os_glance_importing_to_stores === '' && String(image.os_glance_failed_import).split(',').sort().join() === 'ap-1,ap-2';
    });
    await eventually('the task ended', 30_000, async () => (await lastTask()).status !== 'processing');
    const allowed = await lastTask();
    assert.equal(allowed.status, 'success', allowed.message);
    assert.match(allowed.message, /failed stores are listed in os_glance_failed_import/);
    assert.deepEqual(await storesAtCentral(id), [centralStore]);

    await importCopy(['ap-1'], true);
    await eventually('the task failed', 90_000, async () => (await lastTask()).status === 'failure');
    assert.match((await lastTask()).message, /the copy in store ap-1 failed \(site ap-1: .*(match|sha256|sha512|md5)/i);
    const image = await ok(central.url, 'GET', `/v2/images/${id}`);
    assert.equal(image.os_glance_importing_to_stores, '');
    assert.equal(image.status, 'active');
    for (const e of ['ap-1', 'ap-2']) assert.equal(await onDisk(edge(e), id), false, `${e} holds no copy`);
    assert.equal((await fleet(`?image=${id}`)).fleet.length, 0, 'nothing wants the image anywhere once the tasks ended');
    await ok(central.url, 'DELETE', `/v2/images/${id}`);
  });

  it('central is a site too: a policy that selects it brings an image uploaded at an edge into central\'s store, and takes it out again', async () => {
    const data = bytesOf(3 * MiB, 77);
    const image = await ok(central.url, 'POST', '/v2/images', { name: 'made-at-us-1', disk_format: 'raw', container_format: 'bare', visibility: 'public', tags: ['at-central'] });
    await eventually('us-1 has the image', 30_000, async () => (await api(edge('us-1').proc!.url, 'GET', `/v2/images/${image.id}`)).status === 200);
    const put = await fetch(`${edge('us-1').proc!.url}/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(put.status, 204);
    assert.deepEqual(await storesAtCentral(image.id), ['us-1'], 'the bytes stay at the edge they were uploaded to');
    const onCentralDisk = () => access(join(work, 'central', 'stores', 'central', image.id)).then(() => true, () => false);
    const policy = await ok(central.url, 'POST', '/outpost/v1/policies', {
      name: 'keep-at-central', images: { tags: ['at-central'] }, sites: { ids: ['central'] }, mode: 'replicate',
    });
    try {
      await eventually('central holds a copy', 60_000, async () => (await storesAtCentral(image.id)).join() === 'central,us-1');
      assert.ok(await onCentralDisk());
      const got = await download(central.url, image.id);
      assert.deepEqual([got.status, got.sha512, got.broken], [200, sha512(data), false]);
      await eventually('the fleet view shows it held at central', 30_000, async () => (await fleet(`?image=${image.id}`)).fleet
        .some((e) => e.site === 'central' && e.state === 'held'));
      await ok(central.url, 'DELETE', `/v2/images/${image.id}/tags/at-central`);
      await eventually('central\'s copy goes with the policy\'s want', 60_000, async () => (await storesAtCentral(image.id)).join() === 'us-1' && !(await onCentralDisk()));
    } finally {
      await api(central.url, 'DELETE', `/outpost/v1/policies/${policy.id}`);
    }
  });

  it('untagging removes the copies; tagging again and deleting the policy does too', async () => {
    await ok(central.url, 'DELETE', `/v2/images/${golden}/tags/golden`);
    await eventually('no site holds the untagged image', 60_000, async () => (await storesAtCentral(golden)).length === 1);
    for (const id of goldenEu(true)) {
      await eventually(`${id} shows its copy gone`, 30_000, async () => !(await storedAt(edge(id))).includes(golden));
      await eventually(`${id} deleted the bytes`, 30_000, async () => !(await onDisk(edge(id), golden)));
    }

    await ok(central.url, 'PUT', `/v2/images/${golden}/tags/golden`);
    await eventually('every matching edge holds it again', 60_000, async () => (await storesAtCentral(golden)).length === 1 + goldenEu(true).length);
    assert.equal((await api(central.url, 'DELETE', `/outpost/v1/policies/${policyId}`)).status, 204);
    await eventually('the policy gone, so are the copies', 60_000, async () => (await storesAtCentral(golden)).length === 1);
    for (const id of goldenEu(true)) {
      await eventually(`${id} shows its copy gone`, 30_000, async () => !(await storedAt(edge(id))).includes(golden));
      // The bytes are still served there, now through the cache.
      const got = await download(edge(id).proc!.url, golden);
      assert.deepEqual([got.status, got.sha512, got.broken], [200, sha512(goldenData), false]);
    }
  });
});
