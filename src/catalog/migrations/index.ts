import { Migrator, sql, type Kysely, type Migration } from 'kysely';
import type { DialectName } from '../dialects/dialect.ts';

/**
 * Schema migrations, applied in name order (at start, or by `outpost db migrate`). Never edit a
 * released migration: add one. Each is written for both dialects; where their types differ
 * (SQLite's INTEGER is 64-bit, PostgreSQL's is 32-bit), `int64` names the 64-bit one, and what
 * SQLite gets is exactly what it got before PostgreSQL was supported.
 */
function migrations(dialect: DialectName): Record<string, Migration> {
  const int64 = dialect === 'sqlite' ? 'integer' : 'bigint';
  return {
    '0001-images': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('images')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text')
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('visibility', 'text', (c) => c.notNull())
          .addColumn('protected', 'integer', (c) => c.notNull())
          .addColumn('os_hidden', 'integer', (c) => c.notNull())
          .addColumn('checksum', 'text')
          .addColumn('os_hash_algo', 'text')
          .addColumn('os_hash_value', 'text')
          .addColumn('size', 'bigint')
          .addColumn('virtual_size', 'bigint')
          .addColumn('disk_format', 'text')
          .addColumn('container_format', 'text')
          .addColumn('min_disk', 'integer', (c) => c.notNull())
          .addColumn('min_ram', 'integer', (c) => c.notNull())
          .addColumn('owner', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('deleted_at', 'text')
          .execute();
        await db.schema.createIndex('images_owner').on('images').column('owner').execute();
        await db.schema.createIndex('images_created').on('images').columns(['created_at', 'id']).execute();
        await db.schema.createIndex('images_visibility').on('images').column('visibility').execute();

        for (const [table, key, cols] of [
          ['image_properties', 'name', [['name', 'text'], ['value', 'text']]],
          ['image_tags', 'tag', [['tag', 'text'], ['position', 'integer']]],
          ['image_locations', 'store', [['store', 'text'], ['url', 'text'], ['position', 'integer']]],
        ] as const) {
          let t = db.schema.createTable(table)
            .addColumn('image_id', 'text', (c) => c.notNull().references('images.id').onDelete('cascade'));
          for (const [name, type] of cols) t = t.addColumn(name, type, (c) => c.notNull());
          await t.addPrimaryKeyConstraint(`${table}_pk`, ['image_id', key] as never).execute();
        }
        await db.schema.createIndex('image_properties_nv').on('image_properties').columns(['name', 'value']).execute();
        await db.schema.createIndex('image_tags_tag').on('image_tags').column('tag').execute();

        await db.schema.createTable('image_members')
          .addColumn('image_id', 'text', (c) => c.notNull().references('images.id').onDelete('cascade'))
          .addColumn('member_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('image_members_pk', ['image_id', 'member_id'])
          .execute();
        await db.schema.createIndex('image_members_member').on('image_members').columns(['member_id', 'status']).execute();

        // seq: SQLite's rowid; PostgreSQL's is assigned by the change counter (0014) from the start.
        await db.schema.createTable('changes')
          .addColumn('seq', int64, (c) => (dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
          .addColumn('entity', 'text', (c) => c.notNull())
          .addColumn('entity_id', 'text', (c) => c.notNull())
          .addColumn('op', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0002-tasks': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('tasks')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('owner', 'text')
          .addColumn('image_id', 'text', (c) => c.notNull())
          .addColumn('request_id', 'text', (c) => c.notNull())
          .addColumn('user_id', 'text')
          .addColumn('input', 'text', (c) => c.notNull())
          .addColumn('result', 'text')
          .addColumn('message', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('tasks_image').on('tasks').columns(['image_id', 'created_at']).execute();
        await db.schema.createIndex('tasks_status').on('tasks').column('status').execute();
      },
    },
    '0003-replication': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('replication_state')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('value', 'bigint', (c) => c.notNull())
          .execute();
      },
    },
    '0004-sites': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('sites')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('body', 'text', (c) => c.notNull())
          .execute();
      },
    },
    // The edge cache's bookkeeping: local to the site, never in the change log.
    '0005-cache': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('cache_entries')
          .addColumn('image_id', 'text', (c) => c.primaryKey())
          .addColumn('body', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0006-inventory': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('site_inventories')
          .addColumn('site_id', 'text', (c) => c.primaryKey())
          .addColumn('body', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createTable('inventory_copies')
          .addColumn('image_id', 'text', (c) => c.notNull())
          .addColumn('site_id', 'text', (c) => c.notNull())
          .addColumn('store', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('inventory_copies_pk', ['image_id', 'site_id', 'store'])
          .execute();
        await db.schema.createIndex('inventory_copies_site').on('inventory_copies').column('site_id').execute();
        await db.schema.createIndex('image_locations_store').on('image_locations').columns(['store', 'image_id']).execute();
      },
    },
    '0007-identity': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('identity_records')
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('identity_records_pk', ['kind', 'id'])
          .execute();
        await db.schema.createTable('identity_secrets')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0008-manifests': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('image_manifests')
          .addColumn('image_id', 'text', (c) => c.primaryKey())
          .addColumn('sha512', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0009-held-chunks': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('held_chunks')
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('length', 'integer', (c) => c.notNull())
          .addColumn('store', 'text', (c) => c.notNull())
          .addColumn('key', 'text', (c) => c.notNull())
          .addColumn('offset', int64, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('held_chunks_hash').on('held_chunks').columns(['sha256', 'length']).execute();
        await db.schema.createIndex('held_chunks_blob').on('held_chunks').columns(['store', 'key']).execute();
      },
    },
    '0010-placement-policies': {
      async up(db: Kysely<any>) {
        await db.schema.createTable('placement_policies')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('body', 'text', (c) => c.notNull())
          .execute();
      },
    },
    // Which copies placement policies made (the site agents add and remove those only): null for an
    // upload, an import or copy-image.
    '0011-location-placed-by': {
      async up(db: Kysely<any>) {
        await db.schema.alterTable('image_locations').addColumn('placed_by', 'text').execute();
      },
    },
    '0012-inventory-revision': {
      async up(db: Kysely<any>) {
        // Bumped by every report a site sends: the fleet view re-reads only the reports that changed.
        await db.schema.alterTable('site_inventories').addColumn('revision', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      },
    },
    '0013-site-heartbeats': {
      async up(db: Kysely<any>) {
        // When each site was last heard from, outside the change log (a heartbeat is not replicated).
        await db.schema.createTable('site_heartbeats')
          .addColumn('site_id', 'text', (c) => c.primaryKey())
          .addColumn('last_contact', 'text', (c) => c.notNull())
          .addColumn('lag_changes', 'integer')
          .execute();
      },
    },
    '0014-change-counter': {
      async up(db: Kysely<any>) {
        // The last seq assigned, in one row that every appending transaction updates: the row lock
        // orders appends by commit, so the log is gap-free in commit order under concurrent writers
        // (change-log/append.ts). It starts where the log's own sequence stopped.
        await db.schema.createTable('change_counter')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('value', 'bigint', (c) => c.notNull())
          .execute();
        const last = dialect === 'sqlite'
          ? await sql<{ value: number }>`select coalesce(max(seq), 0) as value from sqlite_sequence where name = 'changes'`.execute(db)
          : await sql<{ value: number }>`select coalesce(max(seq), 0) as value from changes`.execute(db);
        await db.insertInto('change_counter').values({ name: 'changes', value: Number(last.rows[0]?.value ?? 0) }).execute();
      },
    },
    '0015-node-work': {
      async up(db: Kysely<any>) {
        // The nodes serving a site from one database, and which node does which long-running work
        // (an import task, an upload): a node that stops being seen leaves its work to the others.
        await db.schema.createTable('nodes')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('site', 'text', (c) => c.notNull())
          .addColumn('started_at', 'text', (c) => c.notNull())
          .addColumn('seen_ms', 'bigint', (c) => c.notNull())
          .execute();
        await db.schema.createTable('work_claims')
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('node', 'text', (c) => c.notNull())
          .addColumn('claimed_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('work_claims_pk', ['kind', 'id'])
          .execute();
      },
    },
    '0016-metadefs': {
      async up(db: Kysely<any>) {
        // Metadata definitions, replicated: one JSON record per namespace (keyed by its name) and
        // per resource type (keyed by its name).
        for (const table of ['metadef_namespaces', 'metadef_resource_types']) {
          await db.schema.createTable(table)
            .addColumn('id', 'text', (c) => c.primaryKey())
            .addColumn('body', 'text', (c) => c.notNull())
            .execute();
        }
      },
    },
    '0017-location-urls': {
      async up(db: Kysely<any>) {
        // The locations API (issue 15): an image may have several http(s) locations, which are in
        // no store (`store` ''), so a location is keyed by its position instead of its store; and
        // a location keeps the metadata a client gave it (JSON text, null: none).
        if (dialect === 'postgres') {
          await db.schema.alterTable('image_locations').dropConstraint('image_locations_pk').execute();
          await db.schema.alterTable('image_locations').addPrimaryKeyConstraint('image_locations_pk', ['image_id', 'position']).execute();
          await db.schema.alterTable('image_locations').addColumn('metadata', 'text').execute();
          return;
        }
        // SQLite cannot change a primary key: the table is made again.
        await db.schema.createTable('image_locations_new')
          .addColumn('image_id', 'text', (c) => c.notNull().references('images.id').onDelete('cascade'))
          .addColumn('store', 'text', (c) => c.notNull())
          .addColumn('url', 'text', (c) => c.notNull())
          .addColumn('position', 'integer', (c) => c.notNull())
          .addColumn('placed_by', 'text')
          .addColumn('metadata', 'text')
          .addPrimaryKeyConstraint('image_locations_pk', ['image_id', 'position'])
          .execute();
        await sql`insert into image_locations_new (image_id, store, url, position, placed_by)
          select image_id, store, url, position, placed_by from image_locations`.execute(db);
        await db.schema.dropTable('image_locations').execute();
        await db.schema.alterTable('image_locations_new').renameTo('image_locations').execute();
        await db.schema.createIndex('image_locations_store').on('image_locations').columns(['store', 'image_id']).execute();
      },
    },
    '0018-offline-images': {
      async up(db: Kysely<any>) {
        // An edge's images written while it was cut off from its parent, until central has them
        // (issue 17): `base_updated_at` is central's version the writes were made on (null: made here).
        await db.schema.createTable('offline_images')
          .addColumn('image_id', 'text', (c) => c.primaryKey())
          .addColumn('base_updated_at', 'text')
          .addColumn('marked_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0019-offline-images-sent': {
      async up(db: Kysely<any>) {
        // `sent`: JSON array of the `updated_at` of each version sent to central whose answer may have
        // been lost; `skipped`: the parent's latest change to the image that its feed brought while
        // it was marked (JSON {op, body}), applied when the mark ends.
        await db.schema.alterTable('offline_images').addColumn('sent', 'text', (c) => c.notNull().defaultTo('[]')).execute();
        await db.schema.alterTable('offline_images').addColumn('skipped', 'text').execute();
      },
    },
  };
}

/** Brings the schema up to date; returns the names of the migrations it applied. */
export async function migrate(db: Kysely<any>, dialect: DialectName): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations(dialect) } });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Which of this version's migrations the database has had, and which it lacks. */
export async function migrationStatus(db: Kysely<any>, dialect: DialectName): Promise<{ applied: string[]; pending: string[] }> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations(dialect) } });
  const all = await migrator.getMigrations();
  return {
    applied: all.filter((m) => m.executedAt !== undefined).map((m) => m.name),
    pending: all.filter((m) => m.executedAt === undefined).map((m) => m.name),
  };
}
