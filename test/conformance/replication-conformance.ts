import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConflictError, ImageNotFoundError, NotFoundError } from '../../src/core/errors.ts';
import type { Image, ImageMember, MemberStatus } from '../../src/core/image.ts';
import type { Catalog, Change, ChangeEntity, ChangeLog, Replica, Site } from '../../src/core/ports.ts';
import type { PolicyRecord } from '../../src/core/placement-policy.ts';
import type { ImportTask, Task } from '../../src/core/task.ts';
import type { ConformanceOptions } from './catalog-conformance.ts';

/** What every site's catalog adapter is: the catalog, the log it serves, the replica it applies. */
export type ReplicatedCatalog = Catalog & ChangeLog & Replica;

/** A freshly opened, empty catalog and how to dispose of it. */
export interface ReplicatedCatalogHandle {
  catalog: ReplicatedCatalog;
  /** Closes the catalog and removes what `open` created. */
  cleanup(): Promise<void>;
}

type Open = () => Promise<ReplicatedCatalogHandle>;

// -- fixtures ---------------------------------------------------------------------------------

/** Record builders; successive records get increasing timestamps. */
function records() {
  let n = 0;
  const at = () => new Date(Date.UTC(2024, 0, 1) + n++ * 1000).toISOString();
  return {
    at,
    image(overrides: Partial<Image> = {}): Image {
      const t = at();
      return {
        id: randomUUID(), name: `image-${n}`, status: 'queued', visibility: 'private', protected: false, os_hidden: false,
        checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null,
        container_format: null, min_disk: 0, min_ram: 0, owner: 'project-o', created_at: t, updated_at: t, tags: [],
        properties: {}, locations: [], ...overrides,
      };
    },
    member(imageId: string, memberId: string, status: MemberStatus = 'pending'): ImageMember {
      const t = at();
      return { image_id: imageId, member_id: memberId, status, created_at: t, updated_at: t };
    },
    task(imageId: string, overrides: Partial<ImportTask> = {}): ImportTask {
      const t = at();
      return {
        id: randomUUID(), type: 'api_image_import', status: 'pending', owner: 'project-o', image_id: imageId,
        request_id: `req-${n}`, user_id: 'user-o', input: { image_id: imageId, import_req: { method: { name: 'copy-image' } }, backend: ['central'] },
        result: null, message: '', expires_at: null, created_at: t, updated_at: t, ...overrides,
      };
    },
    site(id: string, parent: string | null, overrides: Partial<Site> = {}): Site {
      const t = at();
      return {
        id, parent, labels: {}, public_url: `http://127.0.0.1:9292/${id}`, stores: [id], version: '0.1.0',
        registered_at: t, last_contact: t, lag_changes: null, ...overrides,
      };
    },
    policy(name: string, overrides: Partial<PolicyRecord> = {}): PolicyRecord {
      const t = at();
      return {
        id: randomUUID(), name, images: { tags: ['golden'], properties: {}, visibility: null }, sites: { labels: 'region=north' },
        mode: 'replicate', priority: 50, created_at: t, updated_at: t, ...overrides,
      };
    },
  };
}
type Records = ReturnType<typeof records>;

/** One catalog mutation, the change it must append, and how to read the record it stored. */
interface Step {
  label: string;
  run(c: ReplicatedCatalog): Promise<unknown>;
  /** Entity, op, and the strings the change's id is made of. */
  change: [ChangeEntity, Change['op'], ...string[]];
  /** For upserts: the stored record, which the change body must equal. */
  stored?(c: ReplicatedCatalog): Promise<unknown>;
}

/**
 * A history touching every entity kind and every kind of mutation. The records are made once, so
 * the same scenario written to two catalogs gives them the same contents.
 */
