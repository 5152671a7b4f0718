import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { NotFoundError } from '../../core/errors.ts';
import type { BlobDriver, BlobStat, BlobWriter, GetOptions, IoOptions } from '../../core/ports.ts';
import { BlobReadStream } from '../blob-read-stream.ts';
import { checkBlobKey, isBlobKey } from '../blob-key.ts';
import { isAllZero } from '../hashing/is-all-zero.ts';
import { writeAll } from '../write-all.ts';

const TMP_DIR = '.incomplete';
/**
 * Largest single write. The page cache takes a write in folios as large as the write allows, and
 * on the VM measured large folios often come from memory the host must fault in again: writing
 * 1 GiB with dd cost 0.2-0.3 CPU-s of system time 64-256 KiB at a time (every run), but 1.2-3.1
 * CPU-s in half the runs 512 KiB-4 MiB at a time (docs/benchmarks.md).
 */
const WRITE_MAX = 256 << 10;
/** With sync on, start an fdatasync every this many bytes, so little is left for the last one. */
const SYNC_EVERY = 64 << 20;

export interface FileBlobDriverOptions {
  id: string;
  root: string;
  /** fdatasync before commit, so a committed copy survives a power cut (default true). */
  sync?: boolean;
  /**
   * Another process's partial write is left alone until nothing was written to it for this long
   * (ms): the directory is shared by several nodes (a network filesystem). Default 0: this process
   * is the directory's only writer, and every partial write not its own is a dead one.
   */
  partialGraceMs?: number;
}

/**
 * Bytes in a local directory: `<root>/<key>` holds committed bytes; a write goes to
 * `<root>/.incomplete/<key>.<random>` and is renamed into place by its commit.
 */
export class FileBlobDriver implements BlobDriver {
  readonly id: string;
  readonly #root: string;
  readonly #sync: boolean;
  readonly #partialGraceMs: number;
  /** Names (under TMP_DIR) of the temporary files this object's writers hold. */
  readonly #writing = new Set<string>();

  private constructor(opts: FileBlobDriverOptions) {
    this.id = opts.id;
    this.#root = resolve(opts.root);
    this.#sync = opts.sync ?? true;
    this.#partialGraceMs = opts.partialGraceMs ?? 0;
  }

