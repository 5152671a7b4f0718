// The README's commands are `npx outpost …` in the repository after `npm install`: they must work
// from a shell whose own `node` is the system's (older) one, as a newcomer's is.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from './helpers/site.ts';

const run = promisify(execFile);

/** PATH as a newcomer's shell has it: without this project's node_modules/.bin (npm test adds it). */
const shellPath = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.includes('node_modules')).join(delimiter);

async function shell(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('sh', ['-c', command], { cwd: REPO_ROOT, env: { ...process.env, PATH: shellPath, npm_config_update_notifier: 'false' }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('npx outpost runs the command on the project\'s Node, whatever the shell\'s node is', async () => {
  const help = await shell('npx outpost --help');
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /serve \[options\]\s+run a site/);
  assert.doesNotMatch(help.stderr, /EBADENGINE|Unsupported engine/, 'npx warns about the engine on every command');
  const check = await shell('npx outpost config check /nonexistent/outpost.json');
  assert.notEqual(check.code, 0);
  assert.match(check.stderr, /nonexistent\/outpost\.json/);
});

test('bin/outpost.js run by a Node older than 24 says what to do instead of failing on TypeScript', async (t) => {
  const system = await shell('node --version');
  const major = Number(/^v(\d+)/.exec(system.stdout.trim())?.[1]);
  if (!(major < 24)) {
    t.skip(`the shell's node is ${system.stdout.trim() || 'missing'}, not an older one`);
    return;
  }
  const old = await shell(`node ${join('bin', 'outpost.js')} --help`);
  assert.equal(old.code, 1);
  assert.match(old.stderr, /outpost needs Node\.js 24 or newer \(this is v\d+/);
  assert.match(old.stderr, /npx/);
});
