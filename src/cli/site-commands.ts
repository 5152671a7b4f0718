import { Command } from 'commander';
import { CliError } from './cli-error.ts';
import { ImageApi, apiOptions, withApiOptions } from './image-commands.ts';
import type { SiteRemovalReport } from '../core/site-removal.ts';

/**
 * `outpost site add NAME`: asks central for the credential site NAME presents to its parent.
 * `outpost site remove NAME`: takes site NAME out of the region (DELETE /outpost/v1/sites/NAME).
 */
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
  withApiOptions(site.command('remove'))
    .description('remove a site from the region (central, admin): its endpoints, credential, inventory and the copies in its stores')
    .argument('<name>', 'the site id')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const res = await new ImageApi(apiOptions(cmd)).call('DELETE', `/outpost/v1/sites/${encodeURIComponent(name)}`);
      const r = await res.json() as SiteRemovalReport;
      print(`removed site ${name} (stores ${r.stores.join(', ')}${r.credential_revoked ? '; credential revoked' : ''})`);
      if (r.images_with_copy_removed.length > 0) print(`images that lost their copy at ${name} but keep another: ${r.images_with_copy_removed.join(' ')}`);
      if (r.images_without_copy.length > 0) print(`images whose only copy was at ${name}, now queued (upload their data again): ${r.images_without_copy.join(' ')}`);
    });
  return site;
}

/** `outpost keys list|rotate|remove KID`: central's token signing keys (admin; auth keystone). */
export function keysCommand(print: (line: string) => void): Command {
  const keys = new Command('keys').description('the keys central signs tokens with');
  withApiOptions(keys.command('list')).description('list the signing keys (active and retired)').action(async (_o: unknown, cmd: Command) => {
    const res = await new ImageApi(apiOptions(cmd)).call('GET', '/outpost/v1/signing-keys');
    for (const k of ((await res.json()) as { signing_keys: { kid: string; state: string; created_at: string }[] }).signing_keys) {
      print(`${k.kid}  ${k.state.padEnd(7)}  ${k.created_at}`);
    }
  });
  withApiOptions(keys.command('rotate')).description('sign new tokens with a new key; the old one keeps verifying its tokens').action(async (_o: unknown, cmd: Command) => {
    const res = await new ImageApi(apiOptions(cmd)).call('POST', '/outpost/v1/signing-keys/rotate');
    print(`new active key ${((await res.json()) as { kid: string }).kid}`);
  });
  withApiOptions(keys.command('remove')).description('remove a retired key: its tokens are refused at every site once the change arrives')
    .argument('<kid>', 'the key id').action(async (kid: string, _o: unknown, cmd: Command) => {
      await new ImageApi(apiOptions(cmd)).call('DELETE', `/outpost/v1/signing-keys/${encodeURIComponent(kid)}`);
      print(`removed key ${kid}`);
    });
  return keys;
}
