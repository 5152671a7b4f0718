import type { Kysely } from 'kysely';
import type { ChangeNotifier } from '../../core/ports.ts';
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
  /** Closes the notifier and then the connections. */
  close(): Promise<void>;
}
