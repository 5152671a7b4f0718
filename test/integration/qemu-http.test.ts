// A hypervisor reading an image through an edge's URL: QEMU's curl block driver (qemu-img here)
// asks HEAD first and needs Accept-Ranges, then reads the ranges it wants.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { qemuHttpMissing } from '../helpers/clients.ts';
import { call, createActiveImage, type ImageJson } from '../helpers/glance-client.ts';
import { eventually, startSiteChain, type SiteChain } from '../helpers/multi-site.ts';
import { tempDir } from '../helpers/site.ts';

const run = promisify(execFile);
const missing = await qemuHttpMissing();

describe('QEMU reads images through an edge\'s URL', { skip: missing, timeout: 180_000 }, () => {
  let work: string;
  let chain: SiteChain;
  before(async () => {
    work = await tempDir('outpost-qemu-');
    chain = await startSiteChain(work, { OUTPOST_STORAGE_SYNC: 'false', OUTPOST_PARENT_TIMEOUT_MS: '3000', OUTPOST_FEED_WAIT_SECONDS: '2' });
  });
  after(async () => {
    await chain?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('qemu-img info and convert of a cold qcow2 image at the far edge give the disk that was uploaded', async () => {
    const { central, far } = chain;
    // A 64 MiB qcow2 disk with some data written into it by qemu-img itself.
    const raw = join(work, 'disk.raw');
    const qcow2 = join(work, 'disk.qcow2');
    await run('qemu-img', ['create', '-f', 'raw', raw, '64M']);
    const marker = Buffer.from('outpost-edge-boot-marker');
    const fh = await open(raw, 'r+');
    await fh.write(marker, 0, marker.length, 40 << 20);
    await fh.close();
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    const image = await createActiveImage(central, await readFile(qcow2), { name: 'qemu-disk', disk_format: 'qcow2' });
    await eventually('the image at the far edge', 30_000, async () => (await call<ImageJson>(far, 'GET', `/v2/images/${image.id}`)).body?.status === 'active');

    const url = `${far.url}/v2/images/${image.id}/file`;
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', url])).stdout) as { format: string; 'virtual-size': number };
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 64 << 20);
    const out = join(work, 'out.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', `json:${JSON.stringify({ file: { driver: 'http', url } })}`, out]);
    const disk = await readFile(out);
    assert.equal(disk.length, 64 << 20);
    assert.ok(disk.subarray(40 << 20, (40 << 20) + marker.length).equals(marker), 'the data written into the disk reads back through the edge');
  });
});
