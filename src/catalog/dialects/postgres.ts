import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { PostgresNotifier } from '../notify/postgres-notifier.ts';
import type { CatalogTables } from '../tables.ts';
import type { SqlEngine } from './dialect.ts';

const INT8_OID = 20;

export interface PostgresOptions {
  /** `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (libpq's URL form, with its query options). */
  url: string;
  /** Connections this node holds at most (the listening one apart). */
  maxConnections?: number;
  log?: { warn(obj: object, msg: string): void };
}

/**
 * Opens a PostgreSQL catalog through `pg`'s pool: the catalog several central nodes share.
 * 64-bit integers (sizes, seqs, offsets) are read as numbers — exact below 2^53, which no image
 * size or change count reaches — through this pool's own type parser, not pg's global one.
 */
export async function openPostgres(options: PostgresOptions): Promise<SqlEngine> {
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      (oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser,
  };
  const connection: pg.ClientConfig = { connectionString: options.url, types, connectionTimeoutMillis: 10_000, application_name: 'outpost' };
  const pool = new pg.Pool({ ...connection, max: options.maxConnections ?? 10, idleTimeoutMillis: 30_000 });
  // An idle connection the server drops (a restart, a failover) is an event, not a crash.
  pool.on('error', (error) => options.log?.warn({ err: error }, 'catalog database: an idle connection failed'));
  let notifier: PostgresNotifier;
  try {
    notifier = await PostgresNotifier.start(connection, options.log);
  } catch (error) {
    await pool.end();
    throw error;
  }
  const kysely = new Kysely<CatalogTables>({ dialect: new PostgresDialect({ pool }) });
  return {
    name: 'postgres',
    kysely,
    notifier,
    announceIn: (trx, event) => notifier.announceIn(trx, event),
    hearsEveryCommit: () => notifier.listening,
    async close() {
      await notifier.close();
      await kysely.destroy();
    },
  };
}
