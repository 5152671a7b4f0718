import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import type { Convergence, FleetEntry } from '../core/fleet-state.ts';
import type { FleetPage } from '../placement/fleet.ts';
import { clientOf, withApiOptions } from './api-client.ts';
import { withFormat } from './output.ts';

const MB = 1e6;
const BAR: cliProgress.Options = { barsize: 20, barCompleteString: '█'.repeat(20), barIncompleteString: '░'.repeat(20), barGlue: '' };

/**
 * `outpost fleet`: where every copy the placement policies want stands (GET /outpost/v1/fleet at
 * central, every page, filtered as its flags say): one line per (image, site) with a progress
 * bar, then convergence per policy and per site; `-f json` prints the entries and the convergence
 * as JSON.
 */
export function fleetCommand(print: (line: string) => void): Command {
  return withFormat(withApiOptions(new Command('fleet')))
    .description('where each copy the placement policies want stands, per image and site (admin)')
    .option('--image <id>', 'only this image')
    .option('--site <id>', 'only this site')
    .option('--policy <name>', 'only the copies this policy wants')
    .addOption(new Option('--state <state>', 'only copies in this state').choices(['pending', 'transferring', 'held', 'failed']))
    .option('--tag <tag>', 'only images with this tag (repeat: with every one)', (v: string, all: string[] = []) => [...all, v])
    .option('--site-labels <selector>', 'only sites whose labels match, e.g. region=eu,tier!=far')
    .action(async (o: { image?: string; site?: string; policy?: string; state?: string; tag?: string[]; siteLabels?: string; format: 'table' | 'json' }, cmd: Command) => {
      const api = clientOf(cmd);
      const entries: FleetEntry[] = [];
      let page: FleetPage | undefined;
      do {
        const q = new URLSearchParams({ limit: '1000' });
        for (const [k, v] of Object.entries({ image: o.image, site: o.site, policy: o.policy, state: o.state, site_labels: o.siteLabels, marker: page?.next ?? undefined })) {
          if (v !== undefined) q.set(k, v);
        }
        for (const tag of o.tag ?? []) q.append('tag', tag);
        page = await (await api.call('GET', `/outpost/v1/fleet?${q}`)).json() as FleetPage;
        entries.push(...page.fleet);
      } while (page.next !== null);
      if (o.format === 'json') {
        print(JSON.stringify({ fleet: entries, convergence: page.convergence, drift: page.drift }, null, 2));
        return;
      }
      if (entries.length === 0) print('no copies wanted');
      else print(['image', 'site', 'mode', 'state', 'progress', 'MB', 'MB/s', 'since', 'reason'].join('\t'));
      for (const e of entries) {
        const done = e.bytes_total === 0 ? 1 : e.bytes_done / e.bytes_total;
        print([
          e.image_name ?? e.image_id, e.site, e.mode, e.state, `${cliProgress.Format.BarFormat(done, BAR)} ${Math.floor(done * 100)}%`,
          `${mb(e.bytes_done)}/${mb(e.bytes_total)}`, e.bytes_per_second === null ? '' : mb(e.bytes_per_second), e.since ?? '', e.reason ?? '',
        ].join('\t'));
      }
      const line = (what: string, c: Convergence) => print(`${what} ${c.id}: ${c.held}/${c.desired} held (${c.percent}%)`);
      for (const c of page.convergence.policies) line('policy', c);
      for (const c of page.convergence.sites) line('site', c);
      for (const d of page.drift) if (d.lost + d.extra > 0) print(`drift at ${d.site}: ${d.lost} lost copies fetched again, ${d.extra} extra copies deleted (last check ${d.checked_at ?? 'never'})`);
    });
}

function mb(bytes: number): string {
  return (bytes / MB).toFixed(1);
}