function scenario(rec: Records) {
  const kept = rec.image({
    name: 'kept', visibility: 'shared', tags: ['b', 'a'], properties: { os_distro: 'debian', arch: 'x86_64' },
    locations: [{ store: 'central', url: 'file:///central/kept' }],
  });
  const gone = rec.image({ name: 'gone', visibility: 'shared' });
  const other = rec.image({ name: 'other', visibility: 'public' });
  const memberA = rec.member(kept.id, 'project-a');
  const memberB = rec.member(gone.id, 'project-b', 'accepted');
  const memberC = rec.member(kept.id, 'project-c');
  const task = rec.task(kept.id);
  const central = rec.site('central', null);
  const edge = rec.site('site-a', 'central', { labels: { region: 'north' } });
  const removed = rec.site('site-gone', 'central');
  const golden = rec.policy('golden');
  const dropped = rec.policy('dropped', { sites: { ids: ['site-a'] }, mode: 'cache' });
  const later = rec.at();

  const image = (i: Image) => (c: ReplicatedCatalog) => c.getImage(i.id);
  const member = (m: ImageMember) => (c: ReplicatedCatalog) => c.getMember(m.image_id, m.member_id);
  const update = (label: string, mutate: (i: Image) => Image): Step =>
    ({ label, run: (c) => c.updateImage(kept.id, mutate), change: ['image', 'upsert', kept.id], stored: image(kept) });
  const steps: Step[] = [
    ...[kept, gone, other].map((i): Step => ({ label: `createImage ${i.name}`, run: (c) => c.createImage(i), change: ['image', 'upsert', i.id], stored: image(i) })),
    update('updateImage (attributes)', (i) => ({ ...i, name: 'kept v2', min_ram: 512, updated_at: later })),
    update('updateImage (add a tag)', (i) => ({ ...i, tags: [...i.tags, 'edge'] })),
    update('updateImage (properties)', (i) => ({ ...i, properties: { arch: 'aarch64', hw_machine_type: 'q35' } })),
    ...[memberA, memberB, memberC].map((m): Step => ({
      label: `addMember ${m.member_id}`, run: (c) => c.addMember(m), change: ['member', 'upsert', m.image_id, m.member_id], stored: member(m),
    })),
    {
      label: 'updateMember', run: (c) => c.updateMember({ ...memberA, status: 'accepted', updated_at: later }),
      change: ['member', 'upsert', kept.id, 'project-a'], stored: member(memberA),
    },
    { label: 'removeMember', run: (c) => c.removeMember(kept.id, 'project-c'), change: ['member', 'delete', kept.id, 'project-c'] },
    { label: 'deleteImage (with a member)', run: (c) => c.deleteImage(gone.id), change: ['image', 'delete', gone.id] },
    { label: 'createTask', run: (c) => c.createTask(task), change: ['task', 'upsert', task.id], stored: (c) => c.getTask(task.id) },
    {
      label: 'updateTask', run: (c) => c.updateTask(task.id, (t) => ({ ...t, status: 'processing', message: 'Copied 1 MiB', updated_at: later })),
      change: ['task', 'upsert', task.id], stored: (c) => c.getTask(task.id),
    },
    ...[central, edge, { ...edge, last_contact: later, lag_changes: 3 }, removed].map((s, i): Step => ({
      label: `upsertSite ${s.id} #${i}`, run: (c) => c.upsertSite(s), change: ['site', 'upsert', s.id], stored: (c) => c.getSite(s.id),
    })),
    { label: 'deleteSite', run: async (c) => assert.equal(await c.deleteSite(removed.id), true), change: ['site', 'delete', removed.id] },
    ...[golden, dropped, { ...golden, priority: 90, updated_at: later }].map((p, i): Step => ({
      label: `upsertPolicy ${p.name} #${i}`, run: (c) => c.upsertPolicy(p), change: ['policy', 'upsert', p.id], stored: (c) => c.getPolicy(p.id),
    })),
    { label: 'deletePolicy', run: async (c) => assert.equal(await c.deletePolicy(dropped.id), true), change: ['policy', 'delete', dropped.id] },
  ];
  return {
    steps, kept, gone, other, memberA, task, edge, golden,
    async populate(c: ReplicatedCatalog) {
      for (const step of steps) await step.run(c);
    },
  };
}

/** Follows `source`'s change log into `replica` in batches of `batch`, as a follower does. */
async function follow(source: ReplicatedCatalog, replica: ReplicatedCatalog, batch = 4): Promise<void> {
  for (;;) {
    const changes = await source.changesSince(await replica.position(), batch);
    if (changes.length === 0) return;
    await replica.apply(changes, changes.at(-1)!.seq);
  }
}

