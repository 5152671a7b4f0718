import type { ChunkManifest } from '../core/chunk-manifest.ts';
import type { CacheEntry, CacheIndex, ChunkIndex, HeldChunk, IoOptions, ManifestIndex } from '../core/ports.ts';
import type { CatalogDatabase } from './database.ts';

/**
 * A site's own bookkeeping of the bytes it holds — cache entries, chunk manifests, the chunks of
 * its verified copies — local, never in the change log.
 */
export class SiteIndexRepository implements CacheIndex, ManifestIndex, ChunkIndex {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async listCacheEntries(opts?: IoOptions): Promise<CacheEntry[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('cache_entries').select('body').orderBy('image_id').execute();
    return rows.map((r) => JSON.parse(r.body) as CacheEntry);
  }

  async putCacheEntry(entry: CacheEntry, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const body = JSON.stringify(entry);
    await this.#db.db.insertInto('cache_entries').values({ image_id: entry.image_id, body })
      .onConflict((oc) => oc.column('image_id').doUpdateSet({ body })).execute();
  }

  async deleteCacheEntry(imageId: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('cache_entries').where('image_id', '=', imageId).execute();
  }

  // Chunk manifests: the same bytes give the same manifest, kept with the sha512 of those bytes.

  async getManifest(imageId: string, sha512: string, opts?: IoOptions): Promise<ChunkManifest | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('image_manifests').select('body').where('image_id', '=', imageId).where('sha512', '=', sha512).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as ChunkManifest;
  }

  async putManifest(imageId: string, sha512: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const body = JSON.stringify(manifest);
    await this.#db.db.insertInto('image_manifests').values({ image_id: imageId, sha512, body })
      .onConflict((oc) => oc.column('image_id').doUpdateSet({ sha512, body })).execute();
  }

  async deleteManifest(imageId: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('image_manifests').where('image_id', '=', imageId).execute();
  }

  // The chunks of the copies this site holds.

  async addHeldCopy(store: string, key: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('held_chunks').where('store', '=', store).where('key', '=', key).execute();
      const rows = manifest.chunks.filter((c) => c.zero !== true).map((c) => ({ sha256: c.sha256, length: c.length, store, key, offset: c.offset }));
      // SQLite takes at most 32766 bound parameters per statement: 5 per row.
      for (let i = 0; i < rows.length; i += 5000) await tx.insertInto('held_chunks').values(rows.slice(i, i + 5000)).execute();
    });
  }

  async removeHeldCopy(store: string, key: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('held_chunks').where('store', '=', store).where('key', '=', key).execute();
  }

  async findChunk(sha256: string, length: number, opts?: IoOptions & { limit?: number }): Promise<HeldChunk[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('held_chunks').select(['store', 'key', 'offset', 'length'])
      .where('sha256', '=', sha256).where('length', '=', length).limit(opts?.limit ?? 4).execute();
    return rows.map((r) => ({ store: r.store, key: r.key, offset: Number(r.offset), length: Number(r.length) }));
  }
}
