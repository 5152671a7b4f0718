import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { TransferRecord } from '../../src/core/site-report.ts';
import { bytesOf, call, createActiveImage, type ImageJson } from '../helpers/glance-client.ts';
import { assertWhole, download, eventually, siteAt, stopProcess } from '../helpers/multi-site.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const MiB = 1 << 20;
const run = promisify(execFile);
/** The edge's whole disk: room for its catalog and a small image, not for the large one. */
const DISK_MIB = 24;

/** A tmpfs of `mib` MiB mounted at `dir`, or why not (mounting needs root, as in CI). */
async function smallDisk(dir: string, mib: number): Promise<string | undefined> {
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
    return undefined;
  } catch (error) {
    return `cannot mount a small tmpfs for the edge's disk: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** Bytes in regular files under `dir`, but for the catalog's SQLite files. */
async function imageBytesOnDisk(dir: string): Promise<{ bytes: number; files: string[] }> {
  const files: string[] = [];
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || /\.(db|sqlite)(-wal|-shm|-journal)?$/.test(entry.name)) continue;
    const path = join(entry.parentPath, entry.name);
    const { size } = await stat(path);
    if (size < 64 * 1024) continue; // keys, pid files, configuration
    files.push(`${path} (${size} bytes)`);
    bytes += size;
  }
  return { bytes, files };
}

/**
 * Issue 12: "disk full during a transfer fails the transfer cleanly and leaves no partial copy
 * visible". An edge whose data directory is a 24 MiB tmpfs is asked for a 32 MiB image it does
 * not hold: the client never gets a whole-looking response, no copy is listed, the transfer is
 * recorded as failed with the reason, the space is given back, and the edge goes on caching an
 * image that fits. An upload there that does not fit is refused as Glance refuses it.
 */
describe('an edge whose disk fills up during a transfer', { timeout: 180_000 }, async () => {
  const work = await tempDir('outpost-e2e-disk-full-');
  const edgeDisk = join(work, 'edge-disk');
  const skip = await smallDisk(edgeDisk, DISK_MIB);
  let central: ServeProcess | undefined;
  let edge: ServeProcess | undefined;

  before(async () => {
    if (skip !== undefined) return;
    central = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'central'), '--role', 'central'], { OUTPOST_STORAGE_SYNC: 'false' });
    edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(edgeDisk, 'data'), '--role', 'edge', '--site', 'edge-1', '--parent', central.url],
      { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2' });
  });
  after(async () => {
    if (edge !== undefined) await stopProcess(edge);
    if (central !== undefined) await stopProcess(central);
    if (skip === undefined) await run('umount', [edgeDisk]).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  });

  it('fails the transfer cleanly, keeps no partial copy, gives the space back, and caches an image that fits afterwards', { skip }, async () => {
    const c = siteAt(central!.url);
    const e = siteAt(edge!.url);
    const atEdge = (id: string) => eventually(`${id} at the edge`, 30_000, async () => (await call<ImageJson>(e, 'GET', `/v2/images/${id}`)).body?.status === 'active');
    const large = await createActiveImage(c, bytesOf(32 * MiB, 71), { name: 'too-large' });
    const small = await createActiveImage(c, bytesOf(4 * MiB, 72), { name: 'fits' });
    await atEdge(large.id);
    await atEdge(small.id);

    const got = await download(edge!.url, large.id);
    assert.ok(got.status >= 500 || got.broken || got.length < large.size!,
      `a failed transfer must not look whole to the client: HTTP ${got.status}, ${got.length} bytes, broken: ${got.broken}`);
    assert.notEqual(got.sha512, large.os_hash_value);

    await eventually('the failed transfer is recorded with its reason', 30_000, async () => {
      const { transfers } = (await call<{ transfers: TransferRecord[] }>(e, 'GET', '/outpost/v1/transfers')).body;
      const record = transfers.find((t) => t.image_id === large.id && t.state !== 'running');
      return record !== undefined;
    });
    const { transfers } = (await call<{ transfers: TransferRecord[] }>(e, 'GET', '/outpost/v1/transfers')).body;
    const record = transfers.find((t) => t.image_id === large.id)!;
    assert.equal(record.state, 'failed');
    assert.match(record.error ?? '', /^Image storage media is full: ENOSPC: no space left on device/);

    const cache = (await call<{ cached_images: { image_id: string }[]; queued_images: string[] }>(e, 'GET', '/v2/cache')).body;
    assert.equal(cache.cached_images.some((x) => x.image_id === large.id), false, 'no copy of the image that did not fit');
    const left = await imageBytesOnDisk(edgeDisk);
    assert.ok(left.bytes < 2 * MiB, `the partial transfer's bytes were given back, but these remain: ${left.files.join(', ')}`);

    // The edge goes on: an image that fits is fetched, verified and kept.
    assertWhole(await download(edge!.url, small.id), small);
    await eventually('the small image is cached', 30_000, async () =>
      (await call<{ cached_images: { image_id: string }[] }>(e, 'GET', '/v2/cache')).body.cached_images.some((x) => x.image_id === small.id));
    const { bavail, bsize } = await statfs(edgeDisk);
    assert.ok(bavail * bsize > 4 * MiB, 'the disk is not left full');
  });

  it('refuses an upload that does not fit as Glance does (413, "Image storage media is full"), and the image can be uploaded again', { skip }, async () => {
    const e = siteAt(edge!.url);
    const image = (await call<ImageJson>(e, 'POST', '/v2/images', { json: { name: 'upload-too-large', disk_format: 'raw', container_format: 'bare' } })).body;
    const res = await call<{ code: string; message: string }>(e, 'PUT', `/v2/images/${image.id}/file`,
      { body: bytesOf(32 * MiB, 73), headers: { 'content-type': 'application/octet-stream', accept: 'application/json' } });
    assert.equal(res.status, 413, res.text);
    assert.equal(res.body.code, '413 Payload Too Large');
    assert.match(res.body.message, /^Image storage media is full: ENOSPC/);
    assert.equal((await call<ImageJson>(e, 'GET', `/v2/images/${image.id}`)).body.status, 'queued');
    const left = await imageBytesOnDisk(edgeDisk);
    assert.ok(left.bytes < 6 * MiB, `only the cached 4 MiB image remains, not these: ${left.files.join(', ')}`);
    const fits = bytesOf(2 * MiB, 74);
    assert.equal((await call(e, 'PUT', `/v2/images/${image.id}/file`, { body: fits, headers: { 'content-type': 'application/octet-stream' } })).status, 204);
    assert.equal((await call<ImageJson>(e, 'GET', `/v2/images/${image.id}`)).body.status, 'active');
    assert.equal((await download(edge!.url, image.id)).length, fits.length);
  });
});
