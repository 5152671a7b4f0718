import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RoundRobinProxy } from '../../test-support/round-robin-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { sleep } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';
import { openstackClientsSuite } from '../integration/openstack-clients-suite.ts';

/**
 * Two `outpost serve` processes sharing one PostgreSQL catalog and one set of stores (shared
 * directories, as an NFS or CephFS mount would be) behind a round-robin balancer: one central.
 */
interface Pair {
  nodes: ServeProcess[];
  proxy: RoundRobinProxy;
  storeDir: string;
  stop(): Promise<void>;
}

const MiB = 1024 * 1024;

async function startPair(work: string, stores: string[] = ['central']): Promise<Pair> {
  const database = await createTestDatabase();
  const storeArgs = stores.flatMap((id) => ['--store', `${id}=file:${join(work, `store-${id}`)}`]);
  const nodes: ServeProcess[] = [];
  let proxy: RoundRobinProxy | undefined;
  const stop = async () => {
    await proxy?.close();
    for (const node of nodes) await stopProcess(node);
    await database.drop();
  };
  try {
    // One after the other: the first creates the schema (a second would wait on the migration lock).
    for (const n of [1, 2]) {
      nodes.push(await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, `node-${n}`), '--database-url', database.url,
        '--staging-path', join(work, 'staging'), ...storeArgs],
        { OUTPOST_STORAGE_SYNC: 'false' }));
    }
    proxy = await RoundRobinProxy.start(nodes.map((node) => loopbackTarget(node.url)));
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, proxy, storeDir: join(work, `store-${stores[0]}`), stop };
}

openstackClientsSuite('two central nodes on PostgreSQL behind a round-robin balancer', postgresSkip || await openstackClientsMissing(), async (work) => {
  const pair = await startPair(work);
  return { url: pair.proxy.url, storeDir: pair.storeDir, stop: pair.stop };
});

