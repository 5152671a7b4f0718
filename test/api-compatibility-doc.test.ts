// docs/api-compatibility.md is the list of what a site serves: every route the application
// registers has a row there, and every row names a route that exists.
import { strict as assert } from 'node:assert';
import { readFile, rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { startSite, type RunningSite } from '../src/api/site.ts';
import { resolveConfig } from '../src/core/config.ts';
import { REPO_ROOT, tempDir } from './helpers/site.ts';

const METHOD = /^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (\/\S*)$/;

/** `METHOD /path` of each code span in the first cell of the doc's table rows, params as `{}`. */
function documentedCalls(markdown: string): Set<string> {
  const calls = new Set<string>();
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('| `')) continue;
    const first = line.split('|')[1]!;
    for (const [, span] of first.matchAll(/`([^`]+)`/g)) {
      const m = METHOD.exec(span!);
      assert.ok(m, `a call in docs/api-compatibility.md is not "METHOD /path": ${span}`);
      calls.add(`${m[1]} ${m[2]!.replace(/\{[^}]+\}/g, '{}')}`);
    }
  }
  return calls;
}

const sites: RunningSite[] = [];
const dirs: string[] = [];

async function start(flags: Record<string, unknown>): Promise<RunningSite> {
  const data = await tempDir();
  dirs.push(data);
  const site = await startSite(resolveConfig({ flags: { listen: '127.0.0.1:0', data, storage_sync: false, ...flags } }), pino({ level: 'silent' }), { adminPassword: 'pw' });
  sites.push(site);
  return site;
}

let served: Set<string>;

before(async () => {
  // Central with identity, and an edge (the cache API) under a central of its own.
  const keystone = await start({ auth: 'keystone' });
  const parent = await start({ auth: 'none' });
  const edge = await start({ auth: 'none', role: 'edge', site: 'edge-1', parent: parent.url });
  served = new Set([keystone, edge].flatMap((s) => s.routes()).map((r) => `${r.method} ${r.url.replace(/:[^/]+/g, '{}')}`));
});

after(async () => {
  for (const site of sites.reverse()) await site.close();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

test('every route a site serves has a row in docs/api-compatibility.md', async () => {
  const documented = documentedCalls(await readFile(`${REPO_ROOT}docs/api-compatibility.md`, 'utf8'));
  assert.ok(served.size > 50, `the sites serve only ${served.size} routes`);
  const missing = [...served].filter((call) => !documented.has(call)).sort();
  assert.deepEqual(missing, [], 'routes without a row in docs/api-compatibility.md');
});

test('every call docs/api-compatibility.md lists is served', async () => {
  const documented = documentedCalls(await readFile(`${REPO_ROOT}docs/api-compatibility.md`, 'utf8'));
  const stale = [...documented].filter((call) => !served.has(call)).sort();
  assert.deepEqual(stale, [], 'rows in docs/api-compatibility.md for routes that do not exist');
});
