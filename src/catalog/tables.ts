import type { Generated } from 'kysely';

/** Row shapes of the catalog's tables, as Kysely sees them. */
export interface ImageRow {
  id: string;
  name: string | null;
  status: string;
  visibility: string;
  protected: number;
  os_hidden: number;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  size: number | null;
  virtual_size: number | null;
  disk_format: string | null;
  container_format: string | null;
  min_disk: number;
  min_ram: number;
  owner: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

export interface TaskRow {
  id: string;
  type: string;
  status: string;
  owner: string | null;
  image_id: string;
  request_id: string;
  user_id: string | null;
  input: string;
  result: string | null;
  message: string;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface CatalogTables {
  images: ImageRow;
  image_properties: { image_id: string; name: string; value: string };
  image_tags: { image_id: string; tag: string; position: number };
  /** One row per location, keyed by (image_id, position); `store` '' for an http(s) location, `metadata` JSON text. */
  image_locations: { image_id: string; store: string; url: string; position: number; placed_by: string | null; metadata: string | null };
  image_members: { image_id: string; member_id: string; status: string; created_at: string; updated_at: string };
  tasks: TaskRow;
  replication_state: { name: string; value: number };
  offline_images: { image_id: string; base_updated_at: string | null; marked_at: string; sent: Generated<string>; skipped: string | null };
  sites: { id: string; body: string };
  cache_entries: { image_id: string; body: string };
  image_manifests: { image_id: string; sha512: string; body: string };
  placement_policies: { id: string; body: string };
  metadef_namespaces: { id: string; body: string };
  metadef_resource_types: { id: string; body: string };
  held_chunks: { sha256: string; length: number; store: string; key: string; offset: number };
  site_inventories: { site_id: string; body: string; revision: Generated<number> };
  site_heartbeats: { site_id: string; last_contact: string; lag_changes: number | null };
  inventory_copies: { image_id: string; site_id: string; store: string };
  identity_records: { kind: string; id: string; body: string };
  identity_secrets: { name: string; value: string };
  changes: { seq: number; entity: string; entity_id: string; op: string; body: string; at: string };
  nodes: { id: string; site: string; started_at: string; seen_ms: number };
  work_claims: { kind: string; id: string; node: string; claimed_at: string };
  /** The change log's counter: its one row holds the last seq assigned (see change-log/append.ts). */
  change_counter: { name: string; value: number };
}
