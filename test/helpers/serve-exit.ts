import { spawn } from 'node:child_process';
import { SERVE_NODE_FLAGS } from '../../src/cli/runtime-flags.ts';
import { REPO_ROOT } from './site.ts';

export interface ServeExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `outpost serve ARGS` for a start that is expected to fail, and resolves with its exit code
 * and what it printed on each stream. A process still running after `timeoutMs` is killed and the
 * promise rejects (the start did not fail).
 */
export async function serveUntilExit(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<ServeExit> {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, `${REPO_ROOT}bin/outpost.js`, 'serve', ...args], {
    env: { ...process.env, OUTPOST_LOG_LEVEL: 'warn', OUTPOST_AUTH: 'none', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`outpost serve ${args.join(' ')} was still running after ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
