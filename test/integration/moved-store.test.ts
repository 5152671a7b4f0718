import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { sleep } from '../helpers/glance-client.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);
const clientsMissing = await openstackClientsMissing();

/**
 * A real `outpost serve` restarted with its store pointed at another directory (the images'
 * files stay at the old path): the start warns with the count, the store, the image and the fix,
 * and a download answers as Glance does when the store's file is gone — 204, no body (not a 404
 * page, which clients wrote into the output file).
 */
describe('a store that moved', { timeout: 120_000 }, () => {
  let work: string;
  let server: ServeProcess | undefined;
  let id: string;
  const args = (store: string) => ['--listen', '127.0.0.1:0', '--data', join(work, 'data'), '--store', `central=file:${join(work, store)}`];
  const api = (path: string, init: RequestInit = {}) => fetch(`${server!.url}${path}`, init);

  before(async () => {
    work = await tempDir('outpost-moved-store-');
    await mkdir(join(work, 'data'));
    server = await spawnServe(args('old'));
    const created = await api('/v2/images', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'moved', disk_format: 'raw', container_format: 'bare' }),
    });
    ({ id } = await created.json() as { id: string });
    const uploaded = await api(`/v2/images/${id}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(256 * 1024),
    });
    assert.equal(uploaded.status, 204);
    assert.equal(await server.stop(), 0);
    server = await spawnServe(args('new'));
  });
  after(async () => {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('warns at start with the count, the store, an example image and the fix', async () => {
    const warning = /1 image\(s\) recorded in store central have no data there[^\n]*/;
    for (const deadline = Date.now() + 30_000; !warning.test(server!.output()); await sleep(50)) {
      assert.ok(Date.now() < deadline, `no warning within 30 s:\n${server!.output()}`);
    }
    const line = warning.exec(server!.output())![0];
    assert.ok(line.includes(id), line);
    assert.match(line, /point store central back at its old path/);
    assert.ok(line.includes(join(work, 'new')), line);
  });

  it('answers a download with 204 and no body, whatever the client accepts', async () => {
    for (const accept of [undefined, '*/*', 'application/json', 'text/html']) {
      const res = await api(`/v2/images/${id}/file`, { headers: accept === undefined ? {} : { accept } });
      assert.equal(res.status, 204, `Accept: ${accept}`);
      assert.equal(await res.text(), '');
    }
    const ranged = await api(`/v2/images/${id}/file`, { headers: { range: 'bytes=0-99' } });
    assert.equal(ranged.status, 204);
    assert.equal(await ranged.text(), '');
  });

  it('openstack image save fails and writes no HTML into the output file', { skip: clientsMissing }, async () => {
    const out = join(work, 'saved.img');
    const env = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore', OS_AUTH_TYPE: 'none', OS_ENDPOINT: server!.url };
    await assert.rejects(run('openstack', ['image', 'save', '--file', out, id], { env, cwd: work }));
    const written = await readFile(out).catch(() => Buffer.alloc(0));
    assert.doesNotMatch(written.toString('latin1'), /<html|Not Found/i);
    assert.equal(written.length, 0);
  });
});
