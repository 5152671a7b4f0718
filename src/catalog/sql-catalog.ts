import { setMaxListeners } from 'node:events';
import { createHash } from 'node:crypto';
import { Kysely, SqliteDialect, sql, type Expression, type ExpressionBuilder, type SqlBool, type Transaction } from 'kysely';
import { ConflictError, ImageNotFoundError, NotFoundError } from '../core/errors.ts';
import { IDENTITY_KINDS } from '../core/ports.ts';
import { setProperty, type Image, type ImageMember } from '../core/image.ts';
import type {
  AttributeFilter, CacheEntry, CacheIndex, Catalog, Change, ChangeEntity, ChangeLog, IdentityKind, IdentityRecord, IdentityStore, ImageListQuery,
  ChunkIndex, Heartbeat, HeldChunk, InventoryStore, IoOptions, ManifestIndex, Replica, Site, SiteInventory, Snapshot, SortKey, TaskListQuery,
} from '../core/ports.ts';
import type { Task } from '../core/task.ts';
import type { ChunkManifest } from '../core/chunk-manifest.ts';
import type { PolicyRecord } from '../core/placement-policy.ts';
import { migrate } from './migrations.ts';
import { NodeSqliteDatabase } from './node-sqlite-database.ts';
import type { CatalogTables, ImageRow, TaskRow } from './tables.ts';

type Db = Kysely<CatalogTables> | Transaction<CatalogTables>;
type Eb = ExpressionBuilder<CatalogTables, 'images'>;

const NULLABLE_TEXT = new Set<SortKey>(['name', 'container_format', 'disk_format']);

interface SortTerm {
  expr: Expression<unknown>;
  value: (image: Image) => string | number;
}

/**
 * Sort/marker terms of a key, with NULLs below every real value so keyset pages are total. A
 * nullable text column gets an is-null term first, so NULL sorts strictly before ''.
 */
function sortTerms(key: SortKey): SortTerm[] {
  const col = sql.ref(`images.${key}`);
  if (NULLABLE_TEXT.has(key)) {
    return [
      { expr: sql`case when ${col} is null then 0 else 1 end`, value: (i) => (i[key] === null ? 0 : 1) },
      { expr: sql`coalesce(${col}, '')`, value: (i) => i[key] ?? '' },
    ];
  }
  if (key === 'size') return [{ expr: sql`coalesce(images.size, -1)`, value: (i) => i.size ?? -1 }];
  return [{ expr: col, value: (i) => i[key] as string }];
}

function throwIfAborted(opts: IoOptions | undefined): void {
  opts?.signal?.throwIfAborted();
}

/**
 * The `Catalog` port on a relational database through Kysely. SQLite (node:sqlite) now;
 * PostgreSQL uses the same queries through another Kysely dialect. Every mutation and its
 * change-log row are written in one transaction.
 */
export class SqlCatalog implements Catalog, ChangeLog, Replica, CacheIndex, ManifestIndex, ChunkIndex, InventoryStore, IdentityStore {
  readonly #db: Kysely<CatalogTables>;
  /** Wakes long-polling feed readers after a commit that appended changes. */
  readonly #committed = new EventTarget();
  #waiters = 0;
  /** Bumped by every write that may touch identity records (one process per database file). */
  #identityVersion = 0;

