import { randomUUID } from 'node:crypto';
import type { RequestContext } from './context.ts';
import { BadRequestError, ConflictError, ForbiddenError, SchemaViolationError } from './errors.ts';
import { URL_LOCATION, shownLocations, type Image, type ImageLocation } from './image.ts';
import { DIGEST_BYTES, HASHING_ALGORITHM } from './image-locations.ts';
import type { ImageService } from './image-service.ts';
import { repr } from './image-validation.ts';
import { LOCK_PROPERTY } from './import-properties.ts';
import { TaskAborted, TaskRuns, takeOverableLock } from './task-runs.ts';
import type { LocationProber } from './location-probe.ts';
import type { NodeWork } from './node-work.ts';
import type { Catalog, IoOptions } from './ports.ts';
import type { RegionStores } from './region-stores.ts';
import type { StoreRegistry } from './stores.ts';
import { endTask, type LocationImportTask, type LocationValidationData } from './task.ts';

export interface LocationServiceOptions {
  catalog: Catalog;
  images: ImageService;
  stores: StoreRegistry;
  prober: LocationProber;
  /** The region's store weights: locations are listed in the order images show them. */
  region?: RegionStores;
  /** This node among several sharing the catalog: a task runs where it is claimed. Absent: the only process. */
  work?: NodeWork;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  now?: () => Date;
}

export interface AddLocationCall extends IoOptions {
  /** The call's x-openstack-request-id, recorded in the task. */
  requestId: string;
}

/** The algorithms POST /locations' validation_data may name (the `add_location` schema's enum). */
const LOCATION_HASH_ALGOS = ['sha1', 'sha256', 'sha512', 'md5'];

/**
 * The newer locations API (Glance API 2.17): `POST /v2/images/{id}/locations` (images.py
 * `add_location`) runs a `location_import` task that reads the location's bytes and hashes them
 * (glance/async_/flows/location_import.py with `do_secure_hash`), and `GET
 * /v2/images/{id}/locations` (`get_locations`, the `service` role only). The PATCH operations on
 * `/locations` are ImageService.patch's.
 *
 * Where Outpost differs from Glance's flow: the image is `importing` until the hashes are known
 * and becomes `active` with its location, size, checksum and sha512 in one step (Glance makes an
 * image without validation_data active first and hashes it afterwards), so an active image always
 * has the hashes every site verifies its bytes against; what can be told without I/O (a URL that
 * is not a location, formats not set) is refused at once rather than by a failed task.
 */
export class LocationService {
  readonly #o: LocationServiceOptions;
  readonly #now: () => Date;
  readonly #runs: TaskRuns<LocationImportTask>;

