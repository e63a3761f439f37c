import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { createPool, verifyDatabase } from '../../../src/db/pool.ts';
import { DbError } from '../../../src/db/errors.ts';

const PASSWORD = 'Sup3r-secret-pw';
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('connect');
  await db.applySchema('attune_alt');
  await db.pool.query('CREATE SCHEMA empty_schema');
});
after(() => db?.drop());

function url(o: { user?: string; database?: string; port?: number }): string {
  const u = new URL(db.url);
  if (o.user) u.username = o.user;
  u.password = PASSWORD;
  if (o.database) u.pathname = '/' + o.database;
  if (o.port) u.port = String(o.port);
  return u.toString();
}

/** verifyDatabase on a throw-away pool; returns the DbError and how long it took. */
async function failure(dbUrl: string, schema = 'attune', connectTimeoutMs = 2000): Promise<{ err: DbError; ms: number }> {
  const pool = createPool(db.dbConfig({ url: dbUrl, schema, connectTimeoutMs }));
  const t0 = Date.now();
  try {
    await verifyDatabase(pool, schema);
  } catch (e) {
    assert.ok(e instanceof DbError, `DbError expected, got ${e}`);
    assert.doesNotMatch(e.message, new RegExp(PASSWORD), 'the password never appears');
    assert.doesNotMatch(String(e.stack), new RegExp(PASSWORD));
    return { err: e, ms: Date.now() - t0 };
  } finally {
    await pool.end();
  }
  assert.fail('verifyDatabase should have failed');
}

test('the right database passes, under the default and a custom schema', async () => {
  await verifyDatabase(db.pool, 'attune');
  const alt = createPool(db.dbConfig({ url: url({}), schema: 'attune_alt' }));
  try {
    await verifyDatabase(alt, 'attune_alt');
    assert.equal((await alt.query('SELECT current_schema() AS s')).rows[0].s, 'attune_alt');
  } finally {
    await alt.end();
  }
});

test('a schema that does not exist: names it, asks the two questions, lists where Attune tables are', async () => {
  const { err } = await failure(url({}), 'atune');
  assert.match(err.message, /^schema atune does not exist in database "attune_test_connect_\w+" at 127\.0\.0\.1:\d+: is this an Attune database\? is ATTUNE__DATABASE__SCHEMA right\?/);
  assert.match(err.message, /schemas with a worker table in this database: attune, attune_alt/);
  assert.equal(err.retryable, false);
});

test('a schema without Attune tables: names the missing tables', async () => {
  const { err } = await failure(url({}), 'empty_schema');
  assert.match(err.message, /^schema empty_schema has no table worker, runtime, runtime_version, action, execution, enforcement in database "attune_test_connect_\w+" at 127\.0\.0\.1:\d+: is this an Attune database/);
  assert.match(err.message, /is ATTUNE__DATABASE__SCHEMA right\?/);
});

test('a database that does not exist: real server error, named, not retryable', async () => {
  const { err, ms } = await failure(url({ database: 'attune_no_such_db' }));
  assert.match(err.message, /database "attune_no_such_db" does not exist on PostgreSQL at 127\.0\.0\.1:\d+\. Check the database name/);
  assert.equal(err.code, '3D000');
  assert.equal(err.retryable, false);
  assert.ok(ms < 2000, `failed within the connect timeout (${ms} ms)`);
});

test('a role that does not exist (bad credentials): names the user and the database', async () => {
  const { err, ms } = await failure(url({ user: 'no_such_role' }));
  assert.match(err.message, /refused user "no_such_role" for database "attune_test_connect_\w+": role "no_such_role" does not exist\. Check the user in ATTUNE__DATABASE__URL/);
  assert.equal(err.code, '28000');
  assert.equal(err.retryable, false);
  assert.ok(ms < 2000, `failed within the connect timeout (${ms} ms)`);
});

test('a closed port: connection refused, names host:port, retryable, immediate', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const { err, ms } = await failure(url({ port }));
  assert.match(err.message, new RegExp(`cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}: connection refused`));
  assert.equal(err.retryable, true);
  assert.ok(ms < 2000, `${ms} ms`);
});

test('a server that never answers: fails at the connect timeout, not later', async () => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const { err, ms } = await failure(url({ port }), 'attune', 800);
    assert.match(err.message, new RegExp(`no answer from PostgreSQL at 127\\.0\\.0\\.1:${port} within 800 ms`));
    assert.match(err.message, /ATTUNE__DATABASE__CONNECT_TIMEOUT/);
    assert.equal(err.retryable, true);
    assert.ok(ms >= 700 && ms < 2500, `took ${ms} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});
