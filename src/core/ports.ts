import type { RequestContext } from './context.ts';
import type { Readable } from 'node:stream';
import type { ChunkManifest } from './chunk-manifest.ts';
import type { MetadefNamespace, MetadefResourceType } from './metadefs.ts';
import type { PolicyRecord } from './placement-policy.ts';
import type { DriftCounts, PlacementReport } from './fleet-state.ts';
import type { AuditCounts, TransferRecord } from './site-report.ts';
import type { Image, ImageMember, MemberStatus, Visibility } from './image.ts';
import type { Task, TaskStatus } from './task.ts';
import type { CounterName, HistogramName, LabelsOf } from './metrics.ts';

/** Options every I/O call accepts. */
export interface IoOptions {
  signal?: AbortSignal;
}

/** A read of image bytes or their manifest that may otherwise reach past this site for them. */
export interface HeldOnlyOptions extends IoOptions {
  /**
   * Only what this site holds (its stores, its cache): NotFoundError rather than asking where the
   * bytes come from. A peer is asked so for the copy it may have cached (`x-outpost-held-only`).
   */
  heldOnly?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Catalog: image metadata plus the change log that replication reads.

export type SortKey = 'name' | 'status' | 'container_format' | 'disk_format' | 'size' | 'id' | 'created_at' | 'updated_at';
export const SORT_KEYS: readonly SortKey[] = [
  'name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at',
];
export type SortDir = 'asc' | 'desc';

export type CompareOp = 'gt' | 'gte' | 'eq' | 'neq' | 'lt' | 'lte';

/** A filter on one attribute: exact value, `in:` list, or a time comparison. */
export type AttributeFilter =
  | { kind: 'eq'; value: string }
  | { kind: 'in'; values: string[] }
  | { kind: 'compare'; op: CompareOp; value: string };

/** Base attributes that can be filtered on directly. */
export type FilterableBase =
  | 'id' | 'name' | 'status' | 'container_format' | 'disk_format' | 'owner' | 'checksum' | 'os_hash_value'
  | 'min_disk' | 'min_ram' | 'size' | 'virtual_size' | 'protected' | 'os_hidden' | 'created_at' | 'updated_at';

/**
 * Who asks, and which part of the catalog they may list — the visibility scope of Glance's
 * sqlalchemy `_select_images_query`.
 */
export interface ListScope {
  admin: boolean;
  projectId: string | null;
  /** The `visibility` filter, or undefined for the default scope. 'all' is resolved by the caller. */
  visibility?: Visibility | 'all';
  /** Member status of shared images the caller is a member of (default 'accepted'); 'all' for any. */
  memberStatus: MemberStatus | 'all';
}

export interface ImageListQuery {
  scope: ListScope;
  base: Partial<Record<FilterableBase, AttributeFilter>>;
  properties: Record<string, string>;
  tags: string[];
  sizeMin?: number;
  sizeMax?: number;
  sort: { key: SortKey; dir: SortDir }[];
  limit: number;
  /** Continue after this image (already resolved and visible). */
  marker?: Image;
}

export const IDENTITY_KINDS = ['domain', 'project', 'user', 'role', 'assignment', 'signing_key', 'revocation'] as const;
/** Identity's public records, replicated to every site (never a password hash or private key). */
export type IdentityKind = (typeof IDENTITY_KINDS)[number];
/** Every kind of entity the change log carries. */
export const CHANGE_ENTITIES = ['image', 'member', 'task', 'site', 'policy', ...IDENTITY_KINDS, 'metadef_namespace', 'metadef_resource_type'] as const;
export type ChangeEntity = (typeof CHANGE_ENTITIES)[number];
export interface Change {
  seq: number;
  entity: ChangeEntity;
  id: string;
  op: 'upsert' | 'delete';
  body: unknown;
  at: string;
}

/**
 * Port for image metadata. Every mutation appends one row to the change log in the same
 * transaction (monotonic `seq`, entity, id, op, body).
 */
export interface Catalog {
  getImage(id: string, opts?: IoOptions): Promise<Image | undefined>;
  listImages(query: ImageListQuery, opts?: IoOptions): Promise<Image[]>;
  /**
   * Fails with ConflictError if the id was ever used (deleted ids are not reused, as in Glance).
   * Returns the stored image (a catalog may add to it: an edge's, its offline-write marks).
   */
  createImage(image: Image, opts?: IoOptions): Promise<Image>;
  /**
   * Atomic read-modify-write: `mutate` receives the current image (never undefined; a missing image
   * raises ImageNotFoundError) and returns the new record, or throws to abort without changes.
   * Returns the stored image.
   */
  updateImage(id: string, mutate: (current: Image) => Image, opts?: IoOptions): Promise<Image>;
  /** Marks the image deleted and drops its tags, properties, locations and members. */
  deleteImage(id: string, opts?: IoOptions): Promise<void>;

