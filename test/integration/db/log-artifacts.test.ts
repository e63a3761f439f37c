/** Log artifact rows (contract §5.10) against the real dev schema: ensure, version, stream, seal. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { allocateLogArtifacts, finalizeLogArtifacts, logArtifactFilePath, type AllocateInput } from '../../../src/db/log-artifacts.ts';
import { createHash } from 'node:crypto';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('log_artifacts');
});
after(async () => {
  await db?.drop();
});

async function execution(actionRef: string): Promise<number> {
  const r = await db.pool.query(`INSERT INTO execution (action_ref, status) VALUES ($1, 'running') RETURNING id`, [actionRef]);
  return Number(r.rows[0].id);
}

const input = (executionId: number, over: Partial<AllocateInput> = {}): AllocateInput => ({
  executionId, actionRef: 'mypack.deploy', retentionPolicy: 'days', retentionLimit: 7, maxUnflushedBytes: 65536, maxUnflushedMs: 500, ...over,
});

test('file path: dots become directories, version file v{N}.txt', () => {
  assert.equal(logArtifactFilePath('mypack.deploy.stdout.log', 3), 'mypack/deploy/stdout/log/v3.txt');
});

test('first run creates both artifacts, version 1 each, pending, with a shared_file log stream', async () => {
  const ex = await execution('mypack.deploy');
  const a = await allocateLogArtifacts(db.pool, input(ex));
  assert.equal(a.stdout.version, 1);
  assert.equal(a.stdout.filePath, 'mypack/deploy/stdout/log/v1.txt');
  assert.equal(a.stderr.filePath, 'mypack/deploy/stderr/log/v1.txt');
  const art = (await db.pool.query(`SELECT ref, scope::text, owner, type::text, visibility::text, classification::text, retention_policy::text, retention_limit, name, content_type FROM artifact ORDER BY ref`)).rows;
  assert.deepEqual(art, [
    { ref: 'mypack.deploy.stderr.log', scope: 'action', owner: 'mypack.deploy', type: 'file_text', visibility: 'private', classification: 'runtime_log', retention_policy: 'days', retention_limit: 7, name: 'mypack.deploy stderr', content_type: 'text/plain' },
    { ref: 'mypack.deploy.stdout.log', scope: 'action', owner: 'mypack.deploy', type: 'file_text', visibility: 'private', classification: 'runtime_log', retention_policy: 'days', retention_limit: 7, name: 'mypack.deploy stdout', content_type: 'text/plain' },
  ]);
  const v = (await db.pool.query(`SELECT v.execution, v.content_type, v.body_state::text, v.meta, v.created_by, v.file_path, v.object_key,
      l.backend, l.max_unflushed_bytes, l.max_unflushed_milliseconds, l.sealed
      FROM artifact_version v JOIN log_stream l ON l.artifact_version = v.id WHERE v.id = $1`, [a.stdout.versionId])).rows[0];
  assert.deepEqual(v, {
    execution: ex, content_type: 'text/plain', body_state: 'pending', meta: { stream: 'stdout', execution_id: ex }, created_by: 'worker',
    file_path: 'mypack/deploy/stdout/log/v1.txt', object_key: null, backend: 'shared_file', max_unflushed_bytes: 65536, max_unflushed_milliseconds: 500, sealed: false,
  });
});

test('later runs reuse the artifacts and take the next versions, also when racing', async () => {
  const runs = await Promise.all(Array.from({ length: 8 }, async () => allocateLogArtifacts(db.pool, input(await execution('mypack.deploy')))));
  assert.deepEqual(runs.map((r) => r.stdout.version).sort((a, b) => a - b), [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(runs.map((r) => r.stderr.version).sort((a, b) => a - b), [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(Number((await db.pool.query(`SELECT count(*) FROM artifact`)).rows[0].count), 2, 'still one artifact per stream');
});

test('allocations and seals of one action, all at once, never deadlock (one artifact row per statement, no lock on unchanged rows)', async () => {
  // What concurrent executions of one action do: allocate, run, seal — overlapping. The seal once
  // updated both artifact rows in one statement, in an order that varied with the plan: two seals
  // deadlocked (PostgreSQL aborts one after deadlock_timeout, 1 s) in the executions benchmark.
  const failures: string[] = [];
  const seal = (a: Awaited<ReturnType<typeof allocateLogArtifacts>>, i: number) =>
    finalizeLogArtifacts(db.pool, a, { stdout: { bytes: i, sha256: 'cd'.repeat(32), truncated: false }, stderr: { bytes: 0, sha256: 'ef'.repeat(32), truncated: false } });
  const started = performance.now();
  for (let round = 0; round < 6; round++) {
    const allocations = await Promise.all(Array.from({ length: 20 }, async () => allocateLogArtifacts(db.pool, input(await execution('busy.action'), { actionRef: 'busy.action' }))));
    // Seals of this round together with the next allocations.
    await Promise.all([
      ...allocations.map((a, i) => seal(a, i).catch((e: Error & { code?: string }) => failures.push(`${e.code}: ${e.message}`))),
      ...Array.from({ length: 5 }, async () => seal(await allocateLogArtifacts(db.pool, input(await execution('busy.action'), { actionRef: 'busy.action' })), 0)),
    ]);
  }
  assert.deepEqual(failures, []);
  const rows = (await db.pool.query(`SELECT count(*)::int AS n, bool_and(l.sealed) AS sealed FROM log_stream l JOIN artifact_version v ON v.id = l.artifact_version JOIN artifact a ON a.id = v.artifact WHERE a.owner = 'busy.action'`)).rows[0];
  assert.deepEqual(rows, { n: 300, sealed: true });
  assert.ok(performance.now() - started < 5000, 'no statement waited for deadlock detection');
});

test('a changed retention on the action updates the artifact rows', async () => {
  await allocateLogArtifacts(db.pool, input(await execution('mypack.deploy'), { retentionPolicy: 'versions', retentionLimit: 3 }));
  const rows = (await db.pool.query(`SELECT retention_policy::text, retention_limit FROM artifact WHERE owner = 'mypack.deploy'`)).rows;
  assert.deepEqual(rows, [{ retention_policy: 'versions', retention_limit: 3 }, { retention_policy: 'versions', retention_limit: 3 }]);
});

test('hostile refs are data: quotes and backslashes in the action ref', async () => {
  const ref = "evil'pack.act\\ion; DROP TABLE artifact;--";
  const a = await allocateLogArtifacts(db.pool, input(await execution(ref), { actionRef: ref }));
  assert.equal(a.stdout.filePath, `${ref.replaceAll('.', '/')}/stdout/log/v1.txt`);
  assert.equal((await db.pool.query(`SELECT count(*)::int AS n FROM artifact WHERE owner = $1`, [ref])).rows[0].n, 2);
});

test('finalize seals the streams (truncated flag, total) and makes the versions ready with size and digest', async () => {
  const ex = await execution('other.action');
  const a = await allocateLogArtifacts(db.pool, input(ex, { actionRef: 'other.action' }));
  const digest = 'ab'.repeat(32);
  const empty = createHash('sha256').digest('hex');
  await finalizeLogArtifacts(db.pool, a, { stdout: { bytes: 1234, sha256: digest, truncated: true }, stderr: { bytes: 0, sha256: empty, truncated: false } });
  const rows = (await db.pool.query(`SELECT (v.meta->>'stream') AS stream, v.body_state::text, v.size_bytes, v.sha256, l.sealed, l.truncated, l.total_bytes,
      l.sealed_at IS NOT NULL AS sealed_at, a.size_bytes AS artifact_size
      FROM artifact_version v JOIN log_stream l ON l.artifact_version = v.id JOIN artifact a ON a.id = v.artifact WHERE v.execution = $1 ORDER BY 1`, [ex])).rows;
  assert.deepEqual(rows, [
    { stream: 'stderr', body_state: 'ready', size_bytes: 0, sha256: empty, sealed: true, truncated: false, total_bytes: 0, sealed_at: true, artifact_size: 0 },
    { stream: 'stdout', body_state: 'ready', size_bytes: 1234, sha256: digest, sealed: true, truncated: true, total_bytes: 1234, sealed_at: true, artifact_size: 1234 },
  ]);
  // Attune's own constraint: a pending body has no digest, a ready one must have one.
  await assert.rejects(db.pool.query(`UPDATE artifact_version SET body_state = 'pending' WHERE id = $1`, [a.stdout.versionId]), /ck_artifact_version_object_metadata/);
});
