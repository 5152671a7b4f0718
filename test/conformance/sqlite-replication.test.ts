import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqlCatalog } from '../../src/catalog/sql-catalog.ts';
import { changeLogConformance, replicaConformance, type ReplicatedCatalogHandle } from './replication-conformance.ts';

async function open(): Promise<ReplicatedCatalogHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-replication-'));
  const catalog = await SqlCatalog.openSqlite(join(dir, 'catalog.sqlite'));
  return {
    catalog,
    async cleanup() {
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

changeLogConformance('SqlCatalog (SQLite file)', open);
replicaConformance('SqlCatalog (SQLite file)', open);
