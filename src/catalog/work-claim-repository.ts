import { sql, type RawBuilder } from 'kysely';
import type { IoOptions, WorkClaims, WorkKind } from '../core/ports.ts';
import type { CatalogDatabase } from './database.ts';

/** Nodes and their claims on work (local to the site's database; never in the change log). */
export class WorkClaimRepository implements WorkClaims {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  /** Now, in ms since the epoch, by the database's clock: the one clock every node shares. */
  #nowMs(): RawBuilder<number> {
    return this.#db.dialect === 'sqlite'
      ? sql<number>`cast((julianday('now') - 2440587.5) * 86400000 as integer)`
      : sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;
  }

  async nodeSeen(node: string, site: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.insertInto('nodes').values({ id: node, site, started_at: new Date().toISOString(), seen_ms: this.#nowMs() })
      .onConflict((oc) => oc.column('id').doUpdateSet({ seen_ms: this.#nowMs() })).execute();
  }

  async forgetOtherNodes(node: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('nodes').where('id', '<>', node).execute();
  }

  async claim(kind: WorkKind, id: string, node: string, deadAfterMs: number, opts?: IoOptions): Promise<boolean> {
    opts?.signal?.throwIfAborted();
    const claimedAt = new Date().toISOString();
    const inserted = await this.#db.db.insertInto('work_claims').values({ kind, id, node, claimed_at: claimedAt })
      .onConflict((oc) => oc.columns(['kind', 'id']).doNothing()).executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0) return true;
    // Held already: ours, or taken over from a node no longer alive — one conditional update, so
    // that of two nodes taking over at once, the second sees the first's claim (alive) and fails.
    const updated = await this.#db.db.updateTable('work_claims').set({ node, claimed_at: claimedAt })
      .where('kind', '=', kind).where('id', '=', id)
      .where((eb) => eb.or([
        eb('node', '=', node),
        eb('node', 'not in', eb.selectFrom('nodes').select('id').where('seen_ms', '>', sql<number>`${this.#nowMs()} - ${deadAfterMs}`)),
      ]))
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) > 0;
  }

  async release(kind: WorkKind, id: string, node: string, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    await this.#db.db.deleteFrom('work_claims').where('kind', '=', kind).where('id', '=', id).where('node', '=', node).execute();
  }

  async isClaimed(kind: WorkKind, id: string, deadAfterMs: number, opts?: IoOptions): Promise<boolean> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('work_claims').innerJoin('nodes', 'nodes.id', 'work_claims.node').select('work_claims.node')
      .where('work_claims.kind', '=', kind).where('work_claims.id', '=', id)
      .where('nodes.seen_ms', '>', sql<number>`${this.#nowMs()} - ${deadAfterMs}`).executeTakeFirst();
    return row !== undefined;
  }
}
