import { Command } from 'commander';
import type { OutpostConfig } from '../core/config.ts';
import type { SqlEngine } from '../catalog/dialects/dialect.ts';
import { migrate, migrationStatus } from '../catalog/migrations/index.ts';
import { openEngine, redactLocation } from '../catalog/open-catalog.ts';
import { lastSeqOf } from '../catalog/change-log/append.ts';
import { DataDirectory } from '../storage/data-directory.ts';
import { CatalogDatabase } from '../catalog/database.ts';
import { MetadefRepository } from '../catalog/metadef-repository.ts';
import { loadMetadefs, type NamespaceCreateInput } from '../core/metadef-service.ts';
import { checkReadOnly, metadefValidator } from '../api/glance/metadef-validation.ts';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CliError } from './cli-error.ts';

type LoadConfig = (file: string | undefined, flags: Record<string, unknown>) => Promise<OutpostConfig>;

const QUIET_LOG = { info() {}, warn() {} };

/**
 * Opens the configured catalog's database for `fn`: the PostgreSQL URL, or the SQLite file in the
 * data directory — whose lock is taken, so that a running site's catalog is never migrated under it.
 */
async function withDatabase<T>(config: OutpostConfig, fn: (engine: SqlEngine, where: string) => Promise<T>): Promise<T> {
  let directory: DataDirectory | undefined;
  let location = config.database_url;
  if (location === null) {
    directory = await DataDirectory.open({ path: config.data, site: config.site, role: config.role, log: QUIET_LOG });
    location = directory.catalogPath;
  }
  try {
    const engine = await openEngine(location);
    try {
      return await fn(engine, redactLocation(location));
    } finally {
      await engine.close();
    }
  } finally {
    await directory?.close();
  }
}

function withDatabaseOptions(command: Command): Command {
  return command
    .option('--config <file>', 'JSON configuration file (the site\'s)')
    .option('--data <dir>', 'data directory of a site on SQLite (default ./data)')
    .option('--site <id>', 'its site id (default "central")')
    .option('--database-url <url>', 'the catalog in PostgreSQL, postgres://USER:PASSWORD@HOST:PORT/DB');
}

/**
 * `outpost db migrate`: applies the migrations this version has and the catalog lacks (a site
 * does so at start unless started with --no-migrate). `outpost db check`: says whether the catalog
 * can be reached and is up to date; exits 1 when it is not.
 */
export function dbCommand(print: (line: string) => void, loadConfig: LoadConfig): Command {
  const db = new Command('db').description('the catalog database (SQLite in the data directory, or PostgreSQL)');
  const flags = (o: Record<string, unknown>) => ({ data: o.data, site: o.site, database_url: o.databaseUrl });
  withDatabaseOptions(db.command('migrate'))
    .description('bring the catalog\'s schema up to date')
    .action(async (o: Record<string, unknown>) => {
      const config = await loadConfig(o.config as string | undefined, flags(o));
      await withDatabase(config, async (engine, where) => {
        const applied = await migrate(engine.kysely, engine.name);
        print(applied.length === 0 ? `catalog ${where}: up to date` : `catalog ${where}: applied ${applied.join(', ')}`);
      });
    });
  withDatabaseOptions(db.command('check'))
    .description('check that the catalog can be reached and its schema is up to date')
    .action(async (o: Record<string, unknown>) => {
      const config = await loadConfig(o.config as string | undefined, flags(o));
      await withDatabase(config, async (engine, where) => {
        const { applied, pending } = await migrationStatus(engine.kysely, engine.name);
        print(`catalog ${where} (${engine.name}): ${applied.length} migrations applied, ${pending.length} pending`);
        if (pending.length > 0) throw new CliError(`the catalog needs ${pending.join(', ')}: run \`outpost db migrate\``);
        print(`change log at seq ${await lastSeqOf(engine.kysely)}`);
      });
    });
  withDatabaseOptions(db.command('load-metadefs'))
    .description('load metadata definition namespaces from JSON files, as glance-manage db load_metadefs does')
    .requiredOption('--path <path>', 'a namespace file, or a directory whose *.json files are namespaces')
    .option('--merge', 'add to an existing namespace what it lacks (default: skip namespaces that exist)')
    .option('--prefer-new', 'with --merge: also replace what the files define differently')
    .option('--overwrite', 'replace existing namespaces with the files\' content')
    .action(async (o: Record<string, unknown>) => {
      const config = await loadConfig(o.config as string | undefined, flags(o));
      const docs = await readNamespaceFiles(o.path as string, print);
      await withDatabase(config, async (engine, where) => {
        const { pending } = await migrationStatus(engine.kysely, engine.name);
        if (pending.length > 0) throw new CliError(`the catalog needs ${pending.join(', ')}: run \`outpost db migrate\``);
        const store = new MetadefRepository(new CatalogDatabase(engine));
        const outcomes = await loadMetadefs(store, docs, { merge: o.merge === true, preferNew: o.preferNew === true, overwrite: o.overwrite === true });
        for (const { namespace, outcome } of outcomes) print(`${namespace}: ${outcome}`);
        print(`catalog ${where}: ${outcomes.filter((x) => x.outcome !== 'skipped').length} of ${docs.length} namespaces loaded`);
      });
    });
  return db;
}

/**
 * The namespace documents at `path` (a file, or a directory's *.json files in name order), each
 * checked as a namespace create body is: a file that is not JSON or not a namespace is reported
 * and left out (as glance-manage does), and the command fails when none is left.
 */
async function readNamespaceFiles(path: string, print: (line: string) => void): Promise<NamespaceCreateInput[]> {
  let files: string[];
  try {
    files = (await stat(path)).isDirectory()
      ? (await readdir(path)).filter((f) => f.endsWith('.json')).sort().map((f) => join(path, f))
      : [path];
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`);
  }
  const validator = metadefValidator();
  const docs: NamespaceCreateInput[] = [];
  for (const file of files) {
    try {
      const body = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      // What a loaded file may say that a create body may not: who owns it, when it was made.
      const { owner, created_at: _c, updated_at: _u, ...rest } = body;
      checkReadOnly('namespace', rest);
      validator.check('namespace', rest, 'create');
      if (owner !== undefined && typeof owner !== 'string') throw new Error('"owner" must be a string');
      docs.push({ ...(rest as unknown as NamespaceCreateInput), ...(owner === undefined ? {} : { owner }) });
    } catch (error) {
      print(`${file}: skipped: ${(error as Error).message}`);
    }
  }
  if (docs.length === 0) throw new CliError(`no namespace file could be loaded from ${path}`);
  return docs;
}