  /**
   * Creates the directories (new ones 0700: image bytes are the service user's alone); what a
   * crash left in them goes with removePartial().
   */
  static async create(opts: FileBlobDriverOptions): Promise<FileBlobDriver> {
    const driver = new FileBlobDriver(opts);
    await mkdir(join(driver.#root, TMP_DIR), { recursive: true, mode: 0o700 });
    return driver;
  }

  #path(key: string): string {
    return join(this.#root, checkBlobKey(key));
  }

  urlFor(key: string): string {
    return pathToFileURL(this.#path(key)).href;
  }

  async openWriter(key: string, opts: IoOptions = {}): Promise<BlobWriter> {
    const finalPath = this.#path(key);
    opts.signal?.throwIfAborted();
    const name = `${key}.${randomBytes(6).toString('hex')}`;
    const tmpPath = join(this.#root, TMP_DIR, name);
    this.#writing.add(name);
    try {
      const file = await open(tmpPath, 'wx');
      return new FileBlobWriter(file, tmpPath, finalPath, this.#sync, () => this.#writing.delete(name));
    } catch (error) {
      this.#writing.delete(name);
      throw error;
    }
  }

  /**
   * The bytes are in `path` (a spool on this machine): the commit syncs it (with sync on) and
   * renames it into place — or, on another filesystem, copies it to a temporary name first.
   */
  async adoptWriter(key: string, path: string, opts: IoOptions = {}): Promise<BlobWriter> {
    const finalPath = this.#path(key);
    opts.signal?.throwIfAborted();
    let written = 0;
    return {
      get written() { return written; },
      write: async (bytes, o = {}) => {
        o.signal?.throwIfAborted();
        written += bytes.length;
      },
      commit: async (o = {}) => {
        o.signal?.throwIfAborted();
        const file = await open(path, 'r+');
        try {
          if ((await file.stat()).size !== written) throw new Error(`${path} holds ${(await file.stat()).size} bytes, not the ${written} written`);
          if (this.#sync) await file.datasync();
        } finally {
          await file.close();
        }
        try {
          await rename(path, finalPath);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
          const tmpPath = join(this.#root, TMP_DIR, `${key}.${randomBytes(6).toString('hex')}`);
          await copyFile(path, tmpPath);
          if (this.#sync) await syncFile(tmpPath);
          await rename(tmpPath, finalPath);
          await rm(path, { force: true });
        }
      },
      cancel: async () => undefined,
    };
  }

  /**
   * Removes every file under TMP_DIR but the ones this object's writers hold and, with a grace
   * period, those written to within it (another node's running write).
   */
  async removePartial(opts: IoOptions = {}): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for (const name of await readdir(join(this.#root, TMP_DIR))) {
      opts.signal?.throwIfAborted();
      if (this.#writing.has(name)) continue;
      const path = join(this.#root, TMP_DIR, name);
      if (this.#partialGraceMs > 0) {
        const written = await stat(path).then((s) => s.mtimeMs, () => undefined);
        if (written === undefined || now - written < this.#partialGraceMs) continue;
      }
      await rm(path, { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    if ((await this.stat(key, opts)) === undefined) throw new NotFoundError(`Image data for ${key} not found in store ${this.id}`);
    return new BlobReadStream(path, opts.start ?? 0, opts.end, opts.signal);
  }

  async stat(key: string, opts: IoOptions = {}): Promise<BlobStat | undefined> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    try {
      const s = await stat(path);
      return s.isFile() ? { size: s.size } : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    const path = this.#path(key);
    opts.signal?.throwIfAborted();
    await rm(path, { force: true });
  }

  async *list(opts: IoOptions = {}): AsyncIterable<string> {
    for (const entry of await readdir(this.#root, { withFileTypes: true })) {
      opts.signal?.throwIfAborted();
      if (entry.isFile() && isBlobKey(entry.name)) yield entry.name;
    }
  }
}

/** A temporary file written in WRITE_MAX pieces, synced in the background as it grows (with sync on). */
class FileBlobWriter implements BlobWriter {
  readonly #file: FileHandle;
  readonly #tmpPath: string;
  readonly #finalPath: string;
  readonly #sync: boolean;
  readonly #done: () => void;
  #written = 0;
  #syncedAt = 0;
  #syncing: Promise<void> | undefined;
  #syncError: { error: unknown } | undefined;
  #ended = false;

  constructor(file: FileHandle, tmpPath: string, finalPath: string, sync: boolean, done: () => void) {
    this.#file = file;
    this.#tmpPath = tmpPath;
    this.#finalPath = finalPath;
    this.#sync = sync;
    this.#done = done;
  }

  get written(): number {
    return this.#written;
  }

  async write(bytes: Uint8Array, opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    // A failed background sync fails the write: Linux reports a writeback error to one fdatasync
    // only, so the last one, before the commit, might not see it again.
    if (this.#syncError !== undefined) throw this.#syncError.error;
    // Zeros are left as a hole (the file is sparse there; reads give zeros): an image of mostly
    // zeros takes the disk its data needs. commit() sets the file's length.
    if (isAllZero(bytes)) {
      this.#written += bytes.length;
      return;
    }
    for (let offset = 0; offset < bytes.length;) {
      const length = Math.min(WRITE_MAX, bytes.length - offset);
      await writeAll(this.#file, bytes, offset, length, this.#written + offset);
      offset += length;
    }
    this.#written += bytes.length;
    if (this.#sync && this.#syncing === undefined && this.#written - this.#syncedAt >= SYNC_EVERY) {
      this.#syncedAt = this.#written;
      const syncing: Promise<void> = this.#file.datasync().then(() => {
        if (this.#syncing === syncing) this.#syncing = undefined;
      }, (error: unknown) => {
        this.#syncError ??= { error };
      });
      this.#syncing = syncing;
    }
  }

  async commit(opts: IoOptions = {}): Promise<void> {
    await this.#syncing;
    if (this.#syncError !== undefined) throw this.#syncError.error;
    opts.signal?.throwIfAborted();
    await this.#file.truncate(this.#written); // (a last hole, which no write extended the file over)
    if (this.#sync) await this.#file.datasync();
    await this.#file.close();
    await rename(this.#tmpPath, this.#finalPath);
    this.#end();
  }

  async cancel(): Promise<void> {
    if (this.#ended) return;
    await this.#syncing;
    await this.#file.close().catch(() => undefined);
    await rm(this.#tmpPath, { force: true });
    this.#end();
  }

  #end(): void {
    this.#ended = true;
    this.#done();
  }
}

async function syncFile(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.datasync();
  } finally {
    await file.close();
  }
}
