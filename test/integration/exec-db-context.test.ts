/**
 * loadActionContext (one round trip) answers exactly what loadAction + loadRuntime +
 * listRuntimeVersions answer one after the other, in every case the execution pipeline meets.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../helpers/pg.ts';
import { listRuntimeVersions, loadAction, loadActionContext, loadRuntime } from '../../src/db/executions.ts';

let db: TestDatabase;
const ids: Record<string, number> = {};

before(async () => {
  db = await createTestDatabase('exec_db_context');
  const q = async (sql: string, v: unknown[] = []) => Number((await db.pool.query(sql, v)).rows[0].id);
  const pack = await q(`INSERT INTO pack (ref, label, version) VALUES ('p', 'P', '1.0.0') RETURNING id`);
  ids.runtime = await q(`INSERT INTO runtime (ref, name, aliases, execution_config) VALUES ('core.python', 'Python', ARRAY['python','python3'], '{"interpreter":{"binary":"python3","args":["-u"],"file_extension":".py"}}') RETURNING id`);
  ids.bare = await q(`INSERT INTO runtime (ref, name) VALUES ('core.bare', 'Bare') RETURNING id`);
  await db.pool.query(
    `INSERT INTO runtime_version (runtime, runtime_ref, version, version_major, version_minor, version_patch, is_default, verified_at, execution_config, meta)
     VALUES ($1, 'core.python', '3.12.1', 3, 12, 1, false, now(), '{"interpreter":{"binary":"python3.12"}}', '{"k":[1]}'),
            ($1, 'core.python', '3.11.2', 3, 11, 2, true, NULL, '{}', '{}')`, [ids.runtime]);
  await db.pool.query(`INSERT INTO runtime_version (runtime, runtime_ref, version, retired_at) VALUES ($1, 'core.python', '2.7.18', now())`, [ids.runtime]);
  const action = (ref: string, runtime: number | null) =>
    q(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint, runtime, timeout_seconds, param_schema) VALUES ($1, $2, 'p', $1, 'a.py', $3, 30, '{"type":"object"}') RETURNING id`, [ref, pack, runtime]);
  ids.withRuntime = await action('p.with_runtime', ids.runtime);
  ids.bareRuntime = await action('p.bare_runtime', ids.bare);
  ids.noRuntime = await action('p.no_runtime', null);
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
    { id: ids.withRuntime, ref: 'p.with_runtime' },
    { id: ids.bareRuntime, ref: 'p.bare_runtime' },
    { id: ids.noRuntime, ref: 'p.no_runtime' },
    { id: null, ref: 'p.with_runtime' }, // no action id on the execution: by ref
    { id: 999_999, ref: 'p.with_runtime' }, // the id is gone (pack reinstalled): by ref
    { id: ids.withRuntime, ref: 'p.other' }, // the id wins over the ref
    { id: 999_999, ref: 'p.missing' },
  ];
  for (const key of keys) {
    const one = await loadActionContext(db.pool, key);
    assert.deepEqual(one, await sequential(key), JSON.stringify(key));
  }
  const c = await loadActionContext(db.pool, { id: ids.withRuntime, ref: 'p.with_runtime' });
  assert.deepEqual(c?.runtimeVersions.map((v) => v.version), ['3.12.1', '3.11.2'], 'live versions in id order');
  assert.ok(c?.runtimeVersions[0].verified_at instanceof Date);
});
