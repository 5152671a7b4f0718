// The systemd units in deploy/ (docs/deployment.md): systemd's own checker accepts them, they run
// `outpost serve` as documented, and the stop, restart and secrets settings match how `outpost
// serve` behaves, checked by running their ExecStart as systemd would (paths moved to a temp dir).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SERVE_NODE_FLAGS } from '../src/cli/runtime-flags.ts';
import { REPO_ROOT, tempDir } from './helpers/site.ts';

const run = promisify(execFile);
const DEPLOY = join(REPO_ROOT, 'deploy');
/** Where the units expect Outpost installed (with `npm ci` run there): the test puts this checkout there. */
const INSTALLED = '/opt/outpost/';

async function systemdAnalyzeMissing(): Promise<string | false> {
  try {
    await run('sh', ['-c', 'command -v systemd-analyze']);
    return false;
  } catch {
    return 'needs systemd-analyze (apt-get install systemd)';
  }
}
const analyzeSkip = await systemdAnalyzeMissing();
if (analyzeSkip !== false && process.env.TEST_SERVERS_REQUIRED === '1') throw new Error(`TEST_SERVERS_REQUIRED: ${analyzeSkip}`);

type Unit = Map<string, [string, string][]>;

/** A unit file's sections, each a list of KEY=VALUE assignments in order (comments and blank lines dropped). */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | undefined;
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) {
      section = [];
      unit.set(header[1], section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section !== undefined && eq > 0, `not an assignment in a section: ${line}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** The value of KEY in SECTION (the last assignment wins, as in systemd). */
function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.filter(([k]) => k === key).at(-1)?.[1];
}

/** A systemd time span in seconds: `30s`, `2min`, `90`. */
function seconds(span: string): number {
  const m = /^(\d+)\s*(s|sec|min|m)?$/.exec(span);
  assert.ok(m !== null, `a time span: ${span}`);
  return Number(m[1]) * (m[2] === 'min' || m[2] === 'm' ? 60 : 1);
}

const readUnit = async (name: string) => parseUnit(await readFile(join(DEPLOY, name), 'utf8'));

describe('deploy/outpost.service and deploy/outpost@.service', () => {
  it('systemd-analyze verify accepts both with no warning about them, with Outpost installed where they expect it', { skip: analyzeSkip }, async (t) => {
    const node = join(REPO_ROOT, 'node_modules/.bin/node');
    const { stdout: version } = await run(node, ['--version']);
    assert.ok(Number(/^v(\d+)/.exec(version)?.[1]) >= 24, `npm ci brings Node 24 to node_modules/.bin/node (got ${version.trim()})`);
    const dir = await tempDir('outpost-deploy-unit-');
    try {
      const files: string[] = [];
      for (const [source, name] of [['outpost.service', 'outpost.service'], ['outpost@.service', 'outpost@.service'], ['outpost@.service', 'outpost@edge-1.service']]) {
        const text = (await readFile(join(DEPLOY, source), 'utf8')).replaceAll(INSTALLED, REPO_ROOT.endsWith('/') ? REPO_ROOT : `${REPO_ROOT}/`);
        await writeFile(join(dir, name), text);
        files.push(join(dir, name));
      }
      let stderr = '';
      let code = 0;
      try {
        ({ stderr } = await run('systemd-analyze', ['verify', ...files], { timeout: 60_000 }));
      } catch (error) {
        const e = error as { code?: number; stderr?: string };
        code = typeof e.code === 'number' ? e.code : -1;
        stderr = e.stderr ?? '';
      }
      const ours = stderr.split('\n').filter((line) => line.includes(dir) || /outpost/.test(line));
      const others = stderr.split('\n').filter((line) => line.trim() !== '' && !ours.includes(line));
      if (others.length > 0) t.diagnostic(`systemd-analyze said, about other units: ${others.join(' | ')}`);
      assert.deepEqual(ours, [], 'no warning about the units');
      assert.equal(code, 0, stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('run outpost serve from the installed tree as the outpost user, its data directory the private state directory, secrets from a root-only file', async () => {
    const unit = await readUnit('outpost.service');
    const exec = value(unit, 'Service', 'ExecStart')!.split(/\s+/);
    assert.deepEqual(exec, [
      `${INSTALLED}node_modules/.bin/node`, ...SERVE_NODE_FLAGS, `${INSTALLED}bin/outpost.js`,
      'serve', '--config', '/etc/outpost/outpost.json', '--data', `/var/lib/${value(unit, 'Service', 'StateDirectory')}`,
    ], 'the flags serve is meant to run with (src/cli/runtime-flags.ts), the config file, the state directory as the data directory');
    assert.equal(value(unit, 'Service', 'WorkingDirectory'), '/var/lib/outpost');
    assert.equal(value(unit, 'Service', 'StateDirectoryMode'), '0700', 'the data directory is private, as outpost serve requires');
    assert.equal(value(unit, 'Service', 'User'), 'outpost');
    assert.equal(value(unit, 'Service', 'EnvironmentFile'), '-/etc/outpost/outpost.env');
    assert.equal(value(unit, 'Service', 'ExecReload'), '/bin/kill -HUP $MAINPID', 'SIGHUP reloads the TLS certificate');
    for (const [key, want] of Object.entries({
      NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', PrivateDevices: 'yes',
      CapabilityBoundingSet: '', Restart: 'on-failure', LimitNOFILE: '65536', UMask: '0077',
    })) assert.equal(value(unit, 'Service', key), want, key);
    assert.equal(value(unit, 'Service', 'MemoryDenyWriteExecute'), undefined, 'V8\'s JIT needs writable code pages');
    assert.equal(value(unit, 'Install', 'WantedBy'), 'multi-user.target');
  });

  it('outpost@.service is outpost.service per instance: its own config, secrets, data and writable directories', async () => {
    const plain = await readUnit('outpost.service');
    const template = await readUnit('outpost@.service');
    const asPlain = (v: string) => v
      .replaceAll('/etc/outpost/%i.', '/etc/outpost/outpost.').replaceAll('/var/lib/outpost/%i', '/var/lib/outpost')
      .replaceAll('outpost/%i', 'outpost').replaceAll('outpost-%i', 'outpost').replace(/, site %i$/, '');
    assert.deepEqual([...template.keys()], [...plain.keys()]);
    for (const [section, entries] of template) {
      assert.deepEqual(entries.map(([k, v]) => [k, asPlain(v)]), plain.get(section), `[${section}] differs only by the instance`);
    }
    assert.match(value(template, 'Service', 'ExecStart')!, / --config \/etc\/outpost\/%i\.json --data \/var\/lib\/outpost\/%i$/);
  });

  it('its ExecStart, run as systemd runs it, serves; KillSignal stops it with status 0 well within TimeoutStopSec; a configuration error exits with a status that is not restarted', { timeout: 120_000 }, async () => {
    const unit = await readUnit('outpost.service');
    const work = await tempDir('outpost-deploy-run-');
    const data = join(work, 'state');
    const config = join(work, 'outpost.json');
    // As systemd prepares it: the state directory (0700), and the unit's environment only.
    await mkdir(data, { mode: 0o700 });
    const argv = value(unit, 'Service', 'ExecStart')!.split(/\s+/).map((arg) => arg
      .replace(INSTALLED, REPO_ROOT.endsWith('/') ? REPO_ROOT : `${REPO_ROOT}/`)
      .replace('/etc/outpost/outpost.json', config)
      .replace(/^\/var\/lib\/outpost$/, data));
    const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin', LANG: 'C.UTF-8', STATE_DIRECTORY: data, OUTPOST_ADMIN_PASSWORD: 'deploy test' };
    const start = () => {
      // The IPC channel stops the site if this test process dies first (src/cli/site-process.ts).
      const child = spawn(argv[0], argv.slice(1), { cwd: data, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
      child.channel?.unref();
      let stderr = '';
      child.stderr!.on('data', (d) => { stderr += d; });
      child.stdout!.resume();
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, exited, stderr: () => stderr };
    };
    try {
      await writeFile(config, JSON.stringify({ listen: '127.0.0.1:0', auth: 'keystone', storage_sync: false }));
      const site = start();
      try {
        const url = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`not serving within 60 s:\n${site.stderr()}`)), 60_000);
          site.child.stderr!.on('data', () => {
            const m = /serving the Glance v2 API at (\S+)/.exec(site.stderr());
            if (m !== null) { clearTimeout(timer); resolve(m[1]); }
          });
          void site.exited.then((code) => { clearTimeout(timer); reject(new Error(`exited with ${code}:\n${site.stderr()}`)); });
        });
        assert.equal((await fetch(`${url}/healthcheck`)).status, 200);
        const stopWithin = seconds(value(unit, 'Service', 'TimeoutStopSec')!) * 1000;
        site.child.kill(value(unit, 'Service', 'KillSignal') as NodeJS.Signals);
        const code = await Promise.race([site.exited, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), stopWithin).unref())]);
        assert.equal(code, 0, `stopped with status 0 within TimeoutStopSec (${stopWithin} ms)`);
      } finally {
        if (site.child.exitCode === null && site.child.signalCode === null) site.child.kill('SIGKILL');
        await site.exited;
      }

      await writeFile(config, JSON.stringify({ listen: '127.0.0.1:0', no_such_key: true }));
      const refused = start();
      const code = await refused.exited;
      assert.match(refused.stderr(), /unknown key "no_such_key"/);
      assert.ok(value(unit, 'Service', 'RestartPreventExitStatus')!.split(/\s+/).includes(String(code)), `exit status ${code} is not restarted`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('the example configurations and environment file validate (outpost config check), and docs/deployment.md shows them as they are', async () => {
    // Every variable the example names, uncommented with its placeholder value.
    const env: Record<string, string> = {};
    for (const line of (await readFile(join(DEPLOY, 'outpost.env.example'), 'utf8')).split('\n')) {
      const m = /^#?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
      if (m !== null) env[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
    }
    assert.ok('OUTPOST_SITE_TOKEN' in env && 'OUTPOST_DATABASE_URL' in env, 'the secrets an operator sets');
    const doc = await readFile(join(REPO_ROOT, 'docs/deployment.md'), 'utf8');
    for (const file of ['central.example.json', 'edge.example.json']) {
      assert.ok(doc.includes(`\`\`\`json\n${await readFile(join(DEPLOY, file), 'utf8')}\`\`\``), `docs/deployment.md shows deploy/${file} as it is`);
      const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), 'config', 'check', join(DEPLOY, file)], {
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OUTPOST_'))), ...env },
      });
      const checked = JSON.parse(stdout) as { role: string; auth: string; tls_cert: string | null };
      assert.equal(checked.role, file.startsWith('central') ? 'central' : 'edge');
      assert.equal(checked.auth, 'keystone');
      assert.ok(checked.tls_cert !== null, `${file} serves https`);
    }
  });
});
