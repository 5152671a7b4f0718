import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startSite } from '../../src/api/site.ts';
import { resolveConfig, type OutpostConfig } from '../../src/core/config.ts';
import { spawnServe as spawnServeProcess, type ServeProcess } from '../../src/cli/site-process.ts';

export const REPO_ROOT = new URL('../..', import.meta.url).pathname;

export interface TestSite {
  url: string;
  dataDir: string;
  /** fetch() against the site: `path` starts with '/'. */
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function tempDir(prefix = 'outpost-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * Starts a site in this process on 127.0.0.1 with a free port and its own data directory
 * (removed on close). `config` overrides configuration keys.
 */
export async function startTestSite(config: Record<string, unknown> = {}): Promise<TestSite> {
  const dataDir = await tempDir();
  const resolved: OutpostConfig = resolveConfig({
    flags: { listen: '127.0.0.1:0', data: dataDir, log_level: 'silent', storage_sync: false, auth: 'none', ...config },
  });
  const site = await startSite(resolved, pino({ level: 'silent' }));
  return {
    url: site.url,
    dataDir,
    request: (path, init) => fetch(`${site.url}${path}`, init),
    async close() {
      await site.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export type { ServeProcess };

/**
 * Runs `outpost serve ARGS` as its own process (the real binary, on this Node) and waits until it
 * prints the URL it serves at. Tests act through identity headers (`auth: none`) unless they say
 * otherwise (`--auth keystone`, or OUTPOST_AUTH in `env`).
 */
export async function spawnServe(args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  return spawnServeProcess(args, { env: { ...process.env, OUTPOST_LOG_LEVEL: 'warn', OUTPOST_AUTH: 'none', ...env } });
}
