import { freePort, nginxConf, spawnNginx, waitHttp, type Cleanup } from './procs.ts';

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

/**
 * The nginx configuration of a reverse proxy on 127.0.0.1: for each group, an `upstream` of its
 * servers (round robin, nginx's default; keepalive connections to them) behind a `server` of its
 * own on `ports[group]`. Every group has the same settings, so each costs the same per request.
 */
export function balancerConfig(groups: Record<string, string[]>, ports: Record<string, number>): string {
  return Object.entries(groups).map(([name, servers]) => `  upstream ${name} {
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
}

/** Starts nginx as a balancer of `groups` (name → upstream URLs) and waits until every group answers. */
export async function startBalancer(groups: Record<string, string[]>, prefix: string, cleanup: Cleanup, probePath = '/versions'): Promise<Balancer> {
  const ports: Record<string, number> = {};
  for (const name of Object.keys(groups)) ports[name] = await freePort();
  const text = nginxConf(prefix, balancerConfig(groups, ports));
  const { child, stop } = await spawnNginx(prefix, text, cleanup, 'stop balancer');
  const urls: Record<string, string> = {};
  for (const [name, port] of Object.entries(ports)) urls[name] = `http://127.0.0.1:${port}`;
  for (const url of Object.values(urls)) await waitHttp(`${url}${probePath}`, 15_000, () => child.exitCode === null, (status) => status < 500);
  return { urls, pid: child.pid!, conf: text, stop };
}
