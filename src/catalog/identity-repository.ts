import { IDENTITY_KINDS, type IdentityKind, type IdentityRecord, type IdentityStore, type IoOptions } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase } from './database.ts';

/**
 * Identity's records: public ones through the change log (they replicate), secrets in a table of
 * their own that never leaves the database it was written to.
 */
export class IdentityRepository implements IdentityStore {
  readonly #db: CatalogDatabase;
  /** Moves with every commit that touched identity records, from this node or any other. */
  #version = 0;
  readonly #unsubscribe: () => void;

  constructor(db: CatalogDatabase) {
    this.#db = db;
    this.#unsubscribe = db.subscribe((event) => {
      if (event.kinds.some((k) => (IDENTITY_KINDS as readonly string[]).includes(k))) this.#version++;
    });
  }

  /** Stops following commits (the database closes after). */
  close(): void {
    this.#unsubscribe();
  }

  identityVersion(): number {
    return this.#version;
  }

  async putIdentity(record: IdentityRecord, opts?: IoOptions): Promise<void> {
    await this.#db.write((tx) => applyChange(tx, changeOf(record.kind, record.id, 'upsert', record.body)), opts);
  }

  async deleteIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<boolean> {
    return this.#db.write(async (tx) => {
      const row = await tx.db.selectFrom('identity_records').select('id').where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
      if (row === undefined) return false;
      await applyChange(tx, changeOf(kind, id, 'delete', { id }));
      return true;
    }, opts);
  }

  async getIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<Record<string, unknown> | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('identity_records').select('body').where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as Record<string, unknown>;
  }

  async listIdentity(kind: IdentityKind, opts?: IoOptions): Promise<Record<string, unknown>[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('identity_records').select('body').where('kind', '=', kind).orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as Record<string, unknown>);
  }

  async getSecret(name: string, opts?: IoOptions): Promise<string | undefined> {
    opts?.signal?.throwIfAborted();
    return (await this.#db.db.selectFrom('identity_secrets').select('value').where('name', '=', name).executeTakeFirst())?.value;
  }

  async setSecret(name: string, value: string | null, opts?: IoOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    if (value === null) await this.#db.db.deleteFrom('identity_secrets').where('name', '=', name).execute();
    else await this.#db.db.insertInto('identity_secrets').values({ name, value }).onConflict((oc) => oc.column('name').doUpdateSet({ value })).execute();
  }
}
