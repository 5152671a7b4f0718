import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createTestDatabase, postgresSkip } from '../helpers/postgres.ts';
import { REPO_ROOT, tempDir } from '../helpers/site.ts';

const run = promisify(execFile);

/** `outpost ARGS`: its exit code and output (a failing command does not throw). */
async function outpost(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(REPO_ROOT, 'bin/outpost.js'), ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** check says behind (exit 1) → migrate applies every migration → check says up to date (exit 0); migrate again applies nothing. */
async function migrateAndCheck(where: string[], shown: RegExp): Promise<void> {
  const behind = await outpost(['db', 'check', ...where]);
  assert.equal(behind.code, 1, behind.stderr);
  assert.match(behind.stdout, shown);
  assert.match(behind.stdout, /0 migrations applied, \d+ pending/);
  assert.match(behind.stderr, /needs .*0001-images.*run `outpost db migrate`/);
  const migrated = await outpost(['db', 'migrate', ...where]);
  assert.equal(migrated.code, 0, migrated.stderr);
  assert.match(migrated.stdout, /applied 0001-images, .*0015-node-work/);
  const fine = await outpost(['db', 'check', ...where]);
  assert.equal(fine.code, 0, fine.stderr);
  assert.match(fine.stdout, /\d+ migrations applied, 0 pending/);
  assert.match(fine.stdout, /change log at seq 0/);
  assert.match((await outpost(['db', 'migrate', ...where])).stdout, /up to date/);
}

describe('outpost db migrate | check', () => {
  it('on the SQLite catalog of a data directory', async () => {
    const dir = await tempDir('outpost-db-');
    try {
      await migrateAndCheck(['--data', join(dir, 'data')], /catalog\.sqlite \(sqlite\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on PostgreSQL, printing the URL without its password; an unreachable one exits 1 with why', { skip: postgresSkip }, async () => {
    const database = await createTestDatabase();
    try {
      await migrateAndCheck(['--database-url', database.url], /postgres:\/\/outpost:\*\*\*@127\.0\.0\.1:\d+\/outpost_test_\w+ \(postgres\)/);
    } finally {
      await database.drop();
    }
    const down = await outpost(['db', 'check', '--database-url', 'postgres://outpost:secret@127.0.0.1:1/none']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot open the catalog at postgres:\/\/outpost:\*\*\*@127\.0\.0\.1:1\/none: .*ECONNREFUSED/);
    assert.doesNotMatch(down.stderr, /secret/);
  });
});
