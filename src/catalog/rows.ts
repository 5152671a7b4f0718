import type { Kysely } from 'kysely';
import { setProperty, type Image, type ImageLocation, type ImageMember } from '../core/image.ts';
import type { Task } from '../core/task.ts';
import type { CatalogTables, ImageRow, TaskRow } from './tables.ts';

/** How images, members and tasks are laid out in rows: shared by their repositories and the change log. */

export function imageToRow(i: Image): ImageRow {
  return {
    id: i.id, name: i.name, status: i.status, visibility: i.visibility, protected: i.protected ? 1 : 0,
    os_hidden: i.os_hidden ? 1 : 0, checksum: i.checksum, os_hash_algo: i.os_hash_algo, os_hash_value: i.os_hash_value,
    size: i.size, virtual_size: i.virtual_size, disk_format: i.disk_format, container_format: i.container_format,
    min_disk: i.min_disk, min_ram: i.min_ram, owner: i.owner, created_at: i.created_at, updated_at: i.updated_at,
    deleted_at: null,
  };
}

/** An image row's attributes, without its children (tags, properties, locations are empty). */
export function rowToImage(r: ImageRow): Image {
  return {
    id: r.id, name: r.name, status: r.status as Image['status'], visibility: r.visibility as Image['visibility'],
    protected: r.protected === 1, os_hidden: r.os_hidden === 1, checksum: r.checksum, os_hash_algo: r.os_hash_algo,
    os_hash_value: r.os_hash_value, size: r.size === null ? null : Number(r.size),
    virtual_size: r.virtual_size === null ? null : Number(r.virtual_size), disk_format: r.disk_format,
    container_format: r.container_format, min_disk: Number(r.min_disk), min_ram: Number(r.min_ram), owner: r.owner,
    created_at: r.created_at, updated_at: r.updated_at, tags: [], properties: {}, locations: [],
  };
}

/** A deleted image's row: kept so that its id is never reused. */
export function tombstoneRow(id: string, now: string): ImageRow {
  return {
    id, name: null, status: 'deleted', visibility: 'private', protected: 0, os_hidden: 0, checksum: null,
    os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null, container_format: null,
    min_disk: 0, min_ram: 0, owner: null, created_at: now, updated_at: now, deleted_at: now,
  };
}

/**
 * A location row's image location (`placed_by` only when a placement policy put the copy there,
 * `metadata` only when a client gave some: a JSON object, as text).
 */
export function locationOf(store: string, url: string, placedBy: string | null, metadata: string | null = null): ImageLocation {
  const location: ImageLocation = placedBy === 'policy' ? { store, url, placed_by: 'policy' } : { store, url };
  if (metadata !== null) location.metadata = JSON.parse(metadata) as Record<string, unknown>;
  return location;
}

/** An image location's row values (its position apart). */
function locationRow(l: ImageLocation): { store: string; url: string; placed_by: string | null; metadata: string | null } {
  return { store: l.store, url: l.url, placed_by: l.placed_by ?? null, metadata: l.metadata === undefined ? null : JSON.stringify(l.metadata) };
}

/**
 * Attaches tags, properties and locations to image rows (three queries for any number of rows):
 * for reads of many images at once inside a transaction, such as a snapshot. Tags and locations
 * come by position; properties in the order the database reads them.
 */
export async function hydrateImages(db: Kysely<CatalogTables>, rows: ImageRow[]): Promise<Image[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const [props, tags, locs] = await Promise.all([
    db.selectFrom('image_properties').selectAll().where('image_id', 'in', ids).execute(),
    db.selectFrom('image_tags').selectAll().where('image_id', 'in', ids).orderBy('position').execute(),
    db.selectFrom('image_locations').selectAll().where('image_id', 'in', ids).orderBy('position').execute(),
  ]);
  const images = new Map(rows.map((r) => [r.id, rowToImage(r)]));
  for (const p of props) setProperty(images.get(p.image_id)!.properties, p.name, p.value);
  for (const t of tags) images.get(t.image_id)!.tags.push(t.tag);
  for (const l of locs) images.get(l.image_id)!.locations.push(locationOf(l.store, l.url, l.placed_by, l.metadata));
  return [...images.values()];
}

export async function writeImageChildren(db: Kysely<CatalogTables>, image: Image): Promise<void> {
  const props = Object.entries(image.properties).map(([name, value]) => ({ image_id: image.id, name, value }));
  if (props.length > 0) await db.insertInto('image_properties').values(props).execute();
  if (image.tags.length > 0) {
    await db.insertInto('image_tags').values(image.tags.map((tag, position) => ({ image_id: image.id, tag, position }))).execute();
  }
  if (image.locations.length > 0) {
    await db.insertInto('image_locations')
      .values(image.locations.map((l, position) => ({ image_id: image.id, position, ...locationRow(l) }))).execute();
  }
}

export async function deleteImageChildren(db: Kysely<CatalogTables>, id: string): Promise<void> {
  await db.deleteFrom('image_properties').where('image_id', '=', id).execute();
  await db.deleteFrom('image_tags').where('image_id', '=', id).execute();
  await db.deleteFrom('image_locations').where('image_id', '=', id).execute();
}

export function rowToMember(r: CatalogTables['image_members']): ImageMember {
  return { ...r, status: r.status as ImageMember['status'] };
}

export function taskToRow(t: Task): TaskRow {
  return {
    ...t, input: JSON.stringify(t.input), result: t.result === null ? null : JSON.stringify(t.result),
  };
}

export function rowToTask(r: TaskRow): Task {
  return {
    ...r, type: r.type === 'location_import' ? 'location_import' : 'api_image_import', status: r.status as Task['status'],
    input: JSON.parse(r.input), result: r.result === null ? null : JSON.parse(r.result),
  } as Task;
}
