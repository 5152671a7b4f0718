import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RoundRobinProxy } from '../../test-support/round-robin-proxy.ts';
import { bytesOf, call, createActiveImage } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const ENV = { OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_PARENT_TIMEOUT_MS: '2000', OUTPOST_STORAGE_SYNC: 'false', OUTPOST_HEARTBEAT_SECONDS: '5' };

/**
 * An edge whose parent is a region's nodes behind a load balancer, as a region with several
 * stateless nodes is run: with every node down, the link does not fail to connect — the balancer
 * answers 502 for them. Real processes: central, a RoundRobinProxy (test-support; 502 when no
 * backend takes the connection, as HAProxy and nginx do) in front of it, and edge-1 whose
 * `--parent` is the balancer.
 */
describe('an edge whose parent is behind a load balancer, with none of the parent\'s nodes up', { timeout: 180_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let balancer: RoundRobinProxy;
  let edge: ServeProcess;
  const api = (url: string, method: string, path: string, json?: unknown) => call(siteAt(url), method, path, { json, headers: { accept: 'application/json' } });
  const centralArgs = (listen: string) => ['--listen', listen, '--data', join(work, 'central')];
  const uploaded = async (name: string, data: Buffer) => (await createActiveImage(siteAt(central.url), data, { name })).id;

  before(async () => {
    work = await tempDir('outpost-e2e-balancer-');
    central = await spawnServe(centralArgs('127.0.0.1:0'), ENV);
    balancer = await RoundRobinProxy.start([loopbackTarget(central.url)]);
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge-1'), '--role', 'edge', '--site', 'edge-1', '--parent', balancer.url], ENV);
  });
  after(async () => {
    for (const p of [edge, central]) if (p !== undefined) await stopProcess(p);
    await balancer?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('the edge is cut off, not answered: it serves what it holds, takes writes itself, and hands them to central once a node is back', async () => {
    const heldData = bytesOf(MiB + 3, 91);
    const coldData = bytesOf(MiB + 5, 92);
    const held = await uploaded('held', heldData);
    const cold = await uploaded('cold', coldData);
    await eventually('the edge has both images', 30_000, async () =>
      (await api(edge.url, 'GET', `/v2/images/${held}`)).body?.status === 'active' && (await api(edge.url, 'GET', `/v2/images/${cold}`)).body?.status === 'active');
    assert.equal((await download(edge.url, held)).sha512, sha512(heldData));
    await eventually('the edge holds a copy', 30_000, async () => (await api(edge.url, 'GET', '/v2/cache')).body.cached_images.some((c: { image_id: string }) => c.image_id === held));

    const address = new URL(central.url).host;
    await stopProcess(central);
    const gateway = await fetch(`${balancer.url}/outpost/v1/status`);
    assert.equal(gateway.status, 502, 'the balancer answers for the stopped node');
    await gateway.body?.cancel();
    await eventually('the edge knows its parent is away', 30_000, async () =>
      /gateway answered for it with HTTP 502/.test(String((await api(edge.url, 'GET', '/outpost/v1/status')).body.replication.last_error)));

    // What it holds: metadata and bytes.
    assert.equal((await api(edge.url, 'GET', `/v2/images/${held}`)).body.name, 'held');
    const got = await download(edge.url, held);
    assert.deepEqual([got.status, got.broken, got.sha512], [200, false, sha512(heldData)]);
    // What it does not hold: Glance's 503, saying the parent cannot be reached, not the balancer's page.
    const missing = await fetch(`${edge.url}/v2/images/${cold}/file`);
    const said = await missing.text();
    assert.equal(missing.status, 503, said);
    assert.match(said, /could not be reached|unreachable/i);
    assert.doesNotMatch(said, /^backend /);
    // A write: taken here, as at any cut-off edge (issue 17), not the balancer's 502 passed on.
    const written = await api(edge.url, 'POST', '/v2/images', { name: 'written-while-away', disk_format: 'raw', container_format: 'bare' });
    assert.equal(written.status, 201, JSON.stringify(written.body));
    assert.equal(written.body.os_outpost_pending_sync, 'true');

    // A node back behind the balancer: central gets the write, the edge answers from central again.
    central = await spawnServe(centralArgs(address), ENV);
    await eventually('central has the image written at the edge', 60_000, async () => (await api(central.url, 'GET', `/v2/images/${written.body.id}`)).status === 200);
    await eventually('the edge follows central again', 30_000, async () => {
      const status = (await api(edge.url, 'GET', '/outpost/v1/status')).body;
      return status.replication.last_error === null && (await api(edge.url, 'GET', `/v2/images/${written.body.id}`)).body?.os_outpost_pending_sync === undefined;
    });
    assert.equal((await download(edge.url, cold)).sha512, sha512(coldData));
  });
});
