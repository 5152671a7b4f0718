import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SERVE_NODE_FLAGS } from './runtime-flags.ts';

const BIN = fileURLToPath(new URL('../../bin/outpost.js', import.meta.url));

export interface ServeProcess {
  /** The URL the site printed it serves at. */
  url: string;
  child: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** What it printed on stdout so far: the JSON log. */
  stdout(): string;
  /** What it printed on stderr so far: the lines for the person who started it. */
  stderr(): string;
  /**
   * Sends `signal` (default SIGTERM) and resolves with the exit code once the process is gone;
   * SIGKILL follows if it has not exited within `graceMs` (default 15 s).
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export interface SpawnServeOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each piece of stderr (e.g. to relay it). */
  onStderr?: (text: string) => void;
  startTimeoutMs?: number;
}

/**
 * Runs `outpost serve ARGS` as its own process, on this Node with the flags serve is meant to run
 * with, and resolves once it prints the URL it serves at. For tests, benchmarks and `outpost demo`.
 * The child is connected by an IPC channel, which `outpost serve` takes as its supervisor: it stops
 * when this process goes away, however that happens (a test runner's timeout, kill -9), so no site
 * outlives whoever started it. The channel does not keep this process alive.
 */
export async function spawnServe(args: readonly string[], opts: SpawnServeOptions = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, BIN, 'serve', ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.channel?.unref();
  let out = '';
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    out += d;
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
    stderr += d;
    opts.onStderr?.(String(d));
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`outpost serve did not start:\n${out}`));
    }, opts.startTimeoutMs ?? 60_000);
    // The line is on stderr (stdout carries the JSON log).
    const check = () => {
      const m = /serving the Glance v2 API at (https?:\/\/\S+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        resolve(m[1]);
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`outpost serve exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    stop: (signal = 'SIGTERM', graceMs = 15_000) => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', (code) => {
        clearTimeout(kill);
        resolve(code);
      });
      child.kill(signal);
    }),
  };
}
