import { Command } from 'commander';
import { CliError } from './cli-error.ts';
import { clientOf, withApiOptions } from './api-client.ts';
import { fields, table, withFormat, type OutputFormat } from './output.ts';
import type { Site, SiteInventory } from '../core/ports.ts';
import type { SiteRemovalReport } from '../core/site-removal.ts';

/** Seconds since an ISO time, rounded, for people. */
function ago(iso: string | null | undefined, now = Date.now()): string {
  if (iso === null || iso === undefined) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/**
 * `outpost site list|show|add|remove`: the region's sites as central knows them (any site answers
 * list and show from its replica; the last contact is central's), a site's credential, and taking
 * a site out of the region (DELETE /outpost/v1/sites/NAME).
 */
export function siteCommand(print: (line: string) => void): Command {
  const site = new Command('site').description('sites of the region');
  withFormat(withApiOptions(site.command('list')))
    .description('the region\'s sites: parent, URL, stores, labels, last contact and replica lag')
    .action(async (o: { format: OutputFormat }, cmd: Command) => {
      const { sites } = await clientOf(cmd).json<{ sites: Site[] }>('GET', '/outpost/v1/sites');
      if (o.format === 'json') return print(JSON.stringify(sites, null, 2));
      const labels = (l: Record<string, string>) => Object.entries(l).map(([k, v]) => `${k}=${v}`).join(',');
      for (const line of table(['site', 'parent', 'url', 'stores', 'labels', 'last contact', 'lag'], sites.map((x) => [
        x.id, x.parent ?? '-', x.public_url, x.stores, labels(x.labels), x.parent === null ? '-' : ago(x.last_contact), x.lag_changes ?? '-',
      ]))) print(line);
    });
  withFormat(withApiOptions(site.command('show')))
    .description('one site: its registration, and what it holds (its last inventory report)')
    .argument('<name>', 'the site id')
    .action(async (name: string, o: { format: OutputFormat }, cmd: Command) => {
      const client = clientOf(cmd);
      const found = await client.json<Site>('GET', `/outpost/v1/sites/${encodeURIComponent(name)}`);
      const inventory = await client.json<SiteInventory>('GET', `/outpost/v1/sites/${encodeURIComponent(name)}/inventory`).catch(() => undefined);
      if (o.format === 'json') return print(JSON.stringify({ site: found, inventory: inventory ?? null }, null, 2));
      for (const line of fields({
        site: found.id, parent: found.parent ?? '-', url: found.public_url, stores: found.stores,
        labels: Object.entries(found.labels).map(([k, v]) => `${k}=${v}`), version: found.version, registered: found.registered_at,
        'last contact': found.parent === null ? '-' : `${found.last_contact} (${ago(found.last_contact)})`, 'lag (changes)': found.lag_changes ?? '-',
        images: inventory === undefined ? 'unknown' : `${inventory.images.length} (${inventory.images.filter((i) => i.state === 'stored').length} stored, `
          + `${inventory.images.filter((i) => i.state !== 'stored').length} cached), reported ${ago(inventory.reported_at)}`,
      })) print(line);
    });
  withApiOptions(site.command('add'))
    .description('issue the credential of a new site (central, admin; auth keystone): give it to the site as site_token')
    .argument('<name>', 'the site id, as the site is started with --site')
    .option('--ttl-days <days>', 'validity in days', '365')
    .action(async (name: string, o: { ttlDays: string }, cmd: Command) => {
      const days = Number(o.ttlDays);
      if (!Number.isFinite(days) || days <= 0) throw new CliError('--ttl-days must be a positive number');
      const api = clientOf(cmd);
      const res = await api.call('POST', `/outpost/v1/sites/${encodeURIComponent(name)}/credential`, { json: { ttl_seconds: Math.round(days * 86400) } });
      const body = await res.json() as { token: string; expires_at: string };
      print(`site ${name}: credential valid until ${body.expires_at}. Start the site with`);
      print(`  OUTPOST_SITE_TOKEN=${body.token}`);
    });
  withApiOptions(site.command('remove'))
    .description('remove a site from the region (central, admin): its endpoints, credential, inventory and the copies in its stores')
    .argument('<name>', 'the site id')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const res = await clientOf(cmd).call('DELETE', `/outpost/v1/sites/${encodeURIComponent(name)}`);
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
  withFormat(withApiOptions(keys.command('list'))).description('list the signing keys (active and retired)').action(async (o: { format: OutputFormat }, cmd: Command) => {
    const keys = (await clientOf(cmd).json<{ signing_keys: { kid: string; state: string; created_at: string }[] }>('GET', '/outpost/v1/signing-keys')).signing_keys;
    if (o.format === 'json') return print(JSON.stringify(keys, null, 2));
    for (const line of table(['kid', 'state', 'created'], keys.map((k) => [k.kid, k.state, k.created_at]))) print(line);
  });
  withApiOptions(keys.command('rotate')).description('sign new tokens with a new key; the old one keeps verifying its tokens').action(async (_o: unknown, cmd: Command) => {
    const res = await clientOf(cmd).call('POST', '/outpost/v1/signing-keys/rotate');
    print(`new active key ${((await res.json()) as { kid: string }).kid}`);
  });
  withApiOptions(keys.command('remove')).description('remove a retired key: its tokens are refused at every site once the change arrives')
    .argument('<kid>', 'the key id').action(async (kid: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).call('DELETE', `/outpost/v1/signing-keys/${encodeURIComponent(kid)}`);
      print(`removed key ${kid}`);
    });
  return keys;
}
