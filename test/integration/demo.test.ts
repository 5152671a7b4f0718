import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { SERVE_NODE_FLAGS } from '../../src/cli/runtime-flags.ts';
import { REPO_ROOT } from '../helpers/site.ts';

it('outpost demo starts four sites with a sample image everywhere, and Ctrl-C stops them all', { timeout: 300_000 }, async () => {
  // The IPC channel makes the demo (and so its sites) stop if this process dies before the finally.
  const demo = spawn(process.execPath, [...SERVE_NODE_FLAGS, join(REPO_ROOT, 'bin/outpost.js'), 'demo', '--base-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  demo.channel?.unref();
  const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve));
  let out = '';
  demo.stdout!.on('data', (d) => { out += d; });
  demo.stderr!.on('data', (d) => { out += d; });
  try {
    // Four processes start one after the other: generous on a busy machine.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo not ready within 180 s:\n${out}`)), 180_000);
      demo.stdout!.on('data', () => { if (out.includes('ready')) { clearTimeout(timer); resolve(); } });
      void exited.then((code) => { clearTimeout(timer); reject(new Error(`demo exited with ${code}:\n${out}`)); });
    });
    const urls = Object.fromEntries([...out.matchAll(/^ {2}(central|edge-a|edge-b|far-a1)\s+(http:\/\/127\.0\.0\.1:\d+)/gm)].map((m) => [m[1], m[2]]));
    assert.deepEqual(Object.keys(urls), ['central', 'edge-a', 'edge-b', 'far-a1']);
    for (const [site, url] of Object.entries(urls)) {
      const list = await (await fetch(`${url}/v2/images?name=demo-image`)).json() as { images: { status: string }[] };
      assert.equal(list.images[0]?.status, 'active', `the sample image is listed at ${site}`);
    }
    const status = await (await fetch(`${urls['far-a1']}/outpost/v1/status`)).json() as { role: string; parent: string };
    assert.equal(status.role, 'edge');
    assert.equal(status.parent, urls['edge-a']);
    assert.match(out, /openstack --os-auth-type none --os-endpoint http/);

    demo.kill('SIGINT');
    assert.equal(await exited, 0);
    for (const url of Object.values(urls)) {
      await assert.rejects(fetch(`${url}/healthcheck`), 'every site stopped');
    }
  } finally {
    if (demo.exitCode === null && demo.signalCode === null) {
      demo.kill('SIGINT');
      const killer = setTimeout(() => demo.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    }
  }
});
