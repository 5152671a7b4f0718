import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { ConflictError, ServiceUnavailableError } from '../../src/core/errors.ts';
import type { Image } from '../../src/core/image.ts';
import { CONFLICT_PROPERTY, PENDING_PROPERTY } from '../../src/core/offline-writes.ts';
import type { Catalog } from '../../src/core/ports.ts';
import { ParentClient } from '../../src/links/parent-client.ts';
import { OfflineReplayer } from '../../src/replication/offline-replayer.ts';
import { withOfflineWrites } from '../../src/replication/offline-writes-catalog.ts';
import { startTestSite, tempDir, type TestSite } from '../helpers/site.ts';

/**
 * An edge's writes made while cut off, replayed to a real central site (in this process) by the
 * OfflineReplayer (issue 17), with the edge's catalog a real SQLite file. The link's faults that
 * matter here — an answer lost after central applied the call, a write at the edge while the
 * call is under way — are made by a link that wraps the real ParentClient.
 */
describe('OfflineReplayer: an edge\'s writes made while cut off, sent to central', () => {
  let central: TestSite;
  let dir: string;
  let edge: SqlCatalog;
  let writes: Catalog;
  let client: ParentClient;
  let replayer: OfflineReplayer;
  /** The link's next call: its answer is lost (central applied it), or a write happens here before it arrives. */
  let fault: 'lose-answer' | (() => Promise<void>) | undefined;
  let audits = 0;
  const warnings: string[] = [];

  before(async () => {
    central = await startTestSite();
    const registered = await central.request('/outpost/v1/sites', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'edge-1', parent: 'central', labels: {}, public_url: 'http://127.0.0.1:1/edge-1', version: 'test', stores: ['edge-1'] }),
    });
    assert.equal(registered.status, 200, await registered.text());
    dir = await tempDir('outpost-replayer-');
    edge = await openCatalog(join(dir, 'edge.sqlite'));
    writes = withOfflineWrites(edge, { site: 'edge-1', parent: central.url, marks: edge });
    client = new ParentClient({ url: central.url, timeoutMs: 10_000 });
    const link = {
      async fetch(path: string, init?: RequestInit, opts?: { signal?: AbortSignal }): Promise<Response> {
        const res = await client.fetch(path, init, opts);
        const f = fault;
        fault = undefined;
        if (f === 'lose-answer') {
          await res.body?.cancel();
          throw new Error('the link broke before the answer arrived');
        }
        await f?.();
        return res;
      },
    };
    replayer = new OfflineReplayer({
      site: 'edge-1', marks: edge, catalog: edge, parent: link, parentReachable: () => true,
      audit: async () => { audits++; },
      log: { info() {}, warn: (_obj: object, msg: string) => { warnings.push(msg); } },
    });
  });
  after(async () => {
    await replayer?.close();
    await edge?.close();
    await central?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const atCentral = async (id: string) => {
    const res = await central.request(`/v2/images/${id}`);
    return res.status === 404 ? undefined : await res.json() as Record<string, unknown>;
  };
  const madeHere = async (name: string, id = randomUUID()): Promise<Image> => {
    const t = new Date().toISOString();
    const image: Image = {
      id, name, status: 'queued', visibility: 'private', protected: false, os_hidden: false, checksum: null, os_hash_algo: null,
      os_hash_value: null, size: null, virtual_size: null, disk_format: 'raw', container_format: 'bare', min_disk: 0, min_ram: 0, owner: 'p',
      created_at: t, updated_at: t, tags: [], properties: {}, locations: [],
    };
    await writes.createImage(image);
    return image;
  };
  const rename = (id: string, name: string, at: string) => writes.updateImage(id, (i) => ({ ...i, name, updated_at: at }));

  it('an answer lost on the way: the image cannot be deleted here any more, and the next version is taken by central, not held for a conflict', async () => {
    const image = await madeHere('lost-answer');
    fault = 'lose-answer';
    await replayer.replay();
    assert.equal((await atCentral(image.id))?.name, 'lost-answer', 'central created it');
    assert.deepEqual((await edge.offlineMarks()).map((m) => [m.image_id, m.sent]), [[image.id, [image.updated_at]]]);
    // Central may locate bytes here: a delete here would lose them.
    await assert.rejects(writes.deleteImage(image.id), (e) => e instanceof ServiceUnavailableError && /not yet sent to central deleted/.test(e.message));
    await rename(image.id, 'renamed while cut off again', '2026-12-06T23:00:00.000Z');
    await replayer.replay();
    const there = await atCentral(image.id);
    assert.deepEqual([there?.name, there?.[CONFLICT_PROPERTY]], ['renamed while cut off again', undefined]);
    assert.deepEqual(await edge.offlineMarks(), []);
    const here = await edge.getImage(image.id);
    assert.deepEqual([here?.name, here?.properties[PENDING_PROPERTY]], ['renamed while cut off again', undefined]);
  });

  it('a conflict is the last word: a write here while the call was under way does not overwrite central\'s version later', async () => {
    const image = await madeHere('both-sides');
    await replayer.replay();
    assert.deepEqual(await edge.offlineMarks(), []);
    // Cut off again: renamed here, and at central.
    await rename(image.id, 'renamed at the edge', '2026-12-06T23:01:00.000Z');
    const patched = await central.request(`/v2/images/${image.id}`, {
      method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, body: JSON.stringify([{ op: 'replace', path: '/name', value: 'renamed at central' }]),
    });
    assert.equal(patched.status, 200);
    fault = () => rename(image.id, 'renamed at the edge again', '2026-12-06T23:02:00.000Z').then(() => undefined);
    await replayer.replay();
    await replayer.replay();
    const there = await atCentral(image.id);
    assert.equal(there?.name, 'renamed at central');
    assert.match(String(there?.[CONFLICT_PROPERTY]), /edge-1 changed this image while cut off/);
    assert.deepEqual(await edge.offlineMarks(), []);
    assert.equal((await edge.getImage(image.id))?.name, 'renamed at central', 'the edge took central\'s version');
    assert.ok(warnings.includes('offline writes: central kept its own version of an image written here while cut off'));
  });

  it('a refusal is final: the mark ends, the replica is audited against central, and the call is not made again', async () => {
    // An id central already has for an image of its own (a client's choice, made at the edge before its replica knew it).
    const id = randomUUID();
    const taken = await central.request('/v2/images', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, name: 'central\'s own' }) });
    assert.equal(taken.status, 201);
    await madeHere('same id at the edge', id);
    const before = audits;
    await replayer.replay();
    assert.deepEqual(await edge.offlineMarks(), []);
    assert.equal(audits, before + 1);
    assert.ok(warnings.some((w) => w.startsWith('offline writes: central refused')));
    assert.equal((await atCentral(id))?.name, 'central\'s own');
  });

  it('a write that is refused or changes nothing leaves no mark; images central owns are not changed here', async () => {
    const image = await madeHere('no-stray-marks');
    await replayer.replay();
    await assert.rejects(writes.createImage({ ...image }), ConflictError);
    await assert.rejects(writes.updateImage(image.id, () => { throw new ConflictError('refused'); }), ConflictError);
    await writes.updateImage(image.id, (i) => i);
    assert.deepEqual(await edge.offlineMarks(), []);
    const owned = { ...image, id: randomUUID(), name: 'central-owned', properties: {} };
    await edge.apply([{ seq: 1, entity: 'image', id: owned.id, op: 'upsert', body: owned, at: '' }], 1);
    await assert.rejects(rename(owned.id, 'mine now', new Date().toISOString()), (e) => e instanceof ServiceUnavailableError && /changing image/.test(e.message));
    assert.deepEqual(await edge.offlineMarks(), []);
  });
});
