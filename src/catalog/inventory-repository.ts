import type { Heartbeat, InventoryStore, IoOptions, SiteInventory } from '../core/ports.ts';
import type { CatalogDatabase } from './database.ts';

/** What sites report to central outside the change log: inventories and heartbeats. */
export class InventoryRepository implements InventoryStore {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async putInventory(inventory: SiteInventory, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const body = JSON.stringify(inventory);
    await this.#db.db.transaction().execute(async (trx) => {
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
    opts?.signal?.throwIfAborted();
    await this.#db.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('inventory_copies').where('site_id', '=', siteId).execute();
      await trx.deleteFrom('site_inventories').where('site_id', '=', siteId).execute();
    });
  }

  async getInventory(siteId: string, opts?: IoOptions): Promise<SiteInventory | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('site_inventories').select('body').where('site_id', '=', siteId).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as SiteInventory;
  }

  async listInventories(opts?: IoOptions & { sites?: readonly string[] }): Promise<SiteInventory[]> {
    opts?.signal?.throwIfAborted();
    if (opts?.sites === undefined) {
      const rows = await this.#db.db.selectFrom('site_inventories').select('body').orderBy('site_id').execute();
      return rows.map((r) => JSON.parse(r.body) as SiteInventory);
    }
    const out: SiteInventory[] = [];
    const sites = [...opts.sites].sort();
    for (let i = 0; i < sites.length; i += 500) {
      const rows = await this.#db.db.selectFrom('site_inventories').select('body').where('site_id', 'in', sites.slice(i, i + 500)).orderBy('site_id').execute();
      for (const r of rows) out.push(JSON.parse(r.body) as SiteInventory);
    }
    return out;
  }

  async putHeartbeat(site: string, heartbeat: Heartbeat, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const row = { last_contact: heartbeat.last_contact, lag_changes: heartbeat.lag_changes };
    await this.#db.db.insertInto('site_heartbeats').values({ site_id: site, ...row }).onConflict((oc) => oc.column('site_id').doUpdateSet(row)).execute();
  }

  async listHeartbeats(opts?: IoOptions): Promise<Map<string, Heartbeat>> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('site_heartbeats').selectAll().execute();
    return new Map(rows.map((r) => [r.site_id, { last_contact: r.last_contact, lag_changes: r.lag_changes === null ? null : Number(r.lag_changes) }]));
  }

  async inventoryRevisions(opts?: IoOptions): Promise<Map<string, number>> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('site_inventories').select(['site_id', 'revision']).execute();
    return new Map(rows.map((r) => [r.site_id, Number(r.revision)]));
  }

  async storesHolding(imageIds: readonly string[], opts?: IoOptions): Promise<Map<string, string[]>> {
    opts?.signal?.throwIfAborted();
    const out = new Map<string, string[]>();
    if (imageIds.length === 0) return out;
    const rows = await this.#db.db.selectFrom('inventory_copies').select(['image_id', 'store'])
      .where('image_id', 'in', [...imageIds]).orderBy('image_id').orderBy('store').execute();
    for (const r of rows) {
      const stores = out.get(r.image_id) ?? [];
      if (!stores.includes(r.store)) stores.push(r.store);
      out.set(r.image_id, stores);
    }
    return out;
  }
}
