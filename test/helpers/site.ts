import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startSite } from '../../src/api/site.ts';
import { SERVE_NODE_FLAGS } from '../../src/cli/runtime-flags.ts';
import { resolveConfig, type OutpostConfig } from '../../src/core/config.ts';

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
    flags: { listen: '127.0.0.1:0', data: dataDir, log_level: 'silent', storage_sync: false, ...config },
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

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs `outpost serve ARGS` as its own process (the real binary, on this Node) and waits until it
 * prints the URL it serves at.
 */
export async function spawnServe(args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, join(REPO_ROOT, 'bin/outpost.js'), 'serve', ...args], {
    env: { ...process.env, OUTPOST_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`outpost serve did not start:\n${out}`)), 20_000);
    const check = () => {
      const m = /serving the Glance v2 API at (http:\/\/\S+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`outpost serve exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    stop: (signal = 'SIGTERM') => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    }),
  };
}
