/**
 * loadActionContext (one round trip) answers exactly what loadAction + loadRuntime +
 * listRuntimeVersions answer one after the other, in every case the execution pipeline meets; and
 * claimWithContext (the claim statement that reads them along) answers what loadExecution,
 * loadActionContext and findStoredSecretValues answer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { claimForRun, claimWithContext, listRuntimeVersions, loadAction, loadActionContext, loadExecution, loadRuntime } from '../../src/db/executions.ts';
import { ENTITY_EXECUTION_CONFIG, findStoredSecretValues } from '../../src/db/secret-values.ts';

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

test('same answers as the three sequential reads', async () => {
  const keys = [
    { id: ids.withRuntime, ref: 'pk.with_runtime' },
    { id: ids.bareRuntime, ref: 'pk.bare_runtime' },
    { id: ids.noRuntime, ref: 'pk.no_runtime' },
    { id: null, ref: 'pk.with_runtime' }, // no action id on the execution: by ref
    { id: 999_999, ref: 'pk.with_runtime' }, // the id is gone (pack reinstalled): by ref
    { id: ids.withRuntime, ref: 'pk.other' }, // the id wins over the ref
    { id: 999_999, ref: 'pk.missing' },
  ];
  for (const key of keys) {
    const one = await loadActionContext(db.pool, key);
    assert.deepEqual(one, await sequential(key), JSON.stringify(key));
  }
  const c = await loadActionContext(db.pool, { id: ids.withRuntime, ref: 'pk.with_runtime' });
  assert.deepEqual(c?.runtimeVersions.map((v) => v.version), ['3.12.1', '3.11.2'], 'live versions in id order');
  assert.ok(c?.runtimeVersions[0].verified_at instanceof Date);
});

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
    assert.deepEqual(claimed.context, await loadActionContext(db.pool, { id: c.action, ref: c.ref }), JSON.stringify(c));
    assert.deepEqual(claimed.secrets, await findStoredSecretValues(db.pool, ENTITY_EXECUTION_CONFIG, id));
    assert.deepEqual(claimed.secrets?.map((x) => x.json_path), ['/a', '/b']);
    const again = await claimWithContext(db.pool, id, none, false);
    assert.equal(again?.claimed, false, 'claimed once');
    assert.equal(again?.secrets, null, 'not read when asked not to');
  }
  assert.equal(await claimWithContext(db.pool, 999_999, none, true), null);
});

test('claimForRun on a schema without execution_secret_value: claims without the secrets, once and for all', async () => {
  const old = await createTestDatabase('exec_db_context_old');
  try {
    await old.pool.query('DROP TABLE execution_secret_value');
    const id = Number((await old.pool.query(`INSERT INTO execution (action_ref, status) VALUES ('pk.x', 'scheduled') RETURNING id`)).rows[0].id);
    const schema: { noSecretTable?: boolean } = {};
    const r = await claimForRun(old.pool, id, { releaseId: null, releaseDigest: null }, schema);
    assert.equal(r?.claimed, true, 'the failed first attempt committed nothing; the second claimed');
    assert.equal(r?.secrets, null);
    assert.equal(schema.noSecretTable, true);
    assert.equal((await old.pool.query('SELECT status::text FROM execution WHERE id = $1', [id])).rows[0].status, 'running');
  } finally {
    await old.drop();
  }
});
