import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { apiOptions, OutpostClient, withApiOptions, type ImageBody } from './api-client.ts';
import { CliError } from './cli-error.ts';

/**
 * Operator verbs for image placement without the glance CLI: `outpost image copy` and
 * `outpost image import`, which start an import and follow its task with a progress bar until
 * it ends. They speak the Glance v2 API of any Outpost site (or Glance).
 */

const MiB = 1024 * 1024;

function storeList(value: unknown): string[] {
  return typeof value === 'string' && value !== '' ? value.split(',') : [];
}

/**
 * Follows the task started by the import call with `requestId` until it ends, drawing bytes
 * copied over all target stores. Returns the final image; throws CliError when the task failed.
 */
async function follow(api: OutpostClient, imageId: string, requestId: string, targets: number, quiet: boolean): Promise<ImageBody> {
  const bar = quiet ? undefined : new cliProgress.SingleBar({
    format: ' {bar} {percentage}% | {done}/{total} MiB | {stores} | {state}',
    hideCursor: true,
    clearOnComplete: false,
  }, cliProgress.Presets.shades_classic);
  let started = false;
  try {
    for (;;) {
      const image = await api.image(imageId);
      const task = (await api.tasks(imageId)).find((t) => t.request_id === requestId);
      const sizeMiB = Math.max(1, Math.ceil((image.size ?? 0) / MiB));
      const total = sizeMiB * Math.max(1, targets);
      const pending = storeList(image.os_glance_importing_to_stores).length;
      const finished = Math.max(0, targets - pending);
      const current = Number(/(\d+) MiB/.exec(task?.message ?? '')?.[1] ?? 0);
      const done = Math.min(total, finished * sizeMiB + (pending > 0 ? Math.min(current, sizeMiB) : 0));
      const payload = { done, total, stores: image.stores ?? '-', state: task?.status ?? 'waiting' };
      if (bar !== undefined) {
        if (!started) bar.start(total, done, payload);
        else {
          bar.setTotal(total);
          bar.update(done, payload);
        }
      }
      started = true;
      if (task !== undefined && (task.status === 'success' || task.status === 'failure')) {
        if (task.status === 'failure') throw new CliError(`import failed: ${task.message}`);
        if (bar !== undefined) bar.update(total, payload);
        return image;
      }
      await sleep(500);
    }
  } finally {
    bar?.stop();
  }
}

function summary(image: ImageBody): string {
  const failed = storeList(image.os_glance_failed_import);
  return `image ${image.id} (${image.name ?? 'unnamed'}) is ${image.status} in stores: ${image.stores ?? 'none'}`
    + (failed.length > 0 ? `; failed stores: ${failed.join(',')}` : '');
}

async function startImport(api: OutpostClient, image: ImageBody, body: Record<string, unknown>): Promise<string> {
  const res = await api.call('POST', `/v2/images/${image.id}/import`, { json: body });
  return res.headers.get('x-openstack-request-id') ?? '';
}

