import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ADMIN_CONTEXT } from '../../src/core/context.ts';
import { SiteRegistry } from '../../src/core/site-registry.ts';
import { tempDir } from '../helpers/site.ts';

let dir: string;
let catalog: SqlCatalog;
let clock = Date.UTC(2026, 0, 1);
let registry: SiteRegistry;

before(async () => {
  dir = await tempDir();
  catalog = await openCatalog(join(dir, 'catalog.sqlite'));
  registry = new SiteRegistry(catalog, catalog, () => new Date(clock));
  await registry.registerSelf({ id: 'central', labels: {}, public_url: 'http://central.test', stores: ['central'], version: '1' });
});
after(async () => {
  await catalog.close();
  await rm(dir, { recursive: true, force: true });
});

const edge = (labels: Record<string, string>, lag: number) => ({
  id: 'edge-1', parent: 'central', labels, public_url: 'http://edge-1.test', version: '1', stores: ['edge-1'], lag_changes: lag,
});

it('a refresh that changes nothing but the heartbeat adds no change to the log; the list shows the heartbeat; a new label is a change', async () => {
  const registered = await registry.register(ADMIN_CONTEXT, edge({ region: 'eu' }, 0));
  const seq = await catalog.lastSeq();
  clock += 30_000;
  const refreshed = await registry.register(ADMIN_CONTEXT, edge({ region: 'eu' }, 4));
  assert.equal(await catalog.lastSeq(), seq, 'no change replicated for a heartbeat');
  assert.equal(refreshed.registered_at, registered.registered_at);
  const listed = (await registry.list()).find((s) => s.id === 'edge-1')!;
  assert.deepEqual([listed.last_contact, listed.lag_changes], [new Date(clock).toISOString(), 4]);
  assert.deepEqual(listed.labels, { region: 'eu' });

  clock += 30_000;
  await registry.register(ADMIN_CONTEXT, edge({ region: 'us' }, 0));
  assert.equal(await catalog.lastSeq(), seq + 1);
  assert.deepEqual((await catalog.getSite('edge-1'))?.labels, { region: 'us' });
  assert.equal((await registry.list()).find((s) => s.id === 'edge-1')!.last_contact, new Date(clock).toISOString());

  assert.equal(await catalog.deleteSite('edge-1'), true);
  assert.equal((await catalog.listHeartbeats()).has('edge-1'), false);
});
