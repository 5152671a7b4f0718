import type { MetadefNamespace, MetadefResourceType } from '../core/metadefs.ts';
import type { IoOptions, MetadefWriter } from '../core/ports.ts';
import { applyChange, changeOf } from './change-log/entity-kinds.ts';
import type { CatalogDatabase, WriteTx } from './database.ts';

/** Metadata definitions: replicated records kept whole (a namespace, a resource type), written as changes. */
export class MetadefRepository {
  readonly #db: CatalogDatabase;

  constructor(db: CatalogDatabase) {
    this.#db = db;
  }

  async listMetadefNamespaces(opts?: IoOptions): Promise<MetadefNamespace[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('metadef_namespaces').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as MetadefNamespace);
  }

  async getMetadefNamespace(name: string, opts?: IoOptions): Promise<MetadefNamespace | undefined> {
    opts?.signal?.throwIfAborted();
    const row = await this.#db.db.selectFrom('metadef_namespaces').select('body').where('id', '=', name).executeTakeFirst();
    return row === undefined ? undefined : JSON.parse(row.body) as MetadefNamespace;
  }

  async listMetadefResourceTypes(opts?: IoOptions): Promise<MetadefResourceType[]> {
    opts?.signal?.throwIfAborted();
    const rows = await this.#db.db.selectFrom('metadef_resource_types').select('body').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.body) as MetadefResourceType);
  }

  async writeMetadefs<T>(fn: (tx: MetadefWriter) => Promise<T>, opts?: IoOptions): Promise<T> {
    return this.#db.write((tx) => fn(this.#writer(tx)), opts);
  }

  #writer(tx: WriteTx): MetadefWriter {
    // Reads lock the row they find (PostgreSQL); a name found absent is claimed by createNamespace,
    // whose insert waits on, and then loses to, another node's concurrent insert of that name.
    const read = async <T>(table: 'metadef_namespaces' | 'metadef_resource_types', id: string): Promise<T | undefined> => {
      const row = await this.#db.forUpdate(tx.db.selectFrom(table).select('body').where('id', '=', id)).executeTakeFirst();
      return row === undefined ? undefined : JSON.parse(row.body) as T;
    };
    return {
      namespace: (name) => read<MetadefNamespace>('metadef_namespaces', name),
      resourceType: (name) => read<MetadefResourceType>('metadef_resource_types', name),
      createNamespace: async (ns) => {
        const inserted = await tx.db.insertInto('metadef_namespaces').values({ id: ns.namespace, body: JSON.stringify(ns) })
          .onConflict((oc) => oc.column('id').doNothing()).executeTakeFirst();
        if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) return false;
        await tx.append('metadef_namespace', ns.namespace, 'upsert', ns);
        return true;
      },
      putNamespace: (ns) => applyChange(tx, changeOf('metadef_namespace', ns.namespace, 'upsert', ns)),
      deleteNamespace: (name) => applyChange(tx, changeOf('metadef_namespace', name, 'delete', { id: name })),
      putResourceType: (rt) => applyChange(tx, changeOf('metadef_resource_type', rt.name, 'upsert', rt)),
    };
  }
}
