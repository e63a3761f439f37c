import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { createPool } from '../../../src/db/pool.ts';
import { registerWorker } from '../../../src/db/registration.ts';
import { EXECUTION_COLUMNS, claimWithContext, listRuntimeVersions, loadExecution, loadRuntime, writeSpooledTerminal, writeTerminal } from '../../../src/db/executions.ts';
import { currentStatus, loadAction } from '../../helpers/db-reads.ts';

let db: TestDatabase;
let ids: { pack: number; runtime: number; action: number; enforcement: number; worker: number; release: number; workflow: number };
const DIGEST = 'a'.repeat(64);

before(async () => {
  db = await createTestDatabase('executions');
  const q = async (sql: string, v: unknown[] = []) => (await db.pool.query(sql, v)).rows[0].id as number;
  const pack = await q(`INSERT INTO pack (ref, label, version) VALUES ('mypack', 'My pack', '1.0.0') RETURNING id`);
  const release = await q(
    `INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest) VALUES ($1, 'mypack', '1.0.0', $2, '/x', 0, '{}') RETURNING id`,
    [pack, DIGEST],
  );
  const runtime = await q(
    `INSERT INTO runtime (ref, pack, pack_ref, name, aliases, distributions, execution_config) VALUES ('core.python', NULL, NULL, 'Python', ARRAY['python'], '{}',
     '{"interpreter":{"binary":"python3","file_extension":".py"}}') RETURNING id`,
  );
  await db.pool.query(`INSERT INTO runtime_version (runtime, runtime_ref, version, version_major, version_minor, version_patch, is_default) VALUES ($1, 'core.python', '3.11.2', 3, 11, 2, true), ($1, 'core.python', '3.12.1', 3, 12, 1, false)`, [runtime]);
  await db.pool.query(`INSERT INTO runtime_version (runtime, runtime_ref, version, retired_at) VALUES ($1, 'core.python', '2.7.18', now())`, [runtime]);
  const action = await q(
    `INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, timeout_seconds, parameter_format, output_format)
     VALUES ('mypack.hello', $1, 'mypack', 'Hello', 'hello.py', $2, 30, 'dotenv', 'json') RETURNING id`,
    [pack, runtime],
  );
  const enforcement = await q(`INSERT INTO enforcement (rule_ref, trigger_ref, payload) VALUES ('mypack.on_tick', 'core.intervaltimer', '{}') RETURNING id`);
  const workflow = await q(
    `INSERT INTO workflow_definition (ref, pack, pack_ref, label, version, definition) VALUES ('mypack.flow', $1, 'mypack', 'Flow', '1.0.0', '{}') RETURNING id`,
    [pack],
  );
  const worker = (await registerWorker(db.pool, { name: 'exec-worker', workerType: 'local', runtimeId: null, host: 'h', port: null, capabilities: { runtime_versions: { python: ['3.12.1'] } } })).id;
  ids = { pack, runtime, action, enforcement, worker, release, workflow };
});
after(() => db?.drop());

/** A top-level execution of its own enforcement (Attune allows one per enforcement). */
async function newExecution(status = 'scheduled', extra: Record<string, unknown> = {}): Promise<number> {
  const enforcement = (await db.pool.query(`INSERT INTO enforcement (rule_ref, trigger_ref, payload) VALUES ('mypack.on_tick', 'core.intervaltimer', '{}') RETURNING id`)).rows[0].id;
  const cols = ['action', 'action_ref', 'status', 'worker', 'enforcement', 'config', ...Object.keys(extra)];
  const vals = [ids.action, 'mypack.hello', status, ids.worker, enforcement, JSON.stringify({ name: 'x' }), ...Object.values(extra)];
  const { rows } = await db.pool.query(`INSERT INTO execution (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`, vals);
  return rows[0].id;
}

test('action defaults and CHECK constraints mirror Attune', async () => {
  const a = (await db.pool.query(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint) VALUES ('mypack.defaults', $1, 'mypack', 'Defaults', 'x.sh') RETURNING parameter_delivery, parameter_format, output_format`, [ids.pack])).rows[0];
  assert.deepEqual(a, { parameter_delivery: 'stdin', parameter_format: 'json', output_format: 'text' });
  await assert.rejects(db.pool.query(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint, output_format) VALUES ('mypack.bad', $1, 'mypack', 'Bad', 'x', 'xml')`, [ids.pack]), /action_output_format_check/);
  await assert.rejects(db.pool.query(`INSERT INTO execution (action_ref, pack_release_digest) VALUES ('x', 'nothex')`), /execution_release/);
});