  private constructor(db: Kysely<CatalogTables>) {
    // Every waiting long poll listens: hundreds of followers are expected, not a leak.
    setMaxListeners(0, this.#committed);
    this.#db = db;
  }

  /** Opens (creating if needed) a SQLite catalog file and brings its schema up to date. */
  static async openSqlite(path: string): Promise<SqlCatalog> {
    const db = new Kysely<CatalogTables>({ dialect: new SqliteDialect({ database: new NodeSqliteDatabase(path) }) });
    await migrate(db);
    return new SqlCatalog(db);
  }

  /** Runs a writing transaction, then wakes whoever waits for new changes. */
  async #tx<T>(fn: (trx: Transaction<CatalogTables>) => Promise<T>): Promise<T> {
    const result = await this.#db.transaction().execute(fn);
    // One read of the new position per commit, whatever the number of long polls waiting.
    if (this.#waiters > 0) this.#committed.dispatchEvent(new CustomEvent('commit', { detail: await this.lastSeq() }));
    return result;
  }

  async close(): Promise<void> {
    await this.#db.destroy();
  }

  // -- reads ----------------------------------------------------------------------------------

  async getImage(id: string, opts?: IoOptions): Promise<Image | undefined> {
    throwIfAborted(opts);
    return this.#load(this.#db, id);
  }

  async #load(db: Db, id: string): Promise<Image | undefined> {
    const row = await db.selectFrom('images').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
    if (row === undefined) return undefined;
    return (await this.#hydrate(db, [row]))[0];
  }

  /** Attaches tags, properties and locations to image rows (three queries for any page size). */
  async #hydrate(db: Db, rows: ImageRow[]): Promise<Image[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const [props, tags, locs] = await Promise.all([
      db.selectFrom('image_properties').selectAll().where('image_id', 'in', ids).execute(),
      db.selectFrom('image_tags').selectAll().where('image_id', 'in', ids).orderBy('position').execute(),
      db.selectFrom('image_locations').selectAll().where('image_id', 'in', ids).orderBy('position').execute(),
    ]);
    const images = new Map(rows.map((r) => [r.id, rowToImage(r)]));
    for (const p of props) setProperty(images.get(p.image_id)!.properties, p.name, p.value);
    for (const t of tags) images.get(t.image_id)!.tags.push(t.tag);
    for (const l of locs) images.get(l.image_id)!.locations.push(l.placed_by === 'policy' ? { store: l.store, url: l.url, placed_by: 'policy' } : { store: l.store, url: l.url });
    return [...images.values()];
  }

  async listImages(query: ImageListQuery, opts?: IoOptions): Promise<Image[]> {
    throwIfAborted(opts);
    if (query.limit === 0) return [];
    let q = this.#db.selectFrom('images').selectAll().where('deleted_at', 'is', null);
    q = q.where((eb) => scopeCondition(eb, query));
    for (const [attr, filter] of Object.entries(query.base)) {
      q = q.where((eb) => attributeCondition(eb, attr, filter!));
    }
    for (const [name, value] of Object.entries(query.properties)) {
      q = q.where((eb) => eb.exists(eb.selectFrom('image_properties as p').select(sql.lit(1).as('one'))
        .whereRef('p.image_id', '=', 'images.id').where('p.name', '=', name).where('p.value', '=', value)));
    }
    for (const tag of query.tags) {
      q = q.where((eb) => eb.exists(eb.selectFrom('image_tags as t').select(sql.lit(1).as('one'))
        .whereRef('t.image_id', '=', 'images.id').where('t.tag', '=', tag)));
    }
    if (query.sizeMin !== undefined) q = q.where('size', '>=', query.sizeMin);
    if (query.sizeMax !== undefined) q = q.where('size', '<=', query.sizeMax);
    const terms = query.sort.flatMap((s) => sortTerms(s.key).map((t) => ({ ...t, dir: s.dir })));
    const marker = query.marker;
    if (marker !== undefined) {
      q = q.where((eb) => eb.or(terms.map((s, i) => eb.and([
        ...terms.slice(0, i).map((p) => eb(p.expr, '=', p.value(marker))),
        eb(s.expr, s.dir === 'asc' ? '>' : '<', s.value(marker)),
      ]))));
    }
    for (const s of terms) q = q.orderBy(s.expr, s.dir);
    const rows = await q.limit(query.limit).execute();
    const byId = new Map((await this.#hydrate(this.#db, rows)).map((i) => [i.id, i]));
    return rows.map((r) => byId.get(r.id)!);
  }

  async getMember(imageId: string, memberId: string, opts?: IoOptions): Promise<ImageMember | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('image_members').selectAll()
      .where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst();
    return row === undefined ? undefined : { ...row, status: row.status as ImageMember['status'] };
  }

  async listMembers(imageId: string, opts?: IoOptions): Promise<ImageMember[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('image_members').selectAll().where('image_id', '=', imageId)
      .orderBy('created_at').orderBy('member_id').execute();
    return rows.map((r) => ({ ...r, status: r.status as ImageMember['status'] }));
  }

  async changesSince(since: number, limit: number, opts?: IoOptions): Promise<Change[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('changes').selectAll().where('seq', '>', since).orderBy('seq').limit(limit).execute();
    return rows.map((r) => ({
      seq: Number(r.seq), entity: r.entity as ChangeEntity, id: r.entity_id, op: r.op as Change['op'], body: JSON.parse(r.body), at: r.at,
    }));
  }

  // -- writes ---------------------------------------------------------------------------------

  async createImage(image: Image, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const existing = await trx.selectFrom('images').select('id').where('id', '=', image.id).executeTakeFirst();
      if (existing !== undefined) throw new ConflictError(`Image with identifier ${image.id} already exists!`);
      await trx.insertInto('images').values(imageToRow(image)).execute();
      await writeChildren(trx, image);
      await appendChange(trx, 'image', image.id, 'upsert', image);
    });
  }

  async updateImage(id: string, mutate: (current: Image) => Image, opts?: IoOptions): Promise<Image> {
    throwIfAborted(opts);
    return this.#tx(async (trx) => {
      const current = await this.#load(trx, id);
      if (current === undefined) throw new ImageNotFoundError(id);
      const next = mutate(structuredClone(current));
      if (JSON.stringify(next) === JSON.stringify(current)) return current;
      const { id: _id, ...row } = imageToRow(next);
      await trx.updateTable('images').set(row).where('id', '=', id).execute();
      if (JSON.stringify([next.tags, next.properties, next.locations]) !== JSON.stringify([current.tags, current.properties, current.locations])) {
        await deleteChildren(trx, id);
        await writeChildren(trx, next);
      }
      await appendChange(trx, 'image', id, 'upsert', next);
      return next;
    });
  }

  async deleteImage(id: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const now = new Date().toISOString();
      const r = await trx.updateTable('images').set({ status: 'deleted', deleted_at: now, updated_at: now })
        .where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) throw new ImageNotFoundError(id);
      await deleteChildren(trx, id);
      await trx.deleteFrom('image_members').where('image_id', '=', id).execute();
      await appendChange(trx, 'image', id, 'delete', { id });
    });
  }

  async addMember(member: ImageMember, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const image = await trx.selectFrom('images').select('id')
        .where('id', '=', member.image_id).where('deleted_at', 'is', null).executeTakeFirst();
      if (image === undefined) throw new ImageNotFoundError(member.image_id);
      const existing = await trx.selectFrom('image_members').select('member_id')
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id).executeTakeFirst();
      if (existing !== undefined) {
        throw new ConflictError(`Member ${member.member_id} already exists for image ${member.image_id}`);
      }
      await trx.insertInto('image_members').values(member).execute();
      await appendChange(trx, 'member', `${member.image_id}/${member.member_id}`, 'upsert', member);
    });
  }

  async updateMember(member: ImageMember, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const existing = await trx.selectFrom('image_members').selectAll()
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id).executeTakeFirst();
      if (existing === undefined) throw new NotFoundError(`${member.member_id} is not a member of image ${member.image_id}`);
      const stored: ImageMember = { ...existing, status: member.status, updated_at: member.updated_at };
      await trx.updateTable('image_members').set({ status: stored.status, updated_at: stored.updated_at })
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id).execute();
      await appendChange(trx, 'member', `${member.image_id}/${member.member_id}`, 'upsert', stored);
    });
  }

  async removeMember(imageId: string, memberId: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const r = await trx.deleteFrom('image_members').where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw new NotFoundError(`${memberId} is not a member of image ${imageId}`);
      await appendChange(trx, 'member', `${imageId}/${memberId}`, 'delete', { image_id: imageId, member_id: memberId });
    });
  }

  // -- sites ----------------------------------------------------------------------------------

  async upsertSite(site: Site, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => applyChange(trx, { seq: 0, entity: 'site', id: site.id, op: 'upsert', body: site, at: '' }));
  }

  async deleteSite(id: string, opts?: IoOptions): Promise<boolean> {
    throwIfAborted(opts);
    return this.#tx(async (trx) => {
      if ((await trx.selectFrom('sites').select('id').where('id', '=', id).executeTakeFirst()) === undefined) return false;
      await applyChange(trx, { seq: 0, entity: 'site', id, op: 'delete', body: { id }, at: '' });
      await trx.deleteFrom('site_heartbeats').where('site_id', '=', id).execute();
      return true;
    });
  }

  async getSite(id: string, opts?: IoOptions): Promise<Site | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('sites').select('body').where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as Site;
  }

  async listSites(opts?: IoOptions): Promise<Site[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('sites').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as Site);
  }

  async imagesInStores(storeIds: readonly string[], opts?: IoOptions): Promise<Image[]> {
    throwIfAborted(opts);
    if (storeIds.length === 0) return [];
    const rows = await this.#db.selectFrom('images').selectAll()
      .where('deleted_at', 'is', null)
      .where('id', 'in', (eb) => eb.selectFrom('image_locations').select('image_id').where('store', 'in', [...storeIds]))
      .orderBy('id').execute();
    return this.#hydrate(this.#db, rows);
  }

  // -- identity (public records through the change log; secrets local) ---------------------------

  identityVersion(): number {
    return this.#identityVersion;
  }

  async putIdentity(record: IdentityRecord, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#identityWrite(() => this.#tx(async (trx) => applyChange(trx, { seq: 0, entity: record.kind, id: record.id, op: 'upsert', body: record.body, at: '' })));
  }

  /** Runs a write that may change identity records; the version moves once it has committed (or failed). */
  async #identityWrite<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } finally {
      this.#identityVersion++;
    }
  }

  async deleteIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<boolean> {
    throwIfAborted(opts);
    return this.#identityWrite(() => this.#tx(async (trx) => {
      const row = await trx.selectFrom('identity_records').select('id').where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
      if (row === undefined) return false;
      await applyChange(trx, { seq: 0, entity: kind, id, op: 'delete', body: { id }, at: '' });
      return true;
    }));
  }

  async getIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<Record<string, unknown> | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('identity_records').select('body').where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as Record<string, unknown>;
  }

  async listIdentity(kind: IdentityKind, opts?: IoOptions): Promise<Record<string, unknown>[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('identity_records').select('body').where('kind', '=', kind).orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as Record<string, unknown>);
  }

  async getSecret(name: string, opts?: IoOptions): Promise<string | undefined> {
    throwIfAborted(opts);
    return (await this.#db.selectFrom('identity_secrets').select('value').where('name', '=', name).executeTakeFirst())?.value;
  }

  async setSecret(name: string, value: string | null, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    if (value === null) await this.#db.deleteFrom('identity_secrets').where('name', '=', name).execute();
    else await this.#db.insertInto('identity_secrets').values({ name, value }).onConflict((oc) => oc.column('name').doUpdateSet({ value })).execute();
  }

  // -- inventories sites reported (central; not in the change log) ---------------------------------

  async putInventory(inventory: SiteInventory, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    const body = JSON.stringify(inventory);
    await this.#db.transaction().execute(async (trx) => {
      await trx.insertInto('site_inventories').values({ site_id: inventory.site, body, revision: 1 })
        .onConflict((oc) => oc.column('site_id').doUpdateSet((eb) => ({ body, revision: eb('site_inventories.revision', '+', 1) }))).execute();
      await trx.deleteFrom('inventory_copies').where('site_id', '=', inventory.site).execute();
      // Cached copies only: a stored one is a location in the catalog already, which is where an
      // image's stores come from first (and a report lags behind a removed location).
      const copies = [...new Map(inventory.images.filter((i) => i.state !== 'stored').map((i) => [`${i.image_id}/${i.store}`, i])).values()]
        .map((i) => ({ image_id: i.image_id, site_id: inventory.site, store: i.store }));
      // SQLite allows 32766 bound parameters per statement: 3 per row.
      for (let i = 0; i < copies.length; i += 5000) await trx.insertInto('inventory_copies').values(copies.slice(i, i + 5000)).execute();
    });
  }

  async deleteInventory(siteId: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('inventory_copies').where('site_id', '=', siteId).execute();
      await trx.deleteFrom('site_inventories').where('site_id', '=', siteId).execute();
    });
  }

  async getInventory(siteId: string, opts?: IoOptions): Promise<SiteInventory | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('site_inventories').select('body').where('site_id', '=', siteId).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as SiteInventory;
  }

  async listInventories(opts?: IoOptions & { sites?: readonly string[] }): Promise<SiteInventory[]> {
    throwIfAborted(opts);
    if (opts?.sites === undefined) {
      const rows = await this.#db.selectFrom('site_inventories').select('body').orderBy('site_id').execute();
      return rows.map((r) => JSON.parse(r.body) as SiteInventory);
    }
    const out: SiteInventory[] = [];
    const sites = [...opts.sites].sort();
    for (let i = 0; i < sites.length; i += 500) {
      const rows = await this.#db.selectFrom('site_inventories').select('body').where('site_id', 'in', sites.slice(i, i + 500)).orderBy('site_id').execute();
      for (const r of rows) out.push(JSON.parse(r.body) as SiteInventory);
    }
    return out;
  }

  async putHeartbeat(site: string, heartbeat: Heartbeat, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    const row = { last_contact: heartbeat.last_contact, lag_changes: heartbeat.lag_changes };
    await this.#db.insertInto('site_heartbeats').values({ site_id: site, ...row }).onConflict((oc) => oc.column('site_id').doUpdateSet(row)).execute();
  }

  async listHeartbeats(opts?: IoOptions): Promise<Map<string, Heartbeat>> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('site_heartbeats').selectAll().execute();
    return new Map(rows.map((r) => [r.site_id, { last_contact: r.last_contact, lag_changes: r.lag_changes === null ? null : Number(r.lag_changes) }]));
  }

  async inventoryRevisions(opts?: IoOptions): Promise<Map<string, number>> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('site_inventories').select(['site_id', 'revision']).execute();
    return new Map(rows.map((r) => [r.site_id, Number(r.revision)]));
  }

  async storesHolding(imageIds: readonly string[], opts?: IoOptions): Promise<Map<string, string[]>> {
    throwIfAborted(opts);
    const out = new Map<string, string[]>();
    if (imageIds.length === 0) return out;
    const rows = await this.#db.selectFrom('inventory_copies').select(['image_id', 'store'])
      .where('image_id', 'in', [...imageIds]).orderBy('image_id').orderBy('store').execute();
    for (const r of rows) {
      const stores = out.get(r.image_id) ?? [];
      if (!stores.includes(r.store)) stores.push(r.store);
      out.set(r.image_id, stores);
    }
    return out;
  }

  // -- the edge cache's bookkeeping (local: not in the change log) ------------------------------

  async listCacheEntries(opts?: IoOptions): Promise<CacheEntry[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('cache_entries').select('body').orderBy('image_id').execute();
    return rows.map((r) => JSON.parse(r.body) as CacheEntry);
  }

  async putCacheEntry(entry: CacheEntry, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    const body = JSON.stringify(entry);
    await this.#db.insertInto('cache_entries').values({ image_id: entry.image_id, body })
      .onConflict((oc) => oc.column('image_id').doUpdateSet({ body })).execute();
  }

  async deleteCacheEntry(imageId: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#db.deleteFrom('cache_entries').where('image_id', '=', imageId).execute();
  }

  // -- chunk manifests (local: not in the change log; the same bytes give the same manifest) ----

  async getManifest(imageId: string, sha512: string, opts?: IoOptions): Promise<ChunkManifest | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('image_manifests').select('body').where('image_id', '=', imageId).where('sha512', '=', sha512).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as ChunkManifest;
  }

  async putManifest(imageId: string, sha512: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    const body = JSON.stringify(manifest);
    await this.#db.insertInto('image_manifests').values({ image_id: imageId, sha512, body })
      .onConflict((oc) => oc.column('image_id').doUpdateSet({ sha512, body })).execute();
  }

  async deleteManifest(imageId: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#db.deleteFrom('image_manifests').where('image_id', '=', imageId).execute();
  }

  // -- the chunks of the copies this site holds (local) ---------------------------------------

  async addHeldCopy(store: string, key: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#db.transaction().execute(async (tx) => {
      await tx.deleteFrom('held_chunks').where('store', '=', store).where('key', '=', key).execute();
      const rows = manifest.chunks.filter((c) => c.zero !== true).map((c) => ({ sha256: c.sha256, length: c.length, store, key, offset: c.offset }));
      // SQLite takes at most 32766 bound parameters per statement: 5 per row.
      for (let i = 0; i < rows.length; i += 5000) await tx.insertInto('held_chunks').values(rows.slice(i, i + 5000)).execute();
    });
  }

  async removeHeldCopy(store: string, key: string, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#db.deleteFrom('held_chunks').where('store', '=', store).where('key', '=', key).execute();
  }

  async findChunk(sha256: string, length: number, opts?: IoOptions & { limit?: number }): Promise<HeldChunk[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('held_chunks').select(['store', 'key', 'offset', 'length'])
      .where('sha256', '=', sha256).where('length', '=', length).limit(opts?.limit ?? 4).execute();
    return rows.map((r) => ({ store: r.store, key: r.key, offset: r.offset, length: r.length }));
  }


  // -- change log and replica ----------------------------------------------------------------

  async lastSeq(opts?: IoOptions): Promise<number> {
    throwIfAborted(opts);
    return lastSeqOf(this.#db);
  }

  async firstSeq(opts?: IoOptions): Promise<number> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('changes').select((eb) => eb.fn.min('seq').as('seq')).executeTakeFirst();
    return row?.seq === null || row?.seq === undefined ? (await this.lastSeq()) + 1 : Number(row.seq);
  }

  async waitForChange(after: number, timeoutMs: number, opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    if (timeoutMs <= 0) return;
    // Listening starts before the position is read, so a commit in between is not missed.
    this.#waiters++;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#committed.removeEventListener('commit', onCommit);
        opts.signal?.removeEventListener('abort', done);
        resolve();
      };
      const onCommit = (event: Event) => {
        if ((event as CustomEvent<number>).detail > after) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#committed.addEventListener('commit', onCommit);
      opts.signal?.addEventListener('abort', done, { once: true });
      void this.lastSeq().then((seq) => { if (seq > after) done(); }, done);
    }).finally(() => { this.#waiters--; });
  }

  async truncate(keep: number, opts?: IoOptions): Promise<number> {
    throwIfAborted(opts);
    const last = await this.lastSeq();
    const r = await this.#db.deleteFrom('changes').where('seq', '<=', last - keep).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  // -- placement policies (replicated like sites) --------------------------------------------

  async upsertPolicy(policy: PolicyRecord, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => applyChange(trx, { seq: 0, entity: 'policy', id: policy.id, op: 'upsert', body: policy, at: '' }));
  }

  async deletePolicy(id: string, opts?: IoOptions): Promise<boolean> {
    throwIfAborted(opts);
    return this.#tx(async (trx) => {
      if ((await trx.selectFrom('placement_policies').select('id').where('id', '=', id).executeTakeFirst()) === undefined) return false;
      await applyChange(trx, { seq: 0, entity: 'policy', id, op: 'delete', body: { id }, at: '' });
      return true;
    });
  }

  async getPolicy(id: string, opts?: IoOptions): Promise<PolicyRecord | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('placement_policies').select('body').where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as PolicyRecord;
  }

  async listPolicies(opts?: IoOptions): Promise<PolicyRecord[]> {
    throwIfAborted(opts);
    const rows = await this.#db.selectFrom('placement_policies').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as PolicyRecord);
  }

  async snapshot(opts?: IoOptions): Promise<Snapshot> {
    throwIfAborted(opts);
    // One transaction: the entities and the seq are read at the same point of the log.
    return this.#db.transaction().execute(async (trx) => {
      const seq = await lastSeqOf(trx);
      const rows = await trx.selectFrom('images').selectAll().where('deleted_at', 'is', null).orderBy('id').execute();
      const deleted = await trx.selectFrom('images').select('id').where('deleted_at', 'is not', null).orderBy('id').execute();
      const members = await trx.selectFrom('image_members').selectAll().orderBy('image_id').orderBy('member_id').execute();
      const tasks = await trx.selectFrom('tasks').selectAll().orderBy('id').execute();
      const sites = await trx.selectFrom('sites').select('body').orderBy('id').execute();
      const policies = await trx.selectFrom('placement_policies').select('body').orderBy('id').execute();
      const identity = await trx.selectFrom('identity_records').selectAll().orderBy('kind').orderBy('id').execute();
      return {
        seq,
        images: await this.#hydrate(trx, rows),
        deleted: deleted.map((d) => d.id),
        members: members.map((m) => ({ ...m, status: m.status as ImageMember['status'] })),
        tasks: tasks.map(rowToTask),
        sites: sites.map((r) => JSON.parse(r.body) as Site),
        policies: policies.map((r) => JSON.parse(r.body) as PolicyRecord),
        identity: identity.map((r) => ({ kind: r.kind as IdentityKind, id: r.id, body: JSON.parse(r.body) as Record<string, unknown> })),
      };
    });
  }

  async digest(opts?: IoOptions): Promise<{ seq: number; digests: Record<string, string> }> {
    const snap = await this.snapshot(opts);
    const hash = (items: unknown[], key: (x: any) => string) => {
      const h = createHash('sha256');
      for (const line of items.map((x) => `${key(x)} ${canonicalJson(x)}`).sort()) h.update(line).update('\n');
      return h.digest('hex');
    };
    return {
      seq: snap.seq,
      digests: {
        images: hash(snap.images, (i) => i.id),
        deleted: hash(snap.deleted, (id) => id),
        members: hash(snap.members, (m) => `${m.image_id}/${m.member_id}`),
        tasks: hash(snap.tasks, (t) => t.id),
        sites: hash(snap.sites, (x) => x.id),
        policies: hash(snap.policies ?? [], (x) => x.id),
        identity: hash(snap.identity ?? [], (r) => `${r.kind}/${r.id}`),
      },
    };
  }

  async position(opts?: IoOptions): Promise<number> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('replication_state').select('value').where('name', '=', 'parent_seq').executeTakeFirst();
    return row === undefined ? 0 : Number(row.value);
  }

  async apply(changes: readonly Change[], position: number, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#identityWrite(() => this.#tx(async (trx) => {
      for (const change of changes) await applyChange(trx, change);
      await setPosition(trx, position);
    }));
  }

  async load(snapshot: Snapshot, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#identityWrite(() => this.#tx(async (trx) => {
      // Every entity is replaced; what the snapshot no longer has is deleted (and logged as such
      // for this site's own followers).
      // An image the parent never had (live or tombstone) goes entirely, with its children and
      // members (foreign keys cascade): a tombstone the parent lacks would fail every audit.
      const known = new Set([...snapshot.images.map((i) => i.id), ...snapshot.deleted]);
      for (const { id, deleted_at } of await trx.selectFrom('images').select(['id', 'deleted_at']).execute()) {
        if (known.has(id)) continue;
        if (deleted_at === null) await appendChange(trx, 'image', id, 'delete', { id });
        await trx.deleteFrom('images').where('id', '=', id).execute();
      }
      for (const id of snapshot.deleted) {
        await applyChange(trx, { seq: 0, entity: 'image', id, op: 'delete', body: { id }, at: '' });
      }
      for (const image of snapshot.images) await applyChange(trx, { seq: 0, entity: 'image', id: image.id, op: 'upsert', body: image, at: '' });
      const members = await trx.selectFrom('image_members').select(['image_id', 'member_id']).execute();
      const keepMembers = new Set(snapshot.members.map((m) => `${m.image_id}/${m.member_id}`));
      for (const m of members) {
        if (!keepMembers.has(`${m.image_id}/${m.member_id}`)) {
          await applyChange(trx, { seq: 0, entity: 'member', id: `${m.image_id}/${m.member_id}`, op: 'delete', body: m, at: '' });
        }
      }
      for (const m of snapshot.members) {
        await applyChange(trx, { seq: 0, entity: 'member', id: `${m.image_id}/${m.member_id}`, op: 'upsert', body: m, at: '' });
      }
      const keepTasks = new Set(snapshot.tasks.map((t) => t.id));
      for (const { id } of await trx.selectFrom('tasks').select('id').execute()) {
        if (!keepTasks.has(id)) await applyChange(trx, { seq: 0, entity: 'task', id, op: 'delete', body: { id }, at: '' });
      }
      for (const t of snapshot.tasks) await applyChange(trx, { seq: 0, entity: 'task', id: t.id, op: 'upsert', body: t, at: '' });
      if (snapshot.sites !== undefined) { // absent from an older parent's snapshot: keep ours then
        const keepSites = new Set(snapshot.sites.map((x) => x.id));
        for (const { id } of await trx.selectFrom('sites').select('id').execute()) {
          if (!keepSites.has(id)) await applyChange(trx, { seq: 0, entity: 'site', id, op: 'delete', body: { id }, at: '' });
        }
      }
      for (const site of snapshot.sites ?? []) await applyChange(trx, { seq: 0, entity: 'site', id: site.id, op: 'upsert', body: site, at: '' });
      if (snapshot.policies !== undefined) { // absent from an older parent's snapshot: keep ours then
        const keep = new Set(snapshot.policies.map((p) => p.id));
        for (const { id } of await trx.selectFrom('placement_policies').select('id').execute()) {
          if (!keep.has(id)) await applyChange(trx, { seq: 0, entity: 'policy', id, op: 'delete', body: { id }, at: '' });
        }
        for (const p of snapshot.policies) await applyChange(trx, { seq: 0, entity: 'policy', id: p.id, op: 'upsert', body: p, at: '' });
      }
      if (snapshot.identity !== undefined) {
        const keep = new Set(snapshot.identity.map((r) => `${r.kind}/${r.id}`));
        for (const r of await trx.selectFrom('identity_records').select(['kind', 'id']).execute()) {
          if (!keep.has(`${r.kind}/${r.id}`)) await applyChange(trx, { seq: 0, entity: r.kind as IdentityKind, id: r.id, op: 'delete', body: { id: r.id }, at: '' });
        }
        for (const r of snapshot.identity) await applyChange(trx, { seq: 0, entity: r.kind, id: r.id, op: 'upsert', body: r.body, at: '' });
      }
      await setPosition(trx, snapshot.seq);
    }));
  }

  // -- tasks ----------------------------------------------------------------------------------

  async createTask(task: Task, opts?: IoOptions): Promise<void> {
    throwIfAborted(opts);
    await this.#tx(async (trx) => {
      const existing = await trx.selectFrom('tasks').select('id').where('id', '=', task.id).executeTakeFirst();
      if (existing !== undefined) throw new ConflictError(`Task with identifier ${task.id} already exists`);
      await trx.insertInto('tasks').values(taskToRow(task)).execute();
      await appendChange(trx, 'task', task.id, 'upsert', task);
    });
  }

  async getTask(id: string, opts?: IoOptions): Promise<Task | undefined> {
    throwIfAborted(opts);
    const row = await this.#db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : rowToTask(row);
  }

  async updateTask(id: string, mutate: (current: Task) => Task, opts?: IoOptions): Promise<Task> {
    throwIfAborted(opts);
    return this.#tx(async (trx) => {
      const row = await trx.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
      if (row === undefined) throw new NotFoundError(`Task with identifier ${id} not found`);
      const current = rowToTask(row);
      const next = mutate(structuredClone(current));
      if (JSON.stringify(next) === JSON.stringify(current)) return current;
      const { id: _id, ...values } = taskToRow(next);
      await trx.updateTable('tasks').set(values).where('id', '=', id).execute();
      await appendChange(trx, 'task', id, 'upsert', next);
      return next;
    });
  }

  async listTasks(query: TaskListQuery, opts?: IoOptions): Promise<Task[]> {
    throwIfAborted(opts);
    let q = this.#db.selectFrom('tasks').selectAll();
    if (query.imageId !== undefined) q = q.where('image_id', '=', query.imageId);
    if (query.statuses !== undefined) q = q.where('status', 'in', [...query.statuses]);
    if (query.type !== undefined) q = q.where('type', '=', query.type);
    const key = query.sortKey ?? 'created_at';
    const dir = query.sortDir ?? 'desc';
    const marker = query.marker;
    if (marker !== undefined) {
      const cmp = dir === 'asc' ? '>' : '<';
      q = q.where((eb) => eb.or([
        eb(key, cmp, marker[key]),
        eb.and([eb(key, '=', marker[key]), eb('id', cmp, marker.id)]),
      ]));
    }
    const rows = await q.orderBy(key, dir).orderBy('id', dir).limit(query.limit).execute();
    return rows.map(rowToTask);
  }
}

