import { Command } from 'commander';
import { CliError } from './cli-error.ts';
import { ImageApi, apiOptions, withApiOptions } from './image-commands.ts';

/** `outpost site add NAME`: asks central for the credential site NAME presents to its parent. */
export function siteCommand(print: (line: string) => void): Command {
  const site = new Command('site').description('sites of the region');
  withApiOptions(site.command('add'))
    .description('issue the credential of a new site (central, admin; auth keystone): give it to the site as site_token')
    .argument('<name>', 'the site id, as the site is started with --site')
    .option('--ttl-days <days>', 'validity in days', '365')
    .action(async (name: string, o: { ttlDays: string }, cmd: Command) => {
      const days = Number(o.ttlDays);
      if (!Number.isFinite(days) || days <= 0) throw new CliError('--ttl-days must be a positive number');
      const api = new ImageApi(apiOptions(cmd));
      const res = await api.call('POST', `/outpost/v1/sites/${encodeURIComponent(name)}/credential`, { json: { ttl_seconds: Math.round(days * 86400) } });
      const body = await res.json() as { token: string; expires_at: string };
      print(`site ${name}: credential valid until ${body.expires_at}. Start the site with`);
      print(`  OUTPOST_SITE_TOKEN=${body.token}`);
    });
  return site;
}
