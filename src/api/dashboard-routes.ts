import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { NotFoundError } from '../core/errors.ts';
import { resource } from './resource.ts';

/** The dashboard's own files (src/dashboard/), and the browser modules it imports, by the name it imports them as. */
const OWN = ['index.html', 'main.js', 'pages.js', 'api.js', 'style.css'];
const VENDOR: Record<string, string> = { 'preact.js': 'preact', 'hooks.js': 'preact/hooks', 'htm.js': 'htm' };
const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

/** The dashboard's files by URL path, read once (loadDashboardFiles). */
export type DashboardFiles = ReadonlyMap<string, string>;

export async function loadDashboardFiles(): Promise<DashboardFiles> {
  const files = new Map<string, string>();
  for (const name of OWN) files.set(`/dashboard/app/${name}`, await readFile(new URL(`../dashboard/${name}`, import.meta.url), 'utf8'));
  for (const [name, specifier] of Object.entries(VENDOR)) files.set(`/dashboard/vendor/${name}`, await readFile(fileURLToPath(import.meta.resolve(specifier)), 'utf8'));
  return files;
}

/**
 * GET /dashboard: the operators' web UI, served by every site (DESIGN.md §4 src/dashboard/): static
 * files read once at start — the page, its modules and the Preact and htm modules from
 * node_modules (no build step, nothing fetched from elsewhere at run time). The files hold no
 * data and need no caller; everything the page shows comes from the site's API, with the caller's
 * token (the page logs in against /identity/v3 where identity is on).
 */
export function registerDashboardRoutes(app: FastifyInstance, files: DashboardFiles): void {
  const send = (path: string, reply: FastifyReply) => reply
    .type(TYPES[path.slice(path.lastIndexOf('.') + 1)])
    .header('cache-control', 'no-cache')
    .send(files.get(path));
  resource(app, '/dashboard', { GET: async (_req, reply) => reply.redirect('/dashboard/') });
  resource(app, '/dashboard/', { GET: async (_req, reply) => send('/dashboard/app/index.html', reply) });
  resource(app, '/dashboard/:dir/:file', {
    GET: async (req, reply) => {
      const { dir, file } = req.params as { dir: string; file: string };
      const path = `/dashboard/${dir}/${file}`;
      if (!files.has(path) || file === 'index.html') throw new NotFoundError('The resource could not be found.');
      return send(path, reply);
    },
  });
}
