import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, type Cleanup } from './procs.ts';

/** One nginx (temp prefix and config) balancing several upstream groups, each on a port of its own. */
export interface Balancer {
  /** The balancer's URL for each group, by the group's name. */
  urls: Record<string, string>;
  /** nginx's master process (its workers are its children). */
  pid: number;
  /** The configuration file, for the report. */
  conf: string;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopNginx(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGQUIT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited(child);
  clearTimeout(timer);
}

/**
 * The nginx configuration of a reverse proxy on 127.0.0.1: for each group, an `upstream` of its
 * servers (round robin, nginx's default; keepalive connections to them) behind a `server` of its
 * own on `ports[group]`. Every group has the same settings, so each costs the same per request.
 */
export function balancerConfig(prefix: string, groups: Record<string, string[]>, ports: Record<string, number>, asRoot: boolean): string {
  const tmp = (n: string) => join(prefix, n);
  const blocks = Object.entries(groups).map(([name, servers]) => `  upstream ${name} {
${servers.map((s) => `    server ${new URL(s).host};`).join('\n')}
    keepalive 32;
  }
  server {
    listen 127.0.0.1:${ports[name]};
    location / {
      proxy_pass http://${name};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
    }
  }`).join('\n');
  return `${asRoot ? 'user root;\n' : ''}worker_processes auto;
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
${blocks}
}
`;
}

/** Starts nginx as a balancer of `groups` (name → upstream URLs) and waits until every group answers. */
export async function startBalancer(groups: Record<string, string[]>, prefix: string, cleanup: Cleanup, probePath = '/versions'): Promise<Balancer> {
  await mkdir(prefix, { recursive: true });
  const ports: Record<string, number> = {};
  for (const name of Object.keys(groups)) ports[name] = await freePort();
  const conf = join(prefix, 'nginx.conf');
  const text = balancerConfig(prefix, groups, ports, process.getuid?.() === 0);
  await writeFile(conf, text);
  const child = spawn('nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  const stop = cleanup.add('stop balancer', () => stopNginx(child));
  const urls: Record<string, string> = {};
  for (const [name, port] of Object.entries(ports)) urls[name] = `http://127.0.0.1:${port}`;
  const end = Date.now() + 15_000;
  for (const url of Object.values(urls)) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode} (log: ${join(prefix, 'error.log')})`);
      const ok = await fetch(`${url}${probePath}`, { signal: AbortSignal.timeout(2_000) }).then(async (r) => {
        await r.arrayBuffer();
        return r.status < 500;
      }, () => false);
      if (ok) break;
      if (Date.now() > end) throw new Error(`balancer ${url} not answering after 15 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { urls, pid: child.pid!, conf: text, stop };
}
