import { chmod, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { join, resolve } from 'node:path';
import { StartupError } from '../core/startup-error.ts';

/** Which site a data directory belongs to: written at its first start (STAMP_FILE). */
export interface SiteIdentity {
  site: string;
  role: string;
}

export interface DataDirectoryOptions extends SiteIdentity {
  path: string;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  signal?: AbortSignal;
}

/** The stamp: `{"site": ID, "role": ROLE, "stamped_at": ISO time}`. */
export const STAMP_FILE = 'outpost-site.json';
/** Held (an exclusive SQLite lock, i.e. a kernel record lock) by the process serving the directory. */
export const LOCK_FILE = 'outpost.lock';
/** The pid of the process holding LOCK_FILE, for the message that refuses a second one. */
export const PID_FILE = 'outpost.pid';
const CATALOG_FILE = 'catalog.sqlite';
/**
 * Files private to the service user (0600): the catalog (Ed25519 signing key, password hashes,
 * site credentials) with SQLite's companions, and Outpost's own bookkeeping.
 */
const PRIVATE_FILES = [CATALOG_FILE, `${CATALOG_FILE}-wal`, `${CATALOG_FILE}-shm`, `${CATALOG_FILE}-journal`, STAMP_FILE, LOCK_FILE, PID_FILE];
/** SQLITE_BUSY: another connection (in this process or another) holds the lock. */
const SQLITE_BUSY = 5;

/**
 * A site's data directory, opened for one site and held while it runs. `open` makes sure that:
 *
 * - the directory is private to the user Outpost runs as (0700) and the files holding secrets are
 *   0600, created with those modes (never left to the process umask). A directory or file owned by
 *   that user but open to others is fixed, with a warning in the log; one owned by another user is
 *   refused (Outpost cannot make it private, and someone else controls it).
 * - the directory belongs to this site: at the first start it is stamped with the site's id and
 *   role (STAMP_FILE); opening it as another site or role is refused.
 * - no other process serves it: the lock is an exclusive SQLite transaction on LOCK_FILE, so the
 *   kernel drops it when its holder dies in any way (kill -9 included) and the next start takes the
 *   directory over; nothing stale is left to clean up.
 */
export class DataDirectory {
  readonly path: string;
  /** The SQLite catalog, created 0600 before SQLite first opens it (its -wal and -shm then copy that mode). */
  readonly catalogPath: string;
  readonly #lock: DatabaseSync;

  private constructor(path: string, lock: DatabaseSync) {
    this.path = path;
    this.catalogPath = join(path, CATALOG_FILE);
    this.#lock = lock;
  }

  static async open(opts: DataDirectoryOptions): Promise<DataDirectory> {
    const path = resolve(opts.path);
    const { log, signal } = opts;
    await mkdir(path, { recursive: true, mode: 0o700 });
    await makePrivate(path, 0o700, 'data directory', log);
    signal?.throwIfAborted();

    const stamp = await readStamp(path);
    if (stamp !== undefined && (stamp.site !== opts.site || stamp.role !== opts.role)) {
      throw new StartupError(`the data directory ${path} belongs to the ${stamp.role} site "${stamp.site}", not to this ${opts.role} site "${opts.site}"; `
        + `each site needs its own data directory: start this one with --data DIR (for example --data ./data-${opts.site})`);
    }

    const lockPath = join(path, LOCK_FILE);
    await createPrivate(lockPath);
    const lock = new DatabaseSync(lockPath, { timeout: 0 });
    try {
      lock.exec('BEGIN EXCLUSIVE');
    } catch (error) {
      lock.close();
      if ((error as { errcode?: number }).errcode !== SQLITE_BUSY) throw error;
      const pid = (await readFile(join(path, PID_FILE), 'utf8').catch(() => '')).trim();
      throw new StartupError(`the data directory ${path} is in use by another outpost process${/^\d+$/.test(pid) ? ` (pid ${pid})` : ''}; `
        + 'stop it first, or give this site its own data directory with --data DIR');
    }
    const dir = new DataDirectory(path, lock);
    try {
      await writePrivate(join(path, PID_FILE), `${process.pid}\n`);
      if (stamp === undefined) {
        await writePrivate(join(path, STAMP_FILE), `${JSON.stringify({ site: opts.site, role: opts.role, stamped_at: new Date().toISOString() })}\n`);
        log.info({ path, site: opts.site, role: opts.role }, 'data directory stamped for this site');
      }
      await createPrivate(dir.catalogPath);
      for (const name of PRIVATE_FILES) await makePrivate(join(path, name), 0o600, 'file', log);
      signal?.throwIfAborted();
      return dir;
    } catch (error) {
      await dir.close();
      throw error;
    }
  }

  /** Releases the directory for the next process. */
  async close(): Promise<void> {
    if (!this.#lock.isOpen) return;
    await rm(join(this.path, PID_FILE), { force: true });
    this.#lock.close();
  }
}

async function readStamp(dir: string): Promise<SiteIdentity | undefined> {
  const file = join(dir, STAMP_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const stamp = JSON.parse(text) as Partial<SiteIdentity>;
    if (typeof stamp.site === 'string' && typeof stamp.role === 'string') return { site: stamp.site, role: stamp.role };
  } catch { /* reported below */ }
  throw new StartupError(`${file} is not a stamp Outpost wrote ({"site": ID, "role": ROLE}); restore it, or start the site on its own data directory with --data DIR`);
}

/** Creates an empty file with mode 0600 unless it exists (an existing file keeps its mode: see makePrivate). */
async function createPrivate(file: string): Promise<void> {
  await (await open(file, 'a', 0o600)).close();
}

/** Replaces `file` atomically with `text`, as a new file of mode 0600. */
async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

/**
 * Checks that `path` (if it exists) is owned by this process's user and open to no one else:
 * fixes the mode to `mode` (and says so) when it is ours, refuses when another user owns it.
 */
async function makePrivate(path: string, mode: number, what: string, log: DataDirectoryOptions['log']): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return; // no POSIX owners and modes (Windows)
  let st;
  try {
    st = await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (st.uid !== uid) {
    throw new StartupError(`the ${what} ${path} is owned by uid ${st.uid}, not by the user outpost runs as (uid ${uid}); `
      + 'it holds secrets that must be private to the service user: run outpost as its owner, or give it to that user (chown -R)');
  }
  if ((st.mode & 0o077) !== 0) {
    await chmod(path, mode);
    log.warn({ path, was: octal(st.mode & 0o777), now: octal(mode) }, `the ${what} was open to other users; made it private`);
  }
}

function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
