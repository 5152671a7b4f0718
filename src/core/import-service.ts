import { randomUUID } from 'node:crypto';
import type { RequestContext } from './context.ts';
import {
  BadRequestError, ConflictError, ForbiddenError, NotFoundError, OutpostError,
} from './errors.ts';
import { assertTransition, isUuid, setProperty, type Image } from './image.ts';
import type { ImageService } from './image-service.ts';
import { FAILED_PROPERTY, IMPORTING_PROPERTY, LOCK_PROPERTY, setStoreList, storeList } from './import-properties.ts';
import { takeOverableLock } from './task-runs.ts';
import type { BlobStore, Catalog, IoOptions, SortDir, TaskListQuery } from './ports.ts';
import type { RegionStores } from './region-stores.ts';
import type { StoreRegistry } from './stores.ts';
import type { NodeWork } from './node-work.ts';
import {
  IMPORT_METHODS, TASK_STATUSES, type ImportMethod, type ImportRequest, type ImportTask, type Task,
} from './task.ts';

export interface ImportRunner {
  /**
   * Creates a task and starts running it (does not wait for it to run): `create` records it and
   * takes the image's lock; the task whose stale lock it took (`superseded`) fails.
   */
  launch(task: ImportTask, create: () => Promise<void>, superseded: Task | undefined, opts: IoOptions): Promise<void>;
}

export interface ImportServiceOptions {
  catalog: Catalog;
  stores: StoreRegistry;
  images: ImageService;
  /** The node-local staging area (Glance's os_glance_staging_store). */
  staging: BlobStore;
  runner: ImportRunner;
  /** Import methods this site offers, in the order /v2/info/import lists them. */
  methods: readonly ImportMethod[];
  /** Checks a web-download URI against the import filtering rules; throws BadRequestError. */
  checkUri: (uri: string) => void;
  imageSizeCap: number;
  /** The region's stores: explains why another site's store cannot be named here. */
  region?: RegionStores;
  /** This node among several sharing the catalog: staging is claimed while it runs. Absent: the only process. */
  work?: NodeWork;
  now?: () => Date;
}

export interface ImportCall extends IoOptions {
  /** `X-Image-Meta-Store`, when given. */
  storeHeader?: string;
  /** The import call's x-openstack-request-id, recorded in the task. */
  requestId: string;
}

/**
 * The interoperable image import of Glance (images.py `import_image`, image_data.py `stage`),
 * the tasks API and DELETE /v2/stores/{store}/{image}. Tasks run in the ImportRunner.
 */
export class ImportService {
  readonly #o: ImportServiceOptions;
  readonly #now: () => Date;

  constructor(opts: ImportServiceOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
  }

  get methods(): readonly ImportMethod[] {
    return this.#o.methods;
  }

