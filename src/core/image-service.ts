import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AccessRules } from './access.ts';
import type { RequestContext } from './context.ts';
import {
  BadRequestError, ConflictError, ForbiddenError, GoneError, ImageNotFoundError, NotFoundError, OutpostError,
  PayloadTooLargeError, RangeNotSatisfiableError,
} from './errors.ts';
import {
  MEMBER_STATUSES, assertTransition, isUuid, setProperty, type Image, type ImageLocation, type ImageMember, type MemberStatus,
} from './image.ts';
import { applyPatch, type PatchDialect, type PatchOp } from './image-patch.ts';
import { applyLocationOp, urlsToProbe, type LocationPatchContext, type LocationProbe } from './image-locations.ts';
import { IMPORTING_PROPERTY, setStoreList, storeList } from './import-properties.ts';
import { assertWritableName, isBaseWritable, repr, tooLong, validateAttribute } from './image-validation.ts';
import { parseListQuery, type ListLimits, type QueryParams } from './list-query.ts';
import type { BlobDigest, BlobStore, Catalog, CopyRegistry, HeldOnlyOptions, ImageBytesElsewhere, IoOptions, Metrics, OfflineWriteStore, VerifiedCopy } from './ports.ts';
import { countDownload } from './download-metrics.ts';
import type { RegionStores } from './region-stores.ts';
import type { StoreRegistry } from './stores.ts';
import { HEADER_BYTES, inspectVirtualSize } from './virtual-size.ts';
import type { ChunkManifest } from './chunk-manifest.ts';
import type { ImageManifests } from './image-manifests.ts';
import type { NodeWork } from './node-work.ts';

export interface ImageServiceOptions {
  catalog: Catalog;
  stores: StoreRegistry;
  limits: ListLimits;
  /** Glance's `image_size_cap` (default 1 TiB). */
  imageSizeCap: number;
  /** The node-local import staging area, whose data for an image goes when the image is deleted. */
  staging?: BlobStore;
  /** Where the bytes of active images the site's stores do not hold come from (the site's cache). */
  elsewhere?: ImageBytesElsewhere;
  /**
   * Set where the catalog is a replica (an edge): uploads are stored in this site's store and
   * recorded here, at central, instead of in the local catalog.
   */
  copies?: CopyRegistry;
  /**
   * At an edge: the images it wrote while cut off from its parent (offline-writes.ts), central's
   * to know later — their uploads are recorded here, not at central. Only this site's own: an
   * image another edge wrote (pending there, replicated here) is not.
   */
  offline?: Pick<OfflineWriteStore, 'offlineMark'>;
  /** The region's stores: explains why a store an upload names is not one of this site's. */
  region?: RegionStores;
  /** The chunk manifests of the images' bytes (recorded at upload, served to other sites). */
  manifests?: ImageManifests;
  /** This node among several sharing the catalog: an upload is claimed while it runs. Absent: the only process. */
  work?: NodeWork;
  /** Where downloads read from the site's stores are counted (those from elsewhere count themselves). */
  metrics?: Metrics;
  /**
   * Glance's `show_multiple_locations`: images show their locations, and PATCH may add, replace
   * and remove them (`probe` finds what is at a URL a patch adds). Absent: location paths are refused (403).
   */
  locations?: { show: boolean; probe(image: Image, url: string, opts?: IoOptions): Promise<LocationProbe> };
  now?: () => Date;
}

export interface UploadRequest extends IoOptions {
  /** `x-openstack-image-size`, when the client sent it. */
  declaredSize?: number;
  /** `X-Image-Meta-Store`, when the client sent it. */
  storeId?: string;
}

/** A byte range [start, end], inclusive, as parsed from a `Range` header. */
export type ByteRange = { kind: 'range'; start: number; end?: number } | { kind: 'suffix'; length: number };

/** A download's options: `prefer`, the stores to read from first, in that order (`?prefer=`, API 2.18). */
export interface DownloadOptions extends HeldOnlyOptions {
  prefer?: readonly string[];
}

export type Download =
  /** `missing`: the stores whose recorded copy is gone (absent, or not of the image's size). */
  | { kind: 'no-data'; image: Image; missing?: string[] }
  | { kind: 'data'; image: Image; stream: Readable; start: number; end: number; partial: boolean };

/** What HEAD of an image's data answers: Download without the stream. */
export type DownloadHead = Exclude<Download, { kind: 'data' }> | { kind: 'data'; image: Image; start: number; end: number; partial: boolean };

type DownloadPlan = Exclude<Download, { kind: 'data' }> | {
  kind: 'plan'; image: Image; start: number; end: number; partial: boolean;
  locations: Image['locations']; elsewhere: ImageBytesElsewhere | undefined;
};

