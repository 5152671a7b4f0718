import type { Image } from '../core/image.ts';
import type { IoOptions, OfflineMark, OfflineWriteStore } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/** An edge's images written while cut off from its parent (the `offline_images` table). */
export class OfflineWriteRepository implements OfflineWriteStore {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async markOffline(imageId: string, baseUpdatedAt: string | null, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.insertInto('offline_images').values({ image_id: imageId, base_updated_at: baseUpdatedAt, marked_at: new Date().toISOString() })
      .onConflict((oc) => oc.column('image_id').doNothing()).execute();
  }

  async offlineMarks(opts?: IoOptions): Promise<OfflineMark[]> {
    opts?.signal?.throwIfAborted();
    return this.#db.db.selectFrom('offline_images').selectAll().orderBy('marked_at').orderBy('image_id').execute();
  }

  async settleOffline(imageId: string, sent: string | null, central: Image | null, opts?: IoOptions): Promise<boolean> {
    return this.#db.write(async (tx) => {
      const local = await tx.db.selectFrom('images').select(['updated_at', 'deleted_at']).where('id', '=', imageId).executeTakeFirst();
      const now = local === undefined || local.deleted_at !== null ? null : local.updated_at;
      if (now !== sent) {
        // Written here again meanwhile: those writes go to central next, on its version.
        await tx.db.updateTable('offline_images').set({ base_updated_at: central?.updated_at ?? null }).where('image_id', '=', imageId).execute();
        return false;
      }
      await tx.db.deleteFrom('offline_images').where('image_id', '=', imageId).execute();
      await applyChange(tx, central === null ? changeOf('image', imageId, 'delete', { id: imageId }) : changeOf('image', imageId, 'upsert', central));
      return true;
    }, opts);
  }
}