describe('two central nodes on one PostgreSQL catalog', { skip: postgresSkip, timeout: 600_000 }, () => {
  let work: string;
  let pair: Pair;
  let edge: ServeProcess;
  const json = async (url: string, path: string, init: RequestInit = {}) => {
    const res = await fetch(`${url}${path}`, { ...init, headers: { 'content-type': 'application/json', ...init.headers } });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  };

  before(async () => {
    work = await tempDir('outpost-pair-');
    pair = await startPair(work, ['central', 'b']);
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge'), '--role', 'edge', '--site', 'edge-1', '--parent', pair.proxy.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_FEED_WAIT_SECONDS: '2' });
  });
  after(async () => {
    if (edge !== undefined) await stopProcess(edge);
    await pair?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('8 writers across both nodes for 30 s: the edge following the pair ends with a replica identical to the catalog', async () => {
    const writeMs = Number(process.env.TEST_WRITE_MS ?? 30_000);
    const stopAt = Date.now() + writeMs;
    const url = pair.proxy.url;
    const writer = async (w: number) => {
      const mine: string[] = [];
      let writes = 0;
      while (Date.now() < stopAt) {
        const roll = Math.random();
        if (mine.length === 0 || roll < 0.35) {
          const r = await json(url, '/v2/images', { method: 'POST', body: JSON.stringify({ name: `w${w}-${writes}`, disk_format: 'raw', container_format: 'bare' }) });
          assert.equal(r.status, 201, JSON.stringify(r.body));
          mine.push(r.body.id);
        } else if (roll < 0.8) {
          const id = mine[Math.floor(Math.random() * mine.length)]!;
          const r = await json(url, `/v2/images/${id}`, {
            method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
            body: JSON.stringify([{ op: 'add', path: '/writer_step', value: String(writes) }]),
          });
          assert.equal(r.status, 200, JSON.stringify(r.body));
        } else if (roll < 0.9) {
          const id = mine[Math.floor(Math.random() * mine.length)]!;
          assert.equal((await fetch(`${url}/v2/images/${id}/tags/t${writes}`, { method: 'PUT' })).status, 204);
        } else {
          const id = mine.splice(Math.floor(Math.random() * mine.length), 1)[0]!;
          assert.equal((await fetch(`${url}/v2/images/${id}`, { method: 'DELETE' })).status, 204);
        }
        writes++;
      }
      return writes;
    };
    const sentBefore = [...pair.proxy.sent];
    const writes = (await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)))).reduce((a, b) => a + b, 0);
    assert.ok(writes > 200, `only ${writes} writes in ${writeMs} ms`);
    assert.ok(pair.proxy.sent.every((n, i) => n - sentBefore[i]! > writes / 4), `both nodes took writes: ${pair.proxy.sent}`);
    // Each node's catalog is the one catalog: both digest it alike.
    const [one, two] = await Promise.all(pair.nodes.map((node) => json(node.url, '/outpost/v1/digest')));
    assert.deepEqual(one!.body, two!.body);
    await eventually('the edge\'s replica equals the catalog', 120_000, async () => {
      const [central, replica] = await Promise.all([json(pair.proxy.url, '/outpost/v1/digest'), json(edge.url, '/outpost/v1/digest')]);
      return JSON.stringify(central.body.digests) === JSON.stringify(replica.body.digests);
    });
  });

  it('glance-direct: data staged through one node is imported through the other (a shared staging path)', async () => {
    const [first, second] = pair.nodes as [ServeProcess, ServeProcess];
    const bytes = randomBytes(3 * MiB + 5);
    const id: string = (await json(first.url, '/v2/images', { method: 'POST', body: JSON.stringify({ name: 'staged', disk_format: 'raw', container_format: 'bare' }) })).body.id;
    const staged = await fetch(`${first.url}/v2/images/${id}/stage`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    assert.equal(staged.status, 204, await staged.text());
    const imported = await fetch(`${second.url}/v2/images/${id}/import`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ method: { name: 'glance-direct' } }),
    });
    assert.equal(imported.status, 202, await imported.text());
    await eventually('the image is active', 60_000, async () => (await json(pair.proxy.url, `/v2/images/${id}`)).body.status === 'active');
    const got = await download(pair.proxy.url, id);
    assert.equal(got.sha512, createHash('sha512').update(bytes).digest('hex'));
  });

  it('a policy that selects central: the image uploaded at the edge is fetched into the shared store once, by one of the two nodes', async () => {
    const bytes = randomBytes(6 * MiB + 11);
    const id: string = (await json(pair.proxy.url, '/v2/images', {
      method: 'POST', body: JSON.stringify({ name: 'kept-at-central', disk_format: 'raw', container_format: 'bare', visibility: 'public', tags: ['keep-central'] }),
    })).body.id;
    await eventually('the edge has the image', 30_000, async () => {
      const res = await fetch(`${edge.url}/v2/images/${id}`);
      await res.body?.cancel();
      return res.status === 200;
    });
    const put = await fetch(`${edge.url}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    assert.equal(put.status, 204, await put.text());
    const policy = await json(pair.proxy.url, '/outpost/v1/policies', {
      method: 'POST', body: JSON.stringify({ name: 'keep-central', images: { tags: ['keep-central'] }, sites: { ids: ['central'] }, mode: 'replicate' }),
    });
    assert.equal(policy.status, 201, JSON.stringify(policy.body));
    try {
      await eventually('central holds a copy', 60_000, async () => String((await json(pair.proxy.url, `/v2/images/${id}`)).body.stores).split(',').sort().join() === 'central,edge-1');
      assert.ok((await readdir(pair.storeDir)).includes(id));
      // Both nodes run a placement agent; the copy was claimed by one, which alone fetched it.
      const transfers = (await Promise.all(pair.nodes.map(async (node) => (await json(node.url, '/outpost/v1/transfers')).body.transfers as { image_id: string; state: string }[])))
        .flat().filter((t) => t.image_id === id);
      assert.deepEqual(transfers.map((t) => t.state), ['done'], JSON.stringify(transfers));
      assert.equal((await download(pair.proxy.url, id)).sha512, createHash('sha512').update(bytes).digest('hex'));
    } finally {
      await json(pair.proxy.url, `/outpost/v1/policies/${policy.body.id}`, { method: 'DELETE' });
    }
  });

  it('kill -9 of the node running a copy-image: the other node takes the task over and finishes it', async () => {
    // 512 MiB: one random MiB repeated (each copy is still hashed and verified).
    const size = 512 * MiB;
    const block = randomBytes(MiB);
    const sha512 = createHash('sha512');
    for (let i = 0; i < size / MiB; i++) sha512.update(block);
    const expected = sha512.digest('hex');
    const [first, second] = pair.nodes as [ServeProcess, ServeProcess];
    const created = await json(first.url, '/v2/images', { method: 'POST', body: JSON.stringify({ name: 'big', disk_format: 'raw', container_format: 'bare' }) });
    const id: string = created.body.id;
    const body = Readable.toWeb(Readable.from((function* () { for (let i = 0; i < size / MiB; i++) yield block; })()));
    const uploaded = await fetch(`${first.url}/v2/images/${id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body, duplex: 'half',
    } as RequestInit);
    assert.equal(uploaded.status, 204, await uploaded.text());

    // The copy to b runs on the first node (it took the request); it dies once the copy is under way.
    const started = await fetch(`${first.url}/v2/images/${id}/import`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: { name: 'copy-image' }, stores: ['b'] }),
    });
    assert.equal(started.status, 202, await started.text());
    const partial = join(work, 'store-b', '.incomplete');
    await eventually('the copy to b is under way', 60_000, async () => (await readdir(partial).catch(() => [])).length > 0);
    first.child.kill('SIGKILL');
    await new Promise((resolve) => (first.child.exitCode !== null || first.child.signalCode !== null ? resolve(null) : first.child.once('exit', resolve)));
    assert.equal((await json(second.url, `/v2/images/${id}`)).body.stores, 'central', 'the copy was still running when its node died');

    // The second node sees the first unseen for 30 s, takes the task over and copies again.
    let task: Record<string, any> | undefined;
    for (const deadline = Date.now() + 180_000; Date.now() < deadline; await sleep(500)) {
      const tasks = (await json(second.url, `/v2/images/${id}/tasks`)).body.tasks as Record<string, any>[];
      task = tasks.find((t) => t.input.import_req.method.name === 'copy-image');
      if (task?.status === 'success' || task?.status === 'failure') break;
    }
    assert.equal(task?.status, 'success', `the other node must finish the task: ${JSON.stringify(task)}`);
    const image = (await json(pair.proxy.url, `/v2/images/${id}`)).body;
    assert.deepEqual(image.stores.split(',').sort(), ['b', 'central']);
    assert.equal(image.os_glance_failed_import, '');
    assert.equal(Object.hasOwn(image, 'os_glance_import_task'), false);
    assert.deepEqual(await readdir(join(work, 'store-b')).then((f) => f.filter((n) => n !== '.incomplete')), [id]);
    // The copy in b alone gives the image's bytes.
    assert.equal((await fetch(`${second.url}/v2/stores/central/${id}`, { method: 'DELETE' })).status, 204);
    const got = await download(second.url, id);
    assert.equal(got.sha512, expected);
    assert.equal(got.length, size);
  });
});