const digests = async (c: ChangeLog) => (await c.digest()).digests;
const contents = async (c: ChangeLog) => {
  const { seq: _seq, ...entities } = await c.snapshot();
  return entities;
};
/** Same digests of every kind, and the same entities in the snapshots (whatever their seq). */
const assertSameContents = async (actual: ChangeLog, expected: ChangeLog, message?: string) => {
  assert.deepEqual(await digests(actual), await digests(expected), message);
  assert.deepEqual(await contents(actual), await contents(expected), message);
};
/** The replicated state a user observes: digests, position and own log position. */
const stateOf = async (c: ReplicatedCatalog) => ({ digest: await c.digest(), position: await c.position(), firstSeq: await c.firstSeq() });
/** An image delete as the feed carries it. */
const deleteChange = (id: string): Change => ({ seq: 1, entity: 'image', id, op: 'delete', body: { id }, at: new Date().toISOString() });
const elapsed = async (p: Promise<unknown>) => {
  const start = performance.now();
  await p;
  return performance.now() - start;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const byId = <T extends { id: string }>(xs: T[]) => [...xs].sort((a, b) => (a.id < b.id ? -1 : 1));

/** Each test opens `count` empty catalogs and disposes of them afterwards. */
function catalogs(open: Open) {
  return (count: number, fn: (cs: ReplicatedCatalog[]) => Promise<void>) => async () => {
    const handles: ReplicatedCatalogHandle[] = [];
    try {
      for (let i = 0; i < count; i++) handles.push(await open());
      await fn(handles.map((h) => h.catalog));
    } finally {
      for (const h of handles) await h.cleanup();
    }
  };
}

// -- ChangeLog --------------------------------------------------------------------------------

/** The contract of the `ChangeLog` port (src/core/ports.ts): the serving side of replication. */
export function changeLogConformance(name: string, open: Open, options: ConformanceOptions = {}): void {
  const withCatalogs = catalogs(open);
  const rec = records();

  describe(`ChangeLog conformance: ${name}`, { skip: options.skip }, () => {
    it('an empty log: lastSeq 0, firstSeq 1, no changes, an empty snapshot at seq 0', withCatalogs(1, async ([c]) => {
      assert.equal(await c.lastSeq(), 0);
      assert.equal(await c.firstSeq(), 1);
      assert.deepEqual(await c.changesSince(0, 100), []);
      assert.deepEqual(await c.snapshot(), {
        seq: 0, images: [], deleted: [], members: [], tasks: [], sites: [], policies: [], identity: [], metadef_namespaces: [], metadef_resource_types: [],
      });
      assert.equal((await c.digest()).seq, 0);
    }));

    it('every mutation appends one change: increasing seq, entity, id, op, the stored record as body', withCatalogs(1, async ([c]) => {
      for (const step of scenario(rec).steps) {
        const before = await c.lastSeq();
        await step.run(c);
        const after = await c.lastSeq();
        const changes = await c.changesSince(before, 100);
        assert.equal(changes.length, 1, step.label);
        const [change] = changes;
        assert.ok(change.seq > before && change.seq === after, `${step.label}: seq ${before} → ${change.seq}, lastSeq ${after}`);
        const [entity, op, ...idParts] = step.change;
        assert.deepEqual([change.entity, change.op], [entity, op], step.label);
        assert.ok(idParts.every((p) => change.id.includes(p)), `${step.label}: change id ${change.id}`);
        if (step.stored) assert.deepEqual(change.body, await step.stored(c), `${step.label}: body`);
      }
      assert.equal(await c.firstSeq(), 1, 'nothing dropped without truncate');
    }));

    it('a rejected mutation appends nothing and changes no digest', withCatalogs(1, async ([c]) => {
      const fx = scenario(rec);
      await fx.populate(c);
      const before = { last: await c.lastSeq(), digest: await c.digest() };
      const failures: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
        ['createImage (existing id)', () => c.createImage(fx.kept), ConflictError],
        ['createImage (deleted id)', () => c.createImage({ ...fx.kept, id: fx.gone.id }), ConflictError],
        ['updateImage (vetoed)', () => c.updateImage(fx.kept.id, () => { throw new RangeError('veto'); }), RangeError],
        ['updateImage (deleted)', () => c.updateImage(fx.gone.id, (i) => i), ImageNotFoundError],
        ['deleteImage (deleted)', () => c.deleteImage(fx.gone.id), ImageNotFoundError],
        ['addMember (existing)', () => c.addMember(fx.memberA), ConflictError],
        ['addMember (deleted image)', () => c.addMember(rec.member(fx.gone.id, 'project-z')), ImageNotFoundError],
        ['updateMember (missing)', () => c.updateMember(rec.member(fx.kept.id, 'project-z')), NotFoundError],
        ['removeMember (missing)', () => c.removeMember(fx.kept.id, 'project-z'), NotFoundError],
        ['createTask (existing id)', () => c.createTask(fx.task), ConflictError],
        ['updateTask (missing)', () => c.updateTask(randomUUID(), (t) => t), NotFoundError],
        ['updateTask (vetoed)', () => c.updateTask(fx.task.id, () => { throw new RangeError('veto'); }), RangeError],
      ];
      for (const [label, call, error] of failures) {
        await assert.rejects(call(), error, label);
        assert.equal(await c.lastSeq(), before.last, label);
      }
      assert.equal(await c.deleteSite('site-never'), false, 'deleteSite (unknown)');
      assert.equal(await c.lastSeq(), before.last, 'deleteSite (unknown)');
      assert.deepEqual(await c.digest(), before.digest);
    }));

    describe('waitForChange', () => {
      it('resolves at once when a change newer than `after` exists, or when timeoutMs is 0', withCatalogs(1, async ([c]) => {
        await c.createImage(rec.image());
        assert.ok(await elapsed(c.waitForChange(0, 5000)) < 1000);
        assert.ok(await elapsed(c.waitForChange(await c.lastSeq(), 0)) < 1000);
      }));

      it('resolves promptly after a commit newer than `after`, waking every waiter', withCatalogs(1, async ([c]) => {
        await c.createImage(rec.image());
        const last = await c.lastSeq();
        const waits = Array.from({ length: 5 }, () => elapsed(c.waitForChange(last, 10_000)));
        await sleep(50);
        await c.upsertSite(rec.site('central', null));
        for (const ms of await Promise.all(waits)) assert.ok(ms < 2000, `woke after ${ms} ms`);
        assert.equal(await c.lastSeq(), last + 1);
      }));

      it('waits out timeoutMs when nothing newer than `after` is committed', withCatalogs(1, async ([c]) => {
        assert.ok(await elapsed(c.waitForChange(0, 150)) >= 140, 'an empty log');
        // Waiting for a change after the next one: one commit is not enough.
        const last = await c.lastSeq();
        const wait = elapsed(c.waitForChange(last + 1, 300));
        await sleep(50);
        await c.createImage(rec.image());
        assert.ok(await wait >= 290, 'a commit not newer than `after` does not end the wait');
      }));

      it('rejects an already-aborted signal with AbortError; resolves (does not reject) when aborted while waiting', withCatalogs(1, async ([c]) => {
        await assert.rejects(c.waitForChange(0, 5000, { signal: AbortSignal.abort() }), { name: 'AbortError' });
        const controller = new AbortController();
        const wait = elapsed(c.waitForChange(0, 10_000, { signal: controller.signal }));
        await sleep(50);
        controller.abort();
        assert.ok(await wait < 2000, 'resolved on abort, long before the timeout');
      }));
    });

    it('truncate(keep) drops all but the newest `keep` changes; firstSeq shows what a reader since an older seq missed', withCatalogs(1, async ([c]) => {
      await scenario(rec).populate(c);
      const all = await c.changesSince(0, 1000);
      const last = await c.lastSeq();
      const entities = await digests(c);
      assert.equal(await c.truncate(all.length + 5), 0, 'keeping more than there is drops nothing');
      assert.equal(await c.firstSeq(), all[0].seq);

      assert.equal(await c.truncate(3), all.length - 3);
      const first = await c.firstSeq();
      assert.equal(first, all.at(-3)!.seq);
      assert.equal(await c.lastSeq(), last);
      assert.deepEqual(await c.changesSince(first - 1, 1000), all.slice(-3), 'since = firstSeq - 1 is complete');
      // changesSince itself does not tell: a reader must compare its position with firstSeq.
      assert.deepEqual(await c.changesSince(0, 1000), all.slice(-3));
      assert.ok(0 < first - 1, 'since = 0 is older than what is retained');

      assert.equal(await c.truncate(0), 3);
      assert.deepEqual(await c.changesSince(0, 1000), []);
      assert.equal(await c.lastSeq(), last, 'an emptied log keeps its position');
      assert.equal(await c.firstSeq(), last + 1);
      assert.deepEqual(await digests(c), entities, 'truncating the log leaves the entities');

      await c.createImage(rec.image());
      assert.equal(await c.lastSeq(), last + 1, 'seq continues after the dropped changes');
      assert.equal(await c.firstSeq(), last + 1);
    }));

    it('snapshot holds every entity at lastSeq', withCatalogs(1, async ([c]) => {
      const fx = scenario(rec);
      await fx.populate(c);
      const snap = await c.snapshot();
      assert.equal(snap.seq, await c.lastSeq());
      const live = [fx.kept, fx.other];
      assert.deepEqual(byId(snap.images), byId(await Promise.all(live.map(async (i) => (await c.getImage(i.id))!))));
      assert.deepEqual(snap.deleted, [fx.gone.id]);
      assert.deepEqual(snap.members, await c.listMembers(fx.kept.id));
      assert.deepEqual(snap.tasks, [await c.getTask(fx.task.id)]);
      assert.deepEqual(byId(snap.sites), byId(await c.listSites()));
      assert.equal(snap.sites.length, 2);
      assert.deepEqual(snap.policies, [await c.getPolicy(fx.golden.id)]);
      assert.equal(snap.policies[0].priority, 90);
    }));

    it('snapshot is consistent at its seq while writes run concurrently', withCatalogs(1, async ([c]) => {
      let writing = true;
      const writes = (async () => {
        for (let i = 0; i < 20; i++) {
          const image = rec.image();
          await c.createImage(image);
          await c.updateImage(image.id, (cur) => ({ ...cur, tags: ['updated'] }));
        }
      })().finally(() => { writing = false; });
      const snaps = [];
      while (writing) snaps.push(await c.snapshot());
      await writes;
      const changes = await c.changesSince(0, 1000);
      assert.ok(snaps.some((s) => s.seq > 0 && s.seq < changes.length), 'some snapshots were taken between writes');
      for (const snap of snaps) {
        // Each image as the newest change up to the snapshot's seq left it.
        const latest = new Map(changes.filter((ch) => ch.seq <= snap.seq).map((ch) => [ch.id, ch.body as Image]));
        assert.deepEqual(byId(snap.images), byId([...latest.values()]), `snapshot at seq ${snap.seq}`);
      }
    }));

    describe('digest', () => {
      it('is equal for equal contents at the same seq, whatever order they were written in', withCatalogs(2, async ([a, b]) => {
        const p = rec.image({ properties: { alpha: '1', beta: '2' }, tags: ['x', 'y'] });
        const q = rec.image({ visibility: 'shared' });
        const sites = [rec.site('central', null), rec.site('site-a', 'central', { labels: { k: 'v', l: 'w' } })];
        const tasks = [rec.task(p.id), rec.task(q.id)];
        const m = rec.member(q.id, 'project-a');
        const reversedKeys = <T extends object>(x: T): T => Object.fromEntries(Object.entries(x).reverse()) as T;
        for (const i of [p, q]) await a.createImage(i);
        for (const s of sites) await a.upsertSite(s);
        for (const t of tasks) await a.createTask(t);
        await a.addMember(m);
        for (const i of [q, { ...p, properties: reversedKeys(p.properties) }]) await b.createImage(i);
        for (const s of [...sites].reverse()) await b.upsertSite(reversedKeys({ ...s, labels: reversedKeys(s.labels) }));
        for (const t of [...tasks].reverse()) await b.createTask(t);
        await b.addMember(m);
        const [da, db] = [await a.digest(), await b.digest()];
        assert.equal(da.seq, db.seq);
        assert.deepEqual(db.digests, da.digests);
      }));

      const variants: [kind: string, change: (c: ReplicatedCatalog, fx: ReturnType<typeof scenario>, v: string) => Promise<unknown>][] = [
        ['images', (c, fx, v) => c.updateImage(fx.kept.id, (i) => ({ ...i, name: v }))],
        ['members', (c, fx, v) => c.updateMember({ ...fx.memberA, status: v === 'x' ? 'accepted' : 'rejected' })],
        ['tasks', (c, fx, v) => c.updateTask(fx.task.id, (t) => ({ ...t, message: v }))],
        ['sites', (c, fx, v) => c.upsertSite({ ...fx.edge, version: v })],
        ['policies', (c, fx, v) => c.upsertPolicy({ ...fx.golden, name: v })],
        ['deleted', (c, fx, v) => c.apply([deleteChange(`${fx.gone.id}-${v}`)], 1)],
      ];
      for (const [kind, change] of variants) {
        it(`a differing row in ${kind} changes that kind's digest only`, withCatalogs(2, async ([a, b]) => {
          const fx = scenario(rec);
          await fx.populate(a);
          await fx.populate(b);
          await assertSameContents(b, a, 'same scenario, same contents');
          await change(a, fx, 'x');
          await change(b, fx, 'y');
          const [da, db] = [await a.digest(), await b.digest()];
          assert.equal(da.seq, db.seq);
          assert.deepEqual(Object.keys(da.digests).filter((k) => da.digests[k] !== db.digests[k]), [kind]);
        }));
      }
    });

    it('every call rejects an already-aborted signal with AbortError, changing nothing', withCatalogs(1, async ([c]) => {
      await scenario(rec).populate(c);
      const before = await stateOf(c);
      const opts = { signal: AbortSignal.abort() };
      const calls: [string, () => Promise<unknown>][] = [
        ['lastSeq', () => c.lastSeq(opts)],
        ['firstSeq', () => c.firstSeq(opts)],
        ['waitForChange', () => c.waitForChange(0, 1000, opts)],
        ['truncate', () => c.truncate(0, opts)],
        ['snapshot', () => c.snapshot(opts)],
        ['digest', () => c.digest(opts)],
      ];
      for (const [label, call] of calls) await assert.rejects(call(), { name: 'AbortError' }, label);
      assert.deepEqual(await stateOf(c), before);
    }));
  });
}

