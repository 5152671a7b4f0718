import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import {
  bytesOf, call, createImage, expectStatus, getImage, ids, listImages, patchImage, project, sleep, upload,
  type ImageJson,
} from '../helpers/glance-client.ts';
import { eventually, startSiteChain, type SiteChain } from '../helpers/multi-site.ts';
import { tempDir, type TestSite } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();

/** The children's parent timeout (OUTPOST_PARENT_TIMEOUT_MS) and long-poll length. */
const PARENT_TIMEOUT_MS = 1500;
const FEED_WAIT_SECONDS = 2;

/**
 * Three sites, each its own `outpost serve` process on 127.0.0.1:0 with its own data directory:
 *
 *   central ← wanA (FaultProxy) ← edge ← wanB (FaultProxy) ← far edge
 *
 * Every child's --parent is the proxy in front of its parent, so the tests cut, slow down and
 * heal the links at runtime without restarting anything.
 */
describe('edge sites as separate processes (central ← edge ← far edge)', { timeout: 90_000 }, () => {
  let work: string;
  let chain: SiteChain;
  let central: TestSite;
  let edge: TestSite;
  let far: TestSite;
  let wanA: FaultProxy; // edge → central
  let wanB: FaultProxy; // far edge → edge

  before(async () => {
    work = await tempDir('outpost-e2e-edge-');
    chain = await startSiteChain(work, {
      OUTPOST_PARENT_TIMEOUT_MS: String(PARENT_TIMEOUT_MS),
      OUTPOST_FEED_WAIT_SECONDS: String(FEED_WAIT_SECONDS),
      OUTPOST_STORAGE_SYNC: 'false',
    });
    ({ central, edge, far, wanA, wanB } = chain);
  });

  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('reports its role, parent and position at GET /outpost/v1/status', async () => {
    const s = await status(edge);
    assert.equal(s.role, 'edge');
    assert.equal(s.site, 'edge-1');
    assert.equal(s.parent, wanA.url);
    const fs = await status(far);
    assert.equal(fs.role, 'edge');
    assert.equal(fs.parent, wanB.url);
    const cs = await status(central);
    assert.equal(cs.role, 'central');
    assert.equal(cs.replication, null);
  });

  describe('propagation from central', () => {
    it('an image created at central is listed by the far edge', async () => {
      const t0 = performance.now();
      const image = await createImage(central, { name: 'from-central', disk_format: 'qcow2', container_format: 'bare' });
      await eventually('far edge lists the new image', 30_000, async () => ids(await listImages(far, 'limit=1000')).includes(image.id));
      const ms = performance.now() - t0;
      assert.ok(ms < 1000, `took ${ms} ms`);
      assert.ok(ids(await listImages(edge, 'limit=1000')).includes(image.id));
      const shown = await getImage(far, image.id);
      assert.equal(shown.name, 'from-central');
      assert.equal(shown.disk_format, 'qcow2');
      assert.equal(shown.owner, image.owner);
    });

    it('PATCH, tags and delete at central reach the far edge', async () => {
      const image = await createImage(central, { name: 'to-change', tags: ['a'] });
      await eventually('far edge has the image', 30_000, async () => (await call(far, 'GET', `/v2/images/${image.id}`)).status === 200);

      expectStatus(await patchImage(central, image.id, [
        { op: 'replace', path: '/name', value: 'changed' },
        { op: 'add', path: '/os_distro', value: 'cirros' },
        { op: 'replace', path: '/min_ram', value: 512 },
      ]), 200);
      await eventually('PATCH reaches the far edge', 30_000, async () => {
        const i = await getImage(far, image.id);
        return i.name === 'changed' && i.os_distro === 'cirros' && i.min_ram === 512;
      });

      expectStatus(await call(central, 'PUT', `/v2/images/${image.id}/tags/b`), 204);
      expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}/tags/a`), 204);
      await eventually('tags reach the far edge', 30_000, async () => sameSet((await getImage(far, image.id)).tags, ['b']));
      assert.ok(ids(await listImages(far, 'tag=b')).includes(image.id));
      assert.ok(!ids(await listImages(far, 'tag=a')).includes(image.id));

      expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
      await eventually('delete reaches the far edge', 30_000, async () => (await call(far, 'GET', `/v2/images/${image.id}`)).status === 404);
      assert.ok(!ids(await listImages(far, 'limit=1000')).includes(image.id));
      expectStatus(await call(edge, 'GET', `/v2/images/${image.id}`), 404);
    });

    it('members added at central and accepted by the member project reach the far edge', async () => {
      const owner = project('p-owner');
      const member = project('p-member');
      const image = await createImage(central, { name: 'shared-one', visibility: 'shared' }, owner);
      expectStatus(await call(central, 'POST', `/v2/images/${image.id}/members`, { as: owner, json: { member: 'p-member' } }), 200);
      await eventually('pending membership reaches the far edge', 30_000, async () => {
        const res = await call(far, 'GET', `/v2/images/${image.id}/members/p-member`, { as: member });
        return res.status === 200 && res.body.status === 'pending';
      });
      // A pending shared image is not in the member's default list.
      assert.ok(!ids(await listImages(far, '', member)).includes(image.id));

      expectStatus(await call(central, 'PUT', `/v2/images/${image.id}/members/p-member`, { as: member, json: { status: 'accepted' } }), 200);
      await eventually('acceptance reaches the far edge', 30_000, async () => {
        const res = await call(far, 'GET', `/v2/images/${image.id}/members`, { as: owner });
        return res.status === 200 && res.body.members.length === 1 && res.body.members[0].status === 'accepted';
      });
      assert.ok(ids(await listImages(far, '', member)).includes(image.id));
      // Someone else still does not see it.
      expectStatus(await call(far, 'GET', `/v2/images/${image.id}`, { as: project('p-other') }), 404);

      expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}/members/p-member`, { as: owner }), 204);
      await eventually('member removal reaches the far edge', 30_000, async () =>
        (await call(far, 'GET', `/v2/images/${image.id}`, { as: member })).status === 404);
    });
  });

  describe('writes at the far edge', () => {
    it('create and PATCH are visible at the far edge as soon as they return, and at the edge and central', async () => {
      const created = await call<ImageJson>(far, 'POST', '/v2/images', { json: { name: 'made-far', disk_format: 'raw', container_format: 'bare' } });
      expectStatus(created, 201);
      const id = created.body.id;
      // No waiting: the answer came once the far edge's replica had the change.
      assert.equal((await getImage(far, id)).name, 'made-far');
      assert.ok(ids(await listImages(far, 'name=made-far')).includes(id));
      assert.equal((await getImage(edge, id)).name, 'made-far');
      assert.equal((await getImage(central, id)).name, 'made-far');

      const patched = await patchImage(far, id, [{ op: 'add', path: '/hw_disk_bus', value: 'scsi' }, { op: 'replace', path: '/name', value: 'made-far-2' }]);
      expectStatus(patched, 200);
      assert.equal(patched.body.name, 'made-far-2');
      const here = await getImage(far, id);
      assert.equal(here.name, 'made-far-2');
      assert.equal(here.hw_disk_bus, 'scsi');
      assert.equal((await getImage(central, id)).hw_disk_bus, 'scsi');

      expectStatus(await call(far, 'PUT', `/v2/images/${id}/tags/from-far`), 204);
      assert.deepEqual((await getImage(far, id)).tags, ['from-far']);
    });

    it('members added and accepted through the far edge are visible there at once', async () => {
      const owner = project('far-owner');
      const member = project('far-member');
      const image = await createImage(far, { name: 'shared-far', visibility: 'shared' }, owner);
      expectStatus(await call(far, 'POST', `/v2/images/${image.id}/members`, { as: owner, json: { member: 'far-member' } }), 200);
      expectStatus(await call(far, 'PUT', `/v2/images/${image.id}/members/far-member`, { as: member, json: { status: 'accepted' } }), 200);
      assert.ok(ids(await listImages(far, '', member)).includes(image.id));
      const m = await call(central, 'GET', `/v2/images/${image.id}/members/far-member`, { as: member });
      expectStatus(m, 200);
      assert.equal(m.body.status, 'accepted');
    });

    it('an upload through the far edge is readable there right after it returns (read-your-write)', async () => {
      const data = bytesOf(300_000, 7);
      const image = await createImage(far, { name: 'uploaded-far', disk_format: 'raw', container_format: 'bare' });
      expectStatus(await upload(far, image.id, data), 204);
      const shown = await getImage(far, image.id);
      assert.equal(shown.status, 'active');
      assert.equal(shown.size, data.length);
      const file = await far.request(`/v2/images/${image.id}/file`);
      assert.equal(file.status, 200);
      assert.ok(Buffer.from(await file.arrayBuffer()).equals(data));
      const ranged = await far.request(`/v2/images/${image.id}/file`, { headers: { range: 'bytes=10-19' } });
      assert.equal(ranged.status, 206);
      assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 20)));
    });

    it('a delete through the far edge is gone there when it returns', async () => {
      const image = await createImage(far, { name: 'doomed-far' });
      expectStatus(await call(far, 'DELETE', `/v2/images/${image.id}`), 204);
      expectStatus(await call(far, 'GET', `/v2/images/${image.id}`), 404);
      expectStatus(await call(central, 'GET', `/v2/images/${image.id}`), 404);
    });
  });

  it('the openstack CLI pointed at the edge lists and shows images', { skip: cliSkip }, async () => {
    const image = await createImage(central, { name: 'for-the-cli', disk_format: 'raw', container_format: 'bare', tags: ['cli'] });
    await eventually('edge has the image', 30_000, async () => (await call(edge, 'GET', `/v2/images/${image.id}`)).status === 200);
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
    delete env.OS_AUTH_TYPE;
    delete env.OS_ENDPOINT;
    const openstack = async (...args: string[]) =>
      (await run('openstack', ['--os-auth-type', 'none', '--os-endpoint', edge.url, ...args], { env, cwd: work })).stdout;
    const list = JSON.parse(await openstack('image', 'list', '-f', 'json')) as Array<{ ID: string; Name: string; Status: string }>;
    const row = list.find((i) => i.ID === image.id);
    assert.ok(row !== undefined, `image list at the edge lacks ${image.id}: ${JSON.stringify(list)}`);
    assert.equal(row.Name, 'for-the-cli');
    assert.equal(row.Status, 'queued');
    const shown = JSON.parse(await openstack('image', 'show', '-f', 'json', image.id));
    assert.equal(shown.id, image.id);
    assert.equal(shown.name, 'for-the-cli');
    assert.equal(shown.disk_format, 'raw');
    const byName = JSON.parse(await openstack('image', 'show', '-f', 'json', 'for-the-cli'));
    assert.equal(byName.id, image.id);
  });

  describe('cut off from central', () => {
    it('blackhole: the edge and far edge serve every image, writes to central\'s images fail with 503 in time; after healing, changes arrive by themselves', async () => {
      const before = await listImages(central, 'limit=1000');
      assert.ok(before.images.length > 3);
      await eventually('the far edge is in step', 30_000, async () => sameSet(ids(await listImages(far, 'limit=1000')), ids(before)));

      wanA.blackhole();
      try {
        // Reads are served from the replicas.
        for (const site of [edge, far]) {
          assert.ok(sameSet(ids(await listImages(site, 'limit=1000')), ids(before)), `${site.url} lists every image`);
          for (const image of before.images) {
            const shown = await getImage(site, image.id);
            assert.equal(shown.name, image.name);
            assert.equal(shown.status, image.status);
          }
          const named = before.images.find((i) => i.name === 'made-far-2')!;
          assert.deepEqual(ids(await listImages(site, 'name=made-far-2')), [named.id]);
          expectStatus(await call(site, 'GET', '/v2/schemas/image'), 200);
          expectStatus(await call(site, 'GET', '/v2/schemas/images'), 200);
        }
        // Changes to central's images need central: 503 in Glance's shape within the parent
        // timeout (images created while cut off are another matter: offline-writes.test.ts).
        for (const site of [edge, far]) {
          const t0 = performance.now();
          const patch = await patchImage(site, before.images[0].id, [{ op: 'add', path: '/never', value: 'x' }], { accept: 'application/json' });
          const ms = performance.now() - t0;
          expectGlance503(patch);
          assert.ok(ms < PARENT_TIMEOUT_MS + 1000, `${site.url}: 503 took ${ms} ms`);
        }
        // Uploads too (a read of the bytes is forwarded as well: nothing is cached at the edge yet).
        const up = await call(far, 'PUT', `/v2/images/${before.images[0].id}/file`, {
          body: bytesOf(1000, 3), headers: { 'content-type': 'application/octet-stream', accept: 'application/json' },
        });
        expectGlance503(up);

        // The edge knows it has lost its parent.
        const s1 = (await status(edge)).replication;
        await sleep(1100);
        const s2 = (await status(edge)).replication;
        assert.ok(s2.seconds_since_contact >= s1.seconds_since_contact + 1, `seconds_since_contact ${s1.seconds_since_contact} → ${s2.seconds_since_contact}`);
        assert.ok(s2.seconds_since_contact > FEED_WAIT_SECONDS, JSON.stringify(s2));
        // The far edge's own parent (the edge) is still there.
        assert.ok((await status(far)).replication.seconds_since_contact <= FEED_WAIT_SECONDS + 1);

        // Meanwhile, central changes.
        const added = await createImage(central, { name: 'during-the-cut' });
        expectStatus(await patchImage(central, before.images[0].id, [{ op: 'add', path: '/cut_note', value: 'patched during the cut' }]), 200);
        await sleep(300);
        expectStatus(await call(edge, 'GET', `/v2/images/${added.id}`), 404);
        expectStatus(await call(far, 'GET', `/v2/images/${added.id}`), 404);

        wanA.heal();
        const t0 = performance.now();
        for (const site of [edge, far]) {
          await eventually(`${site.url} catches up after healing`, 30_000, async () => {
            const a = await call<ImageJson>(site, 'GET', `/v2/images/${added.id}`);
            const p = await call<ImageJson>(site, 'GET', `/v2/images/${before.images[0].id}`);
            return a.status === 200 && a.body.name === 'during-the-cut' && p.body.cut_note === 'patched during the cut';
          });
        }
        assert.ok(performance.now() - t0 < 10_000);
        const s3 = (await status(edge)).replication;
        assert.ok(s3.seconds_since_contact < FEED_WAIT_SECONDS + 1, JSON.stringify(s3));
        assert.equal(s3.last_error, null);

        // Writes work again, at both.
        for (const site of [edge, far]) {
          const created = await call<ImageJson>(site, 'POST', '/v2/images', { json: { name: 'after-heal' } });
          expectStatus(created, 201);
          expectStatus(await call(site, 'GET', `/v2/images/${created.body.id}`), 200);
          expectStatus(await call(central, 'GET', `/v2/images/${created.body.id}`), 200);
        }
      } finally {
        wanA.heal();
      }
    });

    it('refuse: writes to central\'s images fail with 503 promptly, reads are served', async () => {
      const known = (await listImages(central, 'limit=5')).images[0];
      wanA.refuse();
      try {
        for (const site of [edge, far]) {
          const t0 = performance.now();
          const res = await patchImage(site, known.id, [{ op: 'add', path: '/refused', value: 'x' }], { accept: 'application/json' });
          const ms = performance.now() - t0;
          expectGlance503(res);
          assert.ok(ms < PARENT_TIMEOUT_MS / 2, `${site.url}: 503 took ${ms} ms, not prompt`);
          assert.equal((await getImage(site, known.id)).id, known.id);
        }
      } finally {
        wanA.heal();
      }
      await eventually('writes work again', 30_000, async () => (await call(edge, 'POST', '/v2/images', { json: { name: 'after-refuse' } })).status === 201);
    });

    it('latency: 200 ms each way slows writes down but they succeed, read-your-write holds', async () => {
      wanA.latency(200);
      try {
        const t0 = performance.now();
        const created = await call<ImageJson>(edge, 'POST', '/v2/images', { json: { name: 'slow-edge' } });
        const ms = performance.now() - t0;
        expectStatus(created, 201);
        assert.ok(ms >= 400, `a round trip over a 200 ms link took ${ms} ms`);
        assert.equal((await getImage(edge, created.body.id)).name, 'slow-edge');

        const fromFar = await call<ImageJson>(far, 'POST', '/v2/images', { json: { name: 'slow-far' } });
        expectStatus(fromFar, 201);
        assert.equal((await getImage(far, fromFar.body.id)).name, 'slow-far');
        const patched = await patchImage(far, fromFar.body.id, [{ op: 'add', path: '/slow', value: 'yes' }]);
        expectStatus(patched, 200);
        assert.equal((await getImage(far, fromFar.body.id)).slow, 'yes');

        // Central's changes still flow down, just later.
        const c = await createImage(central, { name: 'slow-down' });
        await eventually('far edge gets it over the slow link', 30_000, async () => (await call(far, 'GET', `/v2/images/${c.id}`)).status === 200);
      } finally {
        wanA.pass();
      }
    });

    it('an upload at a cut-off edge answers 503 before taking the bytes; healed, the bytes stay at the edge and central records them', async () => {
      const data = bytesOf(1024 * 1024, 13);
      const image = await createImage(edge, { name: 'upload-while-cut', disk_format: 'raw', container_format: 'bare' });
      wanA.blackhole();
      try {
        const t0 = performance.now();
        expectGlance503(await upload(edge, image.id, data, undefined, { accept: 'application/json' }));
        assert.ok(performance.now() - t0 < PARENT_TIMEOUT_MS + 1000, 'the 503 came within the parent timeout');
      } finally {
        wanA.heal();
      }
      assert.equal((await getImage(central, image.id)).status, 'queued');
      expectStatus(await upload(edge, image.id, data), 204);
      const atCentral = await getImage(central, image.id);
      assert.equal(atCentral.status, 'active');
      assert.equal(atCentral.stores, 'edge-1');
    });

    it('blackhole between the far edge and the edge only: the edge writes, the far edge serves reads and catches up after healing', async () => {
      const known = (await listImages(central, 'limit=1000')).images;
      wanB.blackhole();
      let made: ImageJson;
      try {
        const t0 = performance.now();
        const res = await patchImage(far, known[0]!.id, [{ op: 'add', path: '/never_far', value: 'x' }], { accept: 'application/json' });
        expectGlance503(res);
        assert.ok(performance.now() - t0 < PARENT_TIMEOUT_MS + 1000);
        assert.ok(sameSet(ids(await listImages(far, 'limit=1000')), known.map((i) => i.id)));
        made = await createImage(edge, { name: 'edge-during-far-cut' });
        expectStatus(await call(far, 'GET', `/v2/images/${made.id}`), 404);
      } finally {
        wanB.heal();
      }
      await eventually('far edge catches up', 30_000, async () => (await call(far, 'GET', `/v2/images/${made.id}`)).status === 200);
      expectStatus(await call(far, 'POST', '/v2/images', { json: { name: 'far-after-heal' } }), 201);
    });

    it('bandwidth: an upload at the far edge does not cross the slow link; the bytes read back there and at central', async () => {
      const data = bytesOf(1024 * 1024, 11);
      wanA.bandwidth(64 * 1024);
      try {
        const image = await createImage(far, { name: 'narrow-link', disk_format: 'raw', container_format: 'bare' });
        const t0 = performance.now();
        expectStatus(await upload(far, image.id, data), 204);
        const ms = performance.now() - t0;
        assert.ok(ms < 8000, `1 MiB stays at the far edge: the upload took ${ms} ms, crossing 64 KiB/s would take 16 s`);
        assert.equal((await getImage(far, image.id)).status, 'active');
        for (const site of [far, central]) {
          const file = await site.request(`/v2/images/${image.id}/file`);
          assert.equal(file.status, 200);
          assert.ok(Buffer.from(await file.arrayBuffer()).equals(data));
        }
      } finally {
        wanA.pass();
      }
    });
  });

  describe('metadata definitions', () => {
    const ADMIN = project('p-admin', 'admin');
    const ns = (name: string) => `/v2/metadefs/namespaces/${name}`;
    const shown = async (site: TestSite, name: string) => call(site, 'GET', ns(name), { headers: { accept: 'application/json' } });

    it('written at central or through an edge, they reach the far edge, and are read there while it is cut off', async () => {
      const created = await call(central, 'POST', '/v2/metadefs/namespaces', {
        as: ADMIN,
        json: {
          namespace: 'OS::Edge::Test', visibility: 'public', resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'edge_' }],
          properties: { zone: { title: 'Zone', type: 'string', enum: ['a', 'b'] } }, tags: [{ name: 'near' }],
        },
      });
      expectStatus(created, 201);
      // A write at the far edge goes up to central, and comes back down with the feed.
      expectStatus(await call(far, 'POST', `${ns('OS::Edge::Test')}/objects`, { as: ADMIN, json: { name: 'Placement', properties: { rack: { title: 'Rack', type: 'integer' } } } }), 201);
      expectStatus(await call(far, 'POST', '/v2/metadefs/namespaces', { as: ADMIN, json: { namespace: 'edge-private', owner: 'p-edge' } }), 201);
      const atCentral = (await shown(central, 'OS::Edge::Test')).body;
      assert.deepEqual(atCentral.objects.map((o: any) => o.name), ['Placement']);
      for (const site of [edge, far]) {
        await eventually(`${site.url} holds both namespaces`, 30_000, async () =>
          (await shown(site, 'OS::Edge::Test')).body?.objects?.length === 1 && (await shown(site, 'edge-private')).status === 200);
      }

      wanA.blackhole();
      try {
        for (const site of [edge, far]) {
          const res = await shown(site, 'OS::Edge::Test');
          expectStatus(res, 200);
          assert.deepEqual(res.body, atCentral, `${site.url} shows the namespace as central does`);
          const list = await call(site, 'GET', '/v2/metadefs/namespaces?resource_types=OS::Glance::Image', { as: project('p-other') });
          assert.deepEqual(list.body.namespaces.map((n: any) => n.namespace), ['OS::Edge::Test']);
          expectStatus(await call(site, 'GET', ns('edge-private'), { as: project('p-other') }), 404);
          expectStatus(await call(site, 'GET', ns('edge-private'), { as: project('p-edge') }), 200);
          expectStatus(await call(site, 'GET', '/v2/metadefs/resource_types'), 200);
          expectStatus(await call(site, 'GET', '/v2/schemas/metadefs/namespace'), 200);
          const prop = await call(site, 'GET', `${ns('OS::Edge::Test')}/properties/edge_zone?resource_type=OS::Glance::Image`);
          expectStatus(prop, 200);
          assert.equal(prop.body.name, 'zone');
          // Writes need central.
          expectGlance503(await call(site, 'POST', `${ns('OS::Edge::Test')}/tags/far`, { as: ADMIN, headers: { accept: 'application/json' } }));
        }
      } finally {
        wanA.pass();
      }
      expectStatus(await call(edge, 'DELETE', ns('edge-private'), { as: ADMIN }), 204);
      await eventually('the far edge sees the delete', 30_000, async () => (await shown(far, 'edge-private')).status === 404);
    });
  });
});

async function status(site: TestSite): Promise<any> {
  const res = await call(site, 'GET', '/outpost/v1/status');
  expectStatus(res, 200);
  return res.body;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

function expectGlance503(res: { status: number; text: string; headers: Headers; body: any }): void {
  expectStatus(res as any, 503);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(res.body.code, '503 Service Unavailable');
  assert.equal(res.body.title, 'Service Unavailable');
  assert.match(res.body.message, /parent site .* could not be reached/);
  assert.ok(res.body.message.endsWith('<br /><br />\n\n\n'));
}
