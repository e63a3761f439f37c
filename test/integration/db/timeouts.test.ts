/**
 * Statement, lock and idle-in-transaction timeouts on every pooled connection, against the real
 * PostgreSQL: a lock held by another session or a statement that never answers ends in an error
 * within its bound, never in a wait without end; the log-version allocation gives up on Attune's
 * advisory lock after database.log_lock_timeout and the run goes on with plain log files.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { TcpProxy } from '../../helpers/proxy.ts';
import { createPool, dbError } from '../../../src/db/pool.ts';
import { CLIENT_QUERY_MARGIN_MS } from '../../../src/db/errors.ts';
import { pgExecutionStore } from '../../../src/db/execution-store.ts';
import { allocateLogArtifacts, type AllocateInput } from '../../../src/db/log-artifacts.ts';
import { probeSchema } from '../../../src/db/schema.ts';
import * as h from '../../helpers/execution.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('timeouts');
});
after(async () => {
  await db?.drop();
});

/** Another session (like Attune's API or an operator's psql) that holds locks. */
async function otherSession(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query(`SET search_path TO ${db.schema}`);
  return c;
}

async function execution(actionRef: string, status = 'scheduled'): Promise<number> {
  const r = await db.pool.query(`INSERT INTO execution (action_ref, status) VALUES ($1, $2) RETURNING id`, [actionRef, status]);
  return Number(r.rows[0].id);
}

const allocation = (executionId: number, actionRef: string): AllocateInput => ({
  executionId, actionRef, retentionPolicy: 'days', retentionLimit: 7, maxUnflushedBytes: 65536, maxUnflushedMs: 500,
});

/** Watches a pool for discarded connections. */
function watch(pool: pg.Pool): { removed: () => number } {
  let removed = 0;
  pool.on('remove', () => removed++);
  pool.on('error', () => undefined);
  return { removed: () => removed };
}

test('every connection carries the statement, lock and idle-in-transaction timeouts', async () => {
  const pool = createPool(db.dbConfig({ statementTimeoutMs: 12_345, lockTimeoutMs: 678, idleInTransactionTimeoutMs: 9000 }));
  try {
    const r = (await pool.query(`SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt,
      current_setting('idle_in_transaction_session_timeout') AS it`)).rows[0];
    assert.deepEqual(r, { st: '12345ms', lt: '678ms', it: '9s' });
  } finally {
    await pool.end();
  }
});

test('the execution row locked by another session: the claim fails after lock_timeout with an error naming it', async () => {
  const pool = createPool(db.dbConfig({ maxConnections: 1, lockTimeoutMs: 500 }));
  const other = await otherSession();
  try {
    const id = await execution('lock.claim');
    await other.query('BEGIN');
    await other.query('SELECT id FROM execution WHERE id = $1 FOR UPDATE', [id]);
    // The worker's claim (one statement, db/executions.ts claimWithContext), as main.ts wires it.
    const store = pgExecutionStore(pool, await probeSchema(db.pool, db.schema), pino({ level: 'silent' }));
    const started = performance.now();
    const err = await store.claim(id, { releaseId: null, releaseDigest: null }).then(() => null, (e: unknown) => e);
    const ms = performance.now() - started;
    assert.ok(err, 'the claim must not succeed while the row is locked');
    const e = dbError(pool, err, `claim execution ${id}`);
    assert.equal(e.code, '55P03');
    assert.equal(e.contention, true);
    assert.match(e.message, new RegExp(`^claim execution ${id}: .*database\\.lock_timeout \\(0\\.5 s\\) for a lock another session holds`));
    assert.ok(ms >= 450 && ms < 3000, `gave up after ${ms.toFixed(0)} ms`);
    await other.query('ROLLBACK');
    const claimed = await store.claim(id, { releaseId: null, releaseDigest: null });
    assert.equal(claimed?.claimed, true, 'claimed once the lock is gone');
  } finally {
    await other.end();
    await pool.end();
  }
});

test('statement_timeout ends a statement that runs too long (57014, contention)', async () => {
  const pool = createPool(db.dbConfig({ statementTimeoutMs: 400 }));
  try {
    const started = performance.now();
    const err = await pool.query('SELECT pg_sleep(5)').then(() => null, (e: unknown) => e);
    const ms = performance.now() - started;
    const e = dbError(pool, err, 'sleep');
    assert.equal(e.code, '57014');
    assert.equal(e.contention, true);
    assert.match(e.message, /database\.statement_timeout \(0\.4 s\)/);
    assert.ok(ms < 3000, `${ms} ms`);
  } finally {
    await pool.end();
  }
});