describe('two central nodes with Outpost\'s identity (auth keystone)', { skip: postgresSkip, timeout: 180_000 }, () => {
  const PASSWORD = 'pair-admin-secret';
  let work: string;
  let database: { url: string; drop(): Promise<void> };
  const nodes: ServeProcess[] = [];
  const tokenAt = async (url: string): Promise<string> => {
    const res = await fetch(`${url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth: {
        identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: PASSWORD } } },
        scope: { project: { name: 'admin', domain: { id: 'default' } } },
      } }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return res.headers.get('x-subject-token')!;
  };
  const listWith = async (url: string, token: string) => (await fetch(`${url}/v2/images`, { headers: { 'x-auth-token': token } })).status;

  before(async () => {
    work = await tempDir('outpost-pair-identity-');
    database = await createTestDatabase();
    // Both at once on an empty database: one migrates while the other waits, and both bootstrap.
    nodes.push(...await Promise.all([1, 2].map((n) => spawnServe(
      ['--listen', '127.0.0.1:0', '--data', join(work, `node-${n}`), '--database-url', database.url, '--auth', 'keystone',
        '--store', `central=file:${join(work, 'store')}`],
      { OUTPOST_ADMIN_PASSWORD: PASSWORD, OUTPOST_STORAGE_SYNC: 'false' }))));
  });
  after(async () => {
    for (const node of nodes) await stopProcess(node);
    await database?.drop();
    await rm(work, { recursive: true, force: true });
  });

  it('a token issued by one node is accepted by the other; revoked at the other, the first refuses it at once', async () => {
    const [one, two] = nodes as [ServeProcess, ServeProcess];
    const token = await tokenAt(one.url);
    assert.equal(await listWith(two.url, token), 200);
    assert.equal(await listWith(one.url, token), 200); // now in the first node's check cache
    const admin = await tokenAt(two.url);
    const revoked = await fetch(`${two.url}/identity/v3/auth/tokens`, { method: 'DELETE', headers: { 'x-auth-token': admin, 'x-subject-token': token } });
    assert.equal(revoked.status, 204);
    // The revocation's commit reaches the first node's cache through NOTIFY (no fixed wait: a bound).
    await eventually('the first node refuses the revoked token', 10_000, async () => (await listWith(one.url, token)) === 401);
    assert.equal(await listWith(two.url, token), 401);
    assert.equal(await listWith(one.url, admin), 200);
  });
});
