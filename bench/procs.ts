import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnServe } from '../src/cli/site-process.ts';

export const execFileP = promisify(execFile);

/** Clean-up steps run last-in first-out, on success, on failure and on SIGINT/SIGTERM. */
export class Cleanup {
  readonly #steps: { name: string; fn: () => Promise<void> | void }[] = [];
  #running: Promise<void> | undefined;

  /** Registers a step; the returned function runs it now (once) and unregisters it. */
  add(name: string, fn: () => Promise<void> | void): () => Promise<void> {
    const step = { name, fn };
    this.#steps.push(step);
    return async () => {
      const i = this.#steps.indexOf(step);
      if (i < 0) return;
      this.#steps.splice(i, 1);
      await fn();
    };
  }

  run(): Promise<void> {
    this.#running ??= (async () => {
      while (this.#steps.length > 0) {
        const step = this.#steps.pop()!;
        try {
          await step.fn();
        } catch (e) {
          process.stderr.write(`bench: clean-up "${step.name}" failed: ${(e as Error).message}\n`);
        }
      }
    })();
    return this.#running;
  }
}

/**
 * `count` processes that each keep one CPU busy (a loop that never yields) until the clean-up
 * stops them: a benchmark's own load, so a target that must hold "at a load average of 2 or more"
 * is measured under a load anyone can make again, not under whatever else the machine runs.
 */
export function startBusyLoad(count: number, cleanup: Cleanup): void {
  for (let i = 0; i < count; i++) {
    const child = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    cleanup.add('stop a busy process', () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    }));
  }
}

/** A free TCP port on 127.0.0.1 (bound and released; the benchmark is the only one asking). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Runs a benchmark's main with a Cleanup that also runs on SIGINT/SIGTERM/SIGHUP; sets the exit code. */
export async function runBench(main: (cleanup: Cleanup) => Promise<number>): Promise<void> {
  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    if (Number(process.versions.node.split('.')[0]) < 24) throw new Error(`needs Node 24 (this is ${process.version}); run with PATH=$PWD/node_modules/.bin:$PATH`);
    process.exitCode = await main(cleanup);
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
    for (const s of signals) process.off(s, onSignal);
  }
}

/** `--name` as a positive integer (`dflt` when not given). */
/** The options every benchmark has; spread them into its own parseArgs options. */
export const COMMON_BENCH_OPTIONS = {
  quick: { type: 'boolean', default: false },
  docs: { type: 'string' },
  'no-docs': { type: 'boolean', default: false },
  tmp: { type: 'string', default: tmpdir() },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/**
 * Where a benchmark writes its results: --docs PATH, else docs/benchmarks.md on full runs; none
 * with --no-docs or on a --quick run without --docs.
 */
export function docsTarget(values: { quick: boolean; docs?: string; 'no-docs': boolean }): string | undefined {
  if (values['no-docs']) return undefined;
  return values.docs ?? (values.quick ? undefined : new URL('../docs/benchmarks.md', import.meta.url).pathname);
}

/** --help: prints the benchmark's usage and exits. */
export function exitOnHelp(help: boolean, usage: string): void {
  if (!help) return;
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

export function positiveInt(name: string, v: string | undefined, dflt: number): number {
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await execFileP(cmd, args)).stdout.trimEnd();
  } catch (e) {
    return `(${cmd} failed: ${(e as Error).message.split('\n')[0]})`;
  }
}

export const loadNow = () => loadavg().map((l) => l.toFixed(2)).join(' ');

/** Date, host, CPU, memory, load average, Node and the versions of `packages` (dpkg), one line each. */
export async function machineFacts(packages: string[]): Promise<string[]> {
  const dpkg = packages.length === 0 ? '' : `; packages: ${await sh('dpkg-query', ['-W', '-f', '${Package} ${Version}; ', ...packages])}`;
  return [
    `Date: ${new Date().toISOString()}`,
    `Host: ${hostname()}, kernel ${await sh('uname', ['-r'])}`,
    `CPU: nproc = ${await sh('nproc', [])}, ${cpus()[0]?.model ?? 'unknown model'}`,
    `Memory (free -m):\n\n\`\`\`\n${await sh('free', ['-m'])}\n\`\`\``,
    `Load average at start: ${loadNow()}`,
    `Node ${process.version}; ${await sh('curl', ['--version']).then((s) => s.split('\n')[0].split(' ').slice(0, 2).join(' '))}${dpkg}`,
  ];
}

