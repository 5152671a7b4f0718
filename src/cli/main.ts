import { readFile } from 'node:fs/promises';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { ConfigError, resolveConfig, type OutpostConfig } from '../core/config.ts';
import { StartupError } from '../core/startup-error.ts';
import { startSite } from '../api/site.ts';
import { CliError } from './cli-error.ts';
import { dbCommand } from './db-commands.ts';
import { demoCommand } from './demo.ts';
import { imageCommand } from './image-commands.ts';
import { keysCommand, siteCommand } from './site-commands.ts';
import { fleetCommand } from './fleet-commands.ts';
import { transfersCommand } from './transfer-commands.ts';
import { policyCommand } from './policy-commands.ts';
import { cacheCommand } from './cache-commands.ts';
import { statusCommand } from './status-command.ts';
import { EXIT_CODES } from './cli-error.ts';

/** The `outpost` command (DESIGN.md §3 command-line contract). */
async function loadConfig(file: string | undefined, flags: Record<string, unknown>): Promise<OutpostConfig> {
  let parsed: Record<string, unknown> | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new ConfigError([`config file ${file}: ${(e as Error).message}`]);
    }
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ConfigError([`config file ${file}: not valid JSON (${(e as Error).message})`]);
    }
  }
  return resolveConfig({ file: parsed, env: process.env, flags });
}

function serveFlags(o: Record<string, unknown>): Record<string, unknown> {
  const flags: Record<string, unknown> = {
    role: o.role, site: o.site, listen: o.listen, data: o.data, database_url: o.databaseUrl, staging_path: o.stagingPath, parent: o.parent, auth: o.auth, log_level: o.logLevel,
    insecure_auth_none: o.insecureAuthNone === true ? true : undefined,
    migrate_at_start: o.migrate === false ? false : undefined,
    public_url: o.publicUrl,
    tls_cert: o.tlsCert, tls_key: o.tlsKey, parent_ca: o.parentCa, sites_ca: o.sitesCa,
  };
  if (Array.isArray(o.store) && o.store.length > 0) flags.stores = o.store;
  if (Array.isArray(o.label) && o.label.length > 0) flags.labels = o.label;
  if (Array.isArray(o.peer) && o.peer.length > 0) flags.peers = o.peer;
  return flags;
}

const program = new Command('outpost')
  .description('Outpost: an OpenStack Image (Glance v2) service for edge clouds')
  .showHelpAfterError();

program.command('serve')
  .description('run a site')
  .option('--config <file>', 'JSON configuration file')
  .addOption(new Option('--role <role>', 'role of this site').choices(['central', 'edge']))
  .option('--site <id>', 'site id (default "central")')
  .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:9292)')
  .option('--data <dir>', 'data directory (default ./data)')
  .option('--database-url <url>', 'the catalog in PostgreSQL, postgres://USER:PASSWORD@HOST:PORT/DB (default: SQLite in the data directory)')
  .option('--staging-path <dir>', 'where import data is staged (default <data>/staging; several central nodes share one)')
  .option('--no-migrate', 'refuse to start on a catalog that needs migrations instead of applying them')
  .option('--parent <url>', 'parent site URL (edge role)')
  .option('--store <spec>', 'a store, ID=file:PATH or ID=s3://BUCKET[/PREFIX]?endpoint=URL&region=R; repeatable, the first is the default', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--label <key=value>', 'a label of this site; repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .option('--peer <site>', 'edge: a site it can reach directly, asked for image bytes while the parent cannot be; repeatable', (v: string, acc: string[]) => [...acc, v], [] as string[])
  .addOption(new Option('--auth <mode>', 'authentication (default keystone)').choices(['none', 'keystone']))
  .option('--insecure-auth-none', 'allow --auth none on an address other than loopback')
  .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
  .option('--public-url <url>', 'base URL clients reach this site at')
  .option('--tls-cert <file>', 'serve https with this certificate chain (PEM; with --tls-key; reloaded on SIGHUP)')
  .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
  .option('--parent-ca <file>', 'edge: CA bundle (PEM) the https parent is verified against (default: the system\'s trust store)')
  .option('--sites-ca <file>', 'central: CA bundle (PEM) the sites\' https URLs are verified against (default: the system\'s trust store)')
  .action(async (o: Record<string, unknown>) => {
    const config = await loadConfig(o.config as string | undefined, serveFlags(o));
    // stdout carries the structured log alone (JSON lines); what is for the person starting the
    // site (this line, the generated admin password, why a start failed) goes to stderr, never
    // into the log (docs/operations.md, "Logs").
    const logger = pino({ level: config.log_level });
    const site = await startSite(config, logger, { adminPassword: process.env.OUTPOST_ADMIN_PASSWORD });
    const password = site.generatedAdminPassword === undefined ? ''
      : `identity: created user "admin" (project "admin", domain "Default") with the password ${site.generatedAdminPassword}\n`
        + '  (shown only now, and never logged; change it with `openstack user set --password NEW admin`)\n';
    // One write, so that whoever waits for the first line gets the password with it.
    process.stderr.write(`outpost ${config.role} site "${config.site}" serving the Glance v2 API at ${site.url}\n${password}`);
    const stop = async () => {
      await site.close();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // Started by a supervising process over an IPC channel (outpost demo, the tests: see
    // src/cli/site-process.ts): the site stops when that process goes away.
    if (process.connected) process.once('disconnect', stop);
    // SIGHUP: a renewed certificate on disk is served to new connections; nothing else stops.
    if (config.tls_cert !== null) {
      process.on('SIGHUP', () => {
        site.reloadTls().catch((e: Error) => logger.error({ err: e.message }, 'TLS reload failed; still serving the previous certificate'));
      });
    }
  });

const configCommand = program.command('config').description('configuration tools');
configCommand.command('check')
  .description('validate a configuration file (with the environment applied) and print the result')
  .argument('<file>', 'JSON configuration file')
  .action(async (file: string) => {
    const config = await loadConfig(file, {});
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  });

program.addCommand(imageCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(demoCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(siteCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(keysCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(transfersCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(fleetCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(dbCommand((line) => process.stdout.write(`${line}\n`), loadConfig));
program.addCommand(policyCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(cacheCommand((line) => process.stdout.write(`${line}\n`)));
program.addCommand(statusCommand((line) => process.stdout.write(`${line}\n`)));

// Usage errors (an unknown option, a missing argument) exit 2, as configuration errors do.
const throwOnExit = (cmd: Command): void => {
  cmd.exitOverride();
  for (const sub of cmd.commands) throwOnExit(sub);
};
throwOnExit(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`outpost: ${e.message}\n`);
    process.exit(2);
  }
  if (e instanceof CliError) {
    process.stderr.write(`outpost: ${e.message}\n`);
    process.exit(EXIT_CODES[e.kind]);
  }
  if (e instanceof StartupError) {
    process.stderr.write(`outpost: ${e.message}\n`);
    process.exit(EXIT_CODES.failure);
  }
  // Commander has printed what was wrong (or the help, or the version, which exit 0).
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage);
  throw e;
}
