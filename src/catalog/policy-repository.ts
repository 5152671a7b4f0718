import type { PolicyRecord } from '../core/placement-policy.ts';
import type { IoOptions } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/** Placement policies: replicated records kept whole, written as changes. */
export class PolicyRepository {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async upsertPolicy(policy: PolicyRecord, opts?: IoOptions): Promise<void> {
    await this.#db.write((tx) => applyChange(tx, changeOf('policy', policy.id, 'upsert', policy)), opts);
  }

  async deletePolicy(id: string, opts?: IoOptions): Promise<boolean> {
    return this.#db.write(async (tx) => {
      if ((await tx.db.selectFrom('placement_policies').select('id').where('id', '=', id).executeTakeFirst()) === undefined) return false;
      await applyChange(tx, changeOf('policy', id, 'delete', { id }));
      return true;
    }, opts);
  }

  async getPolicy(id: string, opts?: IoOptions): Promise<PolicyRecord | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('placement_policies').select('body').where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as PolicyRecord;
  }

  async listPolicies(opts?: IoOptions): Promise<PolicyRecord[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('placement_policies').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as PolicyRecord);
  }
}