/** Fails unless `dir`'s file system has `needBytes` free (df); logs both figures. */
export async function checkDisk(dir: string, needBytes: number): Promise<void> {
  const df = (await execFileP('df', ['-Pk', dir])).stdout.trim().split('\n')[1].split(/\s+/);
  const availBytes = Number(df[3]) * 1024;
  process.stderr.write(`Disk (df ${dir}): ${(availBytes / 2 ** 30).toFixed(1)} GiB available, ${(needBytes / 2 ** 30).toFixed(1)} GiB needed\n`);
  if (availBytes < needBytes) throw new Error(`not enough disk space in ${dir}`);
}

/** Load averages noted at named moments of a run (`note(when)`), for the report. */
export class LoadNotes {
  readonly list: string[] = [];

  note(when: string): void {
    this.list.push(`${when}: ${loadNow()}`);
  }

  toString(): string {
    return `Load average ${this.list.join('; ')}`;
  }
}

/** Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status). */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]);
}

let clockTicks: number | undefined;
export async function loadClockTicks(): Promise<number> {
  const { stdout } = await execFileP('getconf', ['CLK_TCK']);
  clockTicks = Number(stdout.trim()) || 100;
  return clockTicks;
}

/**
 * CPU seconds (user + system, threads included) spent by `pid` and every live descendant, plus
 * what reaped children left in their parents' cutime/cstime (/proc/PID/stat fields 14-17).
 */
export function treeCpuSeconds(pid: number): number {
  const procs = new Map<number, { ppid: number; ticks: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after "comm)" start at field 3 (state): field n is f[n - 3].
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    procs.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
  }
  if (!procs.has(pid)) throw new Error(`process ${pid} is gone`);
  const children = new Map<number, number[]>();
  for (const [p, { ppid }] of procs) children.set(ppid, [...(children.get(ppid) ?? []), p]);
  let ticks = 0;
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    ticks += procs.get(p)?.ticks ?? 0;
    todo.push(...(children.get(p) ?? []));
  }
  return ticks / (clockTicks ?? 100);
}

export interface Server {
  name: string;
  url: string;
  /** The process whose tree's CPU time is charged to the server. */
  pid: number;
  stop(): Promise<void>;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  if (!(await waitExit(child, 10_000))) {
    child.kill('SIGKILL');
    await waitExit(child, 5_000);
  }
}

/** Polls `url` until it answers (with a status `accept` takes: any, by default) or `ms` pass. */
export async function waitHttp(url: string, ms: number, alive: () => boolean, accept: (status: number) => boolean = () => true): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive()) throw new Error(`server for ${url} exited`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await r.arrayBuffer();
      if (accept(r.status)) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not answering after ${ms} ms`);
}

/** Environment without OUTPOST_* keys, so only what the benchmark sets configures Outpost. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('OUTPOST_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * `outpost serve [ARGS]` (src/cli/site-process.ts) as its own process on 127.0.0.1 with a
 * fresh data directory; `args` adds e.g. `--role edge --site ID --parent URL`.
 */
export async function startOutpost(repoRoot: string, dataDir: string, extraEnv: Record<string, string>, cleanup: Cleanup, args: string[] = [], name = 'Outpost'): Promise<Server> {
  const port = await freePort();
  const server = await spawnServe(['--listen', `127.0.0.1:${port}`, '--data', dataDir, ...args], {
    cwd: repoRoot,
    env: cleanEnv({ OUTPOST_LOG_LEVEL: 'warn', ...extraEnv }),
    onStderr: (d) => process.stderr.write(`[${name}] ${d}`),
    startTimeoutMs: 30_000,
  });
  const stop = cleanup.add(`stop ${name}`, () => stopChild(server.child));
  const { url, child } = server;
  if (!url.startsWith('http://127.0.0.1:')) throw new Error(`${name} listens on ${url}, not loopback`);
  return { name, url, pid: child.pid!, stop };
}

/**
 * An nginx configuration on the temp `prefix`: the settings every nginx of the benchmarks shares
 * (in the foreground, its pid, log and temp files under the prefix), around `http`, the http
 * block's own directives and servers.
 */
export function nginxConf(prefix: string, http: string): string {
  const tmp = (n: string) => join(prefix, n);
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes auto;
daemon off;
master_process on;
pid ${tmp('nginx.pid')};
error_log ${tmp('error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${tmp('client_body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};
${http}
}
`;
}

