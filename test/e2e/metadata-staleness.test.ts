import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { FaultProxy } from '../../test-support/fault-proxy.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

let dir: string;
let central: ServeProcess;
let edge: ServeProcess;
let wan: FaultProxy;

const json = async (url: string, init?: RequestInit) => (await fetch(url, init)).json() as Promise<Record<string, any>>;

before(async () => {
  dir = await tempDir();
  central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(dir, 'central')]);
  wan = await FaultProxy.start({ target: { host: '127.0.0.1', port: Number(new URL(central.url).port) } });
  edge = await spawnServe(['--role', 'edge', '--site', 'edge-1', '--parent', wan.url, '--listen', '127.0.0.1:0', '--data', join(dir, 'edge')], {
    OUTPOST_METADATA_MAX_STALENESS: '1', OUTPOST_FEED_WAIT_SECONDS: '30', OUTPOST_PARENT_TIMEOUT_MS: '1000',
  });
});
after(async () => {
  await edge?.stop();
  await central?.stop();
  await wan?.close();
  await rm(dir, { recursive: true, force: true });
});

it('a stale replica revalidates a single-image read with the parent, and answers alone when the parent is away', async () => {
  const image = await json(`${central.url}/v2/images`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'v1' }),
  });
  for (const deadline = Date.now() + 60_000; (await fetch(`${edge.url}/v2/images/${image.id}`)).status !== 200 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));

  // Cut the link long enough for the replica to be stale; change the image at central meanwhile.
  wan.blackhole();
  await fetch(`${central.url}/v2/images/${image.id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    body: JSON.stringify([{ op: 'replace', path: '/name', value: 'v2' }]),
  });
  // Stale: no contact with the parent for longer than metadata_max_staleness (1 s).
  while (!((await json(`${edge.url}/outpost/v1/status`)).replication.seconds_since_contact > 1.2)) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await json(`${edge.url}/v2/images/${image.id}`)).name, 'v1', 'parent away: the replica answers');

  // The link is back but the follower's long poll (30 s) has not noticed yet: once a probe sees
  // the parent again (about a second), reads are revalidated.
  wan.heal();
  const healed = performance.now();
  while ((await json(`${edge.url}/v2/images/${image.id}`)).name !== 'v2') {
    // Well before the long poll (30 s) would have brought the change.
    assert.ok(performance.now() - healed < 20_000, 'reads are revalidated again within 20 s of the parent coming back');
    await new Promise((r) => setTimeout(r, 50));
  }
});
