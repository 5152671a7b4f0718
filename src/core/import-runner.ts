import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError } from './errors.ts';
import { isUrlLocation, setProperty, type Image } from './image.ts';
import { FAILED_PROPERTY, IMPORTING_PROPERTY, LOCK_PROPERTY, setStoreList, storeList } from './import-properties.ts';
import type { ImportRunner } from './import-service.ts';
import type { BlobDigest, BlobStore, Catalog, IoOptions, RemoteSource } from './ports.ts';
import type { StoreRegistry } from './stores.ts';
import { endTask, type ImportTask, type Task } from './task.ts';
import { TaskAborted, TaskRuns } from './task-runs.ts';
import { HEADER_BYTES, inspectVirtualSize } from './virtual-size.ts';
import type { ImageManifests } from './image-manifests.ts';
import type { NodeWork } from './node-work.ts';

/** A glance-download region: the image API of another region and how to authenticate there. */
export interface GlanceRegion {
  url: string;
  headers: Record<string, string>;
}

export interface ImportTaskRunnerOptions {
  catalog: Catalog;
  stores: StoreRegistry;
  staging: BlobStore;
  remote: RemoteSource;
  regions: (name: string) => GlanceRegion | undefined;
  imageSizeCap: number;
  /** Where the chunk manifest of the bytes copied into the stores is recorded. */
  manifests?: ImageManifests;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** How often progress is written to the task's message (default 1 s). */
  progressIntervalMs?: number;
  /** How often a copy-image to other sites' stores looks whether they have their copies (default 1 s). */
  sitePollMs?: number;
  /** Central: of these stores of other sites, those whose copy of the image failed since a time, with why (SiteInventories.copyFailures). */
  copyFailures?: (imageId: string, stores: readonly string[], since: string, opts: IoOptions) => Promise<Map<string, string>>;
  /** This node among several sharing the catalog: a task runs where it is claimed. Absent: this process is the only one. */
  work?: NodeWork;
  now?: () => Date;
}

/** Properties glance-download copies from the remote image (`[glance_download_properties]`). */
const DOWNLOADED_PROPERTY_PREFIXES = ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type'];

const MiB = 1024 * 1024;

/**
 * Runs import tasks in this process (Glance's api_image_import flow, API-NOTES §2): holds the
 * image's lock, brings the bytes (staged file, URL, another region, or an existing copy), writes
 * one verified copy per target store — a location is added only after its copy is complete and
 * its size, md5 and sha512 match — and keeps `os_glance_importing_to_stores` /
 * `os_glance_failed_import` as Glance does. A task runs on the node that claimed it (NodeWork);
 * one its node left unfinished — a crash, a stop — is resumed by recover(), on this node at its
 * next start or on another node sharing the catalog once the first is no longer seen.
 */
export class ImportTaskRunner implements ImportRunner {
  readonly #o: ImportTaskRunnerOptions;
  readonly #now: () => Date;
  readonly #runs: TaskRuns<ImportTask>;