/**
 * The Glance v2 image use cases on one site: catalog and stores behind ports, the caller's
 * context and Glance's access rules applied to every call.
 */
export class ImageService {
  readonly #catalog: Catalog;
  readonly #stores: StoreRegistry;
  readonly #limits: ListLimits;
  readonly #sizeCap: number;
  readonly #staging: BlobStore | undefined;
  readonly #elsewhere: ImageBytesElsewhere | undefined;
  readonly #manifests: ImageManifests | undefined;
  readonly #work: NodeWork | undefined;
  readonly #copies: CopyRegistry | undefined;
  readonly #offline: Pick<OfflineWriteStore, 'offlineMark'> | undefined;
  readonly #region: RegionStores | undefined;
  readonly #metrics: Metrics | undefined;
  readonly #locations: ImageServiceOptions['locations'];
  readonly #now: () => Date;
  readonly access = new AccessRules();

  constructor(opts: ImageServiceOptions) {
    this.#catalog = opts.catalog;
    this.#stores = opts.stores;
    this.#limits = opts.limits;
    this.#sizeCap = opts.imageSizeCap;
    this.#staging = opts.staging;
    this.#elsewhere = opts.elsewhere;
    this.#copies = opts.copies;
    this.#offline = opts.offline;
    this.#region = opts.region;
    this.#manifests = opts.manifests;
    this.#work = opts.work;
    this.#metrics = opts.metrics;
    this.#locations = opts.locations;
    this.#now = opts.now ?? (() => new Date());
  }

