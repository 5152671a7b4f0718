import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { spawnServe, type ServeProcess } from './site-process.ts';
import { CliError } from './cli-error.ts';

interface DemoSite {
  id: string;
  role: 'central' | 'edge';
  parent?: string;
  note: string;
}

/** The demo topology: central, two edges, and a far edge below the first edge. */
const SITES: readonly DemoSite[] = [
  { id: 'central', role: 'central', note: 'regional data centre: the authoritative catalog' },
  { id: 'edge-a', role: 'edge', parent: 'central', note: 'edge site, child of central' },
  { id: 'edge-b', role: 'edge', parent: 'central', note: 'edge site, child of central' },
  { id: 'far-a1', role: 'edge', parent: 'edge-a', note: 'far edge, child of edge-a' },
];

const SAMPLE_BYTES = 4 * 1024 * 1024;

function sampleImage(): Buffer {
  const b = Buffer.alloc(SAMPLE_BYTES);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

async function json(url: string, init?: RequestInit): Promise<any> {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: HTTP ${res.status} ${await res.text()}`);
  return res.status === 204 ? undefined : res.json();
}

/**
 * `outpost demo`: a central, two edges and a far edge as separate processes on loopback, each with
 * its own data directory, a sample image uploaded at central, and how to use each endpoint.
 * Ctrl-C stops them all.
 */
export function demoCommand(print: (line: string) => void): Command {
  return new Command('demo')
    .description('start a central, two edges and a far edge on loopback, with a sample image')
    .option('--base-port <port>', 'central listens here, the others on the next ports (0: any free ports)', '9292')
    .option('--data <dir>', 'keep the sites\' data here (default: a temporary directory, removed at the end)')
    .action(async (o: { basePort: string; data?: string }) => {
      const base = Number(o.basePort);
      if (!Number.isInteger(base) || base < 0 || base > 65532) throw new CliError(`--base-port must be a port number (got ${o.basePort})`);
      const root = o.data ?? await mkdtemp(join(tmpdir(), 'outpost-demo-'));
      const running = new Map<string, ServeProcess>();
      let stopping = false;
      const stopAll = async () => {
        if (stopping) return;
        stopping = true;
        for (const site of [...SITES].reverse()) await running.get(site.id)?.stop();
        if (o.data === undefined) await rm(root, { recursive: true, force: true });
      };
      const stopAndExit = () => { void stopAll().then(() => process.exit(0)); };
      process.once('SIGINT', stopAndExit);
      process.once('SIGTERM', stopAndExit);
      // Run by a supervising process over an IPC channel (the tests): stop when it goes away.
      if (process.connected) process.once('disconnect', stopAndExit);

      try {
        for (const [i, site] of SITES.entries()) {
          // The demo runs on loopback with identity headers (auth none), so that no credentials are needed.
          const args = ['--site', site.id, '--listen', `127.0.0.1:${base === 0 ? 0 : base + i}`, '--data', join(root, site.id), '--auth', 'none'];
          if (site.parent !== undefined) args.push('--role', 'edge', '--parent', running.get(site.parent)!.url);
          const started = await spawnServe(args, {
            env: { ...process.env, OUTPOST_LOG_LEVEL: process.env.OUTPOST_LOG_LEVEL ?? 'warn', OUTPOST_FEED_WAIT_SECONDS: '5' },
            onStderr: (text) => process.stderr.write(`[${site.id}] ${text}`),
          }).catch((e: Error) => {
            const busy = /is already in use/.test(e.message) ? ' (the port is in use: try --base-port 0 or another port)' : '';
            throw new CliError(`site ${site.id} did not start${busy}`);
          });
          running.set(site.id, started);
        }
        const central = running.get('central')!.url;
        const image = await json(`${central}/v2/images`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'demo-image', disk_format: 'raw', container_format: 'bare', visibility: 'public', os_distro: 'demo' }),
        });
        await json(`${central}/v2/images/${image.id}/file`, {
          method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: sampleImage(),
        });
        const far = running.get('far-a1')!.url;
        // Replication takes milliseconds; the bound is for a machine busy with other work.
        const deadline = Date.now() + 60_000;
        for (const site of SITES) {
          while ((await json(`${running.get(site.id)!.url}/v2/images?name=demo-image`)).images.length === 0) {
            if (Date.now() > deadline) throw new CliError(`the sample image did not reach ${site.id} within 60 s`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }

        print('Outpost demo: four sites on loopback, each its own process with its own data directory.');
        print('');
        for (const site of SITES) print(`  ${site.id.padEnd(8)} ${running.get(site.id)!.url.padEnd(24)} ${site.note}`);
        print('');
        print(`A sample image "demo-image" (${image.id}, 4 MiB raw) was uploaded at central and has reached every site.`);
        print('Try, against any site (reads are answered locally, writes go up to central):');
        print('');
        print(`  openstack --os-auth-type none --os-endpoint ${far} image list`);
        print(`  openstack --os-auth-type none --os-endpoint ${far} image show demo-image`);
        print(`  openstack --os-auth-type none --os-endpoint ${running.get('edge-b')!.url} image create --disk-format raw --container-format bare --file FILE my-image`);
        print(`  curl ${running.get('edge-a')!.url}/outpost/v1/status`);
        print('');
        print(`Data: ${root}${o.data === undefined ? ' (removed on exit)' : ''}`);
        print('ready — press Ctrl-C to stop every site.');
      } catch (error) {
        await stopAll();
        throw error;
      }
    });
}