  getMember(imageId: string, memberId: string, opts?: IoOptions): Promise<ImageMember | undefined>;
  listMembers(imageId: string, opts?: IoOptions): Promise<ImageMember[]>;
  /**
   * Inserts, failing with ConflictError when the member already exists and ImageNotFoundError when
   * the image is missing or deleted.
   */
  addMember(member: ImageMember, opts?: IoOptions): Promise<void>;
  /** Sets status and updated_at (created_at is kept); NotFoundError when the member does not exist. */
  updateMember(member: ImageMember, opts?: IoOptions): Promise<void>;
  /** NotFoundError when the member does not exist. */
  removeMember(imageId: string, memberId: string, opts?: IoOptions): Promise<void>;

  createTask(task: Task, opts?: IoOptions): Promise<void>;
  getTask(id: string, opts?: IoOptions): Promise<Task | undefined>;
  /** Atomic read-modify-write of a task, as updateImage; NotFoundError for a missing task. */
  updateTask(id: string, mutate: (current: Task) => Task, opts?: IoOptions): Promise<Task>;
  /** Tasks, newest first unless sorted otherwise; `marker` continues after that task id. */
  listTasks(query: TaskListQuery, opts?: IoOptions): Promise<Task[]>;

  /** Inserts or replaces a site's registration. */
  upsertSite(site: Site, opts?: IoOptions): Promise<void>;
  /** Deletes a site's registration (a `site` delete in the change log, so it replicates); false when there was none. */
  deleteSite(id: string, opts?: IoOptions): Promise<boolean>;
  getSite(id: string, opts?: IoOptions): Promise<Site | undefined>;
  listSites(opts?: IoOptions): Promise<Site[]>;

  /** Inserts or replaces a placement policy (a `policy` change, so it replicates). */
  upsertPolicy(policy: PolicyRecord, opts?: IoOptions): Promise<void>;
  /** Deletes a placement policy; false when there was none. */
  deletePolicy(id: string, opts?: IoOptions): Promise<boolean>;
  getPolicy(id: string, opts?: IoOptions): Promise<PolicyRecord | undefined>;
  /** Every policy, by id. */
  listPolicies(opts?: IoOptions): Promise<PolicyRecord[]>;
  /** The (not deleted) images with a location in one of these stores, by id. */
  imagesInStores(storeIds: readonly string[], opts?: IoOptions): Promise<Image[]>;