test('loadExecution reads the §5.12 columns, never workflow_def', async () => {
  const id = await newExecution('scheduled', {
    workflow_def: ids.workflow, pack_release: ids.release, pack_release_digest: DIGEST,
    executable_snapshot: JSON.stringify({ release: { id: ids.release, digest: DIGEST } }), timeout_seconds: 5, trace_tag: 't-1',
    permission_set_refs: ['core.admin'],
  });
  const e = await loadExecution(db.pool, id);
  assert.ok(e);
  assert.deepEqual(Object.keys(e).sort(), [...EXECUTION_COLUMNS].sort());
  assert.equal('workflow_def' in e, false);
  assert.equal(e.id, id);
  assert.equal(e.action, ids.action);
  assert.equal(e.pack_release, ids.release);
  assert.equal(e.pack_release_digest, DIGEST);
  assert.deepEqual(e.executable_snapshot, { release: { id: ids.release, digest: DIGEST } });
  assert.deepEqual(e.config, { name: 'x' });
  assert.deepEqual(e.permission_set_refs, ['core.admin']);
  assert.equal(e.trace_tag, 't-1');
  assert.equal(e.timeout_seconds, 5);
  assert.equal(e.retry_count, 0);
  assert.equal(await loadExecution(db.pool, 999_999), null);
});

test('the action columns as Attune stores them; loadRuntime and its live versions', async () => {
  const action = await loadAction(db.pool, { id: ids.action, ref: 'ignored' });
  assert.equal(action?.parameter_delivery, 'stdin');
  assert.equal(action?.parameter_format, 'dotenv');
  assert.equal(action?.output_format, 'json');
  assert.equal(action?.timeout_seconds, 30);
  assert.equal(action?.runtime, ids.runtime);

  const runtime = await loadRuntime(db.pool, ids.runtime);
  assert.equal(runtime?.name, 'Python');
  assert.deepEqual(runtime?.aliases, ['python']);
  assert.deepEqual(runtime?.execution_config, { interpreter: { binary: 'python3', file_extension: '.py' } });
  assert.equal(await loadRuntime(db.pool, 999_999), null);
  const versions = await listRuntimeVersions(db.pool, ids.runtime);
  assert.deepEqual(versions.map((v) => [v.version, v.is_default, v.version_minor]), [['3.11.2', true, 11], ['3.12.1', false, 12]], 'retired 2.7 left out');
});

test('the claim reads and claims in one statement: once under a race, never a pinned other release, null when unknown', async () => {
  const none = { releaseId: null, releaseDigest: null };
  const claim = (pool: typeof db.pool, id: number, release: typeof none | { releaseId: number | null; releaseDigest: string | null }) => claimWithContext(pool, id, release, true);
  const id = await newExecution('scheduled');
  const other = createPool(db.dbConfig());
  try {
    const [a, b] = await Promise.all([claim(db.pool, id, none), claim(other, id, none)]);
    assert.deepEqual([a!.claimed, b!.claimed].sort(), [false, true], 'exactly one delivery claims it');
    const [winner, loser] = a!.claimed ? [a!, b!] : [b!, a!];
    assert.equal(winner.execution.status, 'scheduled', 'the row as it was before the claim');
    assert.equal(winner.execution.action_ref, 'mypack.hello');
    const enforcement = (await db.pool.query('SELECT enforcement FROM execution WHERE id = $1', [id])).rows[0].enforcement;
    assert.deepEqual(winner.enforcement, { id: enforcement, rule_ref: 'mypack.on_tick', trigger_ref: 'core.intervaltimer' }, 'the enforcement refs read along');
    assert.equal(loser.execution.status, 'running');
  } finally {
    await other.end();
  }
  const started = (await db.pool.query('SELECT status::text, started_at FROM execution WHERE id = $1', [id])).rows[0];
  assert.equal(started.status, 'running');
  assert.ok(started.started_at instanceof Date, 'started_at set by the claim');

  const digest = 'd'.repeat(64);
  const pinned = await newExecution('scheduled', {
    pack_release: ids.release, pack_release_digest: digest, executable_snapshot: JSON.stringify({ release: { id: ids.release, digest } }),
  });
  for (const wrong of [{ releaseId: ids.release + 1000, releaseDigest: null }, { releaseId: null, releaseDigest: 'e'.repeat(64) }, { releaseId: -1, releaseDigest: digest }]) {
    const r = await claim(db.pool, pinned, wrong);
    assert.equal(r!.claimed, false, JSON.stringify(wrong));
    assert.equal(await currentStatus(db.pool, pinned), 'scheduled');
  }
  const right = await claim(db.pool, pinned, { releaseId: ids.release, releaseDigest: digest });
  assert.equal(right!.claimed, true);
  assert.equal(right!.execution.pack_release_digest, digest);

  for (const status of ['canceling', 'completed', 'requested']) {
    const e = await newExecution(status);
    const r = await claim(db.pool, e, none);
    assert.equal(r!.claimed, status === 'requested', status);
    assert.equal(r!.execution.status, status);
  }
  assert.equal(await claim(db.pool, 999_999, none), null);
});

