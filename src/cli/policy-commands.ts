import { Command, Option } from 'commander';
import type { PolicyRecord } from '../core/placement-policy.ts';
import { clientOf, withApiOptions, type OutpostClient } from './api-client.ts';
import { CliError } from './cli-error.ts';
import { fields, table, withFormat, type OutputFormat } from './output.ts';

/** The policy named `ref` (its name, or its id). */
async function policyOf(client: OutpostClient, ref: string): Promise<PolicyRecord> {
  const { policies } = await client.json<{ policies: PolicyRecord[] }>('GET', '/outpost/v1/policies');
  const found = policies.find((p) => p.id === ref) ?? policies.find((p) => p.name === ref);
  if (found === undefined) throw new CliError(`no placement policy named or with id "${ref}"`, 'not-found');
  return found;
}

const where = (p: PolicyRecord) => ('ids' in p.sites ? `sites ${p.sites.ids.join(',')}` : `labels ${p.sites.labels}`);
const which = (p: PolicyRecord) => [
  ...p.images.tags.map((t) => `tag ${t}`),
  ...Object.entries(p.images.properties).map(([k, v]) => `${k}=${v}`),
  ...(p.images.visibility === null ? [] : [`visibility ${p.images.visibility}`]),
].join(', ') || 'every image';

function show(print: (line: string) => void, p: PolicyRecord, format: OutputFormat): void {
  if (format === 'json') return print(JSON.stringify(p, null, 2));
  for (const line of fields({ id: p.id, name: p.name, images: which(p), sites: where(p), mode: p.mode, priority: p.priority, created: p.created_at, updated: p.updated_at })) print(line);
}

/**
 * `outpost policy create|list|show|delete`: the region's placement policies (/outpost/v1/policies;
 * administrators write them at central, or through any site, which passes the write up).
 */
export function policyCommand(print: (line: string) => void): Command {
  const policy = new Command('policy').description('placement policies: which images which sites keep (admin to change)');
  const collect = (v: string, all: string[]) => [...all, v];
  withFormat(withApiOptions(policy.command('create')))
    .description('create a placement policy')
    .argument('<name>', 'the policy\'s name (unique)')
    .option('--tag <tag>', 'images with this tag (repeatable: all must hold)', collect, [])
    .option('--property <key=value>', 'images with this property (repeatable)', collect, [])
    .addOption(new Option('--visibility <visibility>', 'images with this visibility').choices(['public', 'community', 'shared', 'private']))
    .option('--labels <selector>', 'sites whose labels match (Kubernetes selector syntax, e.g. "region=eu,tier!=far")')
    .option('--sites <ids>', 'these sites (comma-separated ids)')
    .addOption(new Option('--mode <mode>', 'replicate: a copy in the site\'s store; cache: pinned in its cache').choices(['replicate', 'cache']).default('replicate'))
    .option('--priority <n>', 'higher is transferred first (0-100)', '50')
    .action(async (name: string, o: { tag: string[]; property: string[]; visibility?: string; labels?: string; sites?: string; mode: string; priority: string; format: OutputFormat }, cmd: Command) => {
      if ((o.labels === undefined) === (o.sites === undefined)) throw new CliError('give either --labels or --sites', 'usage');
      const properties: Record<string, string> = {};
      for (const kv of o.property) {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new CliError(`--property ${kv}: expected key=value`, 'usage');
        properties[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      const priority = Number(o.priority);
      if (!Number.isInteger(priority)) throw new CliError('--priority must be an integer', 'usage');
      const created = await clientOf(cmd).json<PolicyRecord>('POST', '/outpost/v1/policies', {
        json: {
          name,
          images: { tags: o.tag, properties, visibility: o.visibility ?? null },
          sites: o.labels !== undefined ? { labels: o.labels } : { ids: o.sites!.split(',').filter((s) => s !== '') },
          mode: o.mode,
          priority,
        },
      });
      show(print, created, o.format);
    });
  withFormat(withApiOptions(policy.command('list')))
    .description('list the placement policies')
    .action(async (o: { format: OutputFormat }, cmd: Command) => {
      const { policies } = await clientOf(cmd).json<{ policies: PolicyRecord[] }>('GET', '/outpost/v1/policies');
      if (o.format === 'json') return print(JSON.stringify(policies, null, 2));
      for (const line of table(['name', 'images', 'sites', 'mode', 'priority', 'id'], policies.map((p) => [p.name, which(p), where(p), p.mode, p.priority, p.id]))) print(line);
    });
  withFormat(withApiOptions(policy.command('show')))
    .description('show a placement policy')
    .argument('<policy>', 'its name or id')
    .action(async (ref: string, o: { format: OutputFormat }, cmd: Command) => show(print, await policyOf(clientOf(cmd), ref), o.format));
  withApiOptions(policy.command('delete'))
    .description('delete a placement policy (the copies it made are let go)')
    .argument('<policy>', 'its name or id')
    .action(async (ref: string, _o: unknown, cmd: Command) => {
      const client = clientOf(cmd);
      const p = await policyOf(client, ref);
      await client.call('DELETE', `/outpost/v1/policies/${p.id}`);
      print(`deleted policy ${p.name} (${p.id})`);
    });
  return policy;
}
