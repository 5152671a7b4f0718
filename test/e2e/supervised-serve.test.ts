// A site started through src/cli/site-process.ts (tests, benchmarks, outpost demo) stops when
// the process that started it dies, however it dies: a test runner that kills a test file on its
// timeout leaves no site running behind it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT, tempDir } from '../helpers/site.ts';
import { eventually } from '../helpers/multi-site.ts';

it('kill -9 of the process that started outpost serve stops the site', { timeout: 120_000 }, async () => {
  const data = await tempDir();
  const script = `
    import { spawnServe } from ${JSON.stringify(join(REPO_ROOT, 'src/cli/site-process.ts'))};
    const site = await spawnServe(['--listen', '127.0.0.1:0', '--data', ${JSON.stringify(data)}, '--auth', 'none'], { env: { ...process.env, OUTPOST_LOG_LEVEL: 'warn' } });
    process.stdout.write(site.url + ' ' + site.child.pid + '\\n');
    setInterval(() => {}, 1000);
  `;
  const supervisor = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let sitePid: number | undefined;
  try {
    let out = '';
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the site did not start within 60 s: ${out}`)), 60_000);
      supervisor.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) { clearTimeout(timer); resolve(out.trim()); }
      });
      supervisor.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the supervisor exited with ${code}`)); });
    });
    const [url, pid] = line.split(' ');
    sitePid = Number(pid);
    assert.equal(await (await fetch(`${url}/healthcheck`)).text(), 'OK');

    supervisor.kill('SIGKILL');
    await eventually('the site has stopped', 60_000, async () => {
      try {
        process.kill(sitePid!, 0);
        return false;
      } catch {
        return true;
      }
    });
    await assert.rejects(fetch(`${url}/healthcheck`));
  } finally {
    supervisor.kill('SIGKILL');
    if (sitePid !== undefined) try { process.kill(sitePid, 'SIGKILL'); } catch { /* gone, as it should be */ }
    await rm(data, { recursive: true, force: true });
  }
});
