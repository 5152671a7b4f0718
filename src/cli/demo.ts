import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

/** Where the demo keeps the admin's password in its data directory, for the next run on it (--data). */
const PASSWORD_FILE = 'admin-password';

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

/** A word as a POSIX shell reads it back unchanged: as is when it is safe, else in single quotes. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll('\'', '\'\\\'\'')}'`;
}

/**
 * The admin's password: OUTPOST_ADMIN_PASSWORD when set; else the one a previous run kept in this
 * data directory (its central's admin already has it); else a new one (24 URL-safe characters).
 */
async function adminPassword(root: string): Promise<{ password: string; source: string }> {
  const given = process.env.OUTPOST_ADMIN_PASSWORD;
  if (given !== undefined && given !== '') return { password: given, source: 'OUTPOST_ADMIN_PASSWORD' };
  try {
    const kept = (await readFile(join(root, PASSWORD_FILE), 'utf8')).trim();
    if (kept !== '') return { password: kept, source: join(root, PASSWORD_FILE) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return { password: randomBytes(18).toString('base64url'), source: 'generated' };
}

/**
 * `outpost demo`: a central, two edges and a far edge as separate processes on loopback, each with
 * its own data directory, with Keystone authentication as a real region has it: central's
 * identity service with the user `admin` (project `admin`) and a password (OUTPOST_ADMIN_PASSWORD,
 * or generated), a site credential issued by central for each edge, and a sample image uploaded
 * at central. Prints every endpoint, the dashboard's URL, the credentials and the `OS_*`
 * variables for the openstack CLI, then `ready`. Ctrl-C stops them all.
 */
export function demoCommand(print: (line: string) => void): Command {
  return new Command('demo')
    .description('start a central, two edges and a far edge on loopback (Keystone authentication), with a sample image')
    .option('--base-port <port>', 'central listens here, the others on the next ports (0: any free ports)', '9292')
    .option('--data <dir>', 'keep the sites\' data here (default: a temporary directory, removed at the end)')
    .action(async (o: { basePort: string; data?: string }) => {
      const base = Number(o.basePort);
      if (!Number.isInteger(base) || base < 0 || base > 65532) throw new CliError(`--base-port must be a port number (got ${o.basePort})`);
      const root = o.data ?? await mkdtemp(join(tmpdir(), 'outpost-demo-'));
      await mkdir(root, { recursive: true, mode: 0o700 });
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
        const { password, source } = await adminPassword(root);
        let admin = '';
        const auth = () => ({ 'x-auth-token': admin });
        for (const [i, site] of SITES.entries()) {
          const args = ['--site', site.id, '--listen', `127.0.0.1:${base === 0 ? 0 : base + i}`, '--data', join(root, site.id), '--auth', 'keystone'];
          const env: NodeJS.ProcessEnv = { ...process.env, OUTPOST_LOG_LEVEL: process.env.OUTPOST_LOG_LEVEL ?? 'warn', OUTPOST_FEED_WAIT_SECONDS: '5' };
          delete env.OUTPOST_ADMIN_PASSWORD;
          delete env.OUTPOST_SITE_TOKEN;
          if (site.parent === undefined) env.OUTPOST_ADMIN_PASSWORD = password;
          else {
            args.push('--role', 'edge', '--parent', running.get(site.parent)!.url);
            // Central issues every site's credential, a far edge's too; the site presents it to its parent.
            env.OUTPOST_SITE_TOKEN = (await json(`${running.get('central')!.url}/outpost/v1/sites/${site.id}/credential`, {
              method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{}',
            })).token;
          }
          const started = await spawnServe(args, {
            env,
            onStderr: (text) => process.stderr.write(`[${site.id}] ${text}`),
          }).catch((e: Error) => {
            const busy = /is already in use/.test(e.message) ? ' (the port is in use: try --base-port 0 or another port)' : '';
            throw new CliError(`site ${site.id} did not start${busy}`);
          });
          running.set(site.id, started);
          if (site.parent === undefined) {
            admin = await login(started.url, password, () => `central refused the admin password (${source}): the admin of ${join(root, site.id)} `
              + 'has the one set at its first start; set OUTPOST_ADMIN_PASSWORD to it, or give the demo a new --data directory');
            await writeFile(join(root, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
          }
        }
        const central = running.get('central')!.url;
        const image = await json(`${central}/v2/images`, {
          method: 'POST', headers: { ...auth(), 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'demo-image', disk_format: 'raw', container_format: 'bare', visibility: 'public', os_distro: 'demo' }),
        });
        await json(`${central}/v2/images/${image.id}/file`, {
          method: 'PUT', headers: { ...auth(), 'content-type': 'application/octet-stream' }, body: sampleImage(),
        });
        // Replication takes milliseconds; the bound is for a machine busy with other work. An edge
        // answers 401 to the token until its replica holds the admin and central's keys.
        const deadline = Date.now() + 60_000;
        for (const site of SITES) {
          for (;;) {
            const res = await fetch(`${running.get(site.id)!.url}/v2/images?name=demo-image`, { headers: auth() });
            if (res.ok && ((await res.json()) as { images: unknown[] }).images.length > 0) break;
            if (Date.now() > deadline) throw new CliError(`the sample image did not reach ${site.id} within 60 s`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }

        const url = (id: string) => running.get(id)!.url;
        print('Outpost demo: four sites on loopback, each its own process with its own data directory.');
        print('');
        for (const site of SITES) print(`  ${site.id.padEnd(8)} ${url(site.id).padEnd(24)} ${site.note}`);
        print('');
        print(`Dashboard: ${central}/dashboard/  (each site serves its own at /dashboard/)`);
        print(`  user admin, project admin, domain Default, password ${password}`);
        print('');
        print(`A sample image "demo-image" (${image.id}, 4 MiB raw) was uploaded at central and has reached every site.`);
        print('For the openstack, glance and outpost CLIs (each site is a region of the catalog; reads are answered');
        print('locally, writes go up to central):');
        print('');
        print(`  export OS_AUTH_URL=${central}/identity/v3 OS_IDENTITY_API_VERSION=3`);
        print(`  export OS_USERNAME=admin OS_PASSWORD=${shellWord(password)} OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default`);
        print('  openstack image list');
        print('  openstack --os-region-name far-a1 image show demo-image');
        print('  openstack --os-region-name edge-b image create --disk-format raw --container-format bare --file FILE my-image');
        print('  npx outpost site list');
        print(`  npx outpost status --url ${url('far-a1')}`);
        print('');
        print(`Data: ${root}${o.data === undefined ? ' (removed on exit)' : ''}`);
        print('ready — press Ctrl-C to stop every site.');
      } catch (error) {
        await stopAll();
        throw error;
      }
    });
}

/** A token for admin in project admin from central's identity service; `refused()` is the message for a 401. */
async function login(central: string, password: string, refused: () => string): Promise<string> {
  const res = await fetch(`${central}/identity/v3/auth/tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: {
      identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password } } },
      scope: { project: { name: 'admin', domain: { id: 'default' } } },
    } }),
  });
  if (res.status === 401) throw new CliError(refused(), 'unauthorized');
  if (res.status !== 201) throw new Error(`POST ${central}/identity/v3/auth/tokens: HTTP ${res.status} ${await res.text()}`);
  return res.headers.get('x-subject-token')!;
}
