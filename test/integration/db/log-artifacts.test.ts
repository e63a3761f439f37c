/** Log artifact rows (docs/attune-compat.md §5.10) against the real dev schema: ensure, version, stream, seal. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { waitFor } from '../../helpers/wait.ts';
import { createPool } from '../../../src/db/pool.ts';
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

test('artifact.ref is not unique (as in Attune): two rows share a ref → the oldest is used, none added, its versions continue', async () => {
  // What a real deployment can hold: two workers that both found no row and both inserted, or
  // rows made through Attune's API. No statement may rely on a uniqueness the schema lacks.
  const ref = 'dup.act';
  const ids: number[] = [];
  for (const stream of ['stdout', 'stdout', 'stderr', 'stderr']) {
    const r = await db.pool.query(`INSERT INTO artifact (ref, scope, owner, type, visibility, classification, retention_policy, retention_limit, name, content_type)
      VALUES ($1, 'action', $2, 'file_text', 'private', 'runtime_log', 'days', 7, $3, 'text/plain') RETURNING id`, [`${ref}.${stream}.log`, ref, `${ref} ${stream}`]);
    ids.push(Number(r.rows[0].id));
  }
  const [oldestOut, newerOut, oldestErr] = ids;
  await db.pool.query(`INSERT INTO artifact_version (artifact, version, content_type, body_state, created_by, file_path)
    VALUES ($1, 4, 'text/plain', 'pending', 'worker', 'dup/act/stdout/log/v4.txt')`, [oldestOut]);
  const a = await allocateLogArtifacts(db.pool, input(await execution(ref), { actionRef: ref }));
  assert.equal(a.stdout.artifactId, oldestOut);
  assert.equal(a.stderr.artifactId, oldestErr);
  assert.equal(a.stdout.version, 5, 'max + 1 of the chosen row');
  assert.equal(a.stderr.version, 1);
  assert.equal(Number((await db.pool.query(`SELECT count(*) FROM artifact WHERE owner = $1`, [ref])).rows[0].count), 4, 'no row added');
  assert.equal(Number((await db.pool.query(`SELECT count(*) FROM artifact_version WHERE artifact = $1`, [newerOut])).rows[0].count), 0, 'the newer duplicate is left alone');
});

test('150 concurrent first allocations of one action: one artifact row per stream, versions 1..150, no deadlock, no connection discarded', async () => {
  const pool = createPool(db.dbConfig({ maxConnections: 10, idleTimeoutMs: 60_000 }));
  let removed = 0;
  let errors = 0;
  pool.on('remove', () => removed++);
  pool.on('error', () => errors++);
  try {
    const ref = 'storm.first';
    const executions = await Promise.all(Array.from({ length: 150 }, () => execution(ref)));
    const runs = await Promise.all(executions.map((ex) => allocateLogArtifacts(pool, input(ex, { actionRef: ref }))));
    assert.deepEqual(runs.map((r) => r.stdout.version).sort((x, y) => x - y), Array.from({ length: 150 }, (_, i) => i + 1));
    assert.deepEqual(runs.map((r) => r.stderr.version).sort((x, y) => x - y), Array.from({ length: 150 }, (_, i) => i + 1));
    const rows = (await db.pool.query(`SELECT ref, count(*)::int AS n FROM artifact WHERE owner = $1 GROUP BY ref ORDER BY ref`, [ref])).rows;
    assert.deepEqual(rows, [{ ref: `${ref}.stderr.log`, n: 1 }, { ref: `${ref}.stdout.log`, n: 1 }]);
    assert.equal(removed, 0, 'no pooled connection was discarded');
    assert.equal(errors, 0);
    assert.equal(pool.totalCount, 10, 'the pool kept its connections');
  } finally {
    await pool.end();
  }
});

test('sessions that start with another client_encoding, backslash_quote and standard_conforming_strings: refs stay data', async () => {
  // The allocation inlines its text values as hex (ASCII only) and the pool forces UTF8 on connect,
  // so neither the server's defaults nor PGOPTIONS can change what a ref means.
  const saved = process.env.PGOPTIONS;
  process.env.PGOPTIONS = '-c client_encoding=LATIN1 -c backslash_quote=on -c standard_conforming_strings=off';
  const pool = createPool(db.dbConfig({ maxConnections: 1 }));
  try {
    const c = await pool.connect();
    c.release();
    const ref = "enc.\u00e9t\u00e9' OR 1=1; --";
    const a = await allocateLogArtifacts(pool, input(await execution(ref), { actionRef: ref }));
    assert.equal(a.stdout.filePath, `${ref.replaceAll('.', '/')}/stdout/log/v1.txt`);
    const stored = (await db.pool.query(`SELECT ref FROM artifact WHERE owner = $1 ORDER BY ref`, [ref])).rows.map((r) => r.ref);
    assert.deepEqual(stored, [`${ref}.stderr.log`, `${ref}.stdout.log`]);
    assert.equal((await pool.query('SHOW client_encoding')).rows[0].client_encoding, 'UTF8');
  } finally {
    if (saved === undefined) delete process.env.PGOPTIONS;
    else process.env.PGOPTIONS = saved;
    await pool.end();
  }
});

test('a run that seals after a newer run leaves the artifact with the newest ready size', async () => {
  const end = (bytes: number) => ({ bytes, sha256: 'aa'.repeat(32), truncated: false });
  const older = await allocateLogArtifacts(db.pool, input(await execution('seal.order'), { actionRef: 'seal.order' }));
  const newer = await allocateLogArtifacts(db.pool, input(await execution('seal.order'), { actionRef: 'seal.order' }));
  await finalizeLogArtifacts(db.pool, newer, { stdout: end(222), stderr: end(0) });
  await finalizeLogArtifacts(db.pool, older, { stdout: end(111), stderr: end(0) });
  const size = (await db.pool.query(`SELECT size_bytes FROM artifact WHERE id = $1`, [newer.stdout.artifactId])).rows[0].size_bytes;
  assert.equal(size, 222);
});

test('the connection dies during an allocation: the allocation fails, the process does not crash, the pool goes on', async () => {
  // pg emits 'error' on a checked-out client whose connection ends, even with a query in flight;
  // unheard, that event would crash the agent (seen in the outage e2e test).
  const pool = createPool(db.dbConfig({ maxConnections: 2 }));
  const holder = await db.pool.connect();
  try {
    const ref = 'dies.mid';
    await holder.query(`SELECT pg_advisory_lock(hashtext('artifact'), hashtext($1))`, [`${ref}.stderr.log`]);
    const pending = allocateLogArtifacts(pool, input(await execution(ref), { actionRef: ref }));
    const pid = await waitFor('the allocation to wait on the ref lock', async () =>
      (await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%attune_agent_log_ref_lock%'`)).rows[0]?.pid);
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await assert.rejects(pending, /terminat/i);
    await holder.query(`SELECT pg_advisory_unlock_all()`);
    const again = await allocateLogArtifacts(pool, input(await execution(ref), { actionRef: ref }));
    assert.equal(again.stdout.version, 1, 'the aborted allocation left nothing behind');
  } finally {
    holder.release();
    await pool.end();
  }
});

test('a changed retention on the action updates the artifact rows', async () => {
  await allocateLogArtifacts(db.pool, input(await execution('mypack.deploy'), { retentionPolicy: 'versions', retentionLimit: 3 }));
  const rows = (await db.pool.query(`SELECT retention_policy::text, retention_limit FROM artifact WHERE owner = 'mypack.deploy'`)).rows;
  assert.deepEqual(rows, [{ retention_policy: 'versions', retention_limit: 3 }, { retention_policy: 'versions', retention_limit: 3 }]);
});

// Attune's artifact_ref_path_safe CHECK rejects refs with '/', ':', '\\', '..' or a leading/trailing
// dot, so the hostile ref here is one Attune's schema accepts: quotes, a semicolon, SQL.
test('hostile refs are data: quotes and SQL in the action ref', async () => {
  const ref = `evil'pack.act"ion; DROP TABLE artifact;--`;
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
  // Attune's own guard: a ready body can only move on to deleting (trigger trg_artifact_body_immutability).
  await assert.rejects(db.pool.query(`UPDATE artifact_version SET body_state = 'pending' WHERE id = $1`, [a.stdout.versionId]), /ready artifact body can only transition to deleting/);
});