// -- row mapping and helpers ------------------------------------------------------------------

function imageToRow(i: Image): ImageRow {
  return {
    id: i.id, name: i.name, status: i.status, visibility: i.visibility, protected: i.protected ? 1 : 0,
    os_hidden: i.os_hidden ? 1 : 0, checksum: i.checksum, os_hash_algo: i.os_hash_algo, os_hash_value: i.os_hash_value,
    size: i.size, virtual_size: i.virtual_size, disk_format: i.disk_format, container_format: i.container_format,
    min_disk: i.min_disk, min_ram: i.min_ram, owner: i.owner, created_at: i.created_at, updated_at: i.updated_at,
    deleted_at: null,
  };
}

function rowToImage(r: ImageRow): Image {
  return {
    id: r.id, name: r.name, status: r.status as Image['status'], visibility: r.visibility as Image['visibility'],
    protected: r.protected === 1, os_hidden: r.os_hidden === 1, checksum: r.checksum, os_hash_algo: r.os_hash_algo,
    os_hash_value: r.os_hash_value, size: r.size === null ? null : Number(r.size),
    virtual_size: r.virtual_size === null ? null : Number(r.virtual_size), disk_format: r.disk_format,
    container_format: r.container_format, min_disk: Number(r.min_disk), min_ram: Number(r.min_ram), owner: r.owner,
    created_at: r.created_at, updated_at: r.updated_at, tags: [], properties: {}, locations: [],
  };
}

