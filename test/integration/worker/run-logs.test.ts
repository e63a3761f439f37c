/**
 * A run's log files (worker/run-logs.ts through worker/run-execution.ts) against the real dev
 * schema: the files of its log artifact versions, sealed after the run; plain files on a schema
 * without log artifacts; empty versions sealed when the run never starts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import * as h from '../../helpers/execution.ts';
import { probeSchema } from '../../../src/db/schema.ts';
import { pgLogArtifacts } from '../../../src/db/execution-store.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('run_logs');
});
after(async () => {
  await db?.drop();
});

async function execution(actionRef: string): Promise<number> {
  const r = await db.pool.query(`INSERT INTO execution (action_ref, status) VALUES ($1, 'running') RETURNING id`, [actionRef]);
  return Number(r.rows[0].id);
}

test('a run: the log files are the artifact versions\' files; without artifact tables the run goes on with plain files', async (t) => {
  const artifactsDir = h.tempDir('log-artifacts');
  t.after(() => rmSync(artifactsDir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line).msg) });
  const runOnce = async (pool: typeof db.pool) => {
    const schema = await probeSchema(pool, 'attune');
    const ex = await execution('testpack.fail');
    const out = await h.run({
      execution: h.execution({ id: ex, config: { lines: 1, code: 2 } }),
      action: h.action('fail.sh', { ref: 'testpack.fail', parameter_format: 'dotenv' }), runtime: h.runtime('shell'),
      config: h.config({ artifactsDir }), detected: h.detected(), baselineEnv: h.baseline(),
      logArtifacts: schema.logArtifacts ? pgLogArtifacts(pool) : null, logger: log,
    });
    await out.logsSealed; // the service awaits it together with the terminal write
    return out;
  };

  const withTables = await runOnce(db.pool);
  assert.equal(withTables.status, 'failed');
  assert.equal(withTables.result.stderr_log, join(artifactsDir, 'testpack/fail/stderr/log/v1.txt'));
  assert.equal(readFileSync(String(withTables.result.stderr_log), 'utf8'), 'problem line 1\n');
  assert.equal(statSync(String(withTables.result.stderr_log)).mode & 0o777, 0o444, 'sealed: frozen read-only');
  const sealed = (await db.pool.query(`SELECT v.sha256, v.size_bytes FROM artifact_version v WHERE v.file_path = 'testpack/fail/stderr/log/v1.txt'`)).rows[0];
  assert.deepEqual(sealed, { sha256: createHash('sha256').update('problem line 1\n').digest('hex'), size_bytes: 15 });
  assert.deepEqual(warnings, []);

  // An older Attune schema: no artifact tables (the probe at start says so). The run must not suffer.
  await db.pool.query('DROP TABLE log_stream, artifact_version, artifact');
  const without = await runOnce(db.pool);
  assert.equal(without.status, 'failed');
  assert.match(String(without.result.stderr_log), /\/execution_\d+\/stderr\.log$/);
  assert.equal(readFileSync(String(without.result.stderr_log), 'utf8'), 'problem line 1\n');
  await runOnce(db.pool);
  assert.deepEqual(warnings, [], 'no allocation is tried, so nothing to warn about per execution (the agent warned once at start)');
});

test('a run that fails before its process starts still seals its (empty) log versions', async (t) => {
  const artifactsDir = h.tempDir('log-artifacts-nostart');
  t.after(() => rmSync(artifactsDir, { recursive: true, force: true }));
  const fresh = await createTestDatabase('log_artifacts_nostart');
  t.after(() => fresh.drop());
  const ex = Number((await fresh.pool.query(`INSERT INTO execution (action_ref, status) VALUES ('testpack.missing', 'running') RETURNING id`)).rows[0].id);
  const out = await h.run({
    execution: h.execution({ id: ex }), action: h.action('does_not_exist.sh', { ref: 'testpack.missing' }), runtime: h.runtime('shell'),
    config: h.config({ artifactsDir }), detected: h.detected(), baselineEnv: h.baseline(),
    logArtifacts: pgLogArtifacts(fresh.pool),
  });
  await out.logsSealed;
  assert.equal(out.status, 'failed');
  assert.match(String(out.result.error), /action file not found/);
  const rows = (await fresh.pool.query(`SELECT v.body_state::text, v.size_bytes, l.sealed FROM artifact_version v JOIN log_stream l ON l.artifact_version = v.id WHERE v.execution = $1`, [ex])).rows;
  assert.deepEqual(rows, [{ body_state: 'ready', size_bytes: 0, sealed: true }, { body_state: 'ready', size_bytes: 0, sealed: true }]);
});