export function imageCommand(print: (line: string) => void): Command {
  const image = new Command('image').description('copy and import images, following the task with a progress bar');

  withApiOptions(image.command('copy'))
    .description('copy an active image to more stores (copy-image import; admin)')
    .argument('<image>', 'image id or name')
    .option('--stores <ids>', 'comma-separated target stores')
    .option('--all-stores', 'every store that does not hold the image yet')
    .option('--allow-failure', 'keep the copies that succeed when another store fails (all_stores_must_succeed=false)')
    .action(async (ref: string, o: { stores?: string; allStores?: boolean; allowFailure?: boolean }, cmd: Command) => {
      if ((o.stores === undefined) === (o.allStores !== true)) throw new CliError('give either --stores or --all-stores');
      const opts = apiOptions(cmd);
      const api = new OutpostClient(opts);
      const img = await api.image(ref);
      const body: Record<string, unknown> = { method: { name: 'copy-image' }, all_stores_must_succeed: o.allowFailure !== true };
      let targets: number;
      if (o.allStores === true) {
        body.all_stores = true;
        const info = await (await api.call('GET', '/v2/info/stores')).json() as { stores: { id: string; 'read-only'?: string }[] };
        targets = info.stores.filter((s) => s['read-only'] !== 'true' && !storeList(img.stores).includes(s.id)).length;
      } else {
        body.stores = o.stores!.split(',').map((s) => s.trim()).filter(Boolean);
        targets = (body.stores as string[]).length;
      }
      const requestId = await startImport(api, img, body);
      print(summary(await follow(api, img.id, requestId, targets, opts.quiet === true)));
    });

  withApiOptions(image.command('import'))
    .description('import data into a queued image: glance-direct (--file), web-download (--uri) or glance-download')
    .argument('<image>', 'image id or name')
    .addOption(new Option('--method <method>', 'import method').choices(['glance-direct', 'web-download', 'glance-download']).makeOptionMandatory())
    .option('--file <path>', 'glance-direct: the file to stage')
    .option('--uri <uri>', 'web-download: the URL the site fetches')
    .option('--region <name>', 'glance-download: the region to download from')
    .option('--remote-image <id>', 'glance-download: the image id in that region')
    .option('--stores <ids>', 'comma-separated target stores (default: the default store)')
    .option('--all-stores', 'every writable store')
    .option('--allow-failure', 'succeed when at least one store does (all_stores_must_succeed=false)')
    .action(async (ref: string, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const opts = apiOptions(cmd);
      const api = new OutpostClient(opts);
      const img = await api.image(ref);
      const method: Record<string, unknown> = { name: o.method };
      if (o.method === 'glance-direct') {
        if (typeof o.file !== 'string') throw new CliError('glance-direct needs --file');
        await stage(api, img.id, o.file, opts.quiet === true);
      } else if (o.method === 'web-download') {
        if (typeof o.uri !== 'string') throw new CliError('web-download needs --uri');
        method.uri = o.uri;
      } else {
        if (typeof o.region !== 'string' || typeof o.remoteImage !== 'string') {
          throw new CliError('glance-download needs --region and --remote-image');
        }
        method.glance_region = o.region;
        method.glance_image_id = o.remoteImage;
      }
      const body: Record<string, unknown> = { method, all_stores_must_succeed: o.allowFailure !== true };
      let targets = 1;
      if (o.allStores === true) {
        body.all_stores = true;
        const info = await (await api.call('GET', '/v2/info/stores')).json() as { stores: { 'read-only'?: string }[] };
        targets = info.stores.filter((s) => s['read-only'] !== 'true').length;
      } else if (typeof o.stores === 'string') {
        body.stores = o.stores.split(',').map((s) => s.trim()).filter(Boolean);
        targets = (body.stores as string[]).length;
      }
      const requestId = await startImport(api, img, body);
      print(summary(await follow(api, img.id, requestId, targets, opts.quiet === true)));
    });

  return image;
}

/** PUT /v2/images/{id}/stage with an upload progress bar. */
async function stage(api: OutpostClient, id: string, file: string, quiet: boolean): Promise<void> {
  const size = (await stat(file).catch(() => { throw new CliError(`cannot read ${file}`); })).size;
  const bar = quiet ? undefined : new cliProgress.SingleBar({
    format: ' staging {bar} {percentage}% | {value}/{total} MiB', hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  bar?.start(Math.max(1, Math.ceil(size / MiB)), 0);
  let sent = 0;
  const counted = Readable.toWeb(createReadStream(file, { highWaterMark: MiB }).on('data', (chunk) => {
    sent += chunk.length;
    bar?.update(Math.floor(sent / MiB));
  })) as ReadableStream;
  try {
    await api.call('PUT', `/v2/images/${id}/stage`, {
      body: counted, headers: { 'content-type': 'application/octet-stream', 'x-openstack-image-size': String(size) },
    });
    bar?.update(Math.max(1, Math.ceil(size / MiB)));
  } finally {
    bar?.stop();
  }
}