  constructor(opts: LocationServiceOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
    this.#runs = new TaskRuns<LocationImportTask>({
      type: 'location_import', run: (task, signal) => this.#runClaimed(task, signal), catalog: opts.catalog, work: opts.work, log: opts.log, now: this.#now,
    });
  }

  /**
   * GET /v2/images/{id}/locations: the image's locations as images show them (`fetch_image_location`:
   * the `service` role; "for non service users API will return forbidden", api-ref).
   */
  async list(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<ImageLocation[]> {
    const image = await this.#o.images.get(ctx, id, opts);
    if (!ctx.roles.includes('service')) throw new ForbiddenError('You are not authorized to complete fetch_image_location action.');
    return shownLocations(image.locations, await this.#weights(opts));
  }

  /**
   * POST /v2/images/{id}/locations (202): in images.py's order — the body against the
   * `add_location` schema, a queued image (409), `add_image_location` (the `service` role or a
   * member of the owning project; administrators too, as everywhere in Outpost), a URL other than
   * http(s) only for the `service` role ("http store must be enabled …", 403), the form of
   * validation_data (400), no live task on the image (409) — then a `location_import` task takes
   * the image's lock and makes it `importing` while it reads and hashes the bytes.
   */
  async add(ctx: RequestContext, id: string, body: unknown, call: AddLocationCall): Promise<LocationImportTask> {
    const { url, validation_data: vd } = parseAddLocation(body);
    const image = await this.#o.images.get(ctx, id, call);
    if (image.status !== 'queued') throw new ConflictError(`It's not allowed to add locations if image status is ${image.status}.`);
    const service = ctx.roles.includes('service');
    if (!service && !ctx.isAdmin && !(this.#o.images.access.isOwner(ctx, image) && this.#o.images.access.canWrite(ctx))) {
      throw new ForbiddenError('You are not authorized to complete add_image_location action.');
    }
    if (!service && !url.startsWith('http')) throw new ForbiddenError('http store must be enabled to use location API by normal user.');
    validateHashingData(vd);
    const superseded = await takeOverableLock(this.#o.catalog, image, this.#now(), call);
    const target = this.#o.prober.target(image.id, url);
    if (target.kind === 'invalid') throw target.error;
    const missing = (['disk_format', 'container_format'] as const).filter((k) => image[k] === null);
    if (missing.length > 0) throw new BadRequestError(`${missing.length === 1 ? 'Property' : 'Properties'} ${missing.join(', ')} must be set prior to saving data.`);

    const now = this.#now().toISOString();
    const task: LocationImportTask = {
      id: randomUUID(), type: 'location_import', status: 'pending', owner: image.owner, image_id: image.id,
      request_id: call.requestId, user_id: ctx.userId, input: { image_id: image.id, loc_url: url, validation_data: vd },
      result: null, message: '', expires_at: null, created_at: now, updated_at: now,
    };
    await this.#runs.launch(task, async () => {
      await this.#o.catalog.updateImage(image.id, (current) => {
        const holder = current.properties[LOCK_PROPERTY];
        if (holder !== undefined && holder !== '' && holder !== image.properties[LOCK_PROPERTY]) throw new ConflictError('Image has active task');
        if (current.status !== 'queued') throw new ConflictError(`It's not allowed to add locations if image status is ${current.status}.`);
        return { ...current, status: 'importing', properties: { ...current.properties, [LOCK_PROPERTY]: task.id }, updated_at: now };
      }, call);
      await this.#o.catalog.createTask(task, call);
    }, superseded, call);
    return task;
  }

  /** Waits for every running task (tests, shutdown). */
  idle(): Promise<void> {
    return this.#runs.idle();
  }

  /** Stops running tasks; they stay `processing`, unclaimed, for recover() here or at another node. */
  close(): Promise<void> {
    return this.#runs.close();
  }

  /**
   * Runs again the location imports no node runs (a stop or a crash left them pending or
   * processing): they read and hash the bytes from the start. Returns how many were taken.
   */
  recover(): Promise<number> {
    return this.#runs.recover();
  }

  /**
   * The flow: read the bytes and hash them (md5, sha512, and validation_data's algorithm), check
   * validation_data's hash ("os_hash_value: (…) not matched with actual os_hash_value: (…)"), then
   * the image becomes active with the location, its size and hashes, and the lock is released.
   * A failure returns the image to `queued` without the location.
   */
  async #runClaimed(task: LocationImportTask, signal: AbortSignal): Promise<void> {
    const { loc_url: url, validation_data: vd } = task.input;
    try {
      await this.#updateTask(task.id, (t) => ({ ...t, status: 'processing' }));
      const image = await this.#locked(task);
      const algo = vd.os_hash_algo ?? HASHING_ALGORITHM;
      const digest = await this.#o.prober.digest(image, url, { signal, algo });
      if (vd.os_hash_value !== undefined && digest.hashes[algo] !== vd.os_hash_value) {
        throw new Error(`os_hash_value: (${vd.os_hash_value}) not matched with actual os_hash_value: (${digest.hashes[algo]})`);
      }
      const target = this.#o.prober.target(image.id, url);
      const location: ImageLocation = { store: target.kind === 'store' ? target.store : URL_LOCATION, url };
      await this.#o.catalog.updateImage(task.image_id, (current) => {
        if (current.properties[LOCK_PROPERTY] !== task.id) throw new ConflictError('The task no longer holds the image lock');
        if (current.status !== 'importing') throw new ConflictError(`Image ${current.id} is ${current.status}, not importing`);
        const next: Image = {
          ...current, status: 'active', size: digest.size, virtual_size: digest.virtualSize, checksum: digest.md5,
          os_hash_algo: HASHING_ALGORITHM, os_hash_value: digest.sha512, locations: [location],
          properties: { ...current.properties }, updated_at: this.#now().toISOString(),
        };
        delete next.properties[LOCK_PROPERTY];
        return next;
      });
      await this.#updateTask(task.id, (t) => endTask(t, 'success', `Hashed ${digest.size} bytes`, { image_id: task.image_id }, this.#now()));
      this.#o.log.info({ task: task.id, image: task.image_id, size: digest.size }, 'location import task succeeded');
    } catch (error) {
      if (signal.aborted && signal.reason instanceof TaskAborted) return; // resumed by recover(), here or elsewhere
      const message = error instanceof Error ? error.message : String(error);
      this.#o.log.warn({ task: task.id, image: task.image_id, err: error }, 'location import task failed');
      await this.#fail(task, message);
    }
  }

  /** Ends the task in failure; the image, if the task still holds it, is queued again, as before the call. */
  async #fail(task: LocationImportTask, message: string): Promise<void> {
    await this.#o.catalog.updateImage(task.image_id, (current) => {
      if (current.properties[LOCK_PROPERTY] !== task.id) return current; // another task's now
      const next: Image = { ...current, properties: { ...current.properties }, updated_at: this.#now().toISOString() };
      delete next.properties[LOCK_PROPERTY];
      if (current.status === 'importing') {
        Object.assign(next, { status: 'queued', size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null, locations: [] });
      }
      return next;
    }).catch((error: unknown) => this.#o.log.warn({ task: task.id, err: error }, 'image of a failed location import could not be reverted (deleted?)'));
    await this.#updateTask(task.id, (t) => endTask(t, 'failure', message, null, this.#now())).catch(() => undefined);
  }

  /** The image, provided this task still holds its lock. */
  async #locked(task: LocationImportTask): Promise<Image> {
    const image = await this.#o.catalog.getImage(task.image_id);
    if (image === undefined) throw new Error(`Image ${task.image_id} was deleted`);
    if (image.properties[LOCK_PROPERTY] !== task.id) throw new ConflictError('The task no longer holds the image lock');
    return image;
  }

  async #updateTask(id: string, mutate: (t: LocationImportTask) => LocationImportTask): Promise<void> {
    await this.#o.catalog.updateTask(id, (t) => {
      if (t.type !== 'location_import') return t;
      const next = mutate(t);
      return next === t ? t : { ...next, updated_at: this.#now().toISOString() };
    });
  }

  async #weights(opts: IoOptions): Promise<(store: string) => number> {
    return await this.#o.region?.weights(opts) ?? ((s: string) => this.#o.stores.weight(s));
  }
}

