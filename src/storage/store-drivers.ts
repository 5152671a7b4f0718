import { isAbsolute, resolve } from 'node:path';
import type { StoreConfig } from '../core/config.ts';
import type { BlobDriver, IoOptions } from '../core/ports.ts';
import { StartupError } from '../core/startup-error.ts';
import { FileBlobDriver } from './drivers/file-blob-driver.ts';
import { S3BlobDriver } from './drivers/s3-blob-driver.ts';

export interface OpenedStoreDriver {
  driver: BlobDriver;
  /** What GET /v2/info/stores/detail shows of the store: where its bytes are, never a credential. */
  properties: Record<string, unknown>;
}

/**
 * The driver of a configured store: a directory (created if missing) or an S3 bucket (created if
 * missing; credentials from the AWS SDK's standard chain). A store that cannot be opened is a
 * StartupError naming it and saying why. `shared`: several nodes serve the site (a shared
 * catalog), so a directory may have other writers too; a bucket is always taken to.
 */
export async function openStoreDriver(store: StoreConfig, opts: IoOptions & { sync: boolean; shared: boolean }): Promise<OpenedStoreDriver> {
  if (store.type === 'file') {
    const root = isAbsolute(store.path) ? store.path : resolve(store.path);
    const partialGraceMs = opts.shared ? store.partial_grace_seconds * 1000 : 0;
    return { driver: await FileBlobDriver.create({ id: store.id, root, sync: opts.sync, partialGraceMs }), properties: { data_dir: root } };
  }
  try {
    const driver = await S3BlobDriver.create({
      id: store.id,
      bucket: store.bucket,
      prefix: store.prefix,
      ...(store.endpoint === null ? {} : { endpoint: store.endpoint }),
      ...(store.region === null ? {} : { region: store.region }),
      ...(store.profile === null ? {} : { profile: store.profile }),
      pathStyle: store.path_style,
      partSize: store.part_size_mb << 20,
      maxParts: store.max_parts,
      partsInFlight: store.parts_in_flight,
      partialGraceMs: store.partial_grace_seconds * 1000,
      connectTimeoutMs: store.connect_timeout_ms,
      idleTimeoutMs: store.timeout_ms,
      maxAttempts: store.max_attempts,
    }, opts);
    return {
      driver,
      properties: {
        bucket: store.bucket,
        prefix: store.prefix,
        endpoint: store.endpoint ?? 'AWS',
        ...(store.region === null ? {} : { region: store.region }),
        url: `s3://${store.bucket}/${store.prefix === '' ? '' : `${store.prefix}/`}`,
      },
    };
  } catch (error) {
    opts.signal?.throwIfAborted();
    throw new StartupError(`store "${store.id}": ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
