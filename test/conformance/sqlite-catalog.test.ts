import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqlCatalog } from '../../src/catalog/sql-catalog.ts';
import { catalogConformance } from './catalog-conformance.ts';
import { identityStoreConformance } from './identity-store-conformance.ts';
import { inventoryConformance } from './inventory-conformance.ts';
import { chunkIndexConformance, manifestIndexConformance } from './site-index-conformance.ts';
import { changeLogConformance, replicaConformance } from './replication-conformance.ts';

/** A SqlCatalog on its own SQLite file: the Catalog, ChangeLog, Replica and InventoryStore ports' SQL adapter. */
async function open() {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-catalog-'));
  const catalog = await SqlCatalog.openSqlite(join(dir, 'catalog.sqlite'));
  return {
    catalog,
    async cleanup() {
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

catalogConformance('SqlCatalog (SQLite file)', open);
changeLogConformance('SqlCatalog (SQLite file)', open);
replicaConformance('SqlCatalog (SQLite file)', open);
inventoryConformance('SqlCatalog (SQLite file)', async () => {
  const handle = await open();
  return { inventory: handle.catalog, cleanup: handle.cleanup };
});
identityStoreConformance('SqlCatalog (SQLite file)', async () => {
  const handle = await open();
  return { store: handle.catalog, cleanup: handle.cleanup };
});
manifestIndexConformance('SqlCatalog (SQLite file)', async () => {
  const handle = await open();
  return { index: handle.catalog, cleanup: handle.cleanup };
});
chunkIndexConformance('SqlCatalog (SQLite file)', async () => {
  const handle = await open();
  return { index: handle.catalog, cleanup: handle.cleanup };
});