function violation(detail: string): SchemaViolationError {
  return new SchemaViolationError(`Provided object does not match schema 'location': ${detail}`);
}

/** The body of POST /locations against Glance's `add_location` schema: `url` required, `validation_data` optional. */
function parseAddLocation(body: unknown): { url: string; validation_data: LocationValidationData } {
  if (body === undefined) throw new BadRequestError('Body expected in request.');
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw violation(`${repr(body)} is not of type 'object'`);
  const b = body as Record<string, unknown>;
  if (!Object.hasOwn(b, 'url')) throw violation("'url' is a required property");
  if (typeof b.url !== 'string') throw violation(`${repr(b.url)} is not of type 'string'`);
  const vd = b.validation_data ?? {};
  if (vd === null || typeof vd !== 'object' || Array.isArray(vd)) throw violation(`${repr(vd)} is not of type 'object'`);
  const v = vd as Record<string, unknown>;
  const extra = Object.keys(v).filter((k) => k !== 'os_hash_algo' && k !== 'os_hash_value');
  if (extra.length > 0) throw violation(`Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length === 1 ? 'was' : 'were'} unexpected)`);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw violation(`${repr(x)} is not of type 'string'`);
    if (k === 'os_hash_algo' && !LOCATION_HASH_ALGOS.includes(x)) throw violation(`${repr(x)} is not one of [${LOCATION_HASH_ALGOS.map((a) => `'${a}'`).join(', ')}]`);
    if (x.length > (k === 'os_hash_algo' ? 64 : 128)) throw violation(`${repr(x)} is too long`);
  }
  return { url: b.url, validation_data: v as LocationValidationData };
}

/** `_validate_hashing_data`: os_hash_value must be hex of the size of its algorithm (default sha512); 400 otherwise. */
function validateHashingData(vd: LocationValidationData): void {
  if (vd.os_hash_value === undefined) return;
  const value = vd.os_hash_value;
  if (value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) throw new BadRequestError(`os_hash_value (${value}) is not a valid hexadecimal value`);
  const algo = vd.os_hash_algo ?? HASHING_ALGORITHM;
  if (value.length !== DIGEST_BYTES[algo] * 2) {
    throw new BadRequestError(`os_hash_value: (${value}) is not the correct size for (${algo}) (should be (${DIGEST_BYTES[algo]}) bytes)`);
  }
}
