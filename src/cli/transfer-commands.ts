import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import type { TransferRecord } from '../transfer/transfer-log.ts';
import { clientOf, withApiOptions } from './api-client.ts';
import { withFormat, type OutputFormat } from './output.ts';

const MB = 1e6;

/**
 * `outpost transfers [--watch]`: the transfers of image bytes to a site (GET
 * /outpost/v1/transfers), one line each; with --watch, a progress bar per running transfer until
 * none is left, then the lines.
 */
export function transfersCommand(print: (line: string) => void): Command {
  return withFormat(withApiOptions(new Command('transfers')))
    .description('transfers of image bytes to a site (admin): running ones, then the last ended ones')
    .option('--watch', 'draw a progress bar per running transfer until all have ended')
    .action(async (o: { watch?: boolean; quiet?: boolean; format: OutputFormat }, cmd: Command) => {
      const api = clientOf(cmd);
      const list = async () => ((await (await api.call('GET', '/outpost/v1/transfers')).json()) as { transfers: TransferRecord[] }).transfers;
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
      print(['image', 'state', 'method', 'MB', 'reused', 'zeros', 'fetched', 'refetched', 'resumes', 'MB/s', 'started'].join('\t'));
      for (const t of transfers) {
        print([
          t.image_id, t.error === null ? t.state : `${t.state} (${t.error})`, t.method, mb(t.planned), mb(t.reused), mb(t.zeros), mb(t.fetched), mb(t.refetched),
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
