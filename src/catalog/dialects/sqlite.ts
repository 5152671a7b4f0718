import { Kysely, SqliteDialect } from 'kysely';
import { InProcessNotifier } from '../notify/in-process-notifier.ts';
import type { CatalogTables } from '../tables.ts';
import type { SqlEngine } from './dialect.ts';
import { NodeSqliteDatabase } from './node-sqlite-database.ts';

/** Opens (creating if needed) a SQLite catalog file: the embedded default, one process per file. */
export function openSqlite(path: string): SqlEngine {
  const kysely = new Kysely<CatalogTables>({ dialect: new SqliteDialect({ database: new NodeSqliteDatabase(path) }) });
  const notifier = new InProcessNotifier();
  return {
    name: 'sqlite',
    kysely,
    notifier,
    hearsEveryCommit: () => false,
    async close() {
      await notifier.close();
      await kysely.destroy();
    },
  };
}
