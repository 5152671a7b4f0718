import type { Change, IoOptions, OfflineMark, OfflineWriteStore } from '../core/ports.ts';
import type { Image } from '../core/image.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/** An edge's images written while cut off from its parent (the `offline_images` table). */
export class OfflineWriteRepository implements OfflineWriteStore {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async markOffline(imageId: string, baseUpdatedAt: string | null, opts?: IoOptions): Promise<boolean> {
    opts?.signal?.throwIfAborted();
    const r = await this.#db.db.insertInto('offline_images').values({ image_id: imageId, base_updated_at: baseUpdatedAt, marked_at: new Date().toISOString(), skipped: null })
      .onConflict((oc) => oc.column('image_id').doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async unmarkOffline(imageId: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('offline_images').where('image_id', '=', imageId).execute();
  }

  async offlineMarks(opts?: IoOptions): Promise<OfflineMark[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#marks().orderBy('marked_at').orderBy('image_id').execute();
    return rows.map(toMark);
  }

  async offlineMark(imageId: string, opts?: IoOptions): Promise<OfflineMark | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#marks().where('image_id', '=', imageId).executeTakeFirst();
    return row === undefined ? undefined : toMark(row);
  }

  #marks() {
    return this.#db.db.selectFrom('offline_images').select(['image_id', 'base_updated_at', 'marked_at', 'sent']);
  }

  async sendingOffline(imageId: string, version: string | null, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      const row = await tx.db.selectFrom('offline_images').select('sent').where('image_id', '=', imageId).executeTakeFirst();
      if (row === undefined) return;
      const sent = JSON.parse(row.sent) as string[];
      if (version !== null && !sent.includes(version)) sent.push(version);
      await tx.db.updateTable('offline_images').set({ sent: JSON.stringify(sent), skipped: null }).where('image_id', '=', imageId).execute();
    }, opts);
  }

  async settleOffline(imageId: string, sent: string | null, central: Image | null | undefined, settle: { final?: boolean } & IoOptions = {}): Promise<boolean> {
    return this.#db.write(async (tx) => {
      const mark = await tx.db.selectFrom('offline_images').select('skipped').where('image_id', '=', imageId).executeTakeFirst();
      const local = await tx.db.selectFrom('images').select(['updated_at', 'deleted_at']).where('id', '=', imageId).executeTakeFirst();
      const now = local === undefined || local.deleted_at !== null ? null : local.updated_at;
      if (now !== sent && settle.final !== true) {
        // Written here again meanwhile: those writes go to central next, on its version.
        await tx.db.updateTable('offline_images').set({ base_updated_at: central?.updated_at ?? null, sent: '[]' }).where('image_id', '=', imageId).execute();
        return false;
      }
      await tx.db.deleteFrom('offline_images').where('image_id', '=', imageId).execute();
      const skipped = mark?.skipped == null ? undefined : JSON.parse(mark.skipped) as Pick<Change, 'op' | 'body'>;
      if (skipped !== undefined) await applyChange(tx, changeOf('image', imageId, skipped.op, skipped.body));
      else if (central === undefined) return true;
      else if (central !== null) await applyChange(tx, changeOf('image', imageId, 'upsert', central));
      // Central has none: nor has this site any more (nothing to write when it never had it).
      else if (local !== undefined) await applyChange(tx, changeOf('image', imageId, 'delete', { id: imageId }));
      return true;
    }, settle);
  }
}

function toMark(row: Omit<OfflineMark, 'sent'> & { sent: string }): OfflineMark {
  return { ...row, sent: JSON.parse(row.sent) as string[] };
}
