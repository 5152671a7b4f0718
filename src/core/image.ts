import { InvalidTransitionError } from './errors.ts';

/** Image statuses of glance/domain/__init__.py. */
export const IMAGE_STATUSES = [
  'queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated',
] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export const VISIBILITIES = ['community', 'public', 'private', 'shared'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** Glance's default `disk_formats` / `container_formats` configuration. */
export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'] as const;
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] as const;

export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const;
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

/**
 * A location of the image's bytes: a verified copy in one of the region's stores, or — `store`
 * empty (URL_LOCATION) — an http(s) URL that Outpost does not own, a read-only source the bytes
 * are downloaded from (added with the locations API: PATCH /locations, POST /v2/images/{id}/locations).
 */
export interface ImageLocation {
  /** The store holding the copy; '' (URL_LOCATION) for an http(s) location, which is in no store. */
  store: string;
  url: string;
  /**
   * Set on a copy a placement policy made (a site agent pulled it into its store): the agents add
   * and remove those only. Absent for an upload, an import or copy-image. Not shown by the API.
   */
  placed_by?: 'policy';
  /**
   * The location's metadata as a client gave it (PATCH /locations), without `store`: a store
   * location's `metadata.store` is always its store. Absent when there is none.
   */
  metadata?: Record<string, unknown>;
}

/** The `store` of a location on an http(s) URL: none of Outpost's stores holds those bytes. */
export const URL_LOCATION = '';

/** Whether a location is an http(s) URL (a read-only source) rather than a copy in a store. */
export function isUrlLocation(location: ImageLocation): boolean {
  return location.store === URL_LOCATION;
}

/**
 * The catalog's image record. Times are ISO-8601 with milliseconds (for ordering); the API renders
 * them to seconds as Glance does. `properties` holds the custom (string-valued) properties,
 * including Glance's visible `os_glance_*` bookkeeping properties.
 */
export interface Image {
  id: string;
  name: string | null;
  status: ImageStatus;
  visibility: Visibility;
  protected: boolean;
  os_hidden: boolean;
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
  tags: string[];
  properties: Record<string, string>;
  locations: ImageLocation[];
}

export interface ImageMember {
  image_id: string;
  member_id: string;
  status: MemberStatus;
  created_at: string;
  updated_at: string;
}

/** Attributes that are never writable by clients: "Attribute 'x' is read-only." (403). */
export const READ_ONLY = [
  'created_at', 'updated_at', 'status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
  'direct_url', 'self', 'file', 'schema', 'stores', 'id', 'locations',
] as const;

/** "Attribute 'x' is reserved." (403) — plus every key starting with os_glance, and Outpost's own os_outpost_ ones. */
export const RESERVED = ['location', 'deleted', 'deleted_at'] as const;

export function isReservedName(key: string): boolean {
  return (RESERVED as readonly string[]).includes(key) || key.startsWith('os_glance') || key.startsWith('os_outpost_');
}

/**
 * Allowed status transitions, as `Image.valid_state_targets` in glance/domain/__init__.py.
 */
const TRANSITIONS: Record<ImageStatus, readonly ImageStatus[]> = {
  queued: ['saving', 'uploading', 'importing', 'active', 'deleted'],
  saving: ['active', 'killed', 'deleted', 'queued'],
  uploading: ['importing', 'queued', 'deleted'],
  importing: ['active', 'deleted', 'queued'],
  active: ['pending_delete', 'deleted', 'deactivated'],
  deactivated: ['active', 'deleted'],
  killed: ['deleted'],
  pending_delete: ['deleted', 'active'],
  deleted: [],
};

/** Throws InvalidTransitionError (409) unless `from → to` is a legal move. */
export function assertTransition(from: ImageStatus, to: ImageStatus): void {
  if (!TRANSITIONS[from].includes(to)) throw new InvalidTransitionError(from, to);
}

export const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

/** The comma-joined `stores` field: store ids ordered by weight (desc), then id (asc); http(s) locations are in no store. */
export function orderedStoreIds(locations: readonly ImageLocation[], weightOf: (store: string) => number): string[] {
  return [...new Set(locations.filter((l) => !isUrlLocation(l)).map((l) => l.store))].sort((a, b) => weightOf(b) - weightOf(a) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * An image's locations in the order the API shows them (`locations`, `direct_url`, and the
 * positions PATCH /locations/N names): the copies in stores by store weight, then id — as Glance
 * orders locations by store weight when it loads them — then the http(s) locations in the order
 * they were added.
 */
export function shownLocations(locations: readonly ImageLocation[], weightOf: (store: string) => number): ImageLocation[] {
  const stores = orderedStoreIds(locations, weightOf);
  return [...stores.flatMap((id) => locations.filter((l) => l.store === id)), ...locations.filter(isUrlLocation)];
}

/**
 * Sets a custom property as an own data property. (Plain assignment would treat a property
 * named "__proto__" as the prototype setter and silently drop it.)
 */
export function setProperty(target: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}
