import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, stopProcess } from '../helpers/multi-site.ts';
import { serveUntilExit } from '../helpers/serve-exit.ts';
import { spawnServe, tempDir, type ServeProcess } from '../helpers/site.ts';

/** What `outpost serve` writes to stdout: JSON log lines, and nothing else. */
function logLines(p: ServeProcess): Record<string, unknown>[] {
  return p.stdout().split('\n').filter((l) => l !== '').map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return assert.fail(`a line of stdout is not JSON: ${line}`);
    }
  });
}

async function login(url: string, password: string): Promise<number> {
  const res = await fetch(`${url}/identity/v3/auth/tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { name: 'Default' }, password } } } } }),
  });
  await res.body?.cancel();
  return res.status;
}

async function listening(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

const portOf = (server: Server) => (server.address() as { port: number }).port;
const PASSWORD_LINE = /with the password (\S+)/;

describe('a first start', () => {
  let work: string;
  before(async () => { work = await tempDir(); });
  after(async () => { await rm(work, { recursive: true, force: true }); });

  it('on a port in use says so in one line, without a stack trace, and exits 1', async () => {
    const taken = await listening();
    try {
      const address = `127.0.0.1:${portOf(taken)}`;
      const run = await serveUntilExit(['--listen', address, '--data', join(work, 'taken')]);
      assert.equal(run.code, 1);
      assert.equal(run.stderr, `outpost: ${address} is already in use; stop what listens there, or choose another address with --listen HOST:PORT (port 0: any free port)\n`);
      assert.equal(run.stdout, '');
    } finally {
      taken.close();
    }
  });

  it('generates the admin password only once listening: a start that failed first loses nothing', async () => {
    const data = join(work, 'retry');
    const taken = await listening();
    try {
      const failed = await serveUntilExit(['--listen', `127.0.0.1:${portOf(taken)}`, '--data', data], { OUTPOST_AUTH: 'keystone' });
      assert.equal(failed.code, 1);
      assert.doesNotMatch(failed.stderr + failed.stdout, /password/);
    } finally {
      taken.close();
    }
    const site = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone', OUTPOST_LOG_LEVEL: 'info' });
    try {
      const password = PASSWORD_LINE.exec(site.stderr())?.[1];
      assert.ok(password !== undefined, `the password is shown on stderr:\n${site.stderr()}`);
      assert.equal(site.stderr().split(password).length - 1, 1, 'shown once');
      assert.ok(!site.stdout().includes(password), 'never in the log');
      assert.ok(logLines(site).length > 0);
      assert.equal(await login(site.url, password), 201);
    } finally {
      await stopProcess(site);
    }
  });

  it('uses OUTPOST_ADMIN_PASSWORD at bootstrap only: a later, different value is ignored, and the log says so', async () => {
    const data = join(work, 'chosen');
    const first = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone', OUTPOST_ADMIN_PASSWORD: 'first secret' });
    try {
      assert.equal(await login(first.url, 'first secret'), 201);
      assert.doesNotMatch(first.output(), /ignored|first secret/);
    } finally {
      await stopProcess(first);
    }
    const same = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone', OUTPOST_ADMIN_PASSWORD: 'first secret' });
    try {
      assert.equal(await login(same.url, 'first secret'), 201);
      assert.doesNotMatch(same.output(), /ignored/, 'the same value left set is no news');
    } finally {
      await stopProcess(same);
    }
    const second = await spawnServe(['--listen', '127.0.0.1:0', '--data', data], { OUTPOST_AUTH: 'keystone', OUTPOST_ADMIN_PASSWORD: 'second secret' });
    try {
      assert.equal(await login(second.url, 'first secret'), 201);
      assert.equal(await login(second.url, 'second secret'), 401);
      const warning = logLines(second).find((l) => String(l.msg).startsWith('OUTPOST_ADMIN_PASSWORD is set but ignored'));
      assert.equal(warning?.level, 40, second.stdout());
      assert.match(String(warning.msg), /already has a password \(the variable is only used at bootstrap\); change it with `openstack user set --password NEW admin`/);
      assert.doesNotMatch(second.output(), /second secret/);
    } finally {
      await stopProcess(second);
    }
  });

  it('logs one line per request at info, with method, url, status, duration and request id', async () => {
    const site = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'requests')], { OUTPOST_LOG_LEVEL: 'info' });
    try {
      const asked = [['GET', '/versions', 200], ['GET', '/v2/images?limit=1', 200], ['DELETE', '/v2/images/nope', 404]] as const;
      for (const [i, [method, path]] of asked.entries()) {
        const res = await fetch(`${site.url}${path}`, { method, headers: { 'x-openstack-request-id': `req-first-start-${i}` } });
        await res.body?.cancel();
      }
      await eventually('a line for every request', 30_000, async () => logLines(site).filter((l) => l.msg === 'request').length >= asked.length);
      const lines = logLines(site).filter((l) => l.msg === 'request');
      assert.equal(lines.length, asked.length, site.stdout());
      for (const [i, [method, path, status]] of asked.entries()) {
        const line = lines.find((l) => l.reqId === `req-first-start-${i}`);
        assert.partialDeepStrictEqual(line, { level: 30, method, url: path, status });
        assert.equal(typeof line?.ms, 'number');
      }
    } finally {
      await stopProcess(site);
    }
  });

  it('logs why a parent cannot be reached, not just "fetch failed"', async () => {
    const closed = await listening();
    const port = portOf(closed);
    await new Promise((resolve) => closed.close(resolve));
    const edge = await spawnServe(['--listen', '127.0.0.1:0', '--data', join(work, 'orphan'), '--role', 'edge', '--site', 'edge-1', '--parent', `http://127.0.0.1:${port}`]);
    try {
      await eventually('a warning about the parent', 30_000, async () => logLines(edge).some((l) => l.msg === 'change feed unavailable; retrying'));
      const warning = logLines(edge).find((l) => l.msg === 'change feed unavailable; retrying');
      assert.match(String(warning?.err), new RegExp(`connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`));
    } finally {
      await stopProcess(edge);
    }
  });
});
