import { type Kysely, type Transaction } from 'kysely';
import type { Change, ChangeEntity } from '../../core/ports.ts';
import type { CatalogTables } from '../tables.ts';

/**
 * Appends one change to the log inside the caller's write transaction and returns its seq.
 *
 * The seq comes from the change counter's one row, incremented in the same transaction: the row
 * lock that increment takes is held until the transaction ends, so a second writer (another
 * connection, another node) waits at its first append until the first commits or rolls back.
 * Hence seqs are assigned in commit order and without gaps — a rolled-back increment is undone —
 * and a follower that has read every seq up to N can never be handed a seq ≤ N later. (A plain
 * sequence would not do: a transaction holding seq 11 may commit after one holding 12, and a
 * follower that read 12 first would skip 11 forever.) Appends serialize writers from their first
 * append to their commit, so writes append last, after their reads.
 */
export async function appendChange(trx: Transaction<CatalogTables>, entity: ChangeEntity, id: string, op: Change['op'], body: unknown): Promise<number> {
  const { value } = await trx.updateTable('change_counter').set((eb) => ({ value: eb('value', '+', 1) }))
    .where('name', '=', 'changes').returning('value').executeTakeFirstOrThrow();
  const seq = Number(value);
  await trx.insertInto('changes').values({ seq, entity, entity_id: id, op, body: JSON.stringify(body), at: new Date().toISOString() }).execute();
  return seq;
}

/** The last seq assigned (0 for a new log): also when the log has been truncated to nothing. */
export async function lastSeqOf(db: Kysely<CatalogTables>): Promise<number> {
  const row = await db.selectFrom('change_counter').select('value').where('name', '=', 'changes').executeTakeFirst();
  return Number(row?.value ?? 0);
}
