// VerifyingBlobStore.put with `adopt`: the bytes are also in a local file (a transfer's spool),
// which a file store takes as the committed copy instead of writing them again — only once every
// check passed.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataMismatchError } from '../../src/core/errors.ts';
import { FileBlobDriver } from '../../src/storage/drivers/file-blob-driver.ts';
import { MemoryBlobDriver } from '../../src/storage/drivers/memory-blob-driver.ts';
import { VerifyingBlobStore } from '../../src/storage/verifying-blob-store.ts';
import { WorkerHasherFactory } from '../../src/storage/worker-hasher.ts';

const hashers = new WorkerHasherFactory();
const digest = (b: Buffer) => ({ md5: createHash('md5').update(b).digest('hex'), sha512: createHash('sha512').update(b).digest('hex') });

async function* pieces(bytes: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += 300_000) yield bytes.subarray(at, at + 300_000);
}

describe('VerifyingBlobStore.put with adopt', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'outpost-adopt-')); });
  after(async () => {
    await hashers.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a file store takes the spool as the copy: same bytes, the spool moved, nothing else written', async () => {
    const store = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'a', root: join(dir, 'a') }), hashers);
    const bytes = randomBytes(3_000_003);
    const spool = join(dir, 'spool-1');
    await writeFile(spool, bytes);
    const got = await store.put('image-1', pieces(bytes), { adopt: spool, expected: digest(bytes), expectedSize: bytes.length });
    assert.equal(got.size, bytes.length);
    assert.ok((await readFile(join(dir, 'a', 'image-1'))).equals(bytes));
    await assert.rejects(stat(spool), { code: 'ENOENT' });
    assert.deepEqual(await readdir(join(dir, 'a', '.incomplete')), []);
  });

  it('bytes that do not match: nothing is committed and the spool is left to its owner', async () => {
    const store = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'b', root: join(dir, 'b') }), hashers);
    const bytes = randomBytes(500_000);
    const spool = join(dir, 'spool-2');
    await writeFile(spool, bytes);
    await assert.rejects(store.put('image-2', pieces(bytes), { adopt: spool, expected: digest(randomBytes(10)) }), DataMismatchError);
    assert.equal(await store.stat('image-2'), undefined);
    assert.ok((await readFile(spool)).equals(bytes), 'the spool is untouched');
  });

  it('a spool that does not hold what was put is refused', async () => {
    const store = new VerifyingBlobStore(await FileBlobDriver.create({ id: 'c', root: join(dir, 'c') }), hashers);
    const bytes = randomBytes(200_000);
    const spool = join(dir, 'spool-3');
    await writeFile(spool, bytes.subarray(0, 100_000));
    await assert.rejects(store.put('image-3', pieces(bytes), { adopt: spool }), /holds 100000 bytes, not the 200000 written/);
    assert.equal(await store.stat('image-3'), undefined);
  });

  it('a store that keeps no local files writes the bytes itself', async () => {
    const store = new VerifyingBlobStore(new MemoryBlobDriver('m'), hashers);
    const bytes = randomBytes(100_000);
    await store.put('image-4', pieces(bytes), { adopt: join(dir, 'no-such-spool') });
    const parts: Buffer[] = [];
    for await (const p of await store.get('image-4')) parts.push(p as Buffer);
    assert.ok(Buffer.concat(parts).equals(bytes));
  });
});