// -- Replica ----------------------------------------------------------------------------------

/** The contract of the `Replica` port (src/core/ports.ts), with the adapter's ChangeLog as parent and child. */
export function replicaConformance(name: string, open: Open, options: ConformanceOptions = {}): void {
  const withCatalogs = catalogs(open);
  const rec = records();

  describe(`Replica conformance: ${name}`, { skip: options.skip }, () => {
    it('a new replica is at position 0; apply records the position it is given, even with no changes', withCatalogs(1, async ([r]) => {
      assert.equal(await r.position(), 0);
      await r.apply([], 7);
      assert.equal(await r.position(), 7);
      assert.equal(await r.lastSeq(), 0, 'an empty batch appends nothing');
    }));

    it('following the log in batches makes the replica equal to its source', withCatalogs(2, async ([source, r]) => {
      const fx = scenario(rec);
      await fx.populate(source);
      for (const batch of [1, 5, 1000]) {
        await follow(source, r, batch);
        assert.equal(await r.position(), await source.lastSeq());
        await assertSameContents(r, source);
        // Continue from there with more changes.
        await source.createImage(rec.image());
      }
      for (const i of [fx.kept, fx.other]) assert.deepEqual(await r.getImage(i.id), await source.getImage(i.id));
      assert.equal(await r.getImage(fx.gone.id), undefined);
    }));

    it('applying the same batch twice leaves the same replica and position', withCatalogs(2, async ([source, r]) => {
      await scenario(rec).populate(source);
      const changes = await source.changesSince(0, 1000);
      const position = changes.at(-1)!.seq;
      await r.apply(changes, position);
      const once = await digests(r);
      await r.apply(changes, position);
      assert.deepEqual(await digests(r), once);
      assert.equal(await r.position(), position);
      await assertSameContents(r, source);
    }));

    it('applies a batch in one transaction: a failing change leaves nothing of the batch', withCatalogs(2, async ([source, r]) => {
      await scenario(rec).populate(source);
      const [first, ...rest] = await source.changesSince(0, 1000);
      await r.apply([first], first.seq);
      const before = { state: await stateOf(r), last: await r.lastSeq() };
      const malformed: Change = { ...rest[0], seq: 999, entity: 'image', op: 'upsert', id: 'broken', body: { id: 'broken' } };
      await assert.rejects(r.apply([...rest, malformed], 999));
      assert.deepEqual({ state: await stateOf(r), last: await r.lastSeq() }, before);
    }));

    it('appends applied changes to its own log, so that a follower of the replica reaches the same contents', withCatalogs(3, async ([source, r, child]) => {
      await scenario(rec).populate(source);
      await follow(source, r);
      const essence = (cs: Change[]) => cs.map(({ entity, id, op, body }) => ({ entity, id, op, body }));
      assert.deepEqual(essence(await r.changesSince(0, 1000)), essence(await source.changesSince(0, 1000)));
      await follow(r, child);
      assert.equal(await child.position(), await r.lastSeq());
      await assertSameContents(child, source);
    }));

    it('deletes propagate through a cascade, and a deleted id stays unusable downstream', withCatalogs(3, async ([source, r, child]) => {
      const fx = scenario(rec);
      await fx.populate(source);
      await follow(source, r);
      await follow(r, child);
      await source.deleteImage(fx.kept.id); // and with it its member project-a
      await follow(source, r);
      await follow(r, child);
      for (const c of [r, child]) {
        assert.equal(await c.getImage(fx.kept.id), undefined);
        assert.deepEqual(await c.listMembers(fx.kept.id), []);
        assert.deepEqual((await c.snapshot()).deleted.sort(), [fx.gone.id, fx.kept.id].sort());
        await assert.rejects(c.createImage(fx.kept), ConflictError);
        await assertSameContents(c, source);
      }
    }));

    it('a member removal propagates', withCatalogs(2, async ([source, r]) => {
      const fx = scenario(rec);
      await fx.populate(source);
      await follow(source, r);
      await source.removeMember(fx.kept.id, 'project-a');
      await follow(source, r);
      assert.equal(await r.getMember(fx.kept.id, 'project-a'), undefined);
      await assertSameContents(r, source);
    }));

    /** A replica that followed part of the source, then diverged in every entity kind. */
    const diverge = async (source: ReplicatedCatalog, r: ReplicatedCatalog, fx: ReturnType<typeof scenario>, opts: { unknownImages: boolean }) => {
      await r.apply(await source.changesSince(0, 4), 4);
      await r.addMember(rec.member(fx.kept.id, 'project-x'));
      await r.updateImage(fx.kept.id, (i) => ({ ...i, name: 'tampered', properties: {} }));
      await r.createTask(rec.task(fx.kept.id));
      await r.upsertSite(rec.site('site-x', 'central'));
      const extra = rec.image({ name: 'extra' });
      if (opts.unknownImages) {
        await r.createImage(extra);
        await r.addMember(rec.member(extra.id, 'project-x'));
        await r.apply([deleteChange(randomUUID())], 4); // a tombstone
      }
      return extra;
    };

    it('load replaces everything: what the snapshot lacks disappears, position becomes snapshot.seq, following resumes', withCatalogs(2, async ([source, r]) => {
      const fx = scenario(rec);
      await fx.populate(source);
      const extra = await diverge(source, r, fx, { unknownImages: true });
      const snapshot = await source.snapshot();
      await r.load(snapshot);
      assert.equal(await r.position(), snapshot.seq);
      await assertSameContents(r, source);
      assert.equal(await r.getImage(extra.id), undefined);
      assert.equal(await r.getMember(fx.kept.id, 'project-x'), undefined);
      assert.deepEqual(await r.getImage(fx.kept.id), await source.getImage(fx.kept.id));
      assert.deepEqual(await r.listTasks({ limit: 100 }), await source.listTasks({ limit: 100 }));
      assert.deepEqual(await r.listSites(), await source.listSites());

      await source.deleteImage(fx.other.id);
      await source.createImage(rec.image());
      await follow(source, r);
      assert.equal(await r.position(), await source.lastSeq());
      await assertSameContents(r, source);
    }));

    it('load is appended to the replica\'s own log: its follower reaches the snapshot\'s contents too', withCatalogs(3, async ([source, r, child]) => {
      const fx = scenario(rec);
      await fx.populate(source);
      // Images the source never had are not diverged here: the feed can only tell the child that
      // such an image is deleted, leaving it a tombstone the source lacks (the child's own audit
      // and reload remove it).
      await diverge(source, r, fx, { unknownImages: false });
      await follow(r, child);
      await r.load(await source.snapshot());
      await follow(r, child);
      await assertSameContents(child, source);
    }));

    it('every call rejects an already-aborted signal with AbortError, changing nothing', withCatalogs(2, async ([source, r]) => {
      await scenario(rec).populate(source);
      const changes = await source.changesSince(0, 1000);
      await r.apply(changes.slice(0, 3), changes[2].seq);
      const before = await stateOf(r);
      const opts = { signal: AbortSignal.abort() };
      const calls: [string, () => Promise<unknown>][] = [
        ['position', () => r.position(opts)],
        ['apply', async () => r.apply(changes.slice(3), changes.at(-1)!.seq, opts)],
        ['load', async () => r.load(await source.snapshot(), opts)],
      ];
      for (const [label, call] of calls) await assert.rejects(call(), { name: 'AbortError' }, label);
      assert.deepEqual(await stateOf(r), before);
    }));
  });
}
