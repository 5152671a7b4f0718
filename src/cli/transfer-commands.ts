import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import type { TransferRecord } from '../core/site-report.ts';
import { clientOf, withApiOptions } from './api-client.ts';
import { CliError } from './cli-error.ts';
import { withFormat, type OutputFormat } from './output.ts';

const MB = 1e6;

/**
 * `outpost transfers [--watch] [--region [--image ID] [--state S]]`: the transfers of image bytes
 * to a site (GET /outpost/v1/transfers), one line each; with --region, every site's as each last
 * reported them (GET /outpost/v1/fleet/transfers, at central or through an edge), with the site;
 * with --watch, a progress bar per running transfer until none is left, then the lines.
 */
export function transfersCommand(print: (line: string) => void): Command {
  return withFormat(withApiOptions(new Command('transfers')))
    .description('transfers of image bytes to a site (admin): running ones, then the last ended ones')
    .option('--watch', 'draw a progress bar per running transfer until all have ended')
    .option('--region', 'every site\'s transfers, as each last reported them (with the site)')
    .option('--image <id>', 'with --region: only this image\'s')
    .addOption(new Option('--state <state>', 'with --region: only transfers in this state').choices(['running', 'done', 'failed']))
    .action(async (o: { watch?: boolean; region?: boolean; image?: string; state?: string; quiet?: boolean; format: OutputFormat }, cmd: Command) => {
      const api = clientOf(cmd);
      if (o.region !== true && (o.image !== undefined || o.state !== undefined)) throw new CliError('--image and --state go with --region.', 'usage');
      const query = new URLSearchParams();
      if (o.image !== undefined) query.set('image', o.image);
      if (o.state !== undefined) query.set('state', o.state);
      const path = o.region === true ? `/outpost/v1/fleet/transfers${query.size === 0 ? '' : `?${query}`}` : '/outpost/v1/transfers';
      const list = async () => ((await (await api.call('GET', path)).json()) as { transfers: (TransferRecord & { site?: string })[] }).transfers;
      let transfers = await list();
      if (o.watch === true && o.quiet !== true && o.format === 'table') transfers = await watch(transfers, list);
      if (o.format === 'json') {
        print(JSON.stringify(transfers, null, 2));
        return;
      }
      if (transfers.length === 0) {
        print('no transfers');
        return;
      }
      const site = (t: { site?: string }) => (o.region === true ? [t.site ?? ''] : []);
      print([...site({ site: 'site' }), 'image', 'state', 'method', 'MB', 'reused', 'zeros', 'fetched', 'refetched', 'resumes', 'MB/s', 'started'].join('\t'));
      for (const t of transfers) {
        print([
          ...site(t), t.image_id, t.error === null ? t.state : `${t.state} (${t.error})`, t.method, mb(t.planned), mb(t.reused), mb(t.zeros), mb(t.fetched), mb(t.refetched),
          String(t.resumes), mb(t.bytes_per_second), t.started_at,
        ].join('\t'));
      }
    });
}

/** Draws the running transfers until none is left; the list as it stands then. */
async function watch(first: TransferRecord[], list: () => Promise<TransferRecord[]>): Promise<TransferRecord[]> {
  const bars = new cliProgress.MultiBar({
    format: ' {bar} {percentage}% | {image} | {done}/{total} MB | {rate} MB/s | reused {reused} MB, resumes {resumes}',
    hideCursor: true,
    clearOnComplete: false,
  }, cliProgress.Presets.shades_classic);
  const drawn = new Map<string, cliProgress.SingleBar>();
  let transfers = first;
  try {
    for (;;) {
      for (const t of transfers) {
        const key = `${t.image_id} ${t.started_at}`;
        const done = t.reused + t.zeros + t.fetched;
        const total = Math.max(t.planned, done, 1);
        const payload = { image: t.image_id, done: mb(done), total: mb(total), rate: mb(t.bytes_per_second), reused: mb(t.reused), resumes: t.resumes };
        const bar = drawn.get(key);
        if (bar === undefined) {
          if (t.state === 'running') drawn.set(key, bars.create(total, done, payload));
        } else {
          bar.setTotal(total);
          bar.update(done, payload);
        }
      }
      if (!transfers.some((t) => t.state === 'running')) return transfers;
      await sleep(1000);
      transfers = await list();
    }
  } finally {
    bars.stop();
  }
}

function mb(bytes: number): string {
  return (bytes / MB).toFixed(1);
}
