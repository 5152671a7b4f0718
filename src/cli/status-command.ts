import { Command } from 'commander';
import { clientOf, withApiOptions } from './api-client.ts';
import { CliError } from './cli-error.ts';
import { fields, withFormat, type OutputFormat } from './output.ts';

interface SiteStatus {
  site: string;
  role: 'central' | 'edge';
  parent: string | null;
  last_seq: number;
  replication: null | {
    position: number;
    parent_seq: number | null;
    lag_changes: number | null;
    seconds_since_contact: number | null;
    last_error: string | null;
    audit: { last_at: string | null; last_mismatch: string | null; repairs: number };
  };
}

/**
 * `outpost status`: one site's role, parent and replica (GET /outpost/v1/status). Exit status 0
 * when it is in step; 6 (degraded) when an edge has not heard from its parent for longer than
 * `--max-silence` seconds or its replica is more than `--max-lag` changes behind — a check for
 * monitoring scripts.
 */
export function statusCommand(print: (line: string) => void): Command {
  return withFormat(withApiOptions(new Command('status')))
    .description('a site\'s role, parent and how far its replica is behind; exit 6 when cut off or lagging')
    .option('--max-silence <seconds>', 'degraded when the parent was last heard from longer ago', '60')
    .option('--max-lag <changes>', 'degraded when the replica is more changes behind', '1000')
    .action(async (o: { format: OutputFormat; maxSilence: string; maxLag: string }, cmd: Command) => {
      const s = await clientOf(cmd).json<SiteStatus>('GET', '/outpost/v1/status');
      const r = s.replication;
      const problems: string[] = [];
      if (r !== null) {
        if (r.seconds_since_contact === null || r.seconds_since_contact > Number(o.maxSilence)) {
          problems.push(r.seconds_since_contact === null ? 'never heard from its parent' : `cut off from its parent for ${Math.round(r.seconds_since_contact)} s`);
        }
        if (r.lag_changes !== null && r.lag_changes > Number(o.maxLag)) problems.push(`${r.lag_changes} changes behind`);
      }
      if (o.format === 'json') print(JSON.stringify({ ...s, healthy: problems.length === 0, problems }, null, 2));
      else {
        for (const line of fields({
          site: s.site, role: s.role, parent: s.parent ?? '-', 'change log at': s.last_seq,
          ...(r === null ? {} : {
            'replica at': `${r.position} of ${r.parent_seq ?? '?'} (${r.lag_changes ?? '?'} behind)`,
            'parent heard': r.seconds_since_contact === null ? 'never' : `${Math.round(r.seconds_since_contact)} s ago`,
            'last error': r.last_error ?? '-',
            audit: r.audit.last_at === null ? 'not yet' : `${r.audit.last_at}, ${r.audit.repairs} repairs${r.audit.last_mismatch === null ? '' : `, last mismatch: ${r.audit.last_mismatch}`}`,
          }),
          health: problems.length === 0 ? 'in step' : problems.join('; '),
        })) print(line);
      }
      if (problems.length > 0) throw new CliError(`site ${s.site} is degraded: ${problems.join('; ')}`, 'degraded');
    });
}