/** Starts nginx on `prefix` with the configuration `text` (written to prefix/nginx.conf); stopped by `cleanup`. */
export async function spawnNginx(prefix: string, text: string, cleanup: Cleanup, what: string): Promise<{ child: ChildProcess; stop: () => Promise<void> }> {
  await mkdir(prefix, { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, text);
  const child = spawn('nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  return { child, stop: cleanup.add(what, () => stopChild(child, 'SIGQUIT')) };
}

/** Our own nginx (temp prefix and config, sendfile on) serving `root` on 127.0.0.1. */
export async function startNginx(root: string, prefix: string, cleanup: Cleanup): Promise<Server> {
  const port = await freePort();
  const { child, stop } = await spawnNginx(prefix, nginxConf(prefix, `  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / { }
  }`), cleanup, 'stop nginx');
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`, 15_000, () => child.exitCode === null);
  return { name: 'nginx', url, pid: child.pid!, stop };
}

/**
 * nginx as a pull-through cache of `origin` (`proxy_cache`, responses kept 60 min): the reference
 * for a cold miss that relays and stores the bytes and verifies none (without sendfile, so it
 * writes each byte to the client itself, as an edge does). Each URL is its own cache
 * key, so a new query string is a cold miss; `clear()` deletes what it stored and says how many
 * bytes that was.
 */
export async function startNginxCache(origin: string, prefix: string, cleanup: Cleanup): Promise<Server & { clear(): Promise<number> }> {
  const port = await freePort();
  const cache = join(prefix, 'cache');
  const { child, stop } = await spawnNginx(prefix, nginxConf(prefix, `  sendfile off;
  proxy_cache_path ${cache} levels=1:2 keys_zone=images:10m max_size=64g inactive=60m use_temp_path=off;
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass ${origin}; proxy_cache images; proxy_cache_valid 200 60m; }
  }`), cleanup, 'stop nginx (proxy_cache)');
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/`, 15_000, () => child.exitCode === null);
  const clear = async () => {
    let bytes = 0;
    for (const entry of await readdir(cache, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (entry.isFile()) bytes += (await stat(join(entry.parentPath, entry.name))).size;
    }
    for (const entry of await readdir(cache).catch(() => [])) await rm(join(cache, entry), { recursive: true, force: true });
    return bytes;
  };
  return { name: 'nginx (proxy_cache)', url, pid: child.pid!, stop, clear };
}

export interface GlanceStart {
  server?: Server;
  /** Why Glance could not be started. */
  failure?: string;
}

/**
 * The real Glance (Debian glance-api) via glance-peer.sh --single --fresh in `dir`, installing it
 * first when `install` (GLANCE_INSTALL=1). Stopped with glance-peer-stop.sh.
 */
export async function startGlance(peerDir: string, dir: string, install: boolean, cleanup: Cleanup): Promise<GlanceStart> {
  const port = await freePort();
  const stop = cleanup.add('stop glance', async () => {
    await execFileP('bash', [join(peerDir, 'glance-peer-stop.sh'), '--dir', dir]).catch((e: Error) => {
      process.stderr.write(`bench: glance-peer-stop.sh: ${e.message}\n`);
    });
  });
  try {
    const { stdout } = await execFileP('bash', [join(peerDir, 'glance-peer.sh'), '--single', '--fresh', '--port', String(port), '--dir', dir], {
      env: { ...process.env, GLANCE_INSTALL: install ? '1' : '0' },
      timeout: 20 * 60_000,
      maxBuffer: 64 << 20,
    });
    const m = /PID (\d+) URL (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
    if (m === null) return { failure: `glance-peer.sh said: ${stdout.trim().split('\n').at(-1)}` };
    return { server: { name: 'Glance', url: m[2], pid: Number(m[1]), stop } };
  } catch (e) {
    await stop();
    const err = e as Error & { stderr?: string; stdout?: string };
    const why = (err.stderr ?? '').trim().split('\n').slice(-3).join(' / ') || err.message;
    return { failure: `glance-peer.sh failed: ${why}` };
  }
}