  /**
   * PUT /v2/images/{id}/stage: queued → uploading, the bytes go to the staging area and `size`
   * is recorded. On failure the image returns to queued and nothing stays staged.
   */
  async stage(ctx: RequestContext, id: string, data: AsyncIterable<Uint8Array>, req: IoOptions & { declaredSize?: number } = {}): Promise<void> {
    if (!this.#o.methods.includes('glance-direct')) throw new NotFoundError('The resource could not be found.');
    const image = await this.#o.images.get(ctx, id, req);
    this.#o.images.access.assertCanModify(ctx, image, 'modify_image');
    // Claimed before the image is `uploading`: an unclaimed, half-staged image is one whose node is gone.
    await this.#o.work?.claim('stage', image.id, req);
    try {
      await this.#stageClaimed(image.id, data, req);
    } finally {
      await this.#o.work?.release('stage', image.id).catch(() => undefined);
    }
  }

  async #stageClaimed(id: string, data: AsyncIterable<Uint8Array>, req: IoOptions & { declaredSize?: number }): Promise<void> {
    await this.#o.catalog.updateImage(id, (current) => {
      assertTransition(current.status, 'uploading');
      return { ...current, status: 'uploading', updated_at: this.#now().toISOString() };
    }, req);
    try {
      const digest = await this.#o.staging.put(id, data, {
        signal: req.signal, expectedSize: req.declaredSize, maxSize: this.#o.imageSizeCap,
      });
      await this.#o.catalog.updateImage(id, (current) => {
        if (current.status !== 'uploading') throw new ConflictError('Image was changed while its data was being staged.');
        return { ...current, size: digest.size, updated_at: this.#now().toISOString() };
      });
    } catch (error) {
      await this.#o.staging.delete(id).catch(() => undefined);
      await this.#o.catalog.updateImage(id, (current) => (
        current.status === 'uploading' ? { ...current, status: 'queued', size: null, updated_at: this.#now().toISOString() } : current
      )).catch(() => undefined);
      if (error instanceof OutpostError) throw error;
      throw new BadRequestError('The staging upload was interrupted before all data arrived.');
    }
  }

  /**
   * POST /v2/images/{id}/import, in Glance's validation order (API-NOTES §1.8). Returns the task
   * created, or undefined when a copy-image has nothing to copy (Glance returns without a task);
   * the caller answers 202 either way.
   */
  async start(ctx: RequestContext, id: string, body: unknown, call: ImportCall): Promise<ImportTask | undefined> {
    const req = this.#parseBody(body);
    const method = req.method.name;

    const image = await this.#o.images.get(ctx, id, call);
    // Glance's messages (images.py import_image).
    if (image.status === 'active' && method !== 'copy-image') {
      throw new ConflictError('Image with status active cannot be target for import');
    }
    if (image.status !== 'active' && method === 'copy-image') {
      throw new ConflictError('Only images with status active can be targeted for copying');
    }
    if (image.status !== 'queued' && (method === 'web-download' || method === 'glance-download')) {
      throw new ConflictError(`Image needs to be in 'queued' state to use '${method}' method`);
    }
    if (image.status !== 'uploading' && method === 'glance-direct') {
      throw new ConflictError("Image needs to be staged before 'glance-direct' method can be used");
    }
    // Outpost lets glance-download fill in the formats from the remote image (Glance requires them).
    if (method !== 'glance-download') {
      if (image.container_format === null) throw new ConflictError("'container_format' needs to be set before import");
      if (image.disk_format === null) throw new ConflictError("'disk_format' needs to be set before import");
    }
    if (method === 'glance-download') {
      const { glance_region: region, glance_image_id: remoteId } = req.method;
      if (typeof region !== 'string' || region === '' || typeof remoteId !== 'string' || remoteId === '') {
        throw new BadRequestError('glance-download method requires glance_region and glance_image_id');
      }
      if (!isUuid(remoteId)) throw new BadRequestError(`Remote image id does not look like a UUID: ${remoteId}`);
    }
    // Policy: copy-image is admin-only (`copy_image`); the others need modify_image on the image.
    if (method === 'copy-image') {
      if (!ctx.isAdmin) throw new ForbiddenError('You are not authorized to complete copy_image action.');
    } else {
      this.#o.images.access.assertCanModify(ctx, image, 'modify_image');
    }
    const superseded = await takeOverableLock(this.#o.catalog, image, this.#now(), call);

    const targets = await this.#targetStores(req, image, call.storeHeader, call);
    if (targets.length === 0) {
      // copy-image: every store asked for holds the image already — nothing to do, no task.
      if (method === 'copy-image') return undefined;
      // Any other method would leave the image importing with no store to go to.
      throw new BadRequestError('No store to import the image to: name at least one writable store');
    }
    if (method === 'web-download') this.#o.checkUri(req.method.uri as string);

    const now = this.#now().toISOString();
    const task: ImportTask = {
      id: randomUUID(), type: 'api_image_import', status: 'pending', owner: image.owner, image_id: image.id,
      request_id: call.requestId, user_id: ctx.userId,
      input: { image_id: image.id, import_req: req, backend: targets },
      result: null, message: '', expires_at: null, created_at: now, updated_at: now,
    };
    await this.#o.runner.launch(task, () => this.#lockAndCreate(image, task, superseded, call), superseded, call);
    return task;
  }

  /** Takes the image's lock for the task, announcing its target stores (a lock taken meanwhile → 409), then records the task. */
  async #lockAndCreate(image: Image, task: ImportTask, superseded: Task | undefined, call: ImportCall): Promise<void> {
    const method = task.input.import_req.method.name;
    const targets = task.input.backend;
    const now = task.created_at;
    await this.#o.catalog.updateImage(image.id, (current) => {
      const holder = current.properties[LOCK_PROPERTY];
      if (holder !== undefined && holder !== '' && holder !== image.properties[LOCK_PROPERTY]) {
        throw new ConflictError('Image has active task');
      }
      if (method === 'copy-image' ? current.status !== 'active' : current.status !== image.status) {
        throw new ConflictError(`Image with status ${current.status} cannot be target for import`);
      }
      const next = { ...current, properties: { ...current.properties }, updated_at: now };
      setProperty(next.properties, LOCK_PROPERTY, task.id);
      const stale = superseded?.type === 'api_image_import' ? superseded.input.backend : [];
      setStoreList(next, IMPORTING_PROPERTY, [...storeList(current, IMPORTING_PROPERTY).filter((s) => !stale.includes(s)), ...targets]);
      setStoreList(next, FAILED_PROPERTY, storeList(current, FAILED_PROPERTY).filter((s) => !targets.includes(s)));
      if (method !== 'copy-image') next.status = 'importing';
      return next;
    }, call);
    await this.#o.catalog.createTask(task, call);
  }

  #parseBody(body: unknown): ImportRequest {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('Body expected in request.');
    const b = body as Record<string, unknown>;
    const method = b.method as Record<string, unknown> | undefined;
    if (method === undefined || method === null || typeof method !== 'object' || Array.isArray(method) || method.name === undefined) {
      throw new BadRequestError('Import request requires a \'method\' field.');
    }
    if (typeof method.name !== 'string' || !(IMPORT_METHODS as readonly string[]).includes(method.name)
      || !this.#o.methods.includes(method.name as ImportMethod)) {
      throw new BadRequestError(`Import method ${JSON.stringify(method.name)} is not valid. Available methods: ${this.#o.methods.join(', ')}`);
    }
    for (const key of ['all_stores', 'all_stores_must_succeed'] as const) {
      if (b[key] !== undefined && typeof b[key] !== 'boolean') throw new BadRequestError(`'${key}' must be a boolean value`);
    }
    if (b.stores !== undefined && (!Array.isArray(b.stores) || b.stores.some((s) => typeof s !== 'string'))) {
      throw new BadRequestError("'stores' must be a list of store identifiers");
    }
    if (method.name === 'web-download' && (typeof method.uri !== 'string' || method.uri === '')) {
      throw new BadRequestError('web-download method requires a URI (method.uri)');
    }
    const req: ImportRequest = { method: { ...method, name: method.name as ImportMethod } };
    if (b.stores !== undefined) req.stores = b.stores as string[];
    if (b.all_stores !== undefined) req.all_stores = b.all_stores as boolean;
    if (b.all_stores_must_succeed !== undefined) req.all_stores_must_succeed = b.all_stores_must_succeed as boolean;
    return req;
  }

  /** Store selection of images.py `import_image` (multistore rules of API-NOTES §1.8). */
  async #targetStores(req: ImportRequest, image: Image, header: string | undefined, opts: IoOptions): Promise<string[]> {
    const stores = this.#o.stores;
    if (req.all_stores === true && (req.stores !== undefined || header !== undefined)) {
      throw new BadRequestError('All_stores parameter can\'t be used with x-image-meta-store header or stores parameter');
    }
    if (req.stores !== undefined && header !== undefined) {
      throw new BadRequestError('Stores parameter and x-image-meta-store header can\'t be both specified');
    }
    let targets: string[];
    if (req.all_stores === true) {
      targets = stores.list().filter((s) => !s.readOnly).map((s) => s.id);
    } else {
      targets = req.stores ?? [header ?? stores.defaultId];
      for (const id of targets) {
        // copy-image may name another site's store: that site fetches the copy (its placement agent).
        if (!stores.has(id) && req.method.name === 'copy-image' && await this.#o.region?.owner(id, opts) !== undefined) continue;
        if (!stores.has(id)) throw await this.#o.region?.refusal(id, 'import', opts) ?? new ConflictError(`Store for identifier ${id} not found`);
        if (stores.isReadOnly(id)) throw new ConflictError(`Store ${id} is read-only`);
      }
    }
    targets = [...new Set(targets)];
    if (req.method.name === 'copy-image') {
      const held = new Set(image.locations.map((l) => l.store));
      if (req.all_stores === true) targets = targets.filter((s) => !held.has(s));
      else if (targets.some((s) => held.has(s))) {
        throw new BadRequestError(`Image is already present at store ${targets.filter((s) => held.has(s)).join(',')}`);
      }
    }
    // This site's stores first (by weight), then other sites' (by id).
    return targets.sort((a, b) => Number(stores.has(b)) - Number(stores.has(a)) || stores.weight(b) - stores.weight(a) || (a < b ? -1 : a > b ? 1 : 0));
  }

  // -- removing a copy ------------------------------------------------------------------------

  /**
   * DELETE /v2/stores/{store}/{image} (API-NOTES §1.10): admin-only; 409 for an unknown store or
   * an image that is not active; 404 when the image has no copy there; 403 for the last copy.
   */
  async deleteFromStore(ctx: RequestContext, storeId: string, id: string, opts: IoOptions = {}): Promise<void> {
    if (!ctx.isAdmin) throw new ForbiddenError('You are not authorized to complete delete_image_location action.');
    // Another site's store: its record goes now; that site deletes the bytes when its replica shows it.
    const remote = !this.#o.stores.has(storeId) && await this.#o.region?.owner(storeId, opts) !== undefined;
    if (!this.#o.stores.has(storeId) && !remote) throw await this.#o.region?.refusal(storeId, 'delete', opts) ?? new ConflictError(`Unknown store ${storeId}.`);
    const image = await this.#o.images.get(ctx, id, opts);
    const updated = await this.#o.catalog.updateImage(image.id, (current) => {
      if (current.status !== 'active') {
        throw new ConflictError(`It's not allowed to remove image data from store if image status is not 'active'`);
      }
      if (!current.locations.some((l) => l.store === storeId)) {
        throw new NotFoundError(`Image ${current.id} is not stored in store ${storeId}.`);
      }
      if (current.locations.length === 1) {
        throw new ForbiddenError('Cannot delete image data from the only store containing it. Consider deleting the image instead if you want to remove all data.');
      }
      return { ...current, locations: current.locations.filter((l) => l.store !== storeId), updated_at: this.#now().toISOString() };
    }, opts);
    if (!remote && !updated.locations.some((l) => l.store === storeId)) await this.#o.stores.blobs(storeId).delete(image.id, opts);
  }

  // -- tasks ----------------------------------------------------------------------------------

  /** GET /v2/images/{id}/tasks: the image's tasks that have not expired, newest first. */
  async imageTasks(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<Task[]> {
    const image = await this.#o.images.get(ctx, id, opts);
    const now = this.#now().toISOString();
    const tasks = await this.#o.catalog.listTasks({ imageId: image.id, limit: 1000 }, opts);
    return tasks.filter((t) => t.expires_at === null || t.expires_at > now);
  }

  /** GET /v2/tasks/{id} (admin: `tasks_api_access`). */
  async task(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<Task> {
    this.#assertTasksAccess(ctx);
    const task = await this.#o.catalog.getTask(id, opts);
    if (task === undefined) throw new NotFoundError(`Task with identifier ${id} not found`);
    return task;
  }

  /** GET /v2/tasks (admin): filters status and type, sort_key/sort_dir, limit/marker. */
  async tasks(ctx: RequestContext, params: ReadonlyMap<string, readonly string[]>, maxLimit: number, opts: IoOptions = {}): Promise<{ tasks: Task[]; more: boolean }> {
    this.#assertTasksAccess(ctx);
    const one = (k: string) => params.get(k)?.at(-1);
    const limitRaw = one('limit');
    let limit = 25;
    if (limitRaw !== undefined) {
      if (!/^\d+$/.test(limitRaw)) throw new BadRequestError('limit param must be an integer');
      limit = Math.min(Number(limitRaw), maxLimit);
    }
    const status = one('status');
    if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
      throw new BadRequestError(`Invalid status value: ${status}`);
    }
    const sortKey = one('sort_key') ?? 'created_at';
    if (!['created_at', 'updated_at', 'id', 'status', 'type'].includes(sortKey)) {
      throw new BadRequestError(`Invalid sort key: ${sortKey}.`);
    }
    const sortDir = one('sort_dir') ?? 'desc';
    if (sortDir !== 'asc' && sortDir !== 'desc') throw new BadRequestError(`Invalid sort direction: ${sortDir}`);
    const markerId = one('marker');
    let marker: Task | undefined;
    if (markerId !== undefined) {
      marker = await this.#o.catalog.getTask(markerId, opts);
      if (marker === undefined) throw new BadRequestError(`No task found with ID ${markerId}`);
    }
    const query: TaskListQuery = {
      statuses: status === undefined ? undefined : [status as Task['status']], type: one('type'),
      sortKey: sortKey as TaskListQuery['sortKey'], sortDir: sortDir as SortDir, limit, marker,
    };
    const tasks = limit === 0 ? [] : await this.#o.catalog.listTasks(query, opts);
    return { tasks, more: limit > 0 && tasks.length === limit };
  }

  #assertTasksAccess(ctx: RequestContext): void {
    if (!ctx.isAdmin) throw new ForbiddenError('You are not authorized to complete tasks_api_access action.');
  }
}
