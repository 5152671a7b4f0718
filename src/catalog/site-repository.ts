import type { IoOptions, Site } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/** Sites' registrations: replicated records kept whole, written as changes (a heartbeat is the inventory's). */
export class SiteRepository {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async upsertSite(site: Site, opts?: IoOptions): Promise<void> {
    await this.#db.write((tx) => applyChange(tx, changeOf('site', site.id, 'upsert', site)), opts);
  }

  async deleteSite(id: string, opts?: IoOptions): Promise<boolean> {
    return this.#db.write(async (tx) => {
      if ((await tx.db.selectFrom('sites').select('id').where('id', '=', id).executeTakeFirst()) === undefined) return false;
      await tx.db.deleteFrom('site_heartbeats').where('site_id', '=', id).execute();
      await applyChange(tx, changeOf('site', id, 'delete', { id }));
      return true;
    }, opts);
  }

  async getSite(id: string, opts?: IoOptions): Promise<Site | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('sites').select('body').where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as Site;
  }

  async listSites(opts?: IoOptions): Promise<Site[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('sites').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as Site);
  }
}
