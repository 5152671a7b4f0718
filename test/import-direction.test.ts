// The dependency rules of the layout (DESIGN.md §4, docs/architecture.md "Shape"), read from the
// imports of every file under src/: core imports nothing of the project and no package; nothing
// under src/ imports test support, tests or benchmarks; no module imports the command line but
// the command line; and there are no import cycles.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/site.ts';

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g;

/** Every .ts file under src/, relative to the repository, with what each imports (project files as repository paths, the rest as written). */
async function importsOfSrc(): Promise<Map<string, string[]>> {
  const files = (await readdir(join(REPO_ROOT, 'src'), { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(REPO_ROOT, join(e.parentPath, e.name)));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = await readFile(join(REPO_ROOT, file), 'utf8');
    const targets = [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]!)
      .map((spec) => (spec.startsWith('.') ? relative(REPO_ROOT, resolve(REPO_ROOT, dirname(file), spec)) : spec));
    graph.set(file, targets);
  }
  return graph;
}

const project = (target: string) => !target.startsWith('node:') && (target.includes('/') && !target.startsWith('@')) && /^(src|test|test-support|bench|bin)\//.test(target);

test('src/core imports only src/core and Node built-ins', async () => {
  const wrong: string[] = [];
  for (const [file, targets] of await importsOfSrc()) {
    if (!file.startsWith('src/core/')) continue;
    for (const t of targets) if (!(t.startsWith('node:') || t.startsWith('src/core/'))) wrong.push(`${file} → ${t}`);
  }
  assert.deepEqual(wrong, []);
});

test('nothing under src/ imports test support, tests, benchmarks, or the command line (but the command line itself)', async () => {
  const wrong: string[] = [];
  for (const [file, targets] of await importsOfSrc()) {
    for (const t of targets) {
      if (/^(test|test-support|bench)\//.test(t)) wrong.push(`${file} → ${t}`);
      if (t.startsWith('src/cli/') && !file.startsWith('src/cli/')) wrong.push(`${file} → ${t}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import cycles under src/', async () => {
  const graph = await importsOfSrc();
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].join(' → '));
      return;
    }
    state.set(file, 'open');
    for (const t of graph.get(file) ?? []) if (project(t) && graph.has(t)) visit(t, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  assert.ok(graph.size > 50, `read only ${graph.size} files`);
  assert.deepEqual(cycles, []);
});
