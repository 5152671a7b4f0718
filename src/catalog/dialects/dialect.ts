import type { Kysely, Transaction } from 'kysely';
import type { ChangeNotifier, CommitEvent } from '../../core/ports.ts';
import type { CatalogTables } from '../tables.ts';

export type DialectName = 'sqlite' | 'postgres';

/**
 * One SQL engine the catalog runs on, opened: Kysely over its driver, how commits are announced
 * to other processes, and the little that Kysely's dialects leave different.
 */
export interface SqlEngine {
  readonly name: DialectName;
  readonly kysely: Kysely<CatalogTables>;
  readonly notifier: ChangeNotifier;
  /**
   * Announces `event` to the other processes sharing the database from inside the write
   * transaction that made it, so that it is sent if and only if that transaction commits (a
   * notification sent after the commit could be lost, and a copy another process keeps of what
   * changed would stay stale). Absent where no other process shares the database; the notifier's
   * `publish` then tells this process's listeners, after the commit.
   */
  announceIn?(trx: Transaction<CatalogTables>, event: CommitEvent): Promise<void>;
  /**
   * Whether the notifier's listeners are now told of every commit to the database, whoever made
   * it. PostgreSQL: while its listening connection is up (each commit's announcement is part of
   * it; one missed while the connection was down is made up for by a wake-up of every listener
   * as it comes back). SQLite: never — its notifier hears only the commits made through this
   * handle, and nothing but the data directory's lock keeps others from writing the file.
   */
  hearsEveryCommit(): boolean;
  /** Closes the notifier and then the connections. */
  close(): Promise<void>;
}
