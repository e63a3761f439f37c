/**
 * claimWithContext (the claim statement that reads the run's rows along) answers exactly what
 * loadExecution, loadAction + loadRuntime + listRuntimeVersions, and findStoredSecretValues answer
 * one after the other, in every case the execution pipeline meets; the store built on it; the
 * schema probe.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { claimWithContext, listRuntimeVersions, loadExecution, loadRuntime } from '../../../src/db/executions.ts';
import { loadAction } from '../../helpers/db-reads.ts';
import { ENTITY_EXECUTION_CONFIG, findStoredSecretValues } from '../../../src/db/secret-values.ts';
import { probeSchema, schemaWarnings } from '../../../src/db/schema.ts';
import { pgExecutionStore } from '../../../src/db/execution-store.ts';
import pino from 'pino';

let db: TestDatabase;
const ids: Record<string, number> = {};

before(async () => {
  db = await createTestDatabase('exec_db_context');
  const q = async (sql: string, v: unknown[] = []) => Number((await db.pool.query(sql, v)).rows[0].id);
  const pack = await q(`INSERT INTO pack (ref, label, version) VALUES ('pk', 'P', '1.0.0') RETURNING id`);
  ids.runtime = await q(`INSERT INTO runtime (ref, name, aliases, distributions, execution_config) VALUES ('core.python', 'Python', ARRAY['python','python3'], '{}', '{"interpreter":{"binary":"python3","args":["-u"],"file_extension":".py"}}') RETURNING id`);
  ids.bare = await q(`INSERT INTO runtime (ref, name, distributions) VALUES ('core.bare', 'Bare', '{}') RETURNING id`);
  await db.pool.query(
    `INSERT INTO runtime_version (runtime, runtime_ref, version, version_major, version_minor, version_patch, is_default, verified_at, execution_config, meta)
     VALUES ($1, 'core.python', '3.12.1', 3, 12, 1, false, now(), '{"interpreter":{"binary":"python3.12"}}', '{"k":[1]}'),
            ($1, 'core.python', '3.11.2', 3, 11, 2, true, NULL, '{}', '{}')`, [ids.runtime]);
  await db.pool.query(`INSERT INTO runtime_version (runtime, runtime_ref, version, retired_at) VALUES ($1, 'core.python', '2.7.18', now())`, [ids.runtime]);
  const action = (ref: string, runtime: number | null) =>
    q(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, timeout_seconds, param_schema) VALUES ($1, $2, 'pk', $1, 'a.py', $3, 30, '{"type":"object"}') RETURNING id`, [ref, pack, runtime]);
  ids.withRuntime = await action('pk.with_runtime', ids.runtime);
  ids.bareRuntime = await action('pk.bare_runtime', ids.bare);
  ids.noRuntime = await action('pk.no_runtime', null);
});
after(() => db?.drop());

async function sequential(key: { id: number | null; ref: string }) {
  const action = await loadAction(db.pool, key);
  if (!action) return null;
  const runtime = action.runtime != null ? await loadRuntime(db.pool, action.runtime) : null;
  return { action, runtime, runtimeVersions: runtime ? await listRuntimeVersions(db.pool, runtime.id) : [] };
}

test('claimWithContext: the claimed row, its action context and secret parameters, as the separate reads give them', async () => {
  const none = { releaseId: null, releaseDigest: null };
  // An execution whose action row was deleted keeps its id only until ON DELETE SET NULL: null id, by ref.
  const cases: { action: number | null; ref: string }[] = [
    { action: ids.withRuntime, ref: 'pk.with_runtime' },
    { action: ids.bareRuntime, ref: 'pk.bare_runtime' },
    { action: ids.noRuntime, ref: 'pk.no_runtime' },
    { action: null, ref: 'pk.with_runtime' },
    { action: ids.withRuntime, ref: 'pk.other' },
    { action: null, ref: 'pk.missing' },
  ];
  for (const c of cases) {
    const id = Number((await db.pool.query(`INSERT INTO execution (action, action_ref, status, config) VALUES ($1, $2, 'scheduled', '{"x":1}') RETURNING id`, [c.action, c.ref])).rows[0].id);
    await db.pool.query(
      `INSERT INTO execution_secret_value (entity_type, entity_id, json_path, source_kind, source_ref, encrypted_value, encryption_key_hash)
       VALUES ('execution_config', $1, '/b', 'keystore', 'k.b', to_jsonb('cipher-b'::text), 'h'), ('execution_config', $1, '/a', 'keystore', 'k.a', to_jsonb('cipher-a'::text), NULL)`, [id]);
    const before = await loadExecution(db.pool, id);
    const claimed = await claimWithContext(db.pool, id, none, true);
    assert.ok(claimed?.claimed, JSON.stringify(c));
    assert.deepEqual(claimed.execution, before, 'the row as it was before the claim');
    assert.deepEqual(claimed.context, await sequential({ id: c.action, ref: c.ref }), JSON.stringify(c));
    assert.deepEqual(claimed.secrets, await findStoredSecretValues(db.pool, ENTITY_EXECUTION_CONFIG, id));
    assert.deepEqual(claimed.secrets?.map((x) => x.json_path), ['/a', '/b']);
    const again = await claimWithContext(db.pool, id, none, false);
    assert.equal(again?.claimed, false, 'claimed once');
    assert.equal(again?.secrets, null, 'not read when asked not to');
  }
  assert.equal(await claimWithContext(db.pool, 999_999, none, true), null);
  const id = Number((await db.pool.query(`INSERT INTO execution (action, action_ref, status) VALUES ($1, 'pk.with_runtime', 'scheduled') RETURNING id`, [ids.withRuntime])).rows[0].id);
  const c = (await claimWithContext(db.pool, id, none, true))?.context;
  assert.deepEqual(c?.runtimeVersions.map((v) => v.version), ['3.12.1', '3.11.2'], 'live versions in id order');
  assert.ok(c?.runtimeVersions[0].verified_at instanceof Date, 'timestamps as Dates, as the row reads give them');
});

test('the schema probe: the current schema has everything; older ones lack the secret table or the log streams', async () => {
  assert.deepEqual(await probeSchema(db.pool, 'attune'), { secretValues: true, logArtifacts: true });
  assert.ok(Object.isFrozen(await probeSchema(db.pool, 'attune')), 'a value passed down, never changed');
  const old = await createTestDatabase('exec_db_context_old');
  try {
    await old.pool.query('DROP TABLE execution_secret_value');
    const noSecrets = await probeSchema(old.pool, 'ATTUNE'); // folded like search_path
    assert.deepEqual(noSecrets, { secretValues: false, logArtifacts: true });
    assert.match(schemaWarnings(noSecrets).join('\n'), /no execution_secret_value table/);
    // Such a schema is claimed without the secrets, in one statement.
    const id = Number((await old.pool.query(`INSERT INTO execution (action_ref, status) VALUES ('pk.x', 'scheduled') RETURNING id`)).rows[0].id);
    const r = await claimWithContext(old.pool, id, { releaseId: null, releaseDigest: null }, noSecrets.secretValues);
    assert.equal(r?.claimed, true);
    assert.equal(r?.secrets, null);
    assert.equal((await old.pool.query('SELECT status::text FROM execution WHERE id = $1', [id])).rows[0].status, 'running');

    await old.pool.query('ALTER TABLE log_stream DROP COLUMN backend'); // before shared-file streams
    assert.deepEqual(await probeSchema(old.pool, 'attune'), { secretValues: false, logArtifacts: false });
    await old.pool.query('DROP TABLE log_stream, artifact_version, artifact'); // before log streams
    const oldest = await probeSchema(old.pool, 'attune');
    assert.deepEqual(oldest, { secretValues: false, logArtifacts: false });
    assert.match(schemaWarnings(oldest).join('\n'), /no artifact\/artifact_version\/log_stream tables/);
    assert.deepEqual(schemaWarnings(await probeSchema(db.pool, 'attune')), []);
  } finally {
    await old.drop();
  }
});

test('the store\'s claim: the rows a run needs in one statement (action, runtime, versions, enforcement, secrets); an executable snapshot wins where it has them', async () => {
  const store = pgExecutionStore(db.pool, await probeSchema(db.pool, 'attune'), pino({ level: 'silent' }));
  const none = { releaseId: null, releaseDigest: null };
  const enforcement = Number((await db.pool.query(`INSERT INTO enforcement (rule_ref, trigger_ref, payload) VALUES ('pk.on_tick', 'core.intervaltimer', '{}') RETURNING id`)).rows[0].id);
  const insert = async (extra: { snapshot?: unknown; enforcement?: number } = {}) =>
    Number((await db.pool.query(`INSERT INTO execution (action, action_ref, status, enforcement, executable_snapshot, pack_release_digest) VALUES ($1, 'pk.with_runtime', 'scheduled', $2, $3, $4) RETURNING id`,
      [ids.withRuntime, extra.enforcement ?? null, extra.snapshot === undefined ? null : JSON.stringify(extra.snapshot), extra.snapshot === undefined ? null : 'a'.repeat(64)])).rows[0].id);

  const plain = await store.claim(await insert({ enforcement }), none);
  assert.equal(plain?.claimed, true);
  assert.equal(plain.previous, 'scheduled');
  assert.equal(plain.rows?.action.ref, 'pk.with_runtime');
  assert.equal(plain.rows?.runtime?.id, ids.runtime);
  assert.deepEqual(plain.rows?.runtimeVersions.map((v) => v.version), ['3.12.1', '3.11.2']);
  assert.deepEqual(plain.rows?.enforcement, { id: enforcement, rule_ref: 'pk.on_tick', trigger_ref: 'core.intervaltimer' });
  assert.deepEqual(plain.rows?.secrets, []);
  const again = await store.claim(plain.execution.id, none);
  assert.equal(again?.claimed, false, 'a second delivery is refused');
  assert.equal(again.rows, null, 'nothing read for a refused claim');

  // The snapshot's action with another runtime: that runtime's row and versions are read.
  const snapAction = { ...plain.rows!.action, ref: 'pk.snapshotted', runtime: ids.bare };
  const snapped = await store.claim(await insert({ snapshot: { executable: { action: snapAction } } }), none);
  assert.equal(snapped?.rows?.action.ref, 'pk.snapshotted');
  assert.equal(snapped.rows?.runtime?.ref, 'core.bare');
  assert.deepEqual(snapped.rows?.runtimeVersions, []);
  assert.equal(snapped.rows?.enforcement, null);
  // The snapshot's runtime versions only: the claim's action and runtime, the snapshot's versions.
  const versions = [{ id: 1, runtime: ids.runtime, runtime_ref: 'core.python', version: '3.9.0', execution_config: {}, is_default: true, available: true }];
  const pinned = await store.claim(await insert({ snapshot: { executable: { runtime_versions: versions } } }), none);
  assert.equal(pinned?.rows?.runtime?.id, ids.runtime);
  assert.deepEqual(pinned.rows?.runtimeVersions, versions);
  assert.equal(await store.claim(999_999, none), null);
});
