import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/site.ts';

const run = promisify(execFile);

/** What the clients are pointed at: an `auth none` endpoint, and the directory its default store keeps files in. */
export interface ClientTarget {
  url: string;
  storeDir: string;
  stop(): Promise<unknown>;
}

/**
 * The real OpenStack clients from Debian against real `outpost serve` processes, as an operator
 * uses them: `auth none` endpoints, no Keystone. `start` brings up what they talk to (one node,
 * or several behind a load balancer) with its data under `work`.
 */
export function openstackClientsSuite(name: string, skip: string | false, start: (work: string) => Promise<ClientTarget>): void {
  describe(`openstack and glance CLIs against ${name}`, { skip, timeout: 180_000 }, () => {
    let server: ClientTarget;
    let work: string;
    let env: NodeJS.ProcessEnv;
    let glanceEnv: NodeJS.ProcessEnv;
    let imageBytes: Buffer;
    let imageFile: string;

    const openstack = async (...args: string[]) => (await run('openstack', args, { env, cwd: work })).stdout;
    const glance = async (...args: string[]) => (await run('glance', [
      '--os-image-api-version', '2', '--os-image-url', server.url, '--os-auth-token', 'none', ...args,
    ], { env: glanceEnv, cwd: work })).stdout;
    const showJson = async (name: string) => JSON.parse(await openstack('image', 'show', '-f', 'json', name));

    before(async () => {
      work = await tempDir('outpost-cli-');
      server = await start(work);
      // glanceclient caches schemas under $HOME: each run gets its own HOME.
      glanceEnv = { ...process.env, HOME: work, PYTHONWARNINGS: 'ignore' };
      // glanceclient takes OS_AUTH_TYPE for a keystone plugin: only openstack gets these.
      env = { ...glanceEnv, OS_AUTH_TYPE: 'none', OS_ENDPOINT: server.url };
      imageBytes = randomBytes(3 * 1024 * 1024 + 17);
      imageFile = join(work, 'disk.img');
      await writeFile(imageFile, imageBytes);
    });
    after(async () => {
      await server?.stop();
      await rm(work, { recursive: true, force: true });
    });

    it('openstack image create --file uploads and the image becomes active with the right hashes', async () => {
      await openstack('image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', imageFile,
        '--property', 'os_distro=cirros', 'cli-image');
      const image = await showJson('cli-image');
      assert.equal(image.status, 'active');
      assert.equal(image.size, imageBytes.length);
      assert.equal(image.checksum, createHash('md5').update(imageBytes).digest('hex'));
      assert.equal(image.properties.os_hash_algo, 'sha512');
      assert.equal(image.properties.os_hash_value, createHash('sha512').update(imageBytes).digest('hex'));
      assert.equal(image.properties.os_distro, 'cirros');
    });

    it('openstack image list shows it', async () => {
      const list = JSON.parse(await openstack('image', 'list', '-f', 'json'));
      assert.ok(list.some((i: { Name: string; Status: string }) => i.Name === 'cli-image' && i.Status === 'active'));
    });

    it('openstack image set --property and --tag change it', async () => {
      await openstack('image', 'set', '--property', 'hw_disk_bus=scsi', '--tag', 'edge', '--tag', 'demo', 'cli-image');
      const image = await showJson('cli-image');
      assert.equal(image.properties.hw_disk_bus, 'scsi');
      assert.deepEqual([...image.tags].sort(), ['demo', 'edge']);
    });

    it('openstack image save downloads the same bytes', async () => {
      const out = join(work, 'saved.img');
      await openstack('image', 'save', '--file', out, 'cli-image');
      assert.ok((await readFile(out)).equals(imageBytes));
    });

    it('glance image-list, image-download and image-tag-update work', async () => {
      const id = (await showJson('cli-image')).id as string;
      assert.match(await glance('image-list'), new RegExp(id));
      const out = join(work, 'glance.img');
      await glance('image-download', '--file', out, id);
      assert.ok((await readFile(out)).equals(imageBytes));
      await glance('image-tag-update', id, 'from-glance');
      assert.ok((await showJson('cli-image')).tags.includes('from-glance'));
    });

    it('glance member-create adds a pending member to a shared image', async () => {
      const id = (await showJson('cli-image')).id as string;
      const out = await glance('member-create', id, 'project-b');
      assert.match(out, /project-b/);
      assert.match(out, /pending/);
      assert.match(await glance('member-list', '--image-id', id), /project-b/);
    });

    it('the client refuses bytes that do not match the recorded hashes', async () => {
      const id = (await showJson('cli-image')).id as string;
      const storeDir = server.storeDir;
      assert.ok((await readdir(storeDir)).includes(id));
      const corrupted = Buffer.from(imageBytes);
      corrupted[1000] ^= 0xff;
      await writeFile(join(storeDir, id), corrupted);
      await assert.rejects(openstack('image', 'save', '--file', join(work, 'bad.img'), 'cli-image'));
      await writeFile(join(storeDir, id), imageBytes);
    });

    // Debian's python3-openstackclient (6.0) has no `image metadef` commands; glanceclient's md-* do it all.
    it('glance md-* commands create, show, list and delete a metadata definitions namespace and its contents', async () => {
      const ns = 'OS::CLI::Test';
      await glance('md-namespace-create', ns, '--visibility', 'public', '--display-name', 'CLI test', '--description', 'made by glance');
      await glance('md-property-create', ns, '--name', 'x_mode', '--title', 'Mode', '--schema', '{"type": "string", "enum": ["a", "b"]}');
      await glance('md-object-create', ns, '--name', 'Limits', '--schema', '{"description": "an object", "properties": {"quota": {"title": "Quota", "type": "integer"}}}');
      await glance('md-tag-create', ns, '--name', 'gold');
      await glance('md-resource-type-associate', ns, '--name', 'OS::Glance::Image', '--prefix', 'hw_');

      const shown = await glance('md-namespace-show', ns);
      for (const expected of [/display_name\s*\|\s*CLI test/, /objects\s*\|\s*\["Limits"\]/, /properties\s*\|\s*\["x_mode"\]/, /tags\s*\|\s*\["gold"\]/, /resource_type_associations\s*\|\s*\["OS::Glance::Image"\]/]) {
        assert.match(shown, expected);
      }
      assert.match(await glance('md-namespace-list'), /OS::CLI::Test/);
      assert.match(await glance('md-property-show', ns, 'x_mode'), /enum\s*\|\s*\["a", "b"\]/);
      assert.match(await glance('md-object-property-show', ns, 'Limits', 'quota'), /type\s*\|\s*integer/);
      assert.match(await glance('md-namespace-resource-type-list', ns), /OS::Glance::Image\s*\|\s*hw_/);
      assert.match(await glance('md-resource-type-list'), /OS::Glance::Image/);
      // Without --append (glanceclient 3.6 fails on its own with --append), the tags are replaced.
      await glance('md-tag-create-multiple', ns, '--names', 'silver,bronze');
      const tags = await glance('md-tag-list', ns);
      assert.match(tags, /silver/);
      assert.doesNotMatch(tags, /gold/);
      await glance('md-tag-update', ns, 'bronze', '--name', 'copper');
      assert.match(await glance('md-tag-show', ns, 'copper'), /name\s*\|\s*copper/);
      await glance('md-object-delete', ns, 'Limits');
      await glance('md-property-delete', ns, 'x_mode');
      assert.doesNotMatch(await glance('md-namespace-show', ns), /Limits|x_mode/);
      await glance('md-namespace-delete', ns);
      assert.doesNotMatch(await glance('md-namespace-list'), /OS::CLI::Test/);
      await assert.rejects(glance('md-namespace-show', ns), /404|not found/i);
    });

    it('openstack image delete removes the image and its bytes', async () => {
      const id = (await showJson('cli-image')).id as string;
      await openstack('image', 'delete', 'cli-image');
      await assert.rejects(openstack('image', 'show', id));
      assert.ok(!(await readdir(server.storeDir)).includes(id));
    });
  });
}