test('the log-version allocation gives up on Attune\'s advisory lock after log_lock_timeout; rolled back on the same connection, which stays in the pool', async () => {
  const pool = createPool(db.dbConfig({ maxConnections: 1, lockTimeoutMs: 10_000, logLockTimeoutMs: 700 }));
  const w = watch(pool);
  const other = await otherSession();
  try {
    const ref = 'lock.alloc';
    const first = await allocateLogArtifacts(pool, allocation(await execution(ref, 'running'), ref));
    const pid = (await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    // What Attune's API holds while it allocates a version of the stdout artifact.
    await other.query(`SELECT pg_advisory_lock(hashtext('artifact_version'), hashtext($1))`, [String(first.stdout.artifactId)]);
    const started = performance.now();
    const err = await allocateLogArtifacts(pool, allocation(await execution(ref, 'running'), ref)).then(() => null, (e: Error & { code?: string }) => e);
    const ms = performance.now() - started;
    assert.equal(err?.code, '55P03', String(err));
    assert.ok(ms >= 650 && ms < 4000, `gave up after ${ms.toFixed(0)} ms`);
    const after = (await pool.query(`SELECT pg_backend_pid() AS pid, current_setting('lock_timeout') AS lt, now() = statement_timestamp() AS no_open_transaction`)).rows[0];
    assert.deepEqual(after, { pid, lt: '10s', no_open_transaction: true }, 'same connection, session lock_timeout back (SET LOCAL), no transaction left open');
    assert.equal(w.removed(), 0, 'no connection discarded');
    assert.equal(Number((await db.pool.query(`SELECT count(*) FROM artifact_version WHERE artifact = $1`, [first.stdout.artifactId])).rows[0].count), 1, 'nothing of the failed allocation committed');
    await other.query(`SELECT pg_advisory_unlock_all()`);
    const next = await allocateLogArtifacts(pool, allocation(await execution(ref, 'running'), ref));
    assert.equal(next.stdout.version, 2);
  } finally {
    await other.end();
    await pool.end();
  }
});

test('a run while the advisory lock is held: it ends promptly, its logs in execution_{id}/ files, with a warning', async (t) => {
  const artifactsDir = h.tempDir('timeouts-run');
  t.after(() => rmSync(artifactsDir, { recursive: true, force: true }));
  const pool = createPool(db.dbConfig({ logLockTimeoutMs: 1000 }));
  const other = await otherSession();
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line).msg) });
  // The schema has the log artifact tables: the agent wires the port once, at start (main.ts).
  const schema = await probeSchema(pool, db.schema);
  assert.equal(schema.logArtifacts, true);
  const run = async () => {
    const id = await execution('testpack.fail', 'running');
    const out = await h.run({
      execution: h.execution({ id, config: { lines: 2, code: 4 } }),
      action: h.action('fail.sh', { ref: 'testpack.fail', parameter_format: 'dotenv' }), runtime: h.runtime('shell'),
      config: h.config({ artifactsDir }), detected: h.detected(), baselineEnv: h.baseline(),
      ...h.pgRunPorts(pool, schema), logger: log,
    });
    await out.logsSealed;
    return { id, out };
  };
  try {
    const { out: normal } = await run();
    assert.match(String(normal.result.stderr_log), /testpack\/fail\/stderr\/log\/v1\.txt$/, 'artifact files while nothing blocks');
    const artifactId = (await db.pool.query(`SELECT id FROM artifact WHERE ref = 'testpack.fail.stdout.log'`)).rows[0].id;
    await other.query(`SELECT pg_advisory_lock(hashtext('artifact_version'), hashtext($1))`, [String(artifactId)]);
    const started = performance.now();
    const { id, out } = await run();
    const ms = performance.now() - started;
    assert.ok(ms < 1000 + 4000, `the run took ${ms.toFixed(0)} ms (bound: log_lock_timeout 1 s + the action)`);
    assert.equal(out.status, 'failed');
    assert.equal(out.result.exit_code, 4);
    const plain = String(out.result.stderr_log);
    assert.equal(plain, `${artifactsDir}/execution_${id}/stderr.log`);
    assert.equal(readFileSync(plain, 'utf8'), 'problem line 1\nproblem line 2\n');
    assert.ok(existsSync(`${artifactsDir}/execution_${id}/stdout.log`));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0], /cannot allocate the log artifacts of this execution: its logs go to execution_\{id\}\//);
    // A lock timeout is not taken for an older schema: once the lock is gone, runs get log artifact files again.
    await other.query(`SELECT pg_advisory_unlock_all()`);
    const { out: again } = await run();
    assert.match(String(again.result.stderr_log), /testpack\/fail\/stderr\/log\/v2\.txt$/, 'artifact files again, the next version');
    assert.equal(warnings.length, 1, warnings.join('\n'));
  } finally {
    await other.end();
    await pool.end();
  }
});

test('a connection whose answers never come: the statement is abandoned after statement_timeout + the client margin, the connection discarded', async () => {
  const proxy = await TcpProxy.start(Number(new URL(db.url).port || 5432), new URL(db.url).hostname);
  const pool = createPool(db.dbConfig({ url: proxy.url(db.url), statementTimeoutMs: 500, maxConnections: 1 }));
  const w = watch(pool);
  try {
    await pool.query('SELECT 1');
    let dropping = false;
    proxy.onClientData = (chunk, conn) => {
      if (dropping) conn.dropResponses();
    };
    dropping = true;
    const started = performance.now();
    const err = await pool.query('SELECT 2').then(() => null, (e: unknown) => e);
    const ms = performance.now() - started;
    const e = dbError(pool, err);
    assert.equal(e.retryable, true);
    assert.equal(e.contention, false, 'a dead connection is an outage, not contention');
    assert.match(e.message, /no answer from PostgreSQL at 127\.0\.0\.1:\d+ to a statement within the agent's client-side limit/);
    assert.ok(ms >= 500 + CLIENT_QUERY_MARGIN_MS - 200 && ms < 500 + CLIENT_QUERY_MARGIN_MS + 3000, `${ms.toFixed(0)} ms`);
    dropping = false;
    proxy.onClientData = null;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(w.removed(), 1, 'the dead connection left the pool');
    assert.equal((await pool.query('SELECT 3 AS n')).rows[0].n, 3, 'a new connection serves the next statement');
  } finally {
    await pool.end();
    await proxy.close();
  }
});