test('writeTerminal writes status + result and returns what the completion message needs', async () => {
  const id = await newExecution('scheduled');
  await claimWithContext(db.pool, id, { releaseId: null, releaseDigest: null }, false);
  const result = { succeeded: false, exit_code: 2, error: 'Command exited with code 2', data: [1, 'two'] };
  const w = await writeTerminal(db.pool, id, 'failed', result);
  assert.ok(w);
  assert.equal(w.id, id);
  assert.equal(w.action, ids.action);
  assert.equal(w.action_ref, 'mypack.hello');
  assert.equal(w.status, 'failed');
  assert.equal(w.previous_status, 'running');
  assert.deepEqual(w.result, result, 'arrays inside result survive as JSON');
  assert.ok(w.started_at instanceof Date);
  assert.equal(await currentStatus(db.pool, id), 'failed');
  assert.equal(await currentStatus(db.pool, 999_999), null);
  assert.equal(await writeTerminal(db.pool, 999_999, 'completed', {}), null);
  const arr = await writeTerminal(db.pool, id, 'completed', [1, 2]);
  assert.deepEqual(arr?.result, [1, 2], 'a top-level array is stored as JSON, not a PG array');
});

test('the spooled terminal write moves a row only from running/canceling and never over a newer status', async () => {
  const running = await newExecution('running');
  const canceling = await newExecution('canceling');
  const done = await newExecution('cancelled', { result: JSON.stringify({ by: 'operator' }) });
  const reset = await newExecution('scheduled');
  const w = await writeSpooledTerminal(db.pool, running, 'completed', { succeeded: true, stdout: 'x' });
  assert.deepEqual(w, { written: true, already: false, previous_status: 'running', action: ids.action, action_ref: 'mypack.hello' });
  assert.equal((await writeSpooledTerminal(db.pool, canceling, 'completed', { succeeded: true })).written, true);
  assert.deepEqual((await writeSpooledTerminal(db.pool, running, 'failed', { succeeded: false })), { written: false, already: false, previous_status: 'completed', action: ids.action, action_ref: 'mypack.hello' }, 'another result does not overwrite');
  // The same result again: the first write committed (its answer lost); the replay must still announce it.
  assert.deepEqual((await writeSpooledTerminal(db.pool, running, 'completed', { stdout: 'x', succeeded: true })), { written: false, already: true, previous_status: 'completed', action: ids.action, action_ref: 'mypack.hello' });
  assert.equal((await writeSpooledTerminal(db.pool, done, 'completed', {})).previous_status, 'cancelled');
  assert.equal((await writeSpooledTerminal(db.pool, reset, 'completed', {})).written, false);
  assert.deepEqual(await writeSpooledTerminal(db.pool, 987654321, 'completed', {}), { written: false, already: false, previous_status: null, action: null, action_ref: null });
  assert.equal((await writeSpooledTerminal(db.pool, done, 'cancelled', { by: 'someone else' })).already, false);
  const rows = new Map((await db.pool.query('SELECT id, status::text AS status, result FROM execution WHERE id = ANY($1)', [[running, done, reset]])).rows.map((r) => [r.id, r]));
  assert.deepEqual([rows.get(running).status, rows.get(running).result], ['completed', { succeeded: true, stdout: 'x' }]);
  assert.deepEqual([rows.get(done).status, rows.get(done).result], ['cancelled', { by: 'operator' }]);
  assert.equal(rows.get(reset).status, 'scheduled');
});
