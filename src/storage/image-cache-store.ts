import type { HasherFactory, IoOptions } from '../core/ports.ts';
import { FileBlobDriver } from './drivers/file-blob-driver.ts';
import { VerifyingBlobStore } from './verifying-blob-store.ts';

/**
 * The id of the store the image cache keeps its copies in when it has a directory of its own
 * (`image_cache_dir`): in the namespace reserved to Glance's own stores (a configured store's id
 * may not start with `os_glance_`, as Glance's `os_glance_staging_store`), so it is never one of
 * the region's stores. It names the cache's copies in the site's chunk index and in messages.
 */
export const IMAGE_CACHE_STORE_ID = 'os_glance_cache_store';

export interface ImageCacheStoreOptions {
  /** The directory (created if missing). */
  root: string;
  hashers: HasherFactory;
  /** fdatasync each copy before it becomes visible (`storage_sync`). */
  sync: boolean;
  /** Another node's partial write is left alone this long (ms; 0: this process is the directory's only writer). */
  partialGraceMs: number;
}

/**
 * The image cache's own directory as a store: a copy is written to `.incomplete/` and renamed into
 * place only once verified (VerifyingBlobStore: size, md5, sha512), as in Glance's image cache
 * directory, whose `incomplete` subdirectory is "the staging area for downloading images". What a
 * stopped process left half-written is removed here, at open (and by POST /v2/cache/clean).
 */
export async function openImageCacheStore(opts: ImageCacheStoreOptions, io: IoOptions = {}): Promise<VerifyingBlobStore> {
  const store = new VerifyingBlobStore(await FileBlobDriver.create({
    id: IMAGE_CACHE_STORE_ID, root: opts.root, sync: opts.sync, partialGraceMs: opts.partialGraceMs,
  }), opts.hashers);
  await store.removePartial(io);
  return store;
}
