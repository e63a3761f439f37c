/**
 * A fresh PostgreSQL database per test file, with the development schema applied.
 *
 *   const db = await createTestDatabase('registration');   // attune_test_registration_<random>
 *   await db.pool.query('SELECT * FROM worker');            // search_path = the schema
 *   after(() => db.drop());
 *
 * The server is ATTUNE_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres). When it is
 * unreachable this THROWS with a message saying so: integration tests fail, they never skip.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createPool, type DatabaseConfig } from '../../src/db/pool.ts';

export const PG_ADMIN_URL = process.env.ATTUNE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const SCHEMA_FILE = new URL('../../docker/dev/attune-schema.sql', import.meta.url);

const SCHEMA_LINES = [/^CREATE SCHEMA IF NOT EXISTS attune;$/m, /^SET search_path TO attune, public;$/m];

/** The dev schema SQL, installing into `schema` instead of `attune`. */
export function devSchemaSql(schema = 'attune'): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`test schema name ${JSON.stringify(schema)} must be a lowercase identifier`);
  let sql = readFileSync(SCHEMA_FILE, 'utf8');
  for (const re of SCHEMA_LINES) {
    if (!re.test(sql)) throw new Error(`${SCHEMA_FILE.pathname} no longer has the line ${re.source}; update test/helpers/pg.ts`);
  }
  sql = sql.replace(SCHEMA_LINES[0], `CREATE SCHEMA IF NOT EXISTS ${schema};`);
  sql = sql.replace(SCHEMA_LINES[1], `SET search_path TO ${schema}, public;`);
  return sql;
}

export interface TestDatabase {
  /** Database name, e.g. attune_test_registration_1a2b3c4d. */
  name: string;
  /** Connection URL of this database (no password). */
  url: string;
  schema: string;
  /** Pool from src/db/pool.ts (search_path = schema, BIGINT → number). Closed by drop(). */
  pool: pg.Pool;
  /** `database` config section for this database (short timeouts), with optional overrides. */
  dbConfig(overrides?: Partial<DatabaseConfig>): DatabaseConfig;
  /** Install the dev schema again under another name (e.g. to test ATTUNE__DATABASE__SCHEMA). */
  applySchema(schema: string): Promise<void>;
  /** Close the pool and drop the database (even with connections left over). Idempotent. */
  drop(): Promise<void>;
}

async function adminClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (e) {
    const u = new URL(PG_ADMIN_URL);
    throw new Error(
      `integration tests need PostgreSQL at ${u.hostname}:${u.port || 5432} (user ${u.username || 'postgres'}), which is unreachable: ` +
        `${(e as Error).message}. Run \`npm run setup\` (as root) or point ATTUNE_TEST_PG_URL at one.`,
      { cause: e },
    );
  }
  return client;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await adminClient();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function urlForDatabase(name: string, base = PG_ADMIN_URL): string {
  const u = new URL(base);
  u.pathname = '/' + name;
  return u.toString();
}

export async function createTestDatabase(label: string, opts: { schema?: string; applySchema?: boolean } = {}): Promise<TestDatabase> {
  const schema = opts.schema ?? 'attune';
  const safe = label.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 30);
  const name = `attune_test_${safe}_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  const url = urlForDatabase(name);
  const apply = async (s: string) => {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      await c.query(devSchemaSql(s));
    } finally {
      await c.end();
    }
  };
  try {
    if (opts.applySchema !== false) await apply(schema);
  } catch (e) {
    await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    throw e;
  }
  const dbConfig = (o: Partial<DatabaseConfig> = {}): DatabaseConfig => ({
    url, schema, maxConnections: 10, connectTimeoutMs: 5000, idleTimeoutMs: 10_000,
    statementTimeoutMs: 30_000, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 60_000, logLockTimeoutMs: 5000, ...o,
  });
  const pool = createPool(dbConfig());
  let dropped: Promise<void> | null = null;
  return {
    name, url, schema, pool, dbConfig,
    applySchema: apply,
    drop() {
      dropped ??= (async () => {
        await pool.end().catch(() => undefined);
        await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
      })();
      return dropped;
    },
  };
}