  #timestamp(): string {
    return this.#now().toISOString();
  }

  // -- images ---------------------------------------------------------------------------------

  /** POST /v2/images. */
  async create(ctx: RequestContext, body: unknown, opts: IoOptions = {}): Promise<Image> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new BadRequestError('Body expected in request.');
    }
    this.access.assertCanCreate(ctx);
    const input = body as Record<string, unknown>;
    const now = this.#timestamp();
    const image: Image = {
      id: randomUUID(), name: null, status: 'queued', visibility: 'shared', protected: false, os_hidden: false,
      checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null, disk_format: null,
      container_format: null, min_disk: 0, min_ram: 0, owner: ctx.projectId, created_at: now, updated_at: now,
      tags: [], properties: {}, locations: [],
    };
    for (const [key, value] of Object.entries(input)) {
      if (key === 'id') {
        if (typeof value !== 'string' || !isUuid(value)) {
          throw new BadRequestError(`Provided object does not match schema 'image': ${repr(value)} does not match UUID pattern`);
        }
        image.id = value.toLowerCase();
        continue;
      }
      assertWritableName(key);
      const v = validateAttribute(key, value);
      if (isBaseWritable(key)) (image as unknown as Record<string, unknown>)[key] = v;
      else setProperty(image.properties, key, v as string);
    }
    this.access.assertCanSetVisibility(ctx, image.visibility);
    this.access.assertCanSetOwner(ctx, image.owner);
    // As stored: an edge cut off from its parent marks an image it creates (offline-writes.ts).
    return this.#catalog.createImage(image, opts);
  }

  /** Loads an image the caller can see, or throws ImageNotFoundError (404, also for non-UUID ids). */
  async get(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<Image> {
    const image = isUuid(id) ? await this.#catalog.getImage(id.toLowerCase(), opts) : undefined;
    if (image === undefined || !this.access.canSee(ctx, image, await this.#isMember(ctx, image, opts))) {
      throw new ImageNotFoundError(id);
    }
    return image;
  }

  async #isMember(ctx: RequestContext, image: Image, opts: IoOptions): Promise<boolean> {
    if (ctx.projectId === null || image.visibility !== 'shared' || image.owner === ctx.projectId) return false;
    return (await this.#catalog.getMember(image.id, ctx.projectId, opts)) !== undefined;
  }

  /** GET /v2/images. Returns the page and whether a `next` link is due (a full page). */
  async list(ctx: RequestContext, params: QueryParams, opts: IoOptions = {}): Promise<{ images: Image[]; more: boolean }> {
    const parsed = parseListQuery(params, this.#limits);
    let marker: Image | undefined;
    if (parsed.marker !== undefined) {
      try {
        marker = await this.get(ctx, parsed.marker, opts);
      } catch (e) {
        if (e instanceof ImageNotFoundError) throw new BadRequestError(`No image found with ID ${parsed.marker}`);
        throw e;
      }
    }
    const images = await this.#catalog.listImages({
      ...parsed.query,
      scope: {
        admin: ctx.isAdmin, projectId: ctx.projectId, visibility: parsed.visibility, memberStatus: parsed.memberStatus,
      },
      marker,
    }, opts);
    return { images, more: parsed.query.limit > 0 && images.length === parsed.query.limit };
  }

  /**
   * PATCH /v2/images/{id}. Operations on `locations` (add, replace, remove: image-locations.ts)
   * need `show_multiple_locations`; what is at each URL they add is found first (a store's copy
   * is read and hashed, an http(s) URL asked for its size), and a removed copy in one of this
   * site's stores is deleted once the patch is recorded, as Glance's `StoreLocations.pop` deletes
   * the data (another site's copy goes when that site's replica shows the record gone).
   */
  async patch(ctx: RequestContext, id: string, ops: readonly PatchOp[], dialect: PatchDialect, opts: IoOptions = {}): Promise<Image> {
    const image = await this.get(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'modify_image');
    const lc = ops.some((o) => o.key === 'locations') ? await this.#locationContext(ctx, image, ops, opts) : undefined;
    let removed: string[] = [];
    const updated = await this.#catalog.updateImage(image.id, (current) => {
      const next = applyPatch(current, ops, dialect, lc === undefined ? undefined : (n, op) => applyLocationOp(n, op, lc));
      if (next.visibility !== current.visibility) this.access.assertCanSetVisibility(ctx, next.visibility);
      if (next.owner !== current.owner && !ctx.isAdmin) {
        throw new ForbiddenError("Attribute 'owner' can only be changed by an administrator.");
      }
      removed = current.locations.filter((l) => this.#stores.has(l.store) && !next.locations.some((n) => n.store === l.store)).map((l) => l.store);
      next.updated_at = this.#timestamp();
      return next;
    }, opts);
    for (const store of removed) await this.#stores.blobs(store).delete(image.id, opts);
    return updated;
  }

  /** What the location operations of a patch need: the setting, the caller, store weights, and what is at each new URL. */
  async #locationContext(ctx: RequestContext, image: Image, ops: readonly PatchOp[], opts: IoOptions): Promise<LocationPatchContext | undefined> {
    if (this.#locations === undefined) return undefined;
    const probes = new Map<string, LocationProbe>();
    // Only when the patch can get as far as the locations (shown, and a status they may change in).
    if (this.#locations.show && (image.status === 'queued' || image.status === 'active')) {
      for (const url of urlsToProbe(image, ops)) probes.set(url, await this.#locations.probe(image, url, opts));
    }
    const weight = await this.#region?.weights(opts) ?? ((s: string) => this.#stores.weight(s));
    return { showLocations: this.#locations.show, isAdmin: ctx.isAdmin, weight, probes };
  }

  /** DELETE /v2/images/{id}: removes the record, every copy of the bytes and staged data (Glance too). */
  async delete(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<void> {
    const image = await this.get(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'delete_image');
    if (image.protected) throw new ForbiddenError(`Image ${image.id} is protected and cannot be deleted.`);
    await this.#catalog.deleteImage(image.id, opts);
    for (const loc of image.locations) {
      if (this.#stores.has(loc.store)) await this.#stores.blobs(loc.store).delete(image.id, opts);
    }
    await this.#staging?.delete(image.id, opts);
    await this.#manifests?.forget(image.id, image.locations.map((l) => l.store), opts);
  }

  /** POST /v2/images/{id}/actions/deactivate|reactivate (idempotent). */
  async setActivation(ctx: RequestContext, id: string, active: boolean, opts: IoOptions = {}): Promise<void> {
    const image = await this.get(ctx, id, opts);
    const action = active ? 'reactivate' : 'deactivate';
    this.access.assertCanModify(ctx, image, action);
    await this.#catalog.updateImage(image.id, (current) => {
      const target = active ? 'active' : 'deactivated';
      if (current.status === target) return current;
      if (current.status !== 'active' && current.status !== 'deactivated') {
        throw new ForbiddenError(`Not allowed to ${action} image in status '${current.status}'`);
      }
      return { ...current, status: target, updated_at: this.#timestamp() };
    }, opts);
  }

  // -- tags -----------------------------------------------------------------------------------

  /** PUT /v2/images/{id}/tags/{tag} — idempotent. */
  async addTag(ctx: RequestContext, id: string, tag: string, opts: IoOptions = {}): Promise<void> {
    const image = await this.get(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'modify_image');
    if (tooLong(tag, 255)) throw new BadRequestError(`Provided object does not match schema 'image': '${tag}' is too long`);
    await this.#catalog.updateImage(image.id, (current) => {
      if (current.tags.includes(tag)) return current;
      if (current.tags.length >= 128) throw new PayloadTooLargeError('Maximum number of tags (128) exceeded.');
      return { ...current, tags: [...current.tags, tag], updated_at: this.#timestamp() };
    }, opts);
  }

  /** DELETE /v2/images/{id}/tags/{tag} — 404 when the tag is absent. */
  async removeTag(ctx: RequestContext, id: string, tag: string, opts: IoOptions = {}): Promise<void> {
    const image = await this.get(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'modify_image');
    await this.#catalog.updateImage(image.id, (current) => {
      if (!current.tags.includes(tag)) throw new NotFoundError(`Tag ${tag} not found`);
      return { ...current, tags: current.tags.filter((t) => t !== tag), updated_at: this.#timestamp() };
    }, opts);
  }

  // -- members --------------------------------------------------------------------------------

  async #sharedImage(ctx: RequestContext, id: string, opts: IoOptions): Promise<Image> {
    const image = await this.get(ctx, id, opts);
    if (image.visibility !== 'shared') throw new ForbiddenError('Only shared images have members.');
    return image;
  }

  /** POST /v2/images/{id}/members — owner only. */
  async addMember(ctx: RequestContext, id: string, body: unknown, opts: IoOptions = {}): Promise<ImageMember> {
    const image = await this.#sharedImage(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'add_member');
    const memberId = (body as { member?: unknown } | null)?.member;
    if (typeof memberId !== 'string' || memberId.length === 0 || memberId.length > 255 || !memberId.isWellFormed()) {
      throw new BadRequestError('Member to be added not specified');
    }
    const now = this.#timestamp();
    const member: ImageMember = { image_id: image.id, member_id: memberId, status: 'pending', created_at: now, updated_at: now };
    if ((await this.#catalog.listMembers(image.id, opts)).length >= 128) {
      throw new PayloadTooLargeError('Maximum number of members (128) exceeded.');
    }
    await this.#catalog.addMember(member, opts);
    return member;
  }

  /** GET /v2/images/{id}/members — the owner sees all; a member sees its own entry. */
  async listMembers(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<ImageMember[]> {
    const image = await this.#sharedImage(ctx, id, opts);
    const members = await this.#catalog.listMembers(image.id, opts);
    if (ctx.isAdmin || this.access.isOwner(ctx, image)) return members;
    return members.filter((m) => m.member_id === ctx.projectId);
  }

  /** GET /v2/images/{id}/members/{member}. */
  async getMember(ctx: RequestContext, id: string, memberId: string, opts: IoOptions = {}): Promise<ImageMember> {
    const image = await this.#sharedImage(ctx, id, opts);
    const member = await this.#catalog.getMember(image.id, memberId, opts);
    const mayView = ctx.isAdmin || this.access.isOwner(ctx, image) || ctx.projectId === memberId;
    if (member === undefined || !mayView) throw new NotFoundError(`${memberId} is not a member of image ${image.id}`);
    return member;
  }

  /** PUT /v2/images/{id}/members/{member} — only the member project may accept or reject. */
  async updateMember(ctx: RequestContext, id: string, memberId: string, body: unknown, opts: IoOptions = {}): Promise<ImageMember> {
    const image = await this.#sharedImage(ctx, id, opts);
    const status = (body as { status?: unknown } | null)?.status;
    if (typeof status !== 'string' || !(MEMBER_STATUSES as readonly string[]).includes(status)) {
      throw new BadRequestError(`Provided object does not match schema 'member': ${repr(status)} is not one of ['pending', 'accepted', 'rejected']`);
    }
    const member = await this.#catalog.getMember(image.id, memberId, opts);
    if (member === undefined) throw new NotFoundError(`${memberId} is not a member of image ${image.id}`);
    if (ctx.projectId !== memberId) {
      throw new ForbiddenError('You are not permitted to modify the status of this image member.');
    }
    const updated: ImageMember = { ...member, status: status as MemberStatus, updated_at: this.#timestamp() };
    await this.#catalog.updateMember(updated, opts);
    return updated;
  }

  /** DELETE /v2/images/{id}/members/{member} — owner only. */
  async removeMember(ctx: RequestContext, id: string, memberId: string, opts: IoOptions = {}): Promise<void> {
    const image = await this.#sharedImage(ctx, id, opts);
    this.access.assertCanModify(ctx, image, 'delete_member');
    if ((await this.#catalog.getMember(image.id, memberId, opts)) === undefined) {
      throw new NotFoundError(`${memberId} is not a member of image ${image.id}`);
    }
    await this.#catalog.removeMember(image.id, memberId, opts);
  }

  // -- data -----------------------------------------------------------------------------------

  /**
   * PUT /v2/images/{id}/file. queued → saving; the bytes are streamed into the store while size,
   * md5 and sha512 are computed; → active with the location recorded. On any failure the image
   * returns to queued and the store keeps nothing (the BlobStore's put is atomic).
   *
   * Where the catalog is a replica (an edge), the bytes stay in this site's store and the copy is
   * recorded at central (CopyRegistry): the image becomes active there with this site's store in
   * its `stores`. Central is asked whether it can be reached before any byte is read, and the
   * image stays `queued` at central until the copy is recorded.
   */
  async upload(ctx: RequestContext, id: string, data: AsyncIterable<Uint8Array>, req: UploadRequest = {}): Promise<Image> {
    const image = await this.get(ctx, id, req);
    this.access.assertCanModify(ctx, image, 'upload_image');
    const storeId = req.storeId ?? this.#stores.defaultId;
    // Only this site's own stores: the bytes are stored where the upload arrives.
    const refusal = await this.#region?.refusal(storeId, 'upload', req);
    if (refusal !== undefined) throw refusal;
    const blobs = this.#stores.blobs(storeId);
    // glance_store raises StoreAddDisabled for a read-only store, which image_data.py answers 410.
    if (this.#stores.isReadOnly(storeId)) throw new GoneError(`Store ${storeId} is read-only: images cannot be added to it.`);
    if (req.declaredSize !== undefined && req.declaredSize > this.#sizeCap) {
      throw new PayloadTooLargeError(`Image exceeds the storage quota: image_size_cap is ${this.#sizeCap} bytes.`);
    }
    // An image written at this edge while it is cut off keeps its bytes here, recorded here, until
    // central has it (offline-writes.ts); any other upload at an edge is recorded at central.
    const writtenHere = (await this.#offline?.offlineMark(image.id, req)) !== undefined;
    if (this.#copies !== undefined && !writtenHere) return this.#uploadHere(ctx, image, storeId, data, req, this.#copies);
    // Claimed before the image is `saving`: an unclaimed `saving` image is one whose node is gone
    // (StartupRecovery returns it to queued).
    await this.#work?.claim('upload', image.id, req);
    try {
      return await this.#uploadSaving(image, storeId, blobs, data, req);
    } finally {
      await this.#work?.release('upload', image.id).catch(() => undefined);
    }
  }

  /** queued → saving → active with the verified copy, or back to queued with nothing stored. */
  async #uploadSaving(image: Image, storeId: string, blobs: BlobStore, data: AsyncIterable<Uint8Array>, req: UploadRequest): Promise<Image> {
    await this.#catalog.updateImage(image.id, (current) => {
      assertUploadable(current);
      return { ...current, status: 'saving', updated_at: this.#timestamp() };
    }, req);

    let stored = false;
    try {
      const { digest, virtualSize } = await this.#store(image, blobs, data, req);
      stored = true;
      return await this.#catalog.updateImage(image.id, (current) => {
        if (current.status !== 'saving') throw new GoneError('Image deleted during upload. Data was not saved.');
        return {
          ...current,
          ...verifiedAttributes(digest, virtualSize),
          locations: [{ store: storeId, url: blobs.urlFor(image.id) }],
          updated_at: this.#timestamp(),
        };
      });
    } catch (error) {
      if (stored) await blobs.delete(image.id).catch(() => undefined);
      await this.#catalog.updateImage(image.id, (current) => (
        current.status === 'saving' ? { ...current, status: 'queued', size: null, virtual_size: null, updated_at: this.#timestamp() } : current
      )).catch(() => undefined);
      throw uploadError(error, req);
    }
  }

  /** An upload at a site whose catalog is a replica: stored here, recorded at central. */
  async #uploadHere(ctx: RequestContext, image: Image, storeId: string, data: AsyncIterable<Uint8Array>, req: UploadRequest, copies: CopyRegistry): Promise<Image> {
    assertUploadable(image);
    await copies.reachable(req);
    const blobs = this.#stores.blobs(storeId);
    let stored = false;
    try {
      const { digest, virtualSize } = await this.#store(image, blobs, data, req);
      stored = true;
      await copies.record(ctx, image.id, {
        store: storeId, url: blobs.urlFor(image.id), size: digest.size, checksum: digest.md5,
        os_hash_algo: 'sha512', os_hash_value: digest.sha512, virtual_size: virtualSize,
      }, req);
      return await this.get(ctx, image.id);
    } catch (error) {
      if (stored) await blobs.delete(image.id).catch(() => undefined);
      throw uploadError(error, req);
    }
  }

  /**
   * Streams the bytes into the store, handing the store `data` itself (a request body stays a
   * stream the store can read without a layer per chunk); the first bytes, for format inspection
   * (virtual_size), are then read back from the stored copy. If that read fails, the copy goes.
   */
  async #store(image: Image, blobs: BlobStore, data: AsyncIterable<Uint8Array>, req: UploadRequest): Promise<{ digest: BlobDigest; virtualSize: number | null }> {
    const digest = await blobs.put(image.id, data, { signal: req.signal, expectedSize: req.declaredSize, maxSize: this.#sizeCap, manifest: this.#manifests?.whileStoring === true });
    // Before the image can be active with these bytes; kept under their sha512, so a manifest left
    // by an upload that fails later is never answered for other bytes.
    await this.#manifests?.record(image.id, digest.sha512, digest.manifest, blobs.id, req);
    let head: Uint8Array = new Uint8Array(0);
    try {
      if (digest.size > 0) {
        const parts: Uint8Array[] = [];
        for await (const part of await blobs.get(image.id, { start: 0, end: Math.min(HEADER_BYTES, digest.size) - 1 })) parts.push(part as Uint8Array);
        head = Buffer.concat(parts);
      }
    } catch (error) {
      await blobs.delete(image.id).catch(() => undefined);
      throw error;
    }
    return { digest, virtualSize: inspectVirtualSize(image.disk_format, head, digest.size) };
  }

  /**
   * PUT /outpost/v1/images/{id}/locations/{store} (central): records a verified copy held in a
   * store of another site. A queued image becomes active with it (an upload at an edge); an
   * active or deactivated one gains the location if the digests match its own. The store must be
   * one a registered site declared. Sites (the `service` role), administrators and whoever may
   * upload the image's data may record a copy.
   */
  async addCopy(ctx: RequestContext, id: string, body: unknown, opts: IoOptions = {}): Promise<Image> {
    const image = await this.get(ctx, id, opts);
    if (!ctx.roles.includes('service')) this.access.assertCanModify(ctx, image, 'upload_image');
    const copy = parseVerifiedCopy(body);
    const known = new Set((await this.#catalog.listSites(opts)).flatMap((s) => s.stores));
    if (!known.has(copy.store) && !this.#stores.has(copy.store)) {
      throw new ConflictError(`No registered site has a store ${copy.store}.`);
    }
    if (copy.size > this.#sizeCap) throw new PayloadTooLargeError(`Image exceeds the storage quota: image_size_cap is ${this.#sizeCap} bytes.`);
    return this.#catalog.updateImage(image.id, (current) => {
      const location: ImageLocation = copy.placed_by === 'policy' ? { store: copy.store, url: copy.url, placed_by: 'policy' } : { store: copy.store, url: copy.url };
      if (current.status === 'queued') {
        assertUploadable(current);
        return {
          ...current,
          ...verifiedAttributes({ size: copy.size, md5: copy.checksum, sha512: copy.os_hash_value }, copy.virtual_size),
          locations: [location],
          updated_at: this.#timestamp(),
        };
      }
      if (current.status !== 'active' && current.status !== 'deactivated') assertTransition(current.status, 'active');
      if (current.size !== copy.size || current.checksum !== copy.checksum || current.os_hash_value !== copy.os_hash_value) {
        throw new ConflictError(`The copy in store ${copy.store} does not match image ${current.id}'s size, checksum and hash.`);
      }
      // A copy-image to this store is done with it: the store leaves os_glance_importing_to_stores
      // (the task waiting on it ends once every store it named has left).
      const importing = storeList(current, IMPORTING_PROPERTY);
      const next = { ...current, properties: { ...current.properties }, updated_at: this.#timestamp() };
      if (importing.includes(copy.store)) setStoreList(next, IMPORTING_PROPERTY, importing.filter((s) => s !== copy.store));
      else if (current.locations.some((l) => l.store === copy.store)) return current;
      if (!current.locations.some((l) => l.store === copy.store)) next.locations = [...current.locations, location];
      return next;
    }, opts);
  }

  /**
   * DELETE /outpost/v1/images/{id}/locations/{store} (central): a site agent removes the record of
   * a copy a placement policy made, before it deletes the bytes (sites and administrators only).
   * Only such a copy, and never an image's last one: 404 when the store holds no copy, 409 when
   * it is not a policy's or is the last.
   */
  async removeCopy(ctx: RequestContext, id: string, store: string, opts: IoOptions = {}): Promise<Image> {
    if (!ctx.isAdmin && !ctx.roles.includes('service')) throw new ForbiddenError('Copies placed by policy are removed by sites and administrators.');
    const image = await this.get(ctx, id, opts);
    return this.#catalog.updateImage(image.id, (current) => {
      const location = current.locations.find((l) => l.store === store);
      if (location === undefined) throw new NotFoundError(`Image ${current.id} has no copy in store ${store}.`);
      if (location.placed_by !== 'policy') throw new ConflictError(`The copy of image ${current.id} in store ${store} was not placed by a policy; remove it with DELETE /v2/stores/${store}/${current.id}.`);
      if (current.locations.length === 1) throw new ConflictError(`The copy of image ${current.id} in store ${store} is its last one.`);
      return { ...current, locations: current.locations.filter((l) => l !== location), updated_at: this.#timestamp() };
    }, opts);
  }

  /**
   * GET /v2/images/{id}/file. 204 (no-data) when the image has no bytes; a single range gives a
   * partial answer (206), an unsatisfiable one 416. Deactivated images: "Image data download is
   * forbidden" to non-admins, while admins download them (glance/api/v2/image_data.py download:
   * `if image.status == 'deactivated' and not req.context.is_admin`) — here or through a site
   * (the `service` role, which applies this same rule to its own callers), from wherever the
   * bytes are.
   *
   * The recorded copies are tried by store weight, first usable one wins (glance/location.py
   * ImageProxy.get_data). A copy whose file is gone, or is not of the image's size, is skipped;
   * when none is left the answer is no-data, with the stores that lost theirs: Glance's
   * filesystem store raises glance_store NotFound for a missing file (_drivers/filesystem.py
   * _resolve_location), which image_data.py's ResponseSerializer.download turns into
   * `webob.exc.HTTPNoContent` — 204 with no body, which glanceclient reports as "Image … has no
   * data", and openstacksdk as a checksum mismatch with nothing written.
   */
  async download(ctx: RequestContext, id: string, range: ByteRange | undefined, opts: DownloadOptions = {}): Promise<Download> {
    const plan = await this.#planDownload(ctx, id, range, opts);
    if (plan.kind === 'no-data') return plan;
    const { image, start, end, partial, locations, elsewhere } = plan;
    if (elsewhere !== undefined) {
      try {
        return { kind: 'data', image, stream: await elsewhere.open(image, start, end, opts), start, end, partial };
      } catch (error) {
        // Where the bytes come from has none (an edge's parent answered 204 or 404): as here.
        if (error instanceof NotFoundError) return { kind: 'no-data', image };
        throw error;
      }
    }
    const missing: string[] = [];
    for (const location of locations) {
      const blobs = this.#stores.blobs(location.store);
      if ((await blobs.stat(image.id, opts))?.size === image.size) {
        try {
          if (image.size === 0) return { kind: 'data', image, stream: await blobs.get(image.id, opts), start: 0, end: -1, partial: false };
          const stream = await blobs.get(image.id, { ...opts, start, end });
          if (this.#metrics !== undefined) countDownload(this.#metrics, 'store', stream, end - start + 1);
          return { kind: 'data', image, stream, start, end, partial };
        } catch (error) {
          if (!(error instanceof NotFoundError)) throw error; // removed since the stat: try the next copy
        }
      }
      missing.push(location.store);
    }
    return { kind: 'no-data', image, missing };
  }

  /**
   * GET /outpost/v1/images/{id}/manifest: the chunk manifest of the image's bytes, for whoever may
   * download them (a deactivated image's for administrators and sites only, as its data).
   */
  async manifest(ctx: RequestContext, id: string, opts: HeldOnlyOptions = {}): Promise<ChunkManifest> {
    const image = await this.get(ctx, id, opts);
    assertMayReadData(ctx, image);
    if (this.#manifests === undefined) throw new NotFoundError(`This site keeps no chunk manifests.`);
    return this.#manifests.of(image, opts);
  }

  /**
   * HEAD /v2/images/{id}/file: the status and headers GET would answer with, without reading a
   * byte (and, at an edge, without starting a fill): a local copy is checked for presence and
   * size; bytes from elsewhere are announced by the image's size.
   */
  async downloadHead(ctx: RequestContext, id: string, range: ByteRange | undefined, opts: DownloadOptions = {}): Promise<DownloadHead> {
    const plan = await this.#planDownload(ctx, id, range, opts);
    if (plan.kind === 'no-data') return plan;
    const { image, start, end, partial, locations, elsewhere } = plan;
    if (elsewhere !== undefined) return { kind: 'data', image, start, end, partial };
    for (const location of locations) {
      if ((await this.#stores.blobs(location.store).stat(image.id, opts))?.size === image.size) return { kind: 'data', image, start, end, partial };
    }
    return { kind: 'no-data', image, missing: locations.map((l) => l.store) };
  }

  /**
   * What a download of the image would read: the caller's right to, the copies to try, the range.
   * The copies are tried by store weight; with `prefer` (Glance API 2.18, `?prefer=store1,store2`:
   * "the stores to download from first, in order"), those stores' copies come first, in that
   * order. A store no site of the region has is a 400, as Glance refuses an unknown store; a
   * preferred store of another site does not change where the bytes come from here.
   */
  async #planDownload(ctx: RequestContext, id: string, range: ByteRange | undefined, opts: DownloadOptions): Promise<DownloadPlan> {
    for (const store of opts.prefer ?? []) {
      if (!this.#stores.has(store) && (await this.#region?.owner(store, opts)) === undefined) {
        throw new BadRequestError(`Store for identifier ${store} not found`);
      }
    }
    const image = await this.get(ctx, id, opts);
    assertMayReadData(ctx, image);
    const rank = (store: string) => {
      const i = opts.prefer?.indexOf(store) ?? -1;
      return i < 0 ? Number.MAX_SAFE_INTEGER : i;
    };
    const locations = [...image.locations]
      .filter((l) => this.#stores.has(l.store))
      .sort((a, b) => rank(a.store) - rank(b.store) || this.#stores.weight(b.store) - this.#stores.weight(a.store));
    const hasBytes = image.status === 'active' || image.status === 'deactivated';
    // Bytes none of the site's stores holds come from elsewhere (the cache); so do those of a held
    // image the cache serves (central: a cached copy, or a copy in a remote store it keeps on a miss).
    const elsewhere = hasBytes && (locations.length === 0 || this.#elsewhere?.serves?.(image, locations[0]!.store) === true) ? this.#elsewhere : undefined;
    if ((locations.length === 0 && elsewhere === undefined) || image.size === null) return { kind: 'no-data', image };

    const size = image.size;
    let start = 0;
    let end = size - 1;
    if (range !== undefined) {
      if (range.kind === 'suffix') {
        if (range.length === 0) throw new RangeNotSatisfiableError('The Range requested is not available.');
        start = Math.max(0, size - range.length);
      } else {
        start = range.start;
        end = Math.min(range.end ?? size - 1, size - 1);
        if (start >= size || start > end) throw new RangeNotSatisfiableError('The Range requested is not available.');
      }
    }
    return { kind: 'plan', image, start, end, partial: range !== undefined, locations, elsewhere };
  }

}

/** A deactivated image's data is for administrators (and sites, which apply that rule to their callers). */
function assertMayReadData(ctx: RequestContext, image: Image): void {
  if (image.status === 'deactivated' && !ctx.isAdmin && !ctx.roles.includes('service')) {
    throw new ForbiddenError('The requested image has been deactivated. Image data download is forbidden.');
  }
}

/** Glance's checks before image data is accepted: formats set, and queued → saving allowed. */
function assertUploadable(image: Image): void {
  if (image.disk_format === null || image.container_format === null) {
    throw new BadRequestError('Properties disk_format, container_format must be set prior to saving data.');
  }
  assertTransition(image.status, 'saving');
}

function verifiedAttributes(digest: Pick<BlobDigest, 'size' | 'md5' | 'sha512'>, virtualSize: number | null): Partial<Image> {
  return {
    status: 'active', size: digest.size, virtual_size: virtualSize, checksum: digest.md5, os_hash_algo: 'sha512', os_hash_value: digest.sha512,
  };
}

function uploadError(error: unknown, req: IoOptions): unknown {
  if (error instanceof OutpostError) return error;
  if (req.signal?.aborted) return new BadRequestError('The upload was interrupted before all data arrived.');
  return error;
}

const HEX = (n: number) => new RegExp(`^[0-9a-f]{${n}}$`);

/** The body of PUT /outpost/v1/images/{id}/locations/{store}, with the store from the path. */
function parseVerifiedCopy(body: unknown): VerifiedCopy {
  const b = (body ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof b.store !== 'string' || b.store === '') problems.push('store');
  if (typeof b.url !== 'string' || b.url === '') problems.push('url');
  if (!Number.isSafeInteger(b.size) || (b.size as number) < 0) problems.push('size');
  if (typeof b.checksum !== 'string' || !HEX(32).test(b.checksum)) problems.push('checksum (32 hex digits)');
  if (b.os_hash_algo !== 'sha512') problems.push('os_hash_algo ("sha512")');
  if (typeof b.os_hash_value !== 'string' || !HEX(128).test(b.os_hash_value)) problems.push('os_hash_value (128 hex digits)');
  const vs = b.virtual_size ?? null;
  if (vs !== null && (!Number.isSafeInteger(vs) || (vs as number) < 0)) problems.push('virtual_size');
  if (b.placed_by !== undefined && b.placed_by !== 'policy') problems.push('placed_by ("policy" or absent)');
  if (problems.length > 0) throw new BadRequestError(`A copy needs valid ${problems.join(', ')}.`);
  return b as unknown as VerifiedCopy;
}
