import type { Change, IoOptions, Replica, Snapshot } from '../../core/ports.ts';
import type { CatalogDatabase, WriteTx } from '../database.ts';
import { applyChange, ENTITY_KINDS } from './entity-kinds.ts';

async function setPosition(tx: WriteTx, position: number): Promise<void> {
  await tx.db.insertInto('replication_state').values({ name: 'parent_seq', value: position })
    .onConflict((oc) => oc.column('name').doUpdateSet({ value: position })).execute();
}

/** The following side of replication: a parent's changes and snapshots applied here. */
export class SqlReplica implements Replica {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async position(opts?: IoOptions): Promise<number> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('replication_state').select('value').where('name', '=', 'parent_seq').executeTakeFirst();
    return row === undefined ? 0 : Number(row.value);
  }

  async apply(changes: readonly Change[], position: number, opts?: IoOptions): Promise<void> {
    await this.#db.write(async (tx) => {
      for (const change of changes) await applyChange(tx, change);
      await setPosition(tx, position);
    }, opts);
  }

  async load(snapshot: Snapshot, opts?: IoOptions): Promise<void> {
    // Every entity is replaced; what the snapshot no longer has is deleted (and logged as such for
    // this site's own followers).
    await this.#db.write(async (tx) => {
      for (const kind of ENTITY_KINDS) await kind.load(tx, snapshot);
      await setPosition(tx, snapshot.seq);
    }, opts);
  }
}
