import type {
  CacheIndex, Catalog, ChangeLog, ChunkIndex, IdentityStore, InventoryStore, ManifestIndex, MetadefStore, OfflineWriteStore, Replica, WorkClaims,
} from '../core/ports.ts';
import { StartupError } from '../core/startup-error.ts';
import { SqlChangeLog } from './change-log/sql-change-log.ts';
import { SqlReplica } from './change-log/sql-replica.ts';
import { CatalogDatabase } from './database.ts';
import type { SqlEngine } from './dialects/dialect.ts';
import { openPostgres } from './dialects/postgres.ts';
import { openSqlite } from './dialects/sqlite.ts';
import { IdentityRepository } from './identity-repository.ts';
import { ImageRepository } from './image-repository.ts';
import { InventoryRepository } from './inventory-repository.ts';
import { migrate, migrationStatus } from './migrations/index.ts';
import { MetadefRepository } from './metadef-repository.ts';
import { OfflineWriteRepository } from './offline-write-repository.ts';
import { PolicyRepository } from './policy-repository.ts';
import { SiteIndexRepository } from './site-index-repository.ts';
import { SiteRepository } from './site-repository.ts';
import { TaskRepository } from './task-repository.ts';
import { WorkClaimRepository } from './work-claim-repository.ts';

/** Every port the catalog's database serves, on one handle (what a site's composition root wires). */
export interface SqlCatalog extends Catalog, ChangeLog, Replica, CacheIndex, ManifestIndex, ChunkIndex, InventoryStore, IdentityStore, MetadefStore, WorkClaims, OfflineWriteStore {
  readonly dialect: SqlEngine['name'];
}

export interface OpenCatalogOptions {
  /** Apply pending migrations (the default); without, a database that needs them is refused. */
  migrate?: boolean;
  log?: { warn(obj: object, msg: string): void };
}

/** `postgres://` or `postgresql://` URLs name a PostgreSQL database; anything else is a SQLite file's path. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** `location` fit to print: a URL's password is replaced by ***. */
export function redactLocation(location: string): string {
  if (!isPostgresUrl(location)) return location;
  const url = new URL(location);
  if (url.password !== '') url.password = '***';
  return url.toString();
}

/** Opens the database at `location` — a SQLite file path or a PostgreSQL URL — without touching its schema. */
export async function openEngine(location: string, opts: Pick<OpenCatalogOptions, 'log'> = {}): Promise<SqlEngine> {
  try {
    return isPostgresUrl(location) ? await openPostgres({ url: location, log: opts.log }) : openSqlite(location);
  } catch (error) {
    throw new StartupError(`cannot open the catalog at ${redactLocation(location)}: ${(error as Error).message}`, { cause: error });
  }
}

/** A repository's methods as plain properties (a spread of a class instance has none). */
type Methods<T> = { [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] };

/** The methods of one repository, bound to it: the parts the catalog's one handle is made of. */
function methodsOf<T extends object>(repository: T): Methods<T> {
  const methods: Record<string, unknown> = {};
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(repository))) {
    const value = (repository as Record<string, unknown>)[name];
    if (name !== 'constructor' && typeof value === 'function') methods[name] = value.bind(repository);
  }
  return methods as Methods<T>;
}

/**
 * Opens the catalog at `location` (see openEngine), brings its schema up to date, and returns
 * its repositories as one handle of every port.
 */
export async function openCatalog(location: string, opts: OpenCatalogOptions = {}): Promise<SqlCatalog> {
  const engine = await openEngine(location, opts);
  try {
    if (opts.migrate === false) {
      const { pending } = await migrationStatus(engine.kysely, engine.name);
      if (pending.length > 0) throw new StartupError(`the catalog at ${redactLocation(location)} needs migrations ${pending.join(', ')}: run \`outpost db migrate\``);
    } else {
      await migrate(engine.kysely, engine.name);
    }
  } catch (error) {
    await engine.close();
    throw error;
  }
  const db = new CatalogDatabase(engine);
  const identity = new IdentityRepository(db);
  const sites = new SiteRepository(db);
  return {
    ...methodsOf(new ImageRepository(db)),
    ...methodsOf(new TaskRepository(db)),
    ...methodsOf(sites),
    ...methodsOf(new PolicyRepository(db)),
    ...methodsOf(new MetadefRepository(db)),
    ...methodsOf(new InventoryRepository(db)),
    ...methodsOf(new SiteIndexRepository(db)),
    ...methodsOf(new WorkClaimRepository(db)),
    ...methodsOf(new SqlChangeLog(db)),
    ...methodsOf(new SqlReplica(db)),
    ...methodsOf(new OfflineWriteRepository(db)),
    ...methodsOf(identity),
    dialect: engine.name,
    async close() {
      identity.close();
      sites.close();
      await db.close();
    },
  };
}
