import type { Transaction } from 'kysely';
import type { Image, ImageMember } from '../../core/image.ts';
import { IDENTITY_KINDS, type Change, type ChangeEntity, type IdentityKind, type Snapshot } from '../../core/ports.ts';
import type { MetadefNamespace, MetadefResourceType } from '../../core/metadefs.ts';
import type { PolicyRecord } from '../../core/placement-policy.ts';
import type { Site } from '../../core/ports.ts';
import type { Task } from '../../core/task.ts';
import type { WriteTx } from '../database.ts';
import {
  deleteImageChildren, hydrateImages, imageToRow, rowToMember, rowToTask, taskToRow, tombstoneRow, writeImageChildren,
} from '../rows.ts';
import type { CatalogTables } from '../tables.ts';

/**
 * The one place an entity kind of the change log is registered: how a replicated change of it is
 * applied, how it is read into a snapshot, how a snapshot replaces it, and how it is digested for
 * the audit. A new kind is one more entry here (and its table in migrations/).
 */
interface EntityKind {
  readonly entities: readonly ChangeEntity[];
  /**
   * Applies one change idempotently (applying it twice leaves the same state) and appends it to
   * this site's own log, unless it has no effect here (already so, or superseded later in the log).
   */
  apply(tx: WriteTx, change: Change): Promise<void>;
  /** Reads this kind into the snapshot being built (inside one consistent transaction). */
  read(trx: Transaction<CatalogTables>, into: Snapshot): Promise<void>;
  /** Makes this kind equal to the snapshot's, logging every difference; a section an older parent's snapshot lacks is kept. */
  load(tx: WriteTx, snapshot: Snapshot): Promise<void>;
  /** The audit's sections: each a list of entities and the key that identifies one. */
  readonly digests: readonly { name: string; items: (s: Snapshot) => readonly unknown[]; key: (x: any) => string }[];
}

/** A change to apply: a write of this site's own, or a snapshot's difference (the seq is the log's to assign). */
export function changeOf(entity: ChangeEntity, id: string, op: Change['op'], body: unknown): Change {
  return { seq: 0, entity, id, op, body, at: '' };
}

/** Deletes what the snapshot lacks (by key), then upserts all it holds. */
async function replaceAll<T>(tx: WriteTx, existing: readonly string[], wanted: readonly T[], key: (x: T) => string, deleteOf: (key: string) => Change, upsertOf: (x: T) => Change): Promise<void> {
  const keep = new Set(wanted.map(key));
  for (const k of existing) if (!keep.has(k)) await applyChange(tx, deleteOf(k));
  for (const x of wanted) await applyChange(tx, upsertOf(x));
}

/**
 * Whether the image is one this site wrote while cut off and central has not reconciled yet
 * (OfflineWriteStore); if so, the parent's change is kept aside in its mark (the latest only),
 * for when the mark ends.
 */