function taskToRow(t: Task): TaskRow {
  return {
    ...t, input: JSON.stringify(t.input), result: t.result === null ? null : JSON.stringify(t.result),
  };
}

function rowToTask(r: TaskRow): Task {
  return {
    ...r, type: 'api_image_import', status: r.status as Task['status'], input: JSON.parse(r.input),
    result: r.result === null ? null : JSON.parse(r.result),
  };
}

async function lastSeqOf(db: Db): Promise<number> {
  const row = await db.selectFrom('changes').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
  if (row?.seq !== null && row?.seq !== undefined) return Number(row.seq);
  // An empty (or fully truncated) log still continues from the highest seq ever assigned.
  const seqRow = await sql<{ seq: number }>`select seq from sqlite_sequence where name = 'changes'`.execute(db).catch(() => ({ rows: [] }));
  return Number(seqRow.rows[0]?.seq ?? 0);
}

/** JSON with object keys sorted, so that equal contents hash equally whatever order they were written in. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v === null || typeof v !== 'object' || Array.isArray(v)
    ? v
    : Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))));
}

async function setPosition(trx: Transaction<CatalogTables>, position: number): Promise<void> {
  await trx.insertInto('replication_state').values({ name: 'parent_seq', value: position })
    .onConflict((oc) => oc.column('name').doUpdateSet({ value: position })).execute();
}

/**
 * Applies one replicated change, idempotently (applying it twice leaves the same state), and
 * appends it to this site's own change log.
 */
