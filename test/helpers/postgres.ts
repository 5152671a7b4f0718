import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL server the production-backend tests use: scripts/test-servers.sh starts one on
 * loopback and prints TEST_POSTGRES_URL (CI does both). Without it those tests skip, saying why.
 */
const adminUrl = process.env.TEST_POSTGRES_URL;

export const postgresSkip: string | false = adminUrl === undefined
  ? 'no PostgreSQL: run `eval "$(scripts/test-servers.sh start)"` first (CI does)'
  : false;
// CI starts every server (.ci/run): there, a missing one is a failure, not a skip.
if (postgresSkip !== false && process.env.TEST_SERVERS_REQUIRED === '1') throw new Error(`TEST_SERVERS_REQUIRED: ${postgresSkip}`);

/** A new, empty database on the test server, and how to drop it. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (adminUrl === undefined) throw new Error(String(postgresSkip));
  const name = `outpost_test_${randomBytes(6).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}
