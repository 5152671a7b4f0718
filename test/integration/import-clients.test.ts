import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { openstackClientsMissing } from '../helpers/clients.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

const run = promisify(execFile);

const skip = await openstackClientsMissing();

const sha512 = (b: Uint8Array) => createHash('sha512').update(b).digest('hex');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

type ImageView = Record<string, unknown> & {
  id: string;
  status: string;
  stores?: string;
  locations?: { url: string; metadata: { store: string } }[];
};

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The interoperable import and multistore calls of the real Debian `glance` and `openstack` CLIs
 * against a real `outpost serve` process with three filesystem stores, plus glance-download from
 * a second `outpost serve` process acting as another region (API-NOTES §1.8-§1.10, §1.13, §2,
 * §3.6).
 */
describe('import, multistore and tasks through the glance and openstack CLIs', { skip, timeout: 90_000 }, () => {
  let work: string;
  let regionOne: ServeProcess;
  let regionTwo: ServeProcess;
  let web: Server;
  let webUrl: string;
  const webRequests: string[] = [];
  let glanceEnv: NodeJS.ProcessEnv;
  let openstackEnv: NodeJS.ProcessEnv;
  let directBytes: Buffer;
  let directFile: string;
  let webBytes: Buffer;
  let osBytes: Buffer;
  let osFile: string;
  let directId: string;

  /**
   * glanceclient treats a non-TTY stdin as image data ("You cannot use both --file and stdin"),
   * so it runs with stdin closed, as its own help suggests for cron jobs (`glance ... <&-`).
   */
  const glance = async (...args: string[]) => (await run('sh', [
    '-c', 'exec glance "$@" <&-', 'glance',
    '--os-image-api-version', '2', '--os-image-url', regionOne.url, '--os-auth-token', 'none', ...args,
  ], { env: glanceEnv, cwd: work })).stdout;
  const openstack = async (...args: string[]) => (await run('openstack', args, { env: openstackEnv, cwd: work })).stdout;

  const getImage = async (id: string, site = regionOne): Promise<ImageView> => {
    const res = await fetch(`${site.url}/v2/images/${id}`);
    assert.equal(res.status, 200, `GET image ${id}: ${res.status}`);
    return await res.json() as ImageView;
  };

  /** Polls the image until `done` holds (bounded), failing fast when an import failed. */
  const waitFor = async (id: string, done: (image: ImageView) => boolean, what: string, failFast = true): Promise<ImageView> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const image = await getImage(id);
      if (done(image)) return image;
      if (failFast && typeof image.os_glance_failed_import === 'string' && image.os_glance_failed_import !== '') {
        assert.fail(`import of ${id} failed for stores ${image.os_glance_failed_import}: ${JSON.stringify(image)}`);
      }
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(image)}\n${regionOne.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** Like tempest's waiters: active, the expected stores, nothing importing any more. */
  const waitImported = (id: string, stores: string) => waitFor(id, (i) => i.status === 'active' && i.stores === stores
    && i.os_glance_importing_to_stores === '', `image ${id} active in ${stores}`);

  /** The image is done importing: status, stores, one location per store, cleared import properties. */
  const assertSettled = async (id: string, stores: string[], bytes: Buffer): Promise<ImageView> => {
    const image = await getImage(id);
    assert.equal(image.status, 'active');
    assert.equal(image.stores, stores.join(','));
    assert.deepEqual(image.locations?.map((l) => l.metadata.store), stores);
    for (const l of image.locations ?? []) assert.match(l.url, /^file:\/\//);
    assert.equal(image.os_glance_importing_to_stores, '');
    assert.equal(image.os_glance_failed_import, '');
    assert.ok(!('os_glance_import_task' in image), 'the import lock is released');
    assert.equal(image.size, bytes.length);
    assert.equal(image.checksum, md5(bytes));
    assert.equal(image.os_hash_algo, 'sha512');
    assert.equal(image.os_hash_value, sha512(bytes));
    for (const s of ['a', 'b', 'c']) {
      assert.equal(await exists(join(work, s, id)), stores.includes(s), `copy of ${id} in store ${s}`);
    }
    assert.ok(!(await exists(join(work, 'region-one', 'staging', id))), 'nothing is left in the staging area');
    return image;
  };

  /** Every task of the image has ended in success (API and `glance image-tasks`). */
  const assertTasks = async (id: string, methods: string[]) => {
    const res = await fetch(`${regionOne.url}/v2/images/${id}/tasks`);
    assert.equal(res.status, 200);
    const { tasks } = await res.json() as { tasks: { status: string; type: string; image_id: string; result: unknown; input: { import_req: { method: { name: string } } } }[] };
    assert.deepEqual(tasks.map((t) => t.input.import_req.method.name).sort(), [...methods].sort());
    for (const t of tasks) {
      assert.equal(t.type, 'api_image_import');
      assert.equal(t.status, 'success');
      assert.equal(t.image_id, id);
      assert.deepEqual(t.result, { image_id: id });
    }
    const out = await glance('image-tasks', id);
    assert.equal(out.match(/\|\s*success\s*\|/g)?.length, methods.length, out);
    assert.doesNotMatch(out, /failure|processing|pending/);
  };

  const glanceDownload = async (id: string): Promise<Buffer> => {
    const out = join(work, `download-${id}`);
    await glance('image-download', '--file', out, id);
    return readFile(out);
  };

  /** A row of glanceclient's Property/Value table. */
  const glanceField = (out: string, name: string): string | undefined => (
    new RegExp(`^\\|\\s*${name}\\s*\\|\\s*(.*?)\\s*\\|$`, 'm').exec(out)?.[1]
  );
  const idFromGlanceTable = (out: string): string => {
    const m = /^\|\s*id\s*\|\s*([0-9a-f-]{36})\s*\|/m.exec(out);
    assert.ok(m !== null, `no id in:\n${out}`);
    return m[1];
  };

  before(async () => {
    work = await tempDir('outpost-import-cli-');
    directBytes = randomBytes(2 * 1024 * 1024 + 5);
    directFile = join(work, 'direct.img');
    await writeFile(directFile, directBytes);
    webBytes = randomBytes(1024 * 1024 + 333);
    osBytes = randomBytes(512 * 1024 + 1);
    osFile = join(work, 'os.img');
    await writeFile(osFile, osBytes);

    web = createServer((req, res) => {
      webRequests.push(req.url ?? '');
      if (req.url === '/images/web.img') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': webBytes.length });
        res.end(webBytes);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const webPort = (web.address() as AddressInfo).port;
    webUrl = `http://127.0.0.1:${webPort}`;

    // Region two first: region one is configured with its URL.
    regionTwo = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'region-two')]);
    regionOne = await spawnServe([
      '--listen', '127.0.0.1:0', '--data', join(work, 'region-one'),
      '--store', `a=file:${join(work, 'a')}`, '--store', `b=file:${join(work, 'b')}`, '--store', `c=file:${join(work, 'c')}`,
    ], {
      OUTPOST_IMPORT_FILTER: JSON.stringify({ allowed_hosts: ['127.0.0.1'], allowed_ports: [webPort] }),
      OUTPOST_SHOW_MULTIPLE_LOCATIONS: 'true',
      OUTPOST_GLANCE_DOWNLOAD_REGIONS: JSON.stringify({ RegionTwo: { url: regionTwo.url } }),
    });

    // glanceclient caches schemas under $HOME and takes OS_AUTH_TYPE for a keystone plugin:
    // it gets its own HOME and no OS_* variables; openstack gets auth none and the endpoint.
    glanceEnv = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
    for (const k of Object.keys(glanceEnv)) if (k.startsWith('OS_')) delete glanceEnv[k];
    openstackEnv = { ...glanceEnv, OS_AUTH_TYPE: 'none', OS_ENDPOINT: regionOne.url };
  });
  after(async () => {
    await regionOne?.stop();
    await regionTwo?.stop();
    await new Promise((resolve) => (web === undefined ? resolve(undefined) : web.close(resolve)));
    await rm(work, { recursive: true, force: true });
  });

  it('glance stores-info lists the three stores, the first the default', async () => {
    const out = await glance('stores-info');
    for (const s of ['a', 'b', 'c']) assert.match(out, new RegExp(`['"]id['"]: ['"]${s}['"]`), out);
    const res = await fetch(`${regionOne.url}/v2/info/stores`);
    assert.equal(res.status, 200);
    const { stores } = await res.json() as { stores: { id: string; default?: string }[] };
    assert.deepEqual(stores.map((s) => s.id), ['a', 'b', 'c']);
    assert.equal(stores.find((s) => s.id === 'a')?.default, 'true');
    assert.ok(stores.filter((s) => s.id !== 'a').every((s) => s.default === undefined));
    // The table wraps long values: compare without the table's spaces and bars.
    const methods = (await glance('import-info')).replace(/[\s|]+/g, '');
    assert.match(methods, /"value":\["glance-direct","web-download","copy-image","glance-download"\]/);
  });

  it('glance image-create-via-import --import-method glance-direct --stores a,b', async () => {
    const out = await glance('image-create-via-import', '--name', 'direct', '--disk-format', 'raw', '--container-format', 'bare',
      '--property', 'os_distro=cirros', '--import-method', 'glance-direct', '--file', directFile, '--stores', 'a,b');
    directId = idFromGlanceTable(out);
    // The CLI prints the image right after the 202: importing (or already active).
    assert.match(glanceField(out, 'status') ?? '', /^(importing|active)$/, out);
    assert.equal(glanceField(out, 'os_distro'), 'cirros');
    await waitImported(directId, 'a,b');
    const image = await assertSettled(directId, ['a', 'b'], directBytes);
    assert.equal(image.os_distro, 'cirros');
    assert.ok(!('os_glance_stage_host' in image));
    assert.equal(sha512(await glanceDownload(directId)), sha512(directBytes));
    await assertTasks(directId, ['glance-direct']);
  });

  it('glance image-create-via-import --import-method web-download --uri (local HTTP server) --stores b,c', async () => {
    const uri = `${webUrl}/images/web.img`;
    const out = await glance('image-create-via-import', '--name', 'web', '--disk-format', 'raw', '--container-format', 'bare',
      '--import-method', 'web-download', '--uri', uri, '--stores', 'b,c');
    const id = idFromGlanceTable(out);
    assert.match(glanceField(out, 'status') ?? '', /^(importing|active)$/, out);
    await waitImported(id, 'b,c');
    await assertSettled(id, ['b', 'c'], webBytes);
    assert.ok(webRequests.includes('/images/web.img'), 'the server fetched the URI');
    assert.equal(sha512(await glanceDownload(id)), sha512(webBytes));
    await assertTasks(id, ['web-download']);
  });

  it('web-download from a URI the import filter refuses is a 400 and leaves the image queued', async () => {
    const out = await glance('image-create', '--name', 'refused', '--disk-format', 'raw', '--container-format', 'bare');
    const id = idFromGlanceTable(out);
    await assert.rejects(glance('image-import', '--import-method', 'web-download', '--uri', 'http://127.0.0.1:1/x.img', id),
      (e: { stderr: string }) => /400 Bad Request/.test(e.stderr) && /does not pass filtering/.test(e.stderr));
    const image = await getImage(id);
    assert.equal(image.status, 'queued');
    assert.ok(!('os_glance_import_task' in image));
  });

  it('glance image-import --import-method copy-image --stores c adds a third copy', async () => {
    const out = await glance('image-import', '--import-method', 'copy-image', '--stores', 'c', directId);
    // copy-image leaves the image active; the CLI shows it while (or after) copying.
    assert.equal(glanceField(out, 'status'), 'active', out);
    assert.match(glanceField(out, 'os_glance_importing_to_stores') ?? '', /^c?$/, out);
    await waitImported(directId, 'a,b,c');
    await assertSettled(directId, ['a', 'b', 'c'], directBytes);
    assert.deepEqual(await readFile(join(work, 'c', directId)), directBytes);
    // Copying to a store that already holds the image is refused (400).
    await assert.rejects(glance('image-import', '--import-method', 'copy-image', '--stores', 'c', directId),
      (e: { stderr: string }) => /400 Bad Request/.test(e.stderr) && /already present at store c/.test(e.stderr));
  });

  it('glance image-tasks lists the glance-direct and copy-image tasks, both successful', async () => {
    await assertTasks(directId, ['glance-direct', 'copy-image']);
    const verbose = await glance('--verbose', 'image-tasks', directId);
    assert.match(verbose, new RegExp(directId));
  });

  it('glance stores-delete removes one copy; the last copy cannot be removed', async () => {
    await glance('stores-delete', '--store', 'a', directId);
    await assertSettled(directId, ['b', 'c'], directBytes);
    assert.equal(sha512(await glanceDownload(directId)), sha512(directBytes));
    // Deleting from a store without a copy, then down to the last copy.
    await assert.rejects(glance('stores-delete', '--store', 'a', directId),
      (e: { stderr: string }) => /Image\/store not found/.test(e.stderr));
    await glance('stores-delete', '--store', 'b', directId);
    await assertSettled(directId, ['c'], directBytes);
    await assert.rejects(glance('stores-delete', '--store', 'c', directId),
      (e: { stderr: string }) => /403 Forbidden/.test(e.stderr) && /only store/.test(e.stderr));
    await assertSettled(directId, ['c'], directBytes);
  });

  it('openstack image create --import stages and imports to the default store', async () => {
    const created = JSON.parse(await openstack('image', 'create', '--import', '--disk-format', 'raw', '--container-format', 'bare',
      '--file', osFile, '--property', 'hw_disk_bus=scsi', '-f', 'json', 'os-import')) as { id: string };
    await waitImported(created.id, 'a');
    const image = await assertSettled(created.id, ['a'], osBytes);
    assert.equal(image.hw_disk_bus, 'scsi');
    const shown = JSON.parse(await openstack('image', 'show', '-f', 'json', created.id)) as { status: string; properties: Record<string, unknown> };
    assert.equal(shown.status, 'active');
    assert.equal(shown.properties.stores, 'a');
    assert.equal(shown.properties.os_glance_importing_to_stores, '');
    const saved = join(work, 'os-saved.img');
    await openstack('image', 'save', '--file', saved, created.id);
    assert.equal(sha512(await readFile(saved)), sha512(osBytes));
    await assertTasks(created.id, ['glance-direct']);
  });

  it('glance-download imports an image of another region with its formats and hw_/os_distro properties', async () => {
    const remoteBytes = randomBytes(1536 * 1024 + 7);
    const create = await fetch(`${regionTwo.url}/v2/images`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'remote', disk_format: 'qcow2', container_format: 'bare', os_distro: 'debian', hw_disk_bus: 'virtio',
        hw_scsi_model: 'virtio-scsi', os_type: 'linux', site_note: 'not copied',
      }),
    });
    assert.equal(create.status, 201);
    const remoteId = (await create.json() as { id: string }).id;
    const upload = await fetch(`${regionTwo.url}/v2/images/${remoteId}/file`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: remoteBytes,
    });
    assert.equal(upload.status, 204);
    const remote = await getImage(remoteId, regionTwo);
    assert.equal(remote.status, 'active');

    const local = await fetch(`${regionOne.url}/v2/images`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'from-region-two' }),
    });
    assert.equal(local.status, 201);
    const id = (await local.json() as { id: string }).id;
    const res = await fetch(`${regionOne.url}/v2/images/${id}/import`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        method: { name: 'glance-download', glance_region: 'RegionTwo', glance_image_id: remoteId },
        stores: ['a', 'c'],
      }),
    });
    assert.equal(res.status, 202, await res.text());
    await waitImported(id, 'a,c');
    const image = await assertSettled(id, ['a', 'c'], remoteBytes);
    for (const k of ['checksum', 'os_hash_algo', 'os_hash_value', 'size', 'disk_format', 'container_format',
      'os_distro', 'hw_disk_bus', 'hw_scsi_model', 'os_type']) {
      assert.deepEqual(image[k], remote[k], k);
    }
    assert.equal(image.name, 'from-region-two');
    assert.ok(!('site_note' in image), 'properties without a configured prefix are not copied');
    assert.equal(sha512(await glanceDownload(id)), sha512(remoteBytes));
    await assertTasks(id, ['glance-download']);
  });

  it('glance-download of an unknown region fails the task and returns the image to queued', async () => {
    const local = await fetch(`${regionOne.url}/v2/images`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'nowhere', disk_format: 'raw', container_format: 'bare' }),
    });
    const id = (await local.json() as { id: string }).id;
    const res = await fetch(`${regionOne.url}/v2/images/${id}/import`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: { name: 'glance-download', glance_region: 'RegionNine', glance_image_id: randomUUID() } }),
    });
    assert.equal(res.status, 202);
    const image = await waitFor(id, (i) => i.status === 'queued' && !('os_glance_import_task' in i)
      && i.os_glance_importing_to_stores === '', 'the failed glance-download to be reverted', false);
    assert.equal(image.os_glance_failed_import, 'a');
    // The image is reverted before the task records its failure (as in Glance's flow revert).
    type TaskRow = { status: string; message: string };
    let tasks: TaskRow[] = [];
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      ({ tasks } = await (await fetch(`${regionOne.url}/v2/images/${id}/tasks`)).json() as { tasks: TaskRow[] });
      if (tasks.every((t) => t.status === 'success' || t.status === 'failure')) break;
    }
    assert.equal(tasks.length, 1);
    assert.equal(tasks[0].status, 'failure');
    assert.match(tasks[0].message, /RegionNine/);
  });
});