async function applyChange(trx: Transaction<CatalogTables>, change: Change): Promise<void> {
  if (change.entity === 'image') {
    if (change.op === 'upsert') {
      const image = change.body as Image;
      const { id: _id, ...row } = imageToRow(image);
      await trx.insertInto('images').values(imageToRow(image)).onConflict((oc) => oc.column('id').doUpdateSet(row)).execute();
      await deleteChildren(trx, image.id);
      await writeChildren(trx, image);
      await appendChange(trx, 'image', image.id, 'upsert', image);
    } else {
      const now = new Date().toISOString();
      const existing = await trx.selectFrom('images').select(['id', 'deleted_at']).where('id', '=', change.id).executeTakeFirst();
      if (existing !== undefined && existing.deleted_at !== null) return;
      if (existing === undefined) {
        // A tombstone, so that the id is never reused here either.
        await trx.insertInto('images').values({
          id: change.id, name: null, status: 'deleted', visibility: 'private', protected: 0, os_hidden: 0, checksum: null,
          os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null, container_format: null,
          min_disk: 0, min_ram: 0, owner: null, created_at: now, updated_at: now, deleted_at: now,
        }).execute();
      } else {
        await trx.updateTable('images').set({ status: 'deleted', deleted_at: now, updated_at: now }).where('id', '=', change.id).execute();
        await deleteChildren(trx, change.id);
        await trx.deleteFrom('image_members').where('image_id', '=', change.id).execute();
      }
      await appendChange(trx, 'image', change.id, 'delete', { id: change.id });
    }
  } else if (change.entity === 'member') {
    const m = change.body as ImageMember;
    if (change.op === 'upsert') {
      const image = await trx.selectFrom('images').select('id').where('id', '=', m.image_id).where('deleted_at', 'is', null).executeTakeFirst();
      if (image === undefined) return; // the image's delete is later in the log
      await trx.insertInto('image_members').values(m)
        .onConflict((oc) => oc.columns(['image_id', 'member_id']).doUpdateSet({ status: m.status, updated_at: m.updated_at, created_at: m.created_at }))
        .execute();
    } else {
      await trx.deleteFrom('image_members').where('image_id', '=', m.image_id).where('member_id', '=', m.member_id).execute();
    }
    await appendChange(trx, 'member', change.id, change.op, change.body);
  } else if ((IDENTITY_KINDS as readonly string[]).includes(change.entity)) {
    if (change.op === 'upsert') {
      const body = JSON.stringify(change.body);
      await trx.insertInto('identity_records').values({ kind: change.entity, id: change.id, body })
        .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet({ body })).execute();
    } else {
      await trx.deleteFrom('identity_records').where('kind', '=', change.entity).where('id', '=', change.id).execute();
    }
    await appendChange(trx, change.entity, change.id, change.op, change.body);
  } else if (change.op === 'delete') {
    // A task is deleted only by a load whose snapshot no longer has it; a site or policy also by deleteSite or deletePolicy.
    await trx.deleteFrom(change.entity === 'site' ? 'sites' : change.entity === 'policy' ? 'placement_policies' : 'tasks').where('id', '=', change.id).execute();
    await appendChange(trx, change.entity, change.id, 'delete', change.body);
  } else if (change.entity === 'site' || change.entity === 'policy') {
    const body = JSON.stringify(change.body);
    await trx.insertInto(change.entity === 'site' ? 'sites' : 'placement_policies').values({ id: change.id, body })
      .onConflict((oc) => oc.column('id').doUpdateSet({ body })).execute();
    await appendChange(trx, change.entity, change.id, 'upsert', change.body);
  } else {
    const t = change.body as Task;
    const { id: _id, ...row } = taskToRow(t);
    await trx.insertInto('tasks').values(taskToRow(t)).onConflict((oc) => oc.column('id').doUpdateSet(row)).execute();
    await appendChange(trx, 'task', t.id, 'upsert', t);
  }
}