  constructor(opts: ImportTaskRunnerOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
    this.#runs = new TaskRuns<ImportTask>({
      type: 'api_image_import', run: (task, signal) => this.#runClaimed(task, signal), catalog: opts.catalog, work: opts.work, log: opts.log, now: this.#now,
    });
  }

  /** Starts running a task just created or left unfinished (does not wait for it). */
  start(task: ImportTask): void {
    this.#runs.start(task);
  }

  /** ImportRunner.launch: see TaskRuns.launch. */
  launch(task: ImportTask, create: () => Promise<void>, superseded: Task | undefined, opts: IoOptions): Promise<void> {
    return this.#runs.launch(task, create, superseded, opts);
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
   * Resumes the import tasks no node runs (TaskRuns.recover). A resumed task copies to the stores
   * it has not copied to yet. Returns how many were taken.
   */
  recover(): Promise<number> {
    return this.#runs.recover();
  }

  async #runClaimed(task: ImportTask, signal: AbortSignal): Promise<void> {
    const method = task.input.import_req.method.name;
    const mustAll = task.input.import_req.all_stores_must_succeed ?? true;
    const imageId = task.image_id;
    try {
      const resumed = task.status === 'processing';
      task = await this.#updateTask(task.id, (t) => ({ ...t, status: 'processing' }));
      if (resumed && method === 'glance-direct' && (await this.#o.staging.stat(imageId, { signal })) === undefined) {
        throw new Error('Interrupted: the data was staged at a node that stopped; stage the data and import again');
      }
      let expected: BlobDigest | undefined;
      let source: () => Promise<AsyncIterable<Uint8Array>>;
      const image = await this.#image(task);
      // A resumed task skips the stores its earlier run copied to (located, and off the importing list).
      const done = (store: string) => image.locations.some((l) => l.store === store) && !storeList(image, IMPORTING_PROPERTY).includes(store);
      const ours = task.input.backend.filter((store) => this.#o.stores.has(store));
      const local = ours.filter((store) => !done(store));
      // copy-image may name other sites' stores: those sites fetch their copies (awaitSites).
      const remote = task.input.backend.filter((store) => !this.#o.stores.has(store));
      if (method === 'copy-image') {
        if (image.size === null || image.checksum === null || image.os_hash_value === null) {
          throw new Error('The image has no verified data to copy');
        }
        expected = { size: image.size, md5: image.checksum, sha512: image.os_hash_value };
        const from = image.locations.find((l) => l.store === this.#o.stores.defaultId && this.#o.stores.has(l.store))
          ?? image.locations.find((l) => this.#o.stores.has(l.store));
        // An image whose bytes are only at an http(s) location (the locations API) is copied from
        // there, through the import filter; the copy is checked against the image's hashes as any.
        const url = image.locations.find(isUrlLocation)?.url;
        if (from === undefined && url === undefined && local.length > 0) throw new Error('No store of this site holds the image');
        source = from !== undefined ? () => this.#o.stores.blobs(from.store).get(imageId, { signal })
          : async () => (await this.#o.remote.open(url!, { signal, maxSize: this.#o.imageSizeCap })).body;
      } else {
        if (method === 'web-download') {
          await this.#download(task, task.input.import_req.method.uri as string, {}, false, signal);
        } else if (method === 'glance-download') {
          await this.#glanceDownload(task, signal);
        }
        source = () => this.#o.staging.get(imageId, { signal });
      }

      let digest = expected;
      let copied = ours.length - local.length;
      for (const store of local) {
        signal.throwIfAborted();
        await this.#image(task); // the lock must still be ours
        let head = new Uint8Array(0);
        try {
          const counted = this.#progress(task, await source(), 'Copied', (chunk) => {
            if (head.length < HEADER_BYTES) head = Buffer.concat([head, chunk.subarray(0, HEADER_BYTES - head.length)]);
          });
          const d = await this.#o.stores.blobs(store).put(imageId, counted, {
            signal, expectedSize: digest?.size, maxSize: this.#o.imageSizeCap, manifest: this.#o.manifests?.whileStoring === true && copied === 0,
          });
          if (digest !== undefined && (d.md5 !== digest.md5 || d.sha512 !== digest.sha512 || d.size !== digest.size)) {
            await this.#o.stores.blobs(store).delete(imageId);
            throw new Error(`The copy in store ${store} does not match the image's size and hashes`);
          }
          await this.#o.manifests?.record(imageId, d.sha512, d.manifest, store, { signal });
          digest ??= d;
          const verified = digest;
          await this.#updateImage(task, (image) => {
            const next = withProps(image);
            next.locations = [...image.locations.filter((l) => l.store !== store), { store, url: this.#o.stores.blobs(store).urlFor(imageId) }];
            setStoreList(next, IMPORTING_PROPERTY, storeList(image, IMPORTING_PROPERTY).filter((s) => s !== store));
            // Glance (api_image_import.get_flow): set_active = not all_stores_must_succeed or the
            // last store — when every store must succeed, the image becomes active only once all
            // copies exist, so a failure can still return it to queued with nothing stored.
            const activate = !mustAll || store === local.at(-1);
            if (method !== 'copy-image' && image.status === 'importing' && activate) {
              Object.assign(next, {
                status: 'active', size: verified.size, checksum: verified.md5, os_hash_algo: 'sha512', os_hash_value: verified.sha512,
                virtual_size: inspectVirtualSize(image.disk_format, head, verified.size),
              });
            }
            return next;
          });
          copied++;
        } catch (error) {
          if (signal.aborted || error instanceof TaskAborted || mustAll) throw error;
          this.#o.log.warn({ task: task.id, store, err: error }, 'import to one store failed; continuing');
          await this.#updateImage(task, (image) => {
            const next = withProps(image);
            setStoreList(next, IMPORTING_PROPERTY, storeList(image, IMPORTING_PROPERTY).filter((s) => s !== store));
            setStoreList(next, FAILED_PROPERTY, [...storeList(image, FAILED_PROPERTY), store]);
            return next;
          });
        }
      }
      if (copied === 0 && method !== 'copy-image') throw new Error('The image could not be imported to any store');
      if (remote.length > 0) copied += await this.#awaitSites(task, remote, mustAll, signal);

      await this.#updateImage(task, (image) => {
        const next = withProps(image);
        delete next.properties[LOCK_PROPERTY];
        return next;
      });
      if (method !== 'copy-image') await this.#o.staging.delete(imageId);
      await this.#updateTask(task.id, (t) => endTask(t, 'success',
        copied === task.input.backend.length ? t.message : `${t.message}; failed stores are listed in os_glance_failed_import`,
        { image_id: imageId }, this.#now()));
      this.#o.log.info({ task: task.id, image: imageId, method, stores: task.input.backend }, 'import task succeeded');
    } catch (error) {
      if (signal.aborted && signal.reason instanceof TaskAborted) return; // resumed by recover(), here or elsewhere
      const message = error instanceof Error ? error.message : String(error);
      this.#o.log.warn({ task: task.id, image: imageId, err: error }, 'import task failed');
      await this.#fail(task, message, mustAll);
    }
  }

  /**
   * copy-image to other sites' stores: each site's placement agent sees its store in the image's
   * `os_glance_importing_to_stores`, fetches the copy from its parent, and records it at central,
   * which takes the store off the list. Waits until none of `stores` is left on it (a site that is
   * away stays pending; the task goes on waiting, as Glance's waits on a slow store), saying which
   * are awaited in the task's message. A copy a site reports failed (a verification error, not
   * being offline) fails the task when every store must succeed, and otherwise moves the store
   * to `os_glance_failed_import`, as a failed local store does. Returns how many were copied.
   */
  async #awaitSites(task: ImportTask, stores: readonly string[], mustAll: boolean, signal: AbortSignal): Promise<number> {
    const since = this.#now().toISOString();
    let waiting: string[] = [];
    for (;;) {
      const image = await this.#image(task); // the lock must still be ours
      const left = stores.filter((s) => storeList(image, IMPORTING_PROPERTY).includes(s));
      if (left.length === 0) return stores.filter((s) => image.locations.some((l) => l.store === s)).length;
      const failures = (await this.#o.copyFailures?.(image.id, left, since, { signal })) ?? new Map<string, string>();
      if (failures.size > 0) {
        const why = [...failures].map(([store, reason]) => `the copy in store ${store} failed (${reason})`).join('; ');
        if (mustAll) throw new Error(why);
        this.#o.log.warn({ task: task.id, failures: Object.fromEntries(failures) }, 'copy-image to a site\'s store failed; continuing');
        await this.#updateImage(task, (current) => {
          const next = withProps(current);
          setStoreList(next, IMPORTING_PROPERTY, storeList(current, IMPORTING_PROPERTY).filter((s) => !failures.has(s)));
          setStoreList(next, FAILED_PROPERTY, [...storeList(current, FAILED_PROPERTY), ...failures.keys()]);
          return next;
        });
        continue;
      }
      if (left.join() !== waiting.join()) {
        waiting = left;
        await this.#updateTask(task.id, (t) => ({ ...t, message: `Waiting for the sites holding ${left.join(', ')} to copy the image`, updated_at: this.#now().toISOString() }));
      }
      await sleep(this.#o.sitePollMs ?? 1000, undefined, { signal });
    }
  }

  /**
   * Ends a task in failure and undoes what it leaves half done. With `revertCopies`
   * (all_stores_must_succeed) the copies this task added are removed too.
   */
  async #fail(task: ImportTask, message: string, revertCopies: boolean): Promise<void> {
    const method = task.input.import_req.method.name;
    const targets = task.input.backend;
    const removed: string[] = [];
    let current: Image | undefined;
    let lockLost = false;
    try {
      current = await this.#o.catalog.updateImage(task.image_id, (image) => {
        // Another task took the lock over (this one was stale): the image and the stores are
        // that task's now; only this task's own record ends.
        const holder = image.properties[LOCK_PROPERTY];
        lockLost = holder !== undefined && holder !== '' && holder !== task.id;
        if (lockLost) return image;
        const next = withProps(image);
        if (image.properties[LOCK_PROPERTY] === task.id) delete next.properties[LOCK_PROPERTY];
        if (revertCopies) {
          for (const l of image.locations) if (targets.includes(l.store)) removed.push(l.store);
          if (method === 'copy-image' || image.status !== 'active') {
            next.locations = image.locations.filter((l) => !removed.includes(l.store));
          } else {
            removed.length = 0; // an activated image keeps the copies that made it active
          }
        }
        const held = new Set(next.locations.map((l) => l.store));
        setStoreList(next, IMPORTING_PROPERTY, storeList(image, IMPORTING_PROPERTY).filter((s) => !targets.includes(s)));
        setStoreList(next, FAILED_PROPERTY, [...storeList(image, FAILED_PROPERTY), ...targets.filter((s) => !held.has(s))]);
        if (method !== 'copy-image' && (image.status === 'importing' || next.locations.length === 0) && image.status !== 'active') {
          Object.assign(next, { status: 'queued', size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null });
        }
        return next;
      });
    } catch (error) {
      this.#o.log.warn({ task: task.id, err: error }, 'image of a failed task could not be reverted (deleted?)');
    }
    if (!lockLost) {
      // Copies committed but not (or no longer) recorded as locations are removed.
      const held = new Set(current?.locations.map((l) => l.store) ?? []);
      for (const store of targets) {
        if (!held.has(store) && this.#o.stores.has(store)) await this.#o.stores.blobs(store).delete(task.image_id).catch(() => undefined);
      }
      if (method !== 'copy-image' && current?.status !== 'uploading') await this.#o.staging.delete(task.image_id).catch(() => undefined);
    }
    await this.#updateTask(task.id, (t) => endTask(t, 'failure', message, null, this.#now())).catch(() => undefined);
  }

  /** web-download (and glance-download's data): the URL's bytes into the staging area. */
  async #download(task: ImportTask, uri: string, headers: Record<string, string>, trusted: boolean, signal: AbortSignal): Promise<BlobDigest> {
    const { body } = await this.#o.remote.open(uri, { signal, headers, trusted, maxSize: this.#o.imageSizeCap });
    return this.#o.staging.put(task.image_id, this.#progress(task, body, 'Downloaded'), { signal, maxSize: this.#o.imageSizeCap });
  }

  /**
   * glance-download (API-NOTES §3.6): the remote image must be active; its formats and the
   * properties with the configured prefixes are copied; its bytes are staged and must have the
   * remote size. Hashes are computed here again.
   */
  async #glanceDownload(task: ImportTask, signal: AbortSignal): Promise<void> {
    const { glance_region: regionName, glance_image_id: remoteId } = task.input.import_req.method;
    const region = this.#o.regions(String(regionName));
    if (region === undefined) throw new Error(`No image endpoint is configured for region ${regionName}`);
    const base = region.url.replace(/\/+$/, '');
    const { body } = await this.#o.remote.open(`${base}/v2/images/${remoteId}`, {
      signal, trusted: true, maxSize: 1 << 20, headers: { ...region.headers, accept: 'application/json' },
    });
    const chunks: Uint8Array[] = [];
    for await (const c of body) chunks.push(c);
    const remote = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    if (remote.status !== 'active') throw new Error(`Remote image ${remoteId} is not active (status ${String(remote.status)})`);
    await this.#updateImage(task, (image) => {
      const next = withProps(image);
      next.disk_format = typeof remote.disk_format === 'string' ? remote.disk_format : image.disk_format;
      next.container_format = typeof remote.container_format === 'string' ? remote.container_format : image.container_format;
      for (const [k, v] of Object.entries(remote)) {
        if (typeof v === 'string' && !k.startsWith('os_glance') && DOWNLOADED_PROPERTY_PREFIXES.some((p) => k.startsWith(p))) {
          setProperty(next.properties, k, v);
        }
      }
      return next;
    });
    const digest = await this.#download(task, `${base}/v2/images/${remoteId}/file`, region.headers, true, signal);
    if (typeof remote.size === 'number' && digest.size !== remote.size) {
      throw new Error(`Downloaded ${digest.size} bytes of remote image ${remoteId}, expected ${remote.size}`);
    }
  }

  /** Counts bytes through `source` and writes "<verb> N MiB" to the task at most once per interval. */
  async *#progress(task: ImportTask, source: AsyncIterable<Uint8Array>, verb: string, onChunk?: (c: Uint8Array) => void): AsyncGenerator<Uint8Array> {
    let bytes = 0;
    let last = Date.now();
    const interval = this.#o.progressIntervalMs ?? 1000;
    for await (const chunk of source) {
      bytes += chunk.length;
      onChunk?.(chunk);
      yield chunk;
      if (Date.now() - last >= interval) {
        last = Date.now();
        const t = await this.#updateTask(task.id, (t) => ({ ...t, message: `${verb} ${Math.floor(bytes / MiB)} MiB` }));
        if (t.status !== 'processing') throw new TaskAborted('the task is no longer processing');
      }
    }
    await this.#updateTask(task.id, (t) => ({ ...t, message: `${verb} ${Math.floor(bytes / MiB)} MiB` }));
  }

  /** The image, provided this task still holds its lock (else the task is aborted). */
  async #image(task: ImportTask): Promise<Image> {
    const image = await this.#o.catalog.getImage(task.image_id);
    if (image === undefined) throw new Error(`Image ${task.image_id} was deleted during the import`);
    if (image.properties[LOCK_PROPERTY] !== task.id) throw new ConflictError('The task no longer holds the image lock');
    return image;
  }

  async #updateImage(task: ImportTask, mutate: (image: Image) => Image): Promise<Image> {
    return this.#o.catalog.updateImage(task.image_id, (image) => {
      if (image.properties[LOCK_PROPERTY] !== task.id) throw new ConflictError('The task no longer holds the image lock');
      return { ...mutate(image), updated_at: this.#now().toISOString() };
    });
  }

  async #updateTask(id: string, mutate: (t: ImportTask) => ImportTask): Promise<ImportTask> {
    const updated = await this.#o.catalog.updateTask(id, (t) => {
      if (t.type !== 'api_image_import') return t;
      const next = mutate(t);
      return next === t ? t : { ...next, updated_at: this.#now().toISOString() };
    });
    if (updated.type !== 'api_image_import') throw new Error(`Task ${id} is not an import task`);
    return updated;
  }
}

function withProps(image: Image): Image {
  return { ...image, properties: { ...image.properties }, locations: [...image.locations] };
}
