import { sql, type Kysely } from 'kysely';
import { ConflictError, ImageNotFoundError, NotFoundError } from '../core/errors.ts';
import type { Image, ImageMember } from '../core/image.ts';
import type { ImageListQuery, IoOptions } from '../core/ports.ts';
import type { CatalogDatabase } from './database.ts';
import { ImageChildren, imageOf } from './image-children.ts';
import { attributeCondition, scopeCondition, sortTerms } from './image-query.ts';
import { deleteImageChildren, imageToRow, rowToMember, writeImageChildren } from './rows.ts';
import type { CatalogTables } from './tables.ts';

/** The image aggregate: images with their tags, properties and locations, and their members. */
export class ImageRepository {
  readonly #db: CatalogDatabase;
  readonly #children: ImageChildren;

  constructor(db: CatalogDatabase) {
    this.#db = db;
    this.#children = new ImageChildren(db);
  }

  async getImage(id: string, opts?: IoOptions): Promise<Image | undefined> {
    opts?.signal?.throwIfAborted();
    return this.#load(this.#db.db, id);
  }

  /**
   * A live image, with its children, in one statement; with `lock`, its row is locked first and
   * stays locked until the transaction ends (a read-modify-write). The read comes after the lock:
   * under PostgreSQL's read committed, a statement that waited for a row lock gets the row's newest
   * version, but its subqueries (the children) would read as of that statement's start.
   */
  async #load(db: Kysely<CatalogTables>, id: string, lock = false): Promise<Image | undefined> {
    const live = db.selectFrom('images').where('id', '=', id).where('deleted_at', 'is', null);
    if (lock && (await this.#db.forUpdate(live.select('id')).executeTakeFirst()) === undefined) return undefined;
    const row = await live.selectAll().select(this.#children.ofRow).executeTakeFirst();
    return row === undefined ? undefined : imageOf(row);
  }

  async listImages(query: ImageListQuery, opts?: IoOptions): Promise<Image[]> {
    opts?.signal?.throwIfAborted();
    if (query.limit === 0) return [];
    let q = this.#db.db.selectFrom('images').selectAll().where('deleted_at', 'is', null);
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
    return this.#children.readMany(this.#db.db, q.limit(query.limit), terms);
  }

  async imagesInStores(storeIds: readonly string[], opts?: IoOptions): Promise<Image[]> {
    opts?.signal?.throwIfAborted();
    if (storeIds.length === 0) return [];
    const rows = this.#db.db.selectFrom('images').selectAll()
      .where('deleted_at', 'is', null)
      .where('id', 'in', (eb) => eb.selectFrom('image_locations').select('image_id').where('store', 'in', [...storeIds]));
    return this.#children.readMany(this.#db.db, rows, [{ expr: sql.ref('images.id'), dir: 'asc' }]);
  }

  async createImage(image: Image, opts?: IoOptions): Promise<Image> {
    await this.#db.write(async (tx) => {
      // One statement decides, so that two nodes creating the same id at once give one 201 and
      // one 409 (a select first would let both pass it). A deleted image's id stays taken.
      const inserted = await tx.db.insertInto('images').values(imageToRow(image))
        .onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst();
      if (inserted === undefined) throw new ConflictError(`Image with identifier ${image.id} already exists!`);
      await writeImageChildren(tx.db, image);
      await tx.append('image', image.id, 'upsert', image);
    }, opts);
    return image;
  }

  async updateImage(id: string, mutate: (current: Image) => Image, opts?: IoOptions): Promise<Image> {
    return this.#db.write(async (tx) => {
      const current = await this.#load(tx.db, id, true);
      if (current === undefined) throw new ImageNotFoundError(id);
      const next = mutate(structuredClone(current));
      if (JSON.stringify(next) === JSON.stringify(current)) return current;
      const { id: _id, ...row } = imageToRow(next);
      await tx.db.updateTable('images').set(row).where('id', '=', id).execute();
      if (JSON.stringify([next.tags, next.properties, next.locations]) !== JSON.stringify([current.tags, current.properties, current.locations])) {
        await deleteImageChildren(tx.db, id);
        await writeImageChildren(tx.db, next);
      }
      await tx.append('image', id, 'upsert', next);
      return next;
    }, opts);
  }

  async deleteImage(id: string, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      const now = new Date().toISOString();
      const r = await tx.db.updateTable('images').set({ status: 'deleted', deleted_at: now, updated_at: now })
        .where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) throw new ImageNotFoundError(id);
      await deleteImageChildren(tx.db, id);
      await tx.db.deleteFrom('image_members').where('image_id', '=', id).execute();
      await tx.append('image', id, 'delete', { id });
    }, opts);
  }

  async getMember(imageId: string, memberId: string, opts?: IoOptions): Promise<ImageMember | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('image_members').selectAll()
      .where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst();
    return row === undefined ? undefined : rowToMember(row);
  }

  async listMembers(imageId: string, opts?: IoOptions): Promise<ImageMember[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('image_members').selectAll().where('image_id', '=', imageId)
      .orderBy('created_at').orderBy('member_id').execute();
    return rows.map(rowToMember);
  }

  async addMember(member: ImageMember, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      // The image's row is locked so that a delete cannot slip in between (PostgreSQL).
      const image = await this.#db.forUpdate(tx.db.selectFrom('images').select('id')
        .where('id', '=', member.image_id).where('deleted_at', 'is', null)).executeTakeFirst();
      if (image === undefined) throw new ImageNotFoundError(member.image_id);
      const existing = await tx.db.selectFrom('image_members').select('member_id')
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id).executeTakeFirst();
      if (existing !== undefined) {
        throw new ConflictError(`Member ${member.member_id} already exists for image ${member.image_id}`);
      }
      await tx.db.insertInto('image_members').values(member).execute();
      await tx.append('member', `${member.image_id}/${member.member_id}`, 'upsert', member);
    }, opts);
  }

  async updateMember(member: ImageMember, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      const existing = await this.#db.forUpdate(tx.db.selectFrom('image_members').selectAll()
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id)).executeTakeFirst();
      if (existing === undefined) throw new NotFoundError(`${member.member_id} is not a member of image ${member.image_id}`);
      const stored: ImageMember = { ...rowToMember(existing), status: member.status, updated_at: member.updated_at };
      await tx.db.updateTable('image_members').set({ status: stored.status, updated_at: stored.updated_at })
        .where('image_id', '=', member.image_id).where('member_id', '=', member.member_id).execute();
      await tx.append('member', `${member.image_id}/${member.member_id}`, 'upsert', stored);
    }, opts);
  }

  async removeMember(imageId: string, memberId: string, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      const r = await tx.db.deleteFrom('image_members').where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw new NotFoundError(`${memberId} is not a member of image ${imageId}`);
      await tx.append('member', `${imageId}/${memberId}`, 'delete', { image_id: imageId, member_id: memberId });
    }, opts);
  }
}
