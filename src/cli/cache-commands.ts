import { Command } from 'commander';
import type { CacheListing } from '../cache/pull-through-images.ts';
import type { InventoryItem, SiteInventory } from '../core/ports.ts';
import { clientOf, withApiOptions } from './api-client.ts';
import { CliError } from './cli-error.ts';
import { table, withFormat, type OutputFormat } from './output.ts';

/**
 * `outpost cache list|pin|unpin` at one site (--url or OS_REGION_NAME picks it): what its cache
 * holds (Glance's GET /v2/cache, with the pins from the site's own inventory), and Outpost's pins
 * (PUT/DELETE /outpost/v1/cache/{id}/pin). Administrators only, as Glance's cache API.
 */
export function cacheCommand(print: (line: string) => void): Command {
  const cache = new Command('cache').description('a site\'s image cache: list, pin, unpin (admin)');
  withFormat(withApiOptions(cache.command('list')))
    .description('the images the site\'s cache holds and is fetching')
    .action(async (o: { format: OutputFormat }, cmd: Command) => {
      const client = clientOf(cmd);
      const listing = await client.json<CacheListing>('GET', '/v2/cache');
      const { site } = await client.json<{ site: string }>('GET', '/outpost/v1/status');
      const inventory = await client.json<SiteInventory>('GET', `/outpost/v1/sites/${encodeURIComponent(site)}/inventory`);
      const pinned = new Set(inventory.images.filter((i: InventoryItem) => i.state === 'pinned').map((i) => i.image_id));
      const rows = [
        ...listing.cached_images.map((c) => ({
          image_id: c.image_id, state: pinned.has(c.image_id) ? 'pinned' : 'cached', size: c.size, hits: c.hits,
          last_accessed: c.last_accessed === 0 ? null : new Date(c.last_accessed * 1000).toISOString(),
        })),
        ...listing.queued_images.map((id) => ({ image_id: id, state: 'queued', size: null, hits: null, last_accessed: null })),
      ];
      if (o.format === 'json') return print(JSON.stringify({ site, images: rows }, null, 2));
      if (rows.length === 0) return print(`site ${site}: the cache is empty`);
      for (const line of table(['image', 'state', 'size', 'hits', 'last accessed'], rows.map((r) => [r.image_id, r.state, r.size, r.hits, r.last_accessed]))) print(line);
    });
  withApiOptions(cache.command('pin'))
    .description('keep an image in the site\'s cache (fetching it if need be); never evicted while pinned')
    .argument('<image>', 'image id or name')
    .option('--until <time>', 'unpin by itself at this time (ISO 8601)')
    .action(async (ref: string, o: { until?: string }, cmd: Command) => {
      if (o.until !== undefined && Number.isNaN(Date.parse(o.until))) throw new CliError('--until must be a date and time (ISO 8601)', 'usage');
      const client = clientOf(cmd);
      const image = await client.image(ref);
      const res = await client.call('PUT', `/outpost/v1/cache/${image.id}/pin`, { json: { until: o.until ?? null } });
      print(`pinned ${image.id}${o.until === undefined ? '' : ` until ${o.until}`}${res.status === 202 ? ' (being fetched)' : ''}`);
    });
  withApiOptions(cache.command('unpin'))
    .description('let the site\'s cache evict an image again')
    .argument('<image>', 'image id or name')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      const client = clientOf(cmd);
      const image = await client.image(ref);
      await client.call('DELETE', `/outpost/v1/cache/${image.id}/pin`);
      print(`unpinned ${image.id}`);
    });
  return cache;
}
