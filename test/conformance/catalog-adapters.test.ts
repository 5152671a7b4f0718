import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { openCatalog, type SqlCatalog } from '../../src/catalog/open-catalog.ts';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';
import { catalogConformance } from './catalog-conformance.ts';
import { identityStoreConformance } from './identity-store-conformance.ts';
import { inventoryConformance } from './inventory-conformance.ts';
import { metadefStoreConformance } from './metadef-store-conformance.ts';
import { offlineWriteStoreConformance } from './offline-write-store-conformance.ts';
import { changeLogConformance, replicaConformance } from './replication-conformance.ts';
import { sharedDatabaseConformance } from './shared-database-conformance.ts';
import { chunkIndexConformance, manifestIndexConformance } from './site-index-conformance.ts';
import { workClaimsConformance } from './work-claims-conformance.ts';

interface Handle {
  catalog: SqlCatalog;
  cleanup(): Promise<void>;
}

/** Every port the catalog's database serves, against one adapter. */
function allSuites(name: string, open: () => Promise<Handle>): void {
  /** The same handle, with the catalog under the name a suite expects. */
  const as = <K extends string>(key: K) => async () => {
    const handle = await open();
    return { [key]: handle.catalog, cleanup: handle.cleanup } as Record<K, SqlCatalog> & { cleanup(): Promise<void> };
  };
  catalogConformance(name, open);
  changeLogConformance(name, open);
  replicaConformance(name, open);
  inventoryConformance(name, as('inventory'));
  identityStoreConformance(name, as('store'));
  manifestIndexConformance(name, as('index'));
  chunkIndexConformance(name, as('index'));
  workClaimsConformance(name, as('claims'));
  metadefStoreConformance(name, as('store'));
  offlineWriteStoreConformance(name, open);
}

/** Two handles on one database (`location`), as two processes would open it; `dispose` removes the database after. */
async function twoHandles(location: string, dispose: () => Promise<void>) {
  const one = await openCatalog(location);
  const two = await openCatalog(location);
  return {
    one,
    two,
    async cleanup() {
      await one.close();
      await two.close();
      await dispose();
    },
  };
}

sharedDatabaseConformance('SQLite file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-catalog-'));
  return twoHandles(join(dir, 'catalog.sqlite'), () => rm(dir, { recursive: true, force: true }));
});

allSuites('SQLite file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-catalog-'));
  const catalog = await openCatalog(join(dir, 'catalog.sqlite'));
  return {
    catalog,
    async cleanup() {
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('PostgreSQL', { skip: postgresSkip }, () => {
  // Two nodes of a central.
  sharedDatabaseConformance('PostgreSQL', async () => {
    const database = await createTestDatabase();
    return twoHandles(database.url, () => database.drop());
  });
  allSuites('PostgreSQL', async () => {
    const database = await createTestDatabase();
    const catalog = await openCatalog(database.url);
    return {
      catalog,
      async cleanup() {
        await catalog.close();
        await database.drop();
      },
    };
  });
});
