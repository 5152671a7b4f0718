/**
 * Bandwidth-limited links for benchmarks: FaultProxy (test-support/fault-proxy.ts) instances with
 * `bandwidth(bytesPerSecond)`, in a process of their own, started with real-time scheduling
 * (`chrt -f 10`) where the system allows it.
 *
 * Why: the proxy paces a link with timers and lets only ~64 KiB go through late, so a proxy that
 * waits for a CPU loses bandwidth for good. On a small machine, the process under test (e.g. an
 * edge hashing what it receives) takes the CPUs the proxy needs, and the link slows down because
 * of the load at one end — which a real WAN link does not do. Measured on 2 vCPUs at 100 MB/s:
 * in the benchmark's own process the link gave the edge 10-20 % less than it gave curl; in a
 * process of its own with real-time priority, the same to both.
 *
 *   node bench/link.ts HOST PORT BYTES_PER_SECOND COUNT   (prints the proxies' URLs as JSON)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FaultProxy } from '../test-support/fault-proxy.ts';
import type { Cleanup } from './procs.ts';

export interface ShapedLinks {
  /** One URL per link, each forwarding to the same target through its own proxy. */
  urls: string[];
  /** How the links' process is scheduled, for the report. */
  scheduling: string;
  stop(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

/**
 * `count` links to `target`, each limited to `bytesPerSecond` in each direction (a link of its
 * own: they do not share the limit), in one child process; real-time scheduled if `chrt` may.
 */
export async function startShapedLinks(target: { host: string; port: number }, bytesPerSecond: number, count: number, cleanup: Cleanup): Promise<ShapedLinks> {
  const args = [SELF, target.host, String(target.port), String(bytesPerSecond), String(count)];
  const attempts: [string, string[], string][] = [
    ['chrt', ['-f', '10', process.execPath, ...args], 'real-time (chrt -f 10)'],
    [process.execPath, args, 'normal priority (chrt -f was refused)'],
  ];
  for (const [cmd, argv, scheduling] of attempts) {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
    const urls = await firstLine(child);
    if (urls === undefined) continue;
    const stop = cleanup.add('stop the shaped links', () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.stdin!.end();
    }));
    return { urls: JSON.parse(urls) as string[], scheduling, stop };
  }
  throw new Error('could not start the shaped links');
}

/** The child's first line of output, or undefined if it exits first. */
function firstLine(child: ChildProcess): Promise<string | undefined> {
  return new Promise((resolve) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      resolve(out.slice(0, nl));
    };
    const onExit = () => resolve(undefined);
    child.on('error', onExit);
    child.once('exit', onExit);
    child.stdout!.on('data', onData);
  });
}

if (import.meta.main) {
  const [host, port, rate, count] = process.argv.slice(2);
  const proxies: FaultProxy[] = [];
  for (let i = 0; i < Number(count); i++) {
    const p = await FaultProxy.start({ target: { host, port: Number(port) } });
    p.bandwidth(Number(rate));
    proxies.push(p);
  }
  process.stdout.write(`${JSON.stringify(proxies.map((p) => p.url))}\n`);
  // Runs until the parent closes stdin (or goes away).
  process.stdin.resume();
  process.stdin.on('end', () => void Promise.all(proxies.map((p) => p.close())).then(() => process.exit(0)));
}