async function writeChildren(trx: Transaction<CatalogTables>, image: Image): Promise<void> {
  const props = Object.entries(image.properties).map(([name, value]) => ({ image_id: image.id, name, value }));
  if (props.length > 0) await trx.insertInto('image_properties').values(props).execute();
  if (image.tags.length > 0) {
    await trx.insertInto('image_tags').values(image.tags.map((tag, position) => ({ image_id: image.id, tag, position }))).execute();
  }
  if (image.locations.length > 0) {
    await trx.insertInto('image_locations')
      .values(image.locations.map((l, position) => ({ image_id: image.id, store: l.store, url: l.url, position, placed_by: l.placed_by ?? null }))).execute();
  }
}

async function deleteChildren(trx: Transaction<CatalogTables>, id: string): Promise<void> {
  await trx.deleteFrom('image_properties').where('image_id', '=', id).execute();
  await trx.deleteFrom('image_tags').where('image_id', '=', id).execute();
  await trx.deleteFrom('image_locations').where('image_id', '=', id).execute();
}

async function appendChange(trx: Transaction<CatalogTables>, entity: ChangeEntity, id: string, op: Change['op'], body: unknown): Promise<void> {
  await trx.insertInto('changes').values({ entity, entity_id: id, op, body: JSON.stringify(body), at: new Date().toISOString() }).execute();
}

