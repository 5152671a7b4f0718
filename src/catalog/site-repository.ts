import type { IoOptions, Site } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/**
 * Sites' registrations: replicated records kept whole, written as changes (a heartbeat is the
 * inventory's).
 *
 * listSites, which every image view reads (its stores' weights), answers from a copy kept in
 * memory while the database tells this handle of every commit, whichever node made it
 * (CatalogDatabase.hearsEveryCommit: PostgreSQL while its listening connection is up): the copy is
 * dropped by every commit that touched sites, here before the write resolves, at another node as
 * its announcement arrives. Otherwise (SQLite, or while the listening connection is down) it reads
 * the table every time.
 */
export class SiteRepository {
  readonly #db: CatalogDatabase;
  /** The registrations' bodies in id order, as last read; undefined once a commit touched sites. */
  #copy: string[] | undefined;
  /** Moves with every commit that touched sites: a read begun before it moved is not kept. */
  #generation = 0;
  readonly #unsubscribe: () => void;

  constructor(db: CatalogDatabase) {
    this.#db = db;
    this.#unsubscribe = db.subscribe((event) => {
      if (!event.kinds.includes('site')) return;
      this.#generation++;
      this.#copy = undefined;
    });
  }

  /** Stops following commits (the database closes after). */
  close(): void {
    this.#unsubscribe();
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
    const kept = this.#db.hearsEveryCommit ? this.#copy : undefined;
    return (kept ?? await this.#read()).map((body) => JSON.parse(body) as Site);
  }

  /** Reads the bodies, and keeps them if every commit was heard from before the read began to after it ended. */
  async #read(): Promise<string[]> {
    const generation = this.#generation;
    const heard = this.#db.hearsEveryCommit;
    const bodies = (await this.#db.db.selectFrom('sites').select('body').orderBy('id').execute()).map((r) => r.body);
    if (heard && this.#db.hearsEveryCommit && generation === this.#generation) this.#copy = bodies;
    return bodies;
  }
}
