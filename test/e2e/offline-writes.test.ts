import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { bytesOf } from '../helpers/glance-client.ts';
import { download, eventually, loopbackTarget, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const cliSkip = await openstackClientsMissing();
const MiB = 1 << 20;
const HEARTBEAT_SECONDS = 10;
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const ENV = {
  OUTPOST_FEED_WAIT_SECONDS: '2', OUTPOST_PARENT_TIMEOUT_MS: '2000', OUTPOST_STORAGE_SYNC: 'false', OUTPOST_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
};

/**
 * Writes at an edge cut off from central (issue 17), real processes: central, edge-1 behind wanA
 * and edge-2 behind wanB (FaultProxies), far-1 below edge-1. edge-1 takes an image created, uploaded and changed
 * while it is cut off, keeps it through kill -9, and central and edge-2 have it once the link is
 * back; an image changed on both sides meanwhile keeps central's version, and says so.
 */
describe('writes at a cut-off edge, reconciled with central when the link returns', { timeout: 300_000 }, () => {
  let work: string;
  let central: ServeProcess;
  let edge1: ServeProcess;
  let edge2: ServeProcess;
  let far: ServeProcess;
  let wanA: FaultProxy;
  let wanB: FaultProxy;
  /** edge-1's arguments; restarted, it listens where it did (the far edge's parent URL). */
  const edge1Args = (listen = '127.0.0.1:0') => ['--listen', listen, '--data', join(work, 'edge-1'), '--role', 'edge', '--site', 'edge-1', '--parent', wanA.url];

  const api = async (url: string, method: string, path: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(`${url}${path}`, {
      method, body: body === undefined ? undefined : JSON.stringify(body), headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': type }) },
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) as any };
  };
  const image = async (url: string, id: string) => (await api(url, 'GET', `/v2/images/${id}`)).body;
  const patch = (url: string, id: string, ops: unknown[]) => api(url, 'PATCH', `/v2/images/${id}`, ops, 'application/openstack-images-v2.1-json-patch');
  /** Cuts edge-1 off and waits until it knows (its change feed failed): it then answers writes itself. */
  const cutOff = async () => {
    wanA.blackhole();
    await eventually('edge-1 knows it is cut off', 60_000, async () => (await api(edge1.url, 'GET', '/outpost/v1/status')).body.replication.last_error !== null);
  };
  const openstack = async (...args: string[]) => {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
    delete env.OS_AUTH_TYPE;
    delete env.OS_ENDPOINT;
    return (await run('openstack', ['--os-auth-type', 'none', '--os-endpoint', edge1.url, ...args], { env, cwd: work })).stdout;
  };

  before(async () => {
    work = await tempDir('outpost-e2e-offline-');
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central')], ENV);
    wanA = await FaultProxy.start({ target: loopbackTarget(central.url) });
    wanB = await FaultProxy.start({ target: loopbackTarget(central.url) });
    edge1 = await spawnServe(edge1Args(), ENV);
    edge2 = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'edge-2'), '--role', 'edge', '--site', 'edge-2', '--parent', wanB.url], ENV);
    far = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'far-1'), '--role', 'edge', '--site', 'far-1', '--parent', edge1.url], ENV);
  });
  after(async () => {
    for (const p of [far, edge1, edge2, central]) if (p !== undefined) await stopProcess(p);
    for (const w of [wanA, wanB]) await w?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('openstack image create --file (64 MiB) at the cut-off edge: served there at once, kept through kill -9, and at central and another edge within 2 heartbeat intervals of the heal', { skip: cliSkip }, async () => {
    const central1 = (await api(central.url, 'POST', '/v2/images', { name: 'central-owned', disk_format: 'raw', container_format: 'bare' })).body;
    await eventually('edge-1 has central\'s image', 30_000, async () => (await api(edge1.url, 'GET', `/v2/images/${central1.id}`)).status === 200);
    await cutOff();
    const data = bytesOf(64 * MiB, 81);
    await writeFile(join(work, 'disk.raw'), data);
    const created = JSON.parse(await openstack('image', 'create', '--file', join(work, 'disk.raw'), '--disk-format', 'raw', '--container-format', 'bare',
      '--property', 'site_note=made-offline', '-f', 'json', 'offline-disk'));
    await openstack('image', 'set', '--property', 'color=blue', '--tag', 'edge-made', created.id);
    // At the edge at once: listed, shown with its properties and the pending mark, downloaded whole.
    const shown = JSON.parse(await openstack('image', 'show', '-f', 'json', 'offline-disk'));
    assert.deepEqual([shown.id, shown.status, shown.size], [created.id, 'active', data.length]);
    assert.equal(shown.properties.color, 'blue');
    assert.equal(shown.properties.os_outpost_pending_sync, 'true');
    assert.equal(shown.properties.os_outpost_origin_site, 'edge-1');
    assert.ok((JSON.parse(await openstack('image', 'list', '-f', 'json')) as { ID: string }[]).some((i) => i.ID === created.id));
    const got = await download(edge1.url, created.id);
    assert.deepEqual([got.status, got.sha512], [200, sha512(data)]);
    // And below it: the far edge follows edge-1's own log, and gets the bytes from edge-1.
    await eventually('the far edge has it', 30_000, async () => (await api(far.url, 'GET', `/v2/images/${created.id}`)).body?.color === 'blue');
    assert.equal((await download(far.url, created.id)).sha512, sha512(data));
    // An image created and deleted while cut off never reaches central.
    const fleeting = (await api(edge1.url, 'POST', '/v2/images', { name: 'fleeting', disk_format: 'raw', container_format: 'bare' })).body;
    assert.equal((await api(edge1.url, 'DELETE', `/v2/images/${fleeting.id}`)).status, 204);
    // Central's images stay central's to change: 503 saying why.
    const refused = await patch(edge1.url, central1.id, [{ op: 'add', path: '/color', value: 'red' }]);
    assert.equal(refused.status, 503);
    assert.match(JSON.stringify(refused.body), /parent site .* could not be reached: this site \(edge-1\) is cut off/);
    assert.match(JSON.stringify(refused.body), /only images created at this site can be changed/);
    assert.equal((await api(central.url, 'GET', `/v2/images/${created.id}`)).status, 404, 'central does not have it yet');

    // kill -9 before the heal loses nothing.
    await edge1.stop('SIGKILL');
    edge1 = await spawnServe(edge1Args(new URL(edge1.url).host), ENV);
    const afterKill = await image(edge1.url, created.id);
    assert.deepEqual([afterKill.status, afterKill.color, afterKill.os_outpost_pending_sync], ['active', 'blue', 'true']);
    assert.equal((await download(edge1.url, created.id)).sha512, sha512(data));

    const healed = Date.now();
    wanA.pass();
    await eventually('central and edge-2 have the image', 2 * HEARTBEAT_SECONDS * 1000, async () =>
      (await api(central.url, 'GET', `/v2/images/${created.id}`)).status === 200 && (await api(edge2.url, 'GET', `/v2/images/${created.id}`)).status === 200);
    const seconds = (Date.now() - healed) / 1000;
    await eventually('the far edge has central\'s version', 30_000, async () => (await image(far.url, created.id)).os_outpost_pending_sync === undefined);
    for (const url of [central.url, edge2.url, edge1.url, far.url]) {
      const there = await image(url, created.id);
      assert.deepEqual([there.id, there.name, there.status, there.color, there.site_note, there.tags, there.os_hash_value, there.os_outpost_origin_site, there.os_outpost_pending_sync],
        [created.id, 'offline-disk', 'active', 'blue', 'made-offline', ['edge-made'], sha512(data), 'edge-1', undefined], `at ${url}, ${seconds} s after the heal`);
    }
    for (const url of [central.url, edge2.url]) {
      const bytes = await download(url, created.id);
      assert.deepEqual([bytes.status, bytes.broken, bytes.sha512], [200, false, sha512(data)], url);
    }
    assert.equal((await api(central.url, 'GET', `/v2/images/${fleeting.id}`)).status, 404);
  });

  it('at a far edge below the cut-off edge, an image created and uploaded there: its bytes stay at the far edge, and central serves them after the heal', async () => {
    // edge-1's replica knows far-1 (registered at central through it) before the cut.
    await eventually('central has far-1', 30_000, async () => (await api(central.url, 'GET', '/outpost/v1/sites/far-1')).status === 200);
    const seq = (await api(central.url, 'GET', '/outpost/v1/status')).body.last_seq as number;
    await eventually('edge-1\'s replica is up to date', 30_000, async () => (await api(edge1.url, 'GET', '/outpost/v1/status')).body.replication.position >= seq);
    await cutOff();
    const data = bytesOf(3 * MiB + 7, 83);
    // The create goes to edge-1 (far-1's parent), which answers it itself; the bytes stay at far-1,
    // and edge-1 records their copy there.
    const made = await api(far.url, 'POST', '/v2/images', { name: 'far-made', disk_format: 'raw', container_format: 'bare' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.os_outpost_origin_site, 'edge-1');
    const up = await fetch(`${far.url}/v2/images/${made.body.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(up.status, 204, await up.text());
    const atFar = await image(far.url, made.body.id);
    assert.deepEqual([atFar.status, atFar.stores, atFar.os_outpost_pending_sync], ['active', 'far-1', 'true']);
    assert.equal((await download(far.url, made.body.id)).sha512, sha512(data));
    wanA.pass();
    await eventually('central has it, located at far-1', 2 * HEARTBEAT_SECONDS * 1000, async () => (await api(central.url, 'GET', `/v2/images/${made.body.id}`)).body?.stores === 'far-1');
    for (const url of [central.url, edge2.url]) {
      const bytes = await download(url, made.body.id);
      assert.deepEqual([bytes.status, bytes.broken, bytes.sha512], [200, false, sha512(data)], url);
    }
  });

  it('the same image changed at central and at the cut-off edge: central\'s version is kept, and the conflict is visible at both', async () => {
    // An image created at edge-1 (while cut off), known to central since.
    await cutOff();
    const made = (await api(edge1.url, 'POST', '/v2/images', { name: 'contested', disk_format: 'raw', container_format: 'bare', color: 'white' })).body;
    wanA.pass();
    await eventually('central has it', 30_000, async () => (await api(central.url, 'GET', `/v2/images/${made.id}`)).status === 200);
    await eventually('edge-1 has central\'s version', 30_000, async () => (await image(edge1.url, made.id)).os_outpost_pending_sync === undefined);

    await cutOff();
    assert.equal((await patch(edge1.url, made.id, [{ op: 'replace', path: '/color', value: 'green' }])).status, 200);
    assert.equal((await patch(central.url, made.id, [{ op: 'replace', path: '/color', value: 'red' }])).status, 200);
    assert.equal((await image(edge1.url, made.id)).color, 'green', 'the edge shows its own write while cut off');
    wanA.pass();
    await eventually('edge-1 takes central\'s version', 60_000, async () => (await image(edge1.url, made.id)).color === 'red');
    for (const url of [central.url, edge1.url]) {
      const there = await image(url, made.id);
      assert.equal(there.color, 'red');
      assert.match(there.os_outpost_conflict, /edge-1 changed this image while cut off .*central's version, changed at .* was kept/);
    }
    await eventually('edge-1 logged the conflict', 30_000, async () => /central kept its own version of an image written here while cut off/.test(edge1.stdout()));
  });
});