function memberExists(eb: Eb, projectId: string, status: string): Expression<SqlBool> {
  let sub = eb.selectFrom('image_members as m').select(sql.lit(1).as('one'))
    .whereRef('m.image_id', '=', 'images.id').where('m.member_id', '=', projectId);
  if (status !== 'all') sub = sub.where('m.status', '=', status);
  return eb.exists(sub);
}

/** The visibility scope of glance.db.sqlalchemy.api `_select_images_query`. */
function scopeCondition(eb: Eb, query: ImageListQuery): Expression<SqlBool> {
  const { admin, projectId, visibility, memberStatus } = query.scope;
  const vis = (v: string) => eb('images.visibility', '=', v);
  if (admin) {
    if (visibility === 'all') return sql<SqlBool>`1 = 1`;
    if (visibility !== undefined) return vis(visibility);
    // Without a visibility, community images only when the caller's project owns them — for
    // admins too (glance.db.sqlalchemy.api._image_get_all).
    const notCommunity = eb('images.visibility', '<>', 'community');
    return projectId === null ? notCommunity : eb.or([notCommunity, eb('images.owner', '=', projectId)]);
  }
  const mine = projectId === null ? sql<SqlBool>`1 = 0` : eb('images.owner', '=', projectId);
  const sharedWithMe = projectId === null ? sql<SqlBool>`1 = 0` : eb.and([vis('shared'), memberExists(eb, projectId, memberStatus)]);
  switch (visibility) {
    case undefined: return eb.or([vis('public'), mine, sharedWithMe]);
    case 'all': return eb.or([vis('public'), vis('community'), mine, sharedWithMe]);
    case 'public': return vis('public');
    case 'community': return vis('community');
    case 'private': return eb.and([vis('private'), mine]);
    case 'shared': return eb.and([vis('shared'), eb.or([mine, sharedWithMe])]);
  }
}

const COMPARE_SQL = { gt: '>', gte: '>=', eq: '=', neq: '<>', lt: '<', lte: '<=' } as const;

function attributeCondition(eb: Eb, attr: string, filter: AttributeFilter): Expression<SqlBool> {
  const col = sql.ref(`images.${attr}`);
  const coerce = (v: string): string | number => {
    if (attr === 'protected' || attr === 'os_hidden') return v === 'true' ? 1 : 0;
    if (['min_disk', 'min_ram', 'size', 'virtual_size'].includes(attr)) return Number(v);
    return v;
  };
  switch (filter.kind) {
    case 'eq': return eb(col, '=', coerce(filter.value));
    case 'in': return eb(col, 'in', filter.values.map(coerce));
    // Times are compared to the second, as the API shows them (and as Glance's DATETIME columns
    // hold them): created_at=eq:<a created_at the API showed> matches that image.
    case 'compare': return eb(sql`substr(${col}, 1, 19)`, COMPARE_SQL[filter.op], filter.value.slice(0, 19));
  }
}
