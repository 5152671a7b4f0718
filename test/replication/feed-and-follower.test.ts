import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ParentClient } from '../../src/links/parent-client.ts';
import { Follower } from '../../src/replication/follower.ts';
import { bytesOf, call, createActiveImage, createImage, expectStatus, patchImage } from '../helpers/glance-client.ts';
import { startTestSite, tempDir, type TestSite } from '../helpers/site.ts';

const quiet = pino({ level: 'silent' });

async function eventually(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) assert.fail('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('change feed and follower', () => {
  let central: TestSite;
  let replica: SqlCatalog;
  let follower: Follower;
  let replicaPath: string;

  before(async () => {
    central = await startTestSite();
    replicaPath = join(await tempDir(), 'replica.sqlite');
    replica = await openCatalog(replicaPath);
    follower = new Follower({ replica, parent: new ParentClient({ url: central.url, timeoutMs: 5000 }), log: quiet, waitSeconds: 5, auditIntervalSeconds: 0 });
    await follower.start();
  });
  after(async () => {
    await follower.close();
    await replica.close();
    await central.close();
  });

  it('serves changes since a position, and long-polls until one arrives', async () => {
    const first = await call(central, 'GET', '/outpost/v1/changes?since=0');
    expectStatus(first, 200);
    const lastSeq = first.body.last_seq as number;
    const started = Date.now();
    const pending = call(central, 'GET', `/outpost/v1/changes?since=${lastSeq}&wait=5`);
    await new Promise((r) => setTimeout(r, 200));
    const image = await createImage(central, { name: 'long-poll' });
    const res = await pending;
    expectStatus(res, 200);
    assert.ok(Date.now() - started < 3000, 'the long poll returned when the change arrived');
    assert.deepEqual(res.body.changes.map((c: { entity: string; id: string; op: string }) => [c.entity, c.id, c.op]), [['image', image.id, 'upsert']]);
    expectStatus(await call(central, 'GET', '/outpost/v1/changes?since=abc'), 400);
    expectStatus(await call(central, 'GET', '/outpost/v1/changes', { as: { 'x-project-id': 'p1' } }), 403);
  });

  it('replicates creates, patches, tags, members and deletes', async () => {
    const image = await createActiveImage(central, bytesOf(2048), { name: 'replicated', visibility: 'shared' });
    expectStatus(await patchImage(central, image.id, [{ op: 'add', path: '/os_distro', value: 'debian' }]), 200);
    expectStatus(await call(central, 'PUT', `/v2/images/${image.id}/tags/edge`), 204);
    expectStatus(await call(central, 'POST', `/v2/images/${image.id}/members`, { json: { member: 'project-b' } }), 200);
    await eventually(async () => {
      const r = await replica.getImage(image.id);
      return r?.properties.os_distro === 'debian' && r.tags.includes('edge') && (await replica.getMember(image.id, 'project-b')) !== undefined;
    }, 1000);
    const copy = await replica.getImage(image.id);
    assert.equal(copy?.checksum, image.checksum);
    assert.deepEqual(copy?.locations.map((l) => l.store), ['central']);

    expectStatus(await call(central, 'DELETE', `/v2/images/${image.id}`), 204);
    await eventually(async () => (await replica.getImage(image.id)) === undefined);
    assert.equal(await replica.getMember(image.id, 'project-b'), undefined);
    assert.equal(follower.status().lastError, null);
    assert.equal(follower.status().position, (await call(central, 'GET', '/outpost/v1/changes?since=0&limit=1')).body.last_seq);
  });

  it('applying a batch twice leaves the same replica (idempotent)', async () => {
    const image = await createImage(central, { name: 'twice' });
    await eventually(async () => (await replica.getImage(image.id)) !== undefined);
    const { changes } = (await call(central, 'GET', '/outpost/v1/changes?since=0&limit=5000')).body;
    const before = await replica.snapshot();
    await replica.apply(changes, await replica.position());
    const afterApply = await replica.snapshot();
    assert.deepEqual(afterApply.images, before.images);
    assert.deepEqual(afterApply.members, before.members);
    assert.deepEqual(afterApply.deleted, before.deleted);
  });

  it('the audit finds a replica row altered behind the follower\'s back and repairs it', async () => {
    const image = await createImage(central, { name: 'audited', os_distro: 'debian' });
    await eventually(async () => (await replica.getImage(image.id)) !== undefined);
    assert.deepEqual(await follower.audit(), { result: 'ok', seq: follower.status().position, mismatched: [] });

    const db = new DatabaseSync(replicaPath);
    db.prepare('update images set name = ? where id = ?').run('tampered', image.id);
    db.prepare('delete from image_properties where image_id = ?').run(image.id);
    db.close();
    assert.equal((await replica.getImage(image.id))?.name, 'tampered');

    const result = await follower.audit();
    assert.equal(result.result, 'repaired');
    assert.deepEqual(result.mismatched, ['images']);
    const repaired = await replica.getImage(image.id);
    assert.equal(repaired?.name, 'audited');
    assert.equal(repaired?.properties.os_distro, 'debian');
    assert.equal(follower.status().audit.repairs, 1);
    assert.equal((await follower.audit()).result, 'ok');
    const status = await call(central, 'POST', '/outpost/v1/audit', { headers: { accept: 'application/json' } });
    expectStatus(status, 400);
  });

  it('the site trims its change log to change_log_retain; a follower behind it reloads from the snapshot', async () => {
    const site = await startTestSite({ change_log_retain: 2 });
    const dir = await tempDir();
    const late = await openCatalog(join(dir, 'late.sqlite'));
    try {
      const a = await createImage(site, { name: 'kept' });
      const gone = await createImage(site, { name: 'gone' });
      expectStatus(await call(site, 'DELETE', `/v2/images/${gone.id}`), 204);
      for (let i = 0; i < 3; i++) expectStatus(await patchImage(site, a.id, [{ op: 'add', path: `/p${i}`, value: 'x' }]), 200);
      // The log keeps about the newest two changes: a new follower at 0 is too far behind.
      await eventually(async () => (await call(site, 'GET', '/outpost/v1/changes?since=0')).status === 410);
      const { changes } = (await call<{ changes: unknown[] }>(site, 'GET', '/outpost/v1/changes?since=4')).body;
      assert.ok(changes.length <= 3, `kept ${changes.length} changes`);

      const f = new Follower({ replica: late, parent: new ParentClient({ url: site.url, timeoutMs: 5000 }), log: quiet, waitSeconds: 1 });
      await f.start();
      await eventually(async () => (await late.getImage(a.id)) !== undefined);
      assert.equal(await late.getImage(gone.id), undefined);
      const b = await createImage(site, { name: 'after-reload' });
      await eventually(async () => (await late.getImage(b.id)) !== undefined);
      await f.close();
    } finally {
      await late.close();
      await site.close();
    }
  });
});