async function keptAsideOffline(tx: WriteTx, c: Change): Promise<boolean> {
  const r = await tx.db.updateTable('offline_images').set({ skipped: JSON.stringify({ op: c.op, body: c.body }) }).where('image_id', '=', c.id).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

const images: EntityKind = {
  entities: ['image'],
  async apply(tx, c) {
    // This site's own version of an image it wrote while cut off stands until it is reconciled.
    if (await keptAsideOffline(tx, c)) return;
    if (c.op === 'upsert') {
      const image = c.body as Image;
      const { id: _id, ...row } = imageToRow(image);
      await tx.db.insertInto('images').values(imageToRow(image)).onConflict((oc) => oc.column('id').doUpdateSet(row)).execute();
      await deleteImageChildren(tx.db, image.id);
      await writeImageChildren(tx.db, image);
      await tx.append('image', image.id, 'upsert', image);
      return;
    }
    const now = new Date().toISOString();
    const existing = await tx.db.selectFrom('images').select(['id', 'deleted_at']).where('id', '=', c.id).executeTakeFirst();
    if (existing !== undefined && existing.deleted_at !== null) return;
    if (existing === undefined) {
      await tx.db.insertInto('images').values(tombstoneRow(c.id, now)).execute(); // so that the id is never reused here either
    } else {
      await tx.db.updateTable('images').set({ status: 'deleted', deleted_at: now, updated_at: now }).where('id', '=', c.id).execute();
      await deleteImageChildren(tx.db, c.id);
      await tx.db.deleteFrom('image_members').where('image_id', '=', c.id).execute();
    }
    await tx.append('image', c.id, 'delete', { id: c.id });
  },
  async read(trx, into) {
    const rows = await trx.selectFrom('images').selectAll().where('deleted_at', 'is', null).orderBy('id').execute();
    into.images = await hydrateImages(trx, rows);
    into.deleted = (await trx.selectFrom('images').select('id').where('deleted_at', 'is not', null).orderBy('id').execute()).map((d) => d.id);
  },
  async load(tx, snapshot) {
    // An image the parent never had (live or tombstone) goes entirely, with its children and
    // members (foreign keys cascade): a tombstone the parent lacks would fail every audit.
    const known = new Set([...snapshot.images.map((i) => i.id), ...snapshot.deleted]);
    // Images written here while cut off are kept as they are (apply leaves them alone too).
    const offline = new Set((await tx.db.selectFrom('offline_images').select('image_id').execute()).map((r) => r.image_id));
    for (const { id, deleted_at } of await tx.db.selectFrom('images').select(['id', 'deleted_at']).execute()) {
      if (known.has(id) || offline.has(id)) continue;
      if (deleted_at === null) await tx.append('image', id, 'delete', { id });
      await tx.db.deleteFrom('images').where('id', '=', id).execute();
    }
    for (const id of snapshot.deleted) await applyChange(tx, changeOf('image', id, 'delete', { id }));
    for (const image of snapshot.images) await applyChange(tx, changeOf('image', image.id, 'upsert', image));
  },
  digests: [
    { name: 'images', items: (s) => s.images, key: (i: Image) => i.id },
    { name: 'deleted', items: (s) => s.deleted, key: (id: string) => id },
  ],
};

const members: EntityKind = {
  entities: ['member'],
  async apply(tx, c) {
    const m = c.body as ImageMember;
    if (c.op === 'upsert') {
      const image = await tx.db.selectFrom('images').select('id').where('id', '=', m.image_id).where('deleted_at', 'is', null).executeTakeFirst();
      if (image === undefined) return; // the image's delete is later in the log
      await tx.db.insertInto('image_members').values(m)
        .onConflict((oc) => oc.columns(['image_id', 'member_id']).doUpdateSet({ status: m.status, updated_at: m.updated_at, created_at: m.created_at }))
        .execute();
    } else {
      await tx.db.deleteFrom('image_members').where('image_id', '=', m.image_id).where('member_id', '=', m.member_id).execute();
    }
    await tx.append('member', c.id, c.op, c.body);
  },
  async read(trx, into) {
    into.members = (await trx.selectFrom('image_members').selectAll().orderBy('image_id').orderBy('member_id').execute()).map(rowToMember);
  },
  async load(tx, snapshot) {
    const existing = await tx.db.selectFrom('image_members').select(['image_id', 'member_id']).execute();
    await replaceAll(tx, existing.map((m) => `${m.image_id}/${m.member_id}`), snapshot.members, (m) => `${m.image_id}/${m.member_id}`,
      (k) => { const [image_id, member_id] = k.split('/'); return changeOf('member', k, 'delete', { image_id, member_id }); },
      (m) => changeOf('member', `${m.image_id}/${m.member_id}`, 'upsert', m));
  },
  digests: [{ name: 'members', items: (s) => s.members, key: (m: ImageMember) => `${m.image_id}/${m.member_id}` }],
};

const tasks: EntityKind = {
  entities: ['task'],
  async apply(tx, c) {
    // A task is deleted only by a load whose snapshot no longer has it.
    if (c.op === 'delete') {
      await tx.db.deleteFrom('tasks').where('id', '=', c.id).execute();
    } else {
      const t = c.body as Task;
      const { id: _id, ...row } = taskToRow(t);
      await tx.db.insertInto('tasks').values(taskToRow(t)).onConflict((oc) => oc.column('id').doUpdateSet(row)).execute();
    }
    await tx.append('task', c.id, c.op, c.body);
  },
  async read(trx, into) {
    into.tasks = (await trx.selectFrom('tasks').selectAll().orderBy('id').execute()).map(rowToTask);
  },
  async load(tx, snapshot) {
    const existing = await tx.db.selectFrom('tasks').select('id').execute();
    await replaceAll(tx, existing.map((t) => t.id), snapshot.tasks, (t) => t.id, (id) => changeOf('task', id, 'delete', { id }), (t) => changeOf('task', t.id, 'upsert', t));
  },
  digests: [{ name: 'tasks', items: (s) => s.tasks, key: (t: Task) => t.id }],
};

/** The kinds kept as one JSON body per id: the entity, its table, its snapshot section, and the key of a body. */
const BODY_KINDS = {
  site: { table: 'sites', section: 'sites', key: (x: Site) => x.id },
  policy: { table: 'placement_policies', section: 'policies', key: (x: PolicyRecord) => x.id },
  metadef_namespace: { table: 'metadef_namespaces', section: 'metadef_namespaces', key: (x: MetadefNamespace) => x.namespace },
  metadef_resource_type: { table: 'metadef_resource_types', section: 'metadef_resource_types', key: (x: MetadefResourceType) => x.name },
} as const;
type BodyEntity = keyof typeof BODY_KINDS;

/** A kind kept as one JSON body per id (sites, placement policies, metadef namespaces and resource types). */
function bodyKind(entity: BodyEntity): EntityKind {
  const { table, section } = BODY_KINDS[entity];
  const key = BODY_KINDS[entity].key as (x: unknown) => string;
  return {
    entities: [entity],
    async apply(tx, c) {
      if (c.op === 'delete') {
        await tx.db.deleteFrom(table).where('id', '=', c.id).execute();
      } else {
        const body = JSON.stringify(c.body);
        await tx.db.insertInto(table).values({ id: c.id, body }).onConflict((oc) => oc.column('id').doUpdateSet({ body })).execute();
      }
      await tx.append(entity, c.id, c.op, c.body);
    },
    async read(trx, into) {
      const rows = await trx.selectFrom(table).select('body').orderBy('id').execute();
      (into as unknown as Record<string, unknown[]>)[section] = rows.map((r) => JSON.parse(r.body));
    },
    async load(tx, snapshot) {
      const wanted = (snapshot as unknown as Record<string, unknown[] | undefined>)[section];
      if (wanted === undefined) return; // absent from an older parent's snapshot: keep ours then
      const existing = await tx.db.selectFrom(table).select('id').execute();
      await replaceAll(tx, existing.map((r) => r.id), wanted, key, (id) => changeOf(entity, id, 'delete', { id }), (x) => changeOf(entity, key(x), 'upsert', x));
    },
    digests: [{ name: section, items: (s) => ((s as unknown as Record<string, unknown[] | undefined>)[section] ?? []), key }],
  };
}

/** Identity's public records: replicated; secrets stay in identity_secrets, never here. */
const identity: EntityKind = {
  entities: IDENTITY_KINDS,
  async apply(tx, c) {
    if (c.op === 'upsert') {
      const body = JSON.stringify(c.body);
      await tx.db.insertInto('identity_records').values({ kind: c.entity, id: c.id, body })
        .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet({ body })).execute();
    } else {
      await tx.db.deleteFrom('identity_records').where('kind', '=', c.entity).where('id', '=', c.id).execute();
    }
    await tx.append(c.entity, c.id, c.op, c.body);
  },
  async read(trx, into) {
    const rows = await trx.selectFrom('identity_records').selectAll().orderBy('kind').orderBy('id').execute();
    into.identity = rows.map((r) => ({ kind: r.kind as IdentityKind, id: r.id, body: JSON.parse(r.body) as Record<string, unknown> }));
  },
  async load(tx, snapshot) {
    if (snapshot.identity === undefined) return; // absent from an older parent's snapshot: keep ours then
    const existing = await tx.db.selectFrom('identity_records').select(['kind', 'id']).execute();
    await replaceAll(tx, existing.map((r) => `${r.kind}/${r.id}`), snapshot.identity, (r) => `${r.kind}/${r.id}`,
      (k) => { const slash = k.indexOf('/'); return changeOf(k.slice(0, slash) as IdentityKind, k.slice(slash + 1), 'delete', { id: k.slice(slash + 1) }); },
      (r) => changeOf(r.kind, r.id, 'upsert', r.body));
  },
  digests: [{ name: 'identity', items: (s) => s.identity ?? [], key: (r: { kind: string; id: string }) => `${r.kind}/${r.id}` }],
};

/** In the order a snapshot is loaded: an image before its members. */
export const ENTITY_KINDS: readonly EntityKind[] = [
  images, members, tasks, bodyKind('site'), bodyKind('policy'), identity, bodyKind('metadef_resource_type'), bodyKind('metadef_namespace'),
];

/** Applies one change (a replicated one, or a local write of a kind kept whole: a site, a policy, an identity record). */
export async function applyChange(tx: WriteTx, c: Change): Promise<void> {
  const kind = ENTITY_KINDS.find((k) => k.entities.includes(c.entity));
  if (kind === undefined) throw new Error(`change log: unknown entity kind ${c.entity}`);
  await kind.apply(tx, c);
}