  /** Changes with seq > since, oldest first, at most `limit`. */
  changesSince(since: number, limit: number, opts?: IoOptions): Promise<Change[]>;
  close(): Promise<void>;
}

/** A site of the region, as it registered itself (and refreshes, as a heartbeat). */
/**
 * A store as `GET /v2/info/stores` describes it, and as a site's registration carries it so that
 * it replicates with the site.
 */
export interface StoreDescription {
  id: string;
  type: string;
  description: string;
  weight: number;
  read_only: boolean;
  default: boolean;
  properties: Record<string, unknown>;
}

export interface Site {
  id: string;
  /** Null for central. */
  parent: string | null;
  labels: Record<string, string>;
  public_url: string;
  stores: string[];
  /** The stores as the site describes them (what an edge answers `GET /v2/info/stores` from). */
  store_details?: StoreDescription[];
  version: string;
  registered_at: string;
  /** When the site last registered or refreshed its registration at central. */
  last_contact: string;
  /** How many changes the site's replica was behind its parent at its last refresh. */
  lag_changes: number | null;
  /** How often the site refreshes its registration, s (absent from older sites: 30). */
  heartbeat_seconds?: number;
}

export interface TaskListQuery {
  imageId?: string;
  statuses?: readonly TaskStatus[];
  type?: string;
  sortKey?: 'created_at' | 'updated_at' | 'id' | 'status' | 'type';
  sortDir?: SortDir;
  limit: number;
  marker?: Task;
}

// ---------------------------------------------------------------------------------------------
// BlobStore: image bytes.

export interface BlobDigest {
  size: number;
  md5: string;
  sha512: string;
  /** The chunk manifest of the bytes, when the put asked for it (PutOptions.manifest). */
  manifest?: ChunkManifest;
}

export interface BlobStat {
  size: number;
}

export interface PutOptions extends IoOptions {
  /**
   * If given, the write fails (and leaves nothing) unless the bytes hash to these: the check
   * happens before the commit, so a copy that does not match never becomes visible.
   */
  expected?: { md5: string; sha512: string };
  /** If given, the write fails (and leaves nothing) unless exactly this many bytes arrive. */
  expectedSize?: number;
  /** The write fails (and leaves nothing) as soon as more bytes than this arrive. */
  maxSize?: number;
  /** Also compute the bytes' chunk manifest, in the same pass (BlobDigest.manifest). */
  manifest?: boolean;
  /**
   * The bytes are also being written, in order, to this local file by the caller (a transfer's
   * spool): a store that can take that file as the blob does so instead of writing them again.
   */
  adopt?: string;
  /**
   * Called once every byte arrived and matched `expectedSize` and `expected`, before the commit
   * makes the copy durable and visible: a caller streaming the same bytes to a reader may let it
   * have the end of them then (they are the image's), whether or not the commit then succeeds.
   */
  onVerified?(): void;
}

export interface GetOptions extends IoOptions {
  /** First byte (inclusive), default 0. */
  start?: number;
  /** Last byte (inclusive), default the end. */
  end?: number;
}

/** ParentImageSource.open's options. */
export interface SourceOptions extends GetOptions {
  partial?: string;
  priority?: TransferPriority;
  /**
   * A range asked while the image's whole transfer (a fill) runs: the source may keep the
   * verified chunks it brings, and give them to that transfer when it gets there, so that they
   * cross the link once.
   */
  forRunningFill?: boolean;
}

/**
 * What a store and its driver both answer for committed bytes. Keys are opaque ids made of
 * [A-Za-z0-9._-] (no '..'); anything else is rejected with BadRequestError.
 */
export interface BlobKeys {
  readonly id: string;
  /** A stream of the bytes [start, end]; NotFoundError if absent. */
  get(key: string, opts?: GetOptions): Promise<Readable>;
  stat(key: string, opts?: IoOptions): Promise<BlobStat | undefined>;
  /** Deleting an absent key is not an error. */
  delete(key: string, opts?: IoOptions): Promise<void>;
  list(opts?: IoOptions): AsyncIterable<string>;
  /**
   * Removes the partial writes no write of this object is running: what a process that stopped
   * mid-write left (a temporary file, a pending multipart upload). Committed keys and writes in
   * progress are never touched. Returns how many were removed.
   */
  removePartial(opts?: IoOptions): Promise<number>;
  /** The location URL recorded for a key (file:///path, s3://bucket/key ...). */
  urlFor(key: string): string;
  /** Releases what the store holds open (an S3 client's connections); it is not used afterwards. */
  close?(): Promise<void>;
}

/**
 * Port for bytes. `put` is atomic: the bytes become visible under `key` only after every byte
 * arrived and was hashed and checked; on error or abort nothing is left behind.
 */
export interface BlobStore extends BlobKeys {
  put(key: string, data: AsyncIterable<Uint8Array>, opts?: PutOptions): Promise<BlobDigest>;
}

/**
 * One write of a blob in progress at a driver: bytes appended in order, visible under the key only
 * after commit(), gone after cancel(). What a write left when its process died is the driver's
 * partial write, removed by removePartial().
 */
export interface BlobWriter {
  /** Bytes written so far. */
  readonly written: number;
  /**
   * Appends `bytes`. Writes are issued one at a time (the next after this one settles); the
   * promise settles once the driver no longer needs `bytes`, which the caller may then reuse.
   */
  write(bytes: Uint8Array, opts?: IoOptions): Promise<void>;
  /** Makes the bytes durable (as the driver is configured to) and visible under the key, atomically. */
  commit(opts?: IoOptions): Promise<void>;
  /** Removes what was written; the key is left as it was. Idempotent. */
  cancel(): Promise<void>;
}

/**
 * Where a store keeps bytes (a directory, memory, an S3 bucket), with no knowledge of hashes,
 * sizes or limits: VerifyingBlobStore makes a BlobStore of one.
 */
export interface BlobDriver extends BlobKeys {
  /** A new write of `key` (nothing visible until its commit). */
  openWriter(key: string, opts?: IoOptions): Promise<BlobWriter>;
  /**
   * A write of `key` whose bytes are already in the local file `path` (written there by the
   * caller, in order, before the commit): writes only count them, and the commit makes that
   * file the blob — moved, or copied where it cannot be — leaving nothing at `path`; a cancel
   * leaves `path` as it is. For drivers that keep files on this machine; others have none.
   */
  adoptWriter?(key: string, path: string, opts?: IoOptions): Promise<BlobWriter>;
}

// ---------------------------------------------------------------------------------------------
// The image cache: copies a site holds of images, apart from the copies located in its stores.

/** One image copy in a site's cache (local bookkeeping; not replicated). */
export interface CacheEntry {
  image_id: string;
  size: number;
  /** When the verified copy was committed (ISO 8601). */
  cached_at: string;
  last_accessed: string;
  hits: number;
  /** A pinned copy is never evicted (until `pinned_until`, if set). */
  pinned: boolean;
  pinned_until: string | null;
  /** Held for a `cache` placement policy: never evicted while a policy wants it (apart from `pinned`). */
  pinned_by_policy?: boolean;
  /**
   * The sha512 of the bytes held (the image's os_hash_value when they were cached; absent in
   * entries older than it): a copy of other bytes than the image's now is never served.
   */
  os_hash_value?: string;
}

/** Port for the cache's bookkeeping, kept in the site's database so it survives restarts. */
export interface CacheIndex {
  listCacheEntries(opts?: IoOptions): Promise<CacheEntry[]>;
  putCacheEntry(entry: CacheEntry, opts?: IoOptions): Promise<void>;
  deleteCacheEntry(imageId: string, opts?: IoOptions): Promise<void>;
}

/**
 * The chunk manifests a site knows, by image: local bookkeeping, not replicated (the same bytes
 * give the same manifest at every site, so a site computes it or asks its parent). Each is kept
 * with the sha512 of the bytes it describes, and only answered for those bytes.
 */
export interface ManifestIndex {
  getManifest(imageId: string, sha512: string, opts?: IoOptions): Promise<ChunkManifest | undefined>;
  putManifest(imageId: string, sha512: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void>;
  deleteManifest(imageId: string, opts?: IoOptions): Promise<void>;
}

/** Where a site holds a chunk's bytes: in the blob `key` of store `store`, from `offset` on. */
export interface HeldChunk {
  store: string;
  key: string;
  offset: number;
  length: number;
}

/**
 * The chunks of every verified copy a site holds (located or cached), by sha256: what a transfer
 * to this site can copy locally instead of fetching. Kept in step as copies come and go.
 */
export interface ChunkIndex {
  /** Indexes the chunks of a verified copy (replacing what was indexed for that blob). */
  addHeldCopy(store: string, key: string, manifest: ChunkManifest, opts?: IoOptions): Promise<void>;
  removeHeldCopy(store: string, key: string, opts?: IoOptions): Promise<void>;
  /** Places holding a chunk with this sha256 and length (any order; at most `limit`, default 4). */
  findChunk(sha256: string, length: number, opts?: IoOptions & { limit?: number }): Promise<HeldChunk[]>;
}

/** A copy of an image's bytes held in one store, with the digests its bytes were verified to have. */
export interface VerifiedCopy {
  store: string;
  url: string;
  size: number;
  checksum: string;
  os_hash_algo: 'sha512';
  os_hash_value: string;
  virtual_size: number | null;
  /** 'policy': a site agent placed it for a placement policy (ImageLocation.placed_by). */
  placed_by?: 'policy';
}

/**
 * Port: where a site that does not own the catalog (an edge) records a copy of image bytes it now
 * holds — central's catalog, reached through the parent (PUT /outpost/v1/images/{id}/locations/{store}).
 */
export interface CopyRegistry {
  /** Resolves if the catalog's owner can be reached now; ServiceUnavailableError if not. */
  reachable(opts?: IoOptions): Promise<void>;
  /**
   * Records the copy for the caller (a queued image becomes active with it) and resolves once
   * this site's replica shows it. A refusal comes back as the owner's error.
   */
  record(ctx: RequestContext, imageId: string, copy: VerifiedCopy, opts?: IoOptions): Promise<void>;
  /**
   * Removes the record of the copy in `store` (which must have been placed by a policy) and
   * resolves once this site's replica shows it gone; NotFoundError when there is none.
   */
  remove(ctx: RequestContext, imageId: string, store: string, opts?: IoOptions): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Inventory: what each site holds, reported up to central.

/** One verified copy a site holds: located in its store (`stored`) or cached (`cached`, `pinned`). */
export interface InventoryItem {
  image_id: string;
  store: string;
  size: number;
  state: 'stored' | 'pinned' | 'cached';
  /** Since when the copy is held (ISO 8601). */
  since: string;
  /** Downloads served from a cached copy (null for a stored one). */
  hits: number | null;
  last_accessed: string | null;
}

export interface SiteInventory {
  site: string;
  reported_at: string;
  images: InventoryItem[];
  /** Where the copies its placement policies want stand (an edge's placement agent; absent at central). */
  placements?: PlacementReport[];
  /** What its drift checks found since it started (an edge). */
  drift?: DriftCounts;
  /** Its transfers of image bytes: those running, then the most recent ended ones. */
  transfers?: TransferRecord[];
  /** What the audits of its replica found (an edge). */
  audit?: AuditCounts;
  /** Its cache's budget (`cache_max_bytes`). */
  cache_budget_bytes?: number;
  /** Image bytes its running transfers fetch over its link per second (TransferLog.linkRate). */
  link_bytes_per_second?: number;
}

/** When a site was last heard from, and how far its replica was behind then. */
export interface Heartbeat {
  last_contact: string;
  lag_changes: number | null;
}

/**
 * Port: what sites report to central outside the change log — their inventories and their
 * heartbeats (a site's refreshed registration that changes nothing but when it was heard from:
 * replicated, 1,000 sites refreshing every 30 s would send every site every other's heartbeat).
 */
export interface InventoryStore {
  /** Records a site's heartbeat (replacing the last). */
  putHeartbeat(site: string, heartbeat: Heartbeat, opts?: IoOptions): Promise<void>;
  /** Every site's last heartbeat, by site id (a removed site's is gone). */
  listHeartbeats(opts?: IoOptions): Promise<Map<string, Heartbeat>>;
  /** Replaces the site's inventory. */
  putInventory(inventory: SiteInventory, opts?: IoOptions): Promise<void>;
  getInventory(siteId: string, opts?: IoOptions): Promise<SiteInventory | undefined>;
  /** Every site's last report (or these sites' only), by site id. */
  listInventories(opts?: IoOptions & { sites?: readonly string[] }): Promise<SiteInventory[]>;
  /** Each site's report revision: a number that changes with every report the site sends (putInventory). */
  inventoryRevisions(opts?: IoOptions): Promise<Map<string, number>>;
  /** Forgets a site's inventory and the copies it listed (a removed site). */
  deleteInventory(siteId: string, opts?: IoOptions): Promise<void>;
  /** For each of these images, the stores of the sites that reported holding a cached copy of it (stored copies are the catalog's locations). */
  storesHolding(imageIds: readonly string[], opts?: IoOptions): Promise<Map<string, string[]>>;
}

/**
 * Bytes of active images that none of the site's stores lists a location for: the site's cache,
 * filled from the parent (an edge) or from the sites holding a copy (central). Without one, such an
 * image has no data (204). Where the cache also serves images the site's own stores hold (central,
 * as Glance's cache on an API node serves images of its backend store), `serves` says which.
 */
export interface ImageBytesElsewhere {
  /**
   * Whether a download of an image that this site's stores hold (`store`: the copy the download
   * would read, by weight and `prefer`) is served by open() instead: a held copy (a hit), or a miss
   * the cache keeps. Absent, or false: the download reads the store.
   */
  serves?(image: Image, store: string): boolean;
  /**
   * The bytes [start, end] of the image: an active one, or a deactivated one for a caller allowed
   * to download it (an admin, checked before; such bytes come from a copy held here or straight
   * from the source, and are never cached). Settles once the source has answered, so that a
   * client's answer can say what went wrong before it begins: rejects with NotFoundError when the
   * source has no bytes for the image, ServiceUnavailableError when it cannot be reached.
   */
  open(image: Image, start: number, end: number, opts?: HeldOnlyOptions): Promise<Readable>;
}

/** Bytes of an image fetched from the parent site. */
export interface ParentImageBytes {
  /** The bytes [start, end] asked for (the whole image when no range was given). */
  stream: AsyncIterable<Uint8Array>;
  /** Set when every chunk of `stream` was checked against this manifest as it came. */
  manifest?: ChunkManifest;
  /** Which of a source's sites sent them (a site id), where it asks several (SiteImageSource). */
  from?: string;
}

/**
 * Port for an edge's parent as a source of image bytes. Unreachable (no answer within the
 * configured timeout, or the link stalls mid-body) → ServiceUnavailableError naming the parent.
 */
/**
 * Whom a transfer of image bytes to a site is for, in the order a site's incoming bandwidth
 * (`ingress_max_bytes_per_s`) serves them: a client waiting on a miss, a copy a policy or
 * copy-image wants in the site's store, a copy fetched ahead into its cache.
 */
export type TransferPriority = 'client' | 'replicate' | 'prefetch';

export interface ParentImageSource {
  /**
   * `partial`: a local file holding what an earlier transfer of the whole image received (a
   * prefix of its bytes, possibly torn at the end by a crash): a source that can check chunks
   * may take what is intact from it instead of fetching it again. `priority`: whom the bytes are
   * for (default `client`).
   */
  open(imageId: string, opts?: SourceOptions): Promise<ParentImageBytes>;
  /** The parent's answer to GET /outpost/v1/images/{id}/manifest (unchecked JSON); NotFoundError when it has none. */
  manifest(imageId: string, opts?: IoOptions): Promise<unknown>;
  /**
   * Told that bytes of the image `from` sent (ParentImageBytes.from) failed their check: a source
   * that asks several sites asks that one no more for the image, for a while.
   */
  distrust?(imageId: string, from: string): void;
  /**
   * Told that the image's bytes, each chunk checked against the manifest this source gave, were
   * not the image's as a whole (size, md5, sha512): that manifest was wrong. A source that asks
   * several sites asks the one that sent it no more for the image, for a while (as `distrust`).
   */
  manifestMismatched?(imageId: string): void;
}

// ---------------------------------------------------------------------------------------------
// Replication: the change log a site serves, and the replica a follower applies it to.

/** Every entity of a catalog at one point of its change log. */
export interface Snapshot {
  /** The change-log position the snapshot is consistent at. */
  seq: number;
  images: Image[];
  /** Ids of deleted images (kept so that ids are never reused). */
  deleted: string[];
  members: ImageMember[];
  tasks: Task[];
  sites: Site[];
  /** Placement policies (absent from an older parent's snapshot). */
  policies?: PolicyRecord[];
  /** Identity's public records (absent from an older parent's snapshot). */
  identity?: IdentityRecord[];
  /** Metadata definition namespaces and resource types (absent from an older parent's snapshot). */
  metadef_namespaces?: MetadefNamespace[];
  metadef_resource_types?: MetadefResourceType[];
}

export interface IdentityRecord {
  kind: IdentityKind;
  id: string;
  body: Record<string, unknown>;
}

/**
 * Port: identity's records. Public ones (domains, projects, users without secrets, roles,
 * assignments, public signing keys, revocations) are written through the change log and replicate
 * to every site; secrets (password hashes, private keys) stay in the site that wrote them.
 */
export interface IdentityStore {
  putIdentity(record: IdentityRecord, opts?: IoOptions): Promise<void>;
  /** Returns whether there was such a record. */
  deleteIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<boolean>;
  getIdentity(kind: IdentityKind, id: string, opts?: IoOptions): Promise<Record<string, unknown> | undefined>;
  listIdentity(kind: IdentityKind, opts?: IoOptions): Promise<Record<string, unknown>[]>;
  /**
   * A number that changes whenever a commit touched identity records — a write or a replicated
   * batch, made by this process or (sharing a database) by another — read without I/O: what was
   * checked against the records stays valid while it holds. This process's own writes move it
   * before they resolve; other processes' as soon as their commit is announced (ChangeNotifier).
   */
  identityVersion(): number;
  getSecret(name: string, opts?: IoOptions): Promise<string | undefined>;
  /** Sets (or with null removes) a local secret: never in the change log or a snapshot. */
  setSecret(name: string, value: string | null, opts?: IoOptions): Promise<void>;
}

/**
 * Port: metadata definitions — one record per namespace (with its associations, properties,
 * objects and tags) and the resource types — written through the change log, so they replicate
 * to every site and are read there while it is cut off.
 */
export interface MetadefStore {
  /** Every namespace, by name. */
  listMetadefNamespaces(opts?: IoOptions): Promise<MetadefNamespace[]>;
  getMetadefNamespace(name: string, opts?: IoOptions): Promise<MetadefNamespace | undefined>;
  /** Every resource type, by name. */
  listMetadefResourceTypes(opts?: IoOptions): Promise<MetadefResourceType[]>;
  /**
   * Runs `fn` in one write transaction: what it reads through the writer stays as read until the
   * transaction ends (another node's write of the same namespace waits), and all it writes commits
   * together, or nothing does when it throws.
   */
  writeMetadefs<T>(fn: (tx: MetadefWriter) => Promise<T>, opts?: IoOptions): Promise<T>;
}

export interface MetadefWriter {
  namespace(name: string): Promise<MetadefNamespace | undefined>;
  resourceType(name: string): Promise<MetadefResourceType | undefined>;
  /** Inserts the namespace unless one of its name exists (also one another node is inserting): false then. */
  createNamespace(ns: MetadefNamespace): Promise<boolean>;
  /** Replaces the namespace stored under `ns.namespace`. */
  putNamespace(ns: MetadefNamespace): Promise<void>;
  deleteNamespace(name: string): Promise<void>;
  putResourceType(rt: MetadefResourceType): Promise<void>;
}

/** The serving side of replication (every site, so that sites cascade). */
export interface ChangeLog {
  /** The newest seq (0 for an empty log). */
  lastSeq(opts?: IoOptions): Promise<number>;
  /** The oldest retained seq (lastSeq + 1 when nothing is retained). */
  firstSeq(opts?: IoOptions): Promise<number>;
  /** Resolves once a change newer than `after` exists, or after `timeoutMs`, or on abort. */
  waitForChange(after: number, timeoutMs: number, opts?: IoOptions): Promise<void>;
  /** Drops all but the newest `keep` changes; returns how many were dropped. */
  truncate(keep: number, opts?: IoOptions): Promise<number>;
  snapshot(opts?: IoOptions): Promise<Snapshot>;
  /**
   * Digests of every entity kind at one seq, for the audit: a hash over the sorted entities of
   * each kind, so that two catalogs at the same seq agree exactly when their contents do.
   */
  /** `excludeImages`: images left out (an edge's offline writes, which its parent does not have yet). */
  digest(opts?: IoOptions & { excludeImages?: ReadonlySet<string> }): Promise<{ seq: number; digests: Record<string, string> }>;
}

/** Long-running work a node of a site does and claims: an import task, an upload, a staging, a copy a placement policy wants. */
export type WorkKind = 'task' | 'upload' | 'stage' | 'place';

/**
 * Port: the nodes serving a site from one database, and which of them does which piece of
 * long-running work. A node is alive while it is seen (heartbeat) within `deadAfterMs`, measured
 * by the database's clock (the nodes' clocks may differ). A claim held by a node that is no longer
 * alive is free: another node takes the work over. Every call is atomic against other nodes.
 */
export interface WorkClaims {
  /** Records that `node` (of `site`) is alive now. */
  nodeSeen(node: string, site: string, opts?: IoOptions): Promise<void>;
  /** Forgets every node but `node`: they are known to be gone (one process per SQLite file). */
  forgetOtherNodes(node: string, opts?: IoOptions): Promise<void>;
  /** Takes the work for `node` unless another node that is alive holds it; true when `node` holds it now. */
  claim(kind: WorkKind, id: string, node: string, deadAfterMs: number, opts?: IoOptions): Promise<boolean>;
  /** Gives the work up (if `node` holds it). */
  release(kind: WorkKind, id: string, node: string, opts?: IoOptions): Promise<void>;
  /** Whether a node that is alive (`node` included) holds the work. */
  isClaimed(kind: WorkKind, id: string, deadAfterMs: number, opts?: IoOptions): Promise<boolean>;
}

/** A write that committed changes to the log: the newest seq it appended, and the entity kinds it touched. */
export interface CommitEvent {
  seq: number;
  kinds: readonly ChangeEntity[];
}

/**
 * Port: wakes whoever waits for changes — long-polling feeds, caches of identity checks — when a
 * write commits, in this process and in every other process sharing the database (several central
 * nodes). A missed or late event delays a waiter until its own timeout; it never loses a change,
 * which is always read back from the log.
 */
export interface ChangeNotifier {
  /** Announces a committed write: to this process's listeners before it resolves, to other processes' soon after. */
  publish(event: CommitEvent, opts?: IoOptions): Promise<void>;
  /** Calls `listener` for every commit announced by any process; returns the function that stops it. */
  subscribe(listener: (event: CommitEvent) => void): () => void;
  close(): Promise<void>;
}

/** An image an edge wrote while cut off from its parent, not yet reconciled with central. */
export interface OfflineMark {
  image_id: string;
  /** The `updated_at` of central's version the writes were made on; null for an image created here. */
  base_updated_at: string | null;
  marked_at: string;
  /** The `updated_at` of each version sent to central since the base (an answer may have been lost: central may hold any of them). */
  sent: string[];
}

/**
 * Port: an edge's record of the images it wrote while cut off (issue 17). While an image is
 * marked, the parent's changes to it are not applied here (the edge's version stands until it is
 * reconciled; the latest of them is kept aside, see settleOffline), a snapshot reload keeps it,
 * and the audit leaves it out.
 */
export interface OfflineWriteStore {
  /** Marks the image (a mark that exists keeps its base and what was sent); true if the mark is new. */
  markOffline(imageId: string, baseUpdatedAt: string | null, opts?: IoOptions): Promise<boolean>;
  /** Removes a mark made for a write that did not happen (refused, or no change). */
  unmarkOffline(imageId: string, opts?: IoOptions): Promise<void>;
  offlineMarks(opts?: IoOptions): Promise<OfflineMark[]>;
  /** The image's mark, if it has one. */
  offlineMark(imageId: string, opts?: IoOptions): Promise<OfflineMark | undefined>;
  /**
   * The edge's version with `updated_at` `version` (null: deleted here) is about to be sent to
   * central: added to the mark's `sent`, and the parent's changes kept aside so far are dropped
   * (central's answer is newer than they are).
   */
  sendingOffline(imageId: string, version: string | null, opts?: IoOptions): Promise<void>;
  /**
   * Central answered the edge's version of the image, which had `updated_at` `sent` (null: it was
   * deleted here). Unless the image changed here since (or `final`: central's answer is the last
   * word, a conflict or a refusal), the mark ends and central's version is applied here — the
   * parent's latest change kept aside since the version was sent if there is one, otherwise
   * `central` (null: gone there; nothing is written for an image this site never had; undefined:
   * not known, the local version stays until an audit replaces it) — in one transaction, and true
   * is returned: whichever is older, the feed brings what follows it. Otherwise the mark stays,
   * now based on central's version with nothing sent, and false is returned.
   */
  settleOffline(imageId: string, sent: string | null, central: Image | null | undefined, settle?: { final?: boolean } & IoOptions): Promise<boolean>;
}

/**
 * The following side: a replica applies its parent's changes. Each batch is applied in one
 * transaction, idempotently, together with the parent position reached; applied changes are
 * appended to the replica's own change log so that its children can follow it in turn.
 */
export interface Replica {
  /** The parent's seq this replica has applied up to (0 when new). */
  position(opts?: IoOptions): Promise<number>;
  apply(changes: readonly Change[], position: number, opts?: IoOptions): Promise<void>;
  /** Replaces the whole replica with a snapshot (after a 410 from the feed). */
  load(snapshot: Snapshot, opts?: IoOptions): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Remote sources of image bytes (web-download, glance-download).

export interface RemoteOpenOptions extends IoOptions {
  /** Fail as soon as more than this many bytes arrive. */
  maxSize?: number;
  /** The first byte wanted (a `Range` from it; the server must answer 206 from that byte). Default 0. */
  start?: number;
  headers?: Record<string, string>;
  /**
   * The URI is operator-configured (a glance-download region endpoint): its own host passes, but
   * every redirect is still filtered.
   */
  trusted?: boolean;
}

/**
 * Port for fetching import sources over HTTP(S) with protection against server-side request
 * forgery: scheme, host and port allow/deny lists, internal addresses refused, every redirect
 * re-checked, a size cap.
 */
export interface RemoteSource {
  /**
   * Static checks of a URI, no I/O. Throws BadRequestError "URI for {purpose} does not pass
   * filtering: …" (`purpose`: web-download unless given).
   */
  check(uri: string, purpose?: string): void;
  /** Opens the URI; refused addresses and redirects, HTTP errors and oversize bodies reject with a clear message. */
  open(uri: string, opts?: RemoteOpenOptions): Promise<{ body: AsyncIterable<Uint8Array>; size?: number }>;
  /**
   * The size the URI announces (its answer's Content-Length; undefined without one), read from the
   * answer's headers and the body left unread: filtered and failing as open().
   */
  size(uri: string, opts?: IoOptions): Promise<number | undefined>;
}

/** Computes size, md5 and sha512 of a byte stream, possibly off the event loop. */
export interface Hasher {
  /**
   * Adds a chunk. The promise settles once the hasher no longer needs the chunk's memory: the
   * caller may then reuse or free it (VerifyingBlobStore reuses its shared batches on that promise).
   */
  update(chunk: Uint8Array): Promise<void>;
  /** md5 and sha512, and the chunk manifest if the hasher was created for one. */
  digest(): Promise<{ md5: string; sha512: string; manifest?: ChunkManifest }>;
  /** Releases resources without producing a digest. */
  abort(): void;
}
export interface HasherFactory {
  /** A hasher of one stream; `manifest`: it also builds the stream's chunk manifest. */
  create(opts?: { manifest?: boolean }): Hasher;
  /**
   * Memory of `size` bytes that update() can hash without copying it (shared with the hashing
   * threads), reused across hashers: give it back once no hasher and no caller needs it.
   */
  lend(size: number): Buffer;
  giveBack(memory: Buffer): void;
}

// ---------------------------------------------------------------------------------------------
// Identity: signed tokens and password hashes.

/** What a token asserts (JWS payload): who, scoped to which project, with which roles, until when. */
export interface TokenClaims {
  /** The user id. */
  sub: string;
  /** The project the token is scoped to (absent: unscoped). */
  project?: string;
  /** Role ids assigned on `project` when the token was issued. */
  roles: string[];
  methods: string[];
  /** Keystone's audit id: revocations name it. */
  audit_id: string;
  /** Issued at / expires at, seconds since the epoch. */
  iat: number;
  exp: number;
}

/** Port: signs tokens (central, with the private key of its current signing key). */
export interface TokenSigner {
  sign(claims: TokenClaims, opts?: IoOptions): Promise<string>;
}

/** Port: central's signing keys (public halves replicate as `signing_key` records). */
export interface SigningKeys {
  /** A new active key; the previous one is retired (it still verifies the tokens it signed). */
  rotate(opts?: IoOptions): Promise<string>;
  /** Removes a retired key everywhere: the tokens it signed are refused once the change arrives. */
  remove(kid: string, opts?: IoOptions): Promise<boolean>;
}

/**
 * Port: checks a token's signature against the public signing keys this site has (replicated),
 * and its expiry. Anything else — a wrong or removed key, altered claims, `alg: none`, expired —
 * is UnauthorizedError.
 */
export interface TokenVerifier {
  verify(token: string, opts?: IoOptions): Promise<TokenClaims>;
}

/** Port: a memory-hard password hash (central only; hashes never leave it). */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, hash: string): Promise<boolean>;
}

/** What a trusted external identity provider's token asserts, once verified. */
export interface ExternalIdentity {
  issuer: string;
  /** Domain name the issuer's users and projects live in (created on first use). */
  domain: string;
  user: string;
  project: string | null;
  /** Role names. */
  roles: string[];
  exp: number;
}

/**
 * Port: tokens of trusted external issuers (federation). `accepts` says, without verifying,
 * whether a token claims to come from one of them; `verify` checks it against that issuer's keys
 * (UnauthorizedError otherwise).
 */
export interface ExternalTokenVerifier {
  accepts(token: string): boolean;
  verify(token: string, opts?: IoOptions): Promise<ExternalIdentity>;
}

// ---------------------------------------------------------------------------------------------
// Metrics (src/core/metrics.ts lists them; docs/operations.md, "Metrics").

/**
 * Port: a site's metrics, counted where their event happens. Synchronous and never failing: a
 * metric that cannot be kept is not kept, and the caller's work goes on. Meant for a few calls per
 * request or per transfer, never per chunk of bytes. Names and label values are the closed sets of
 * COUNTED_METRICS, so no label can take unbounded values.
 */
export interface Metrics {
  /** Adds `by` (default 1, never negative) to a counter. */
  count<N extends CounterName>(name: N, labels: LabelsOf<N>, by?: number): void;
  /** Records one observation (seconds, bytes, ...) in a histogram. */
  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, value: number): void;
}

/** Metrics that keeps nothing: for code and tests that have no registry. */
export const NO_METRICS: Metrics = Object.freeze({ count() {}, observe() {} });
