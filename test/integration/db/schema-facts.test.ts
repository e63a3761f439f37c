/**
 * The facts about Attune's schema that attune-agent depends on, asserted against a database built
 * from docker/dev/attune-schema.sql (which mirrors Attune's migrations; see
 * docs/attune-schema-notes.md). When the dev schema drifts from Attune on one of these points —
 * stricter or looser — a test here fails, instead of the agent silently relying on it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.ts';
import { ACTION_COLUMNS, EXECUTION_COLUMNS, RUNTIME_COLUMNS, RUNTIME_VERSION_COLUMNS } from '../../../src/db/executions.ts';
import { CATALOG_REVISION, CORE_RUNTIMES, seedCoreCatalog, versionComponents } from '../../fixtures/catalog/core-runtimes.ts';

let db: TestDatabase;
const SHA = 'ab'.repeat(32);

before(async () => {
  db = await createTestDatabase('schema_facts');
});
after(() => db?.drop());

const q = async <T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, v: unknown[] = []) => (await db.pool.query<T>(sql, v)).rows;

/** Column-name lists of every unique index (constraints included) on `table`, sorted, partial ones marked. */
async function uniqueKeys(table: string): Promise<string[]> {
  const rows = await q<{ cols: string; partial: boolean }>(
    `SELECT string_agg(a.attname, ',' ORDER BY k.ord) AS cols, i.indpred IS NOT NULL AS partial
       FROM pg_index i
       JOIN pg_class t ON t.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = $2
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
      WHERE t.relname = $1 AND i.indisunique
      GROUP BY i.indexrelid, i.indpred`,
    [table, db.schema],
  );
  return rows.map((r) => (r.partial ? `${r.cols} WHERE…` : r.cols)).sort();
}

async function columns(table: string): Promise<Map<string, { type: string; nullable: boolean; default: string | null }>> {
  const rows = await q<{ column_name: string; udt_name: string; is_nullable: string; column_default: string | null }>(
    `SELECT column_name, udt_name, is_nullable, column_default FROM information_schema.columns
      WHERE table_schema = $2 AND table_name = $1 ORDER BY ordinal_position`,
    [table, db.schema],
  );
  return new Map(rows.map((r) => [r.column_name, { type: r.udt_name, nullable: r.is_nullable === 'YES', default: r.column_default }]));
}

async function constraintNames(table: string, kind: 'c' | 'f' | 'u'): Promise<string[]> {
  return (await q<{ conname: string }>(
    `SELECT c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $2 AND t.relname = $1 AND c.contype = $3 ORDER BY 1`,
    [table, db.schema, kind],
  )).map((r) => r.conname);
}

async function rejects(sql: string, v: unknown[], constraint: RegExp | string): Promise<void> {
  await assert.rejects(db.pool.query(sql, v), (e: Error & { constraint?: string }) => {
    const name = e.constraint ?? e.message;
    assert.match(name, typeof constraint === 'string' ? new RegExp(`^${constraint}$`) : constraint, `rejected for the wrong reason: ${e.message}`);
    return true;
  }, `expected ${sql} to be rejected by ${constraint}`);
}

describe('artifact / artifact_version / log_stream (log artifacts, docs/attune-compat.md §5.10)', () => {
  let artifactId: number;
  before(async () => {
    // 'days' retention, as the agent writes by default: no version-count pruning in these tests
    artifactId = Number((await q<{ id: string }>(
      `INSERT INTO artifact (ref, scope, owner, type, classification, retention_policy, retention_limit)
       VALUES ('facts.act.stdout.log', 'action', 'facts.act', 'file_text', 'runtime_log', 'days', 7) RETURNING id`))[0].id);
  });

  test('artifact.ref is NOT unique: a plain index only, and two rows may share a ref', async () => {
    assert.deepEqual(await uniqueKeys('artifact'), ['id'], 'the only unique key of artifact is its primary key');
    const idx = await q<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'artifact' AND indexname = 'idx_artifact_ref'`, [db.schema]);
    assert.equal(idx.length, 1, 'idx_artifact_ref exists');
    assert.doesNotMatch(idx[0].indexdef, /UNIQUE/);
    await q(`INSERT INTO artifact (ref, type) VALUES ('facts.dup.stdout.log', 'file_text'), ('facts.dup.stdout.log', 'file_text')`);
    assert.equal(Number((await q<{ n: string }>(`SELECT count(*) AS n FROM artifact WHERE ref = 'facts.dup.stdout.log'`))[0].n), 2);
  });

  test('artifact has no execution column; artifact_version.execution is a plain BIGINT without FK', async () => {
    assert.equal((await columns('artifact')).has('execution'), false);
    assert.equal((await columns('artifact_version')).get('execution')?.type, 'int8');
    const fks = await q<{ def: string }>(
      `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = $1 AND t.relname = 'artifact_version' AND c.contype = 'f'`, [db.schema]);
    assert.deepEqual(fks.map((f) => f.def), ['FOREIGN KEY (artifact) REFERENCES artifact(id) ON DELETE CASCADE']);
    // a version may name an execution id that does not exist
    await q(`INSERT INTO artifact_version (artifact, version, execution) VALUES ($1, 900, 987654321)`, [artifactId]);
  });

  test('artifact_version: unique (artifact, version), as uq_artifact_version_artifact_version', async () => {
    assert.ok((await constraintNames('artifact_version', 'u')).includes('uq_artifact_version_artifact_version'));
    assert.ok((await uniqueKeys('artifact_version')).includes('artifact,version'));
    await q(`INSERT INTO artifact_version (artifact, version) VALUES ($1, 1)`, [artifactId]);
    await rejects(`INSERT INTO artifact_version (artifact, version) VALUES ($1, 1)`, [artifactId], 'uq_artifact_version_artifact_version');
  });

  test('ck_artifact_version_object_metadata rejects what Attune rejects', async () => {
    const ins = (v: number, cols: Record<string, unknown>) => {
      const names = ['artifact', 'version', ...Object.keys(cols)];
      return [`INSERT INTO artifact_version (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})`, [artifactId, v, ...Object.values(cols)]] as [string, unknown[]];
    };
    const CK = 'ck_artifact_version_object_metadata';
    // legacy rows (no body state) carry no object metadata
    await rejects(...ins(10, { sha256: SHA }), CK);
    // pending and cleanup_claimed bodies have no size, digest or provider version yet
    await rejects(...ins(11, { body_state: 'pending', size_bytes: 0 }), CK);
    await rejects(...ins(12, { body_state: 'pending', sha256: SHA }), CK);
    await rejects(...ins(13, { body_state: 'cleanup_claimed', size_bytes: 5 }), CK);
    // ready bodies need size >= 0, a lowercase SHA-256 and either an object pointer or a file path
    await rejects(...ins(15, { body_state: 'ready', size_bytes: 1, sha256: SHA.toUpperCase(), file_path: 'a/b/v1.txt' }), CK);
    await rejects(...ins(16, { body_state: 'ready', size_bytes: 1, sha256: SHA }), CK);
    await rejects(...ins(17, { body_state: 'ready', size_bytes: -1, sha256: SHA, file_path: 'a/b/v1.txt' }), CK);
    await rejects(...ins(18, { body_state: 'ready', size_bytes: 1, sha256: SHA, object_key: 'k18' }), CK);
    // and accepts the shapes the agent writes: pending with a file path, then ready with size + digest
    await q(...ins(20, { body_state: 'pending', file_path: 'facts/act/stdout/log/v20.txt' }));
    await q(...ins(21, { body_state: 'pending', object_key: 'artifacts/x/v21' }));
    await q(...ins(22, { body_state: 'ready', size_bytes: 3, sha256: SHA, file_path: 'facts/act/stdout/log/v22.txt' }));
    await q(...ins(23, { body_state: 'cleanup_claimed' }));
    // Attune's CHECK is this loose too: a NULL sha256 makes the `ready` branch NULL, which a CHECK lets through
    await q(...ins(24, { body_state: 'ready', size_bytes: 1, file_path: 'a/b/v24.txt' }));
  });

  test('path-safety CHECKs (NOT VALID, enforced for new rows) on artifact.ref and artifact_version.file_path', async () => {
    const defs = await q<{ conname: string; convalidated: boolean }>(
      `SELECT c.conname, c.convalidated FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = $1 AND c.conname IN ('artifact_ref_path_safe', 'artifact_version_file_path_safe') ORDER BY 1`, [db.schema]);
    assert.deepEqual(defs, [{ conname: 'artifact_ref_path_safe', convalidated: false }, { conname: 'artifact_version_file_path_safe', convalidated: false }]);
    await rejects(`INSERT INTO artifact (ref, type) VALUES ('a/b', 'file_text')`, [], 'artifact_ref_path_safe');
    await rejects(`INSERT INTO artifact (ref, type) VALUES ('a..b', 'file_text')`, [], 'artifact_ref_path_safe');
    await rejects(`INSERT INTO artifact_version (artifact, version, file_path) VALUES ($1, 30, '/abs/v1.txt')`, [artifactId], 'artifact_version_file_path_safe');
    await rejects(`INSERT INTO artifact_version (artifact, version, file_path) VALUES ($1, 31, 'a/../v1.txt')`, [artifactId], 'artifact_version_file_path_safe');
  });

  test('body immutability trigger: a ready body cannot go back to pending nor change its digest', async () => {
    const id = Number((await q<{ id: string }>(`INSERT INTO artifact_version (artifact, version, body_state, file_path) VALUES ($1, 40, 'pending', 'x/v40.txt') RETURNING id`, [artifactId]))[0].id);
    const before = (await q<{ body_updated: Date }>(`SELECT body_updated FROM artifact_version WHERE id = $1`, [id]))[0].body_updated;
    await q(`UPDATE artifact_version SET body_state = 'ready', size_bytes = 0, sha256 = $2 WHERE id = $1`, [id, SHA]);
    const after = (await q<{ body_updated: Date }>(`SELECT body_updated FROM artifact_version WHERE id = $1`, [id]))[0].body_updated;
    assert.ok(after.getTime() >= before.getTime(), 'body_updated moves on a body_state change');
    await assert.rejects(q(`UPDATE artifact_version SET body_state = 'pending', size_bytes = NULL, sha256 = NULL WHERE id = $1`, [id]), /ready artifact body/);
    await assert.rejects(q(`UPDATE artifact_version SET sha256 = $2 WHERE id = $1`, [id, 'cd'.repeat(32)]), /ready artifact body metadata is immutable/);
  });

  test('retention trigger on pending → ready: the artifact takes the size of its newest ready version only', async () => {
    const a = Number((await q<{ id: string }>(`INSERT INTO artifact (ref, type, retention_policy, retention_limit) VALUES ('facts.ret.stdout.log', 'file_text', 'days', 7) RETURNING id`))[0].id);
    const v1 = Number((await q<{ id: string }>(`INSERT INTO artifact_version (artifact, version, body_state, file_path) VALUES ($1, 1, 'pending', 'r/v1.txt') RETURNING id`, [a]))[0].id);
    const v2 = Number((await q<{ id: string }>(`INSERT INTO artifact_version (artifact, version, body_state, file_path) VALUES ($1, 2, 'pending', 'r/v2.txt') RETURNING id`, [a]))[0].id);
    await q(`UPDATE artifact_version SET body_state = 'ready', size_bytes = 22, sha256 = $2 WHERE id = $1`, [v2, SHA]);
    assert.equal(Number((await q<{ s: string }>(`SELECT size_bytes AS s FROM artifact WHERE id = $1`, [a]))[0].s), 22);
    await q(`UPDATE artifact_version SET body_state = 'ready', size_bytes = 11, sha256 = $2 WHERE id = $1`, [v1, SHA]);
    assert.equal(Number((await q<{ s: string }>(`SELECT size_bytes AS s FROM artifact WHERE id = $1`, [a]))[0].s), 22, 'an older version sealing later does not overwrite the size');
  });

  test("'versions' retention prunes older NULL/ready versions on pending → ready, sparing shared-file log versions", async () => {
    const a = Number((await q<{ id: string }>(`INSERT INTO artifact (ref, type) VALUES ('facts.keep1.stdout.log', 'file_text') RETURNING id, retention_policy`))[0].id);
    assert.deepEqual((await q(`SELECT retention_policy::text, retention_limit FROM artifact WHERE id = $1`, [a]))[0], { retention_policy: 'versions', retention_limit: 1 }, 'the column defaults');
    const seal = async (v: number, shared: boolean) => {
      const id = Number((await q<{ id: string }>(`INSERT INTO artifact_version (artifact, version, body_state, file_path) VALUES ($1, $2, 'pending', $3) RETURNING id`, [a, v, `k/v${v}.txt`]))[0].id);
      if (shared) await q(`INSERT INTO log_stream (artifact_version, backend, max_unflushed_bytes, max_unflushed_milliseconds) VALUES ($1, 'shared_file', 1, 1)`, [id]);
      await q(`UPDATE artifact_version SET body_state = 'ready', size_bytes = 0, sha256 = $2 WHERE id = $1`, [id, SHA]);
    };
    await seal(1, false);
    await seal(2, false);
    assert.deepEqual((await q<{ version: number }>(`SELECT version FROM artifact_version WHERE artifact = $1 ORDER BY version`, [a])).map((r) => r.version), [2]);
    await seal(3, true);
    await seal(4, true);
    assert.deepEqual((await q<{ version: number }>(`SELECT version FROM artifact_version WHERE artifact = $1 ORDER BY version`, [a])).map((r) => r.version), [3, 4],
      'version 2 pruned; shared-file log versions 3 and 4 kept');
  });

  test('log_stream: one per artifact_version, backend enum, positive flush bounds', async () => {
    assert.ok((await uniqueKeys('log_stream')).includes('artifact_version'));
    assert.deepEqual((await q<{ v: string[] }>(`SELECT enum_range(NULL::log_stream_backend_enum)::text[] AS v`))[0].v, ['object_segments', 'shared_file']);
    const v = Number((await q<{ id: string }>(`INSERT INTO artifact_version (artifact, version, body_state, file_path) VALUES ($1, 50, 'pending', 'l/v50.txt') RETURNING id`, [artifactId]))[0].id);
    await rejects(`INSERT INTO log_stream (artifact_version, max_unflushed_bytes, max_unflushed_milliseconds) VALUES ($1, 0, 500)`, [v], /log_stream_max_unflushed_bytes_check/);
    const s = (await q<{ backend: string }>(`INSERT INTO log_stream (artifact_version, max_unflushed_bytes, max_unflushed_milliseconds) VALUES ($1, 1, 500) RETURNING backend::text`, [v]))[0];
    assert.equal(s.backend, 'object_segments', 'the column default; the agent must name shared_file');
    await rejects(`INSERT INTO log_stream (artifact_version, max_unflushed_bytes, max_unflushed_milliseconds) VALUES ($1, 1, 500)`, [v], 'log_stream_artifact_version_key');
  });

  test('enum values the log artifacts use', async () => {
    const range = async (t: string) => (await q<{ v: string[] }>(`SELECT enum_range(NULL::${t})::text[] AS v`))[0].v;
    assert.deepEqual(await range('artifact_body_state_enum'), ['pending', 'ready', 'deleting', 'cleanup_claimed']);
    assert.deepEqual(await range('artifact_classification_enum'), ['general', 'runtime_log']);
    assert.deepEqual(await range('artifact_retention_enum'), ['versions', 'days', 'hours', 'minutes']);
    assert.deepEqual(await range('owner_type_enum'), ['system', 'identity', 'pack', 'action', 'sensor']);
  });
});

describe('worker, execution, action, runtime (docs/attune-compat.md §3.3, §5.12)', () => {
  test('the ON CONFLICT targets the agent uses exist; artifact(ref) is not one of them', async () => {
    assert.ok((await uniqueKeys('worker')).includes('name'), 'worker.name UNIQUE');
    assert.ok((await uniqueKeys('runtime')).includes('ref'), 'runtime.ref UNIQUE');
    assert.ok((await uniqueKeys('execution_secret_value')).includes('entity_type,entity_id,json_path'));
    assert.ok((await uniqueKeys('runtime_version')).includes('runtime,version'));
    assert.equal((await uniqueKeys('artifact')).includes('ref'), false);
    await q(`INSERT INTO worker (name, worker_type, worker_role) VALUES ('facts-w', 'container', 'action')`);
    await rejects(`INSERT INTO worker (name, worker_type, worker_role) VALUES ('facts-w', 'local', 'action')`, [], 'worker_name_key');
  });

  test('enum values: execution status, worker type/role/status', async () => {
    const range = async (t: string) => (await q<{ v: string[] }>(`SELECT enum_range(NULL::${t})::text[] AS v`))[0].v;
    assert.deepEqual(await range('execution_status_enum'),
      ['requested', 'scheduling', 'scheduled', 'running', 'completed', 'failed', 'canceling', 'cancelled', 'timeout', 'abandoned']);
    assert.deepEqual(await range('worker_type_enum'), ['local', 'remote', 'container']);
    assert.deepEqual(await range('worker_role_enum'), ['action', 'sensor']);
    assert.deepEqual(await range('worker_status_enum'), ['active', 'inactive', 'busy', 'error']);
  });

  test('every column the agent selects exists', async () => {
    for (const [table, wanted] of [['execution', EXECUTION_COLUMNS], ['action', ACTION_COLUMNS], ['runtime', RUNTIME_COLUMNS], ['runtime_version', RUNTIME_VERSION_COLUMNS]] as const) {
      const have = await columns(table);
      assert.deepEqual(wanted.filter((c) => !have.has(c)), [], `${table} lacks columns the agent selects`);
    }
  });

  test('NOT NULL columns among those the agent reads from execution and action', async () => {
    const notNull = async (table: string, read: readonly string[]) => {
      const have = await columns(table);
      return read.filter((c) => have.get(c) && !have.get(c)!.nullable).sort();
    };
    assert.deepEqual(await notNull('execution', EXECUTION_COLUMNS),
      ['action_ref', 'created', 'id', 'permission_set_refs', 'retry_count', 'status', 'updated']);
    assert.deepEqual(await notNull('action', ACTION_COLUMNS),
      ['entrypoint', 'id', 'is_adhoc', 'output_format', 'pack', 'pack_ref', 'parameter_delivery', 'parameter_format', 'ref']);
    // and Attune's action requires a pack and a label, with no defaults
    const action = await columns('action');
    assert.deepEqual([action.get('pack'), action.get('label')].map((c) => [c?.nullable, c?.default]), [[false, null], [false, null]]);
  });

  test('runtime_version columns and types', async () => {
    const cols = await columns('runtime_version');
    assert.deepEqual([...cols].map(([name, c]) => `${name} ${c.type}${c.nullable ? '' : ' NOT NULL'}`), [
      'id int8 NOT NULL', 'runtime int8 NOT NULL', 'runtime_ref text NOT NULL', 'version text NOT NULL',
      'version_major int4', 'version_minor int4', 'version_patch int4',
      'execution_config jsonb NOT NULL', 'distributions jsonb NOT NULL', 'is_default bool NOT NULL', 'available bool NOT NULL',
      'verified_at timestamptz', 'meta jsonb NOT NULL', 'created timestamptz NOT NULL', 'updated timestamptz NOT NULL',
      'retired_at timestamptz', 'managed_release int8',
    ]);
  });

  test('runtime: distributions NOT NULL without default; platform ownership columns', async () => {
    const cols = await columns('runtime');
    assert.deepEqual([cols.get('distributions')?.nullable, cols.get('distributions')?.default], [false, null]);
    assert.deepEqual(['catalog_revision', 'managed_release', 'management_origin', 'retired_at'].filter((c) => !cols.has(c)), []);
    await rejects(`INSERT INTO runtime (ref, name) VALUES ('facts.nodist', 'X')`, [], /null value in column "distributions"|not-null/);
    const adhoc = (await q<{ management_origin: string }>(`INSERT INTO runtime (ref, name, distributions) VALUES ('facts.adhoc', 'X', '{}') RETURNING management_origin::text`))[0];
    assert.equal(adhoc.management_origin, 'ad_hoc');
    await assert.rejects(q(`INSERT INTO runtime (ref, name, distributions, catalog_revision) VALUES ('facts.platform', 'X', '{}', 1)`), /catalog reconciliation/);
  });

  test('one top-level execution per enforcement (retries excepted), a uniqueness the agent never writes', async () => {
    const enf = Number((await q<{ id: string }>(`INSERT INTO enforcement (rule_ref, trigger_ref, payload) VALUES ('facts.r', 'core.t', '{}') RETURNING id`))[0].id);
    await q(`INSERT INTO execution (action_ref, enforcement) VALUES ('facts.a', $1)`, [enf]);
    await rejects(`INSERT INTO execution (action_ref, enforcement) VALUES ('facts.a', $1)`, [enf], 'uq_execution_top_level_enforcement');
    await q(`INSERT INTO execution (action_ref, enforcement, config) VALUES ('facts.a', $1, '{"retry_of": 1}')`, [enf]);
  });

  test('enforcement.payload is NOT NULL without default', async () => {
    await rejects(`INSERT INTO enforcement (rule_ref, trigger_ref) VALUES ('facts.r', 'core.t')`, [], /null value in column "payload"|not-null/);
  });

  test('a status change notifies execution_status_changed and writes history and audit rows', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const got: string[] = [];
      listener.on('notification', (n) => { if (n.payload) got.push(n.payload); });
      await listener.query('LISTEN execution_status_changed');
      const id = Number((await q<{ id: string }>(`INSERT INTO execution (action_ref, status, trace_tag) VALUES ('facts.n', 'scheduled', 'tt') RETURNING id`))[0].id);
      await q(`UPDATE execution SET status = 'running' WHERE id = $1`, [id]);
      const deadline = Date.now() + 5000;
      while (!got.some((p) => JSON.parse(p).id === id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const p = got.map((x) => JSON.parse(x)).find((x) => x.id === id);
      assert.ok(p, 'notification received');
      assert.deepEqual([p.status, p.old_status, p.trace_tag, p.auth_mode], ['running', 'scheduled', 'tt', 'full']);
      const hist = await q<{ operation: string; changed_fields: string[] }>(`SELECT operation, changed_fields FROM execution_history WHERE entity_id = $1 ORDER BY time, operation`, [id]);
      assert.deepEqual(hist.map((h) => h.operation).sort(), ['INSERT', 'UPDATE']);
      const audit = await q<{ event_type: string }>(`SELECT event_type FROM audit_event WHERE resource_type = 'execution' AND resource_id = $1 ORDER BY id`, [id]);
      assert.deepEqual(audit.map((a) => a.event_type), ['execution.scheduled', 'execution.started']);
    } finally {
      await listener.end();
    }
  });

  test('updated triggers: worker.updated moves on UPDATE; a heartbeat-only update writes no worker_history row', async () => {
    const w = (await q<{ id: string; updated: Date }>(`INSERT INTO worker (name, worker_type, worker_role, status) VALUES ('facts-hb', 'local', 'action', 'active') RETURNING id, updated`))[0];
    await new Promise((r) => setTimeout(r, 5));
    await q(`UPDATE worker SET last_heartbeat = now() - interval '1 hour' WHERE id = $1`, [w.id]);
    const after = (await q<{ updated: Date }>(`SELECT updated FROM worker WHERE id = $1`, [w.id]))[0];
    assert.ok(after.updated.getTime() > w.updated.getTime());
    const hist = await q<{ operation: string }>(`SELECT operation FROM worker_history WHERE entity_id = $1`, [w.id]);
    assert.deepEqual(hist.map((h) => h.operation), ['INSERT']);
  });
});

describe('pack, action, pack_release CHECKs', () => {
  test('pack ref format and semver version; action ref is pack.name (one dot), lowercase', async () => {
    await rejects(`INSERT INTO pack (ref, label, version) VALUES ('p', 'P', '1.0.0')`, [], 'pack_ref_format');
    await rejects(`INSERT INTO pack (ref, label, version) VALUES ('factspack', 'P', '1.0')`, [], 'pack_version_semver');
    const pack = Number((await q<{ id: string }>(`INSERT INTO pack (ref, label, version) VALUES ('factspack', 'P', '1.0.0') RETURNING id`))[0].id);
    await rejects(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint) VALUES ('factspack.a.b', $1, 'factspack', 'A', 'a.sh')`, [pack], 'action_ref_format');
    await rejects(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint) VALUES ('factspack.A', $1, 'factspack', 'A', 'a.sh')`, [pack], 'action_ref_lowercase');
    await rejects(`INSERT INTO action (ref, pack, pack_ref, label, entrypoint, output_format) VALUES ('factspack.x', $1, 'factspack', 'A', 'a.sh', 'xml')`, [pack], 'action_output_format_check');
    const a = (await q<{ parameter_delivery: string; parameter_format: string; output_format: string; management_origin: string }>(
      `INSERT INTO action (ref, pack, pack_ref, label, entrypoint) VALUES ('factspack.ok', $1, 'factspack', 'A', 'a.sh')
       RETURNING parameter_delivery, parameter_format, output_format, management_origin::text`, [pack]))[0];
    assert.deepEqual(a, { parameter_delivery: 'stdin', parameter_format: 'json', output_format: 'text', management_origin: 'pack' });
  });

  test('pack_release: archive_size and manifest have no defaults; digest is lowercase SHA-256', async () => {
    const pack = Number((await q<{ id: string }>(`INSERT INTO pack (ref, label, version) VALUES ('relpack', 'R', '1.0.0') RETURNING id`))[0].id);
    await rejects(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path) VALUES ($1, 'relpack', '1.0.0', $2, '/x')`, [pack, SHA], /null value in column "(archive_size|manifest)"|not-null/);
    await rejects(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest) VALUES ($1, 'relpack', '1.0.0', 'XYZ', '/x', 0, '{}')`, [pack], 'pack_release_digest_sha256');
    await q(`INSERT INTO pack_release (pack, pack_ref, version, digest, content_path, archive_size, manifest) VALUES ($1, 'relpack', '1.0.0', $2, '/x', 0, '{}')`, [pack, SHA]);
  });
});

describe("the core catalog as Attune's reconciliation stores it", () => {
  test('seedCoreCatalog: platform-owned runtimes, python 3.11/3.12*/3.13 and node 18/20*/22 with their own execution_config', async () => {
    const seeded = await seedCoreCatalog(db.pool);
    assert.deepEqual(Object.keys(seeded.runtimes), CORE_RUNTIMES.map((r) => r.ref));
    const rows = await q<{ ref: string; pack: string | null; pack_ref: string | null; catalog_revision: number; management_origin: string }>(
      `SELECT ref, pack, pack_ref, catalog_revision, management_origin::text FROM runtime WHERE ref LIKE 'core.%' ORDER BY ref`);
    assert.equal(rows.length, CORE_RUNTIMES.length);
    for (const r of rows) assert.deepEqual([r.pack, r.pack_ref, r.catalog_revision, r.management_origin], [null, null, CATALOG_REVISION, 'platform'], r.ref);
    const py = await q<{ version: string; is_default: boolean; version_major: number; version_minor: number; version_patch: number | null; binary: string; venv: string[]; ip: string }>(
      `SELECT version, is_default, version_major, version_minor, version_patch, execution_config->'interpreter'->>'binary' AS binary,
              ARRAY(SELECT jsonb_array_elements_text(execution_config->'environment'->'create_command')) AS venv,
              execution_config->'environment'->>'interpreter_path' AS ip
         FROM runtime_version WHERE runtime_ref = 'core.python' ORDER BY version`);
    assert.deepEqual(py.map((v) => [v.version, v.is_default, v.version_major, v.version_minor, v.version_patch, v.binary, v.venv[0], v.ip]), [
      ['3.11', false, 3, 11, null, 'python3.11', 'python3.11', '{env_dir}/bin/python3.11'],
      ['3.12', true, 3, 12, null, 'python3.12', 'python3.12', '{env_dir}/bin/python3.12'],
      ['3.13', false, 3, 13, null, 'python3.13', 'python3.13', '{env_dir}/bin/python3.13'],
    ]);
    const node = await q<{ version: string; is_default: boolean; env_type: string; node_path: string; version_minor: number | null }>(
      `SELECT version, is_default, version_minor, execution_config->'environment'->>'env_type' AS env_type, execution_config->'env_vars'->>'NODE_PATH' AS node_path
         FROM runtime_version WHERE runtime_ref = 'core.nodejs' ORDER BY version`);
    assert.deepEqual(node.map((v) => [v.version, v.is_default, v.version_minor, v.env_type, v.node_path]), [
      ['18', false, null, 'node_modules', '{env_dir}/node_modules'], ['20', true, null, 'node_modules', '{env_dir}/node_modules'], ['22', false, null, 'node_modules', '{env_dir}/node_modules'],
    ]);
    // platform versions are guarded like Attune's: no change outside catalog reconciliation…
    await assert.rejects(q(`UPDATE runtime_version SET is_default = false WHERE runtime_ref = 'core.python' AND version = '3.12'`), /catalog reconciliation/);
    // …except host verification
    await q(`UPDATE runtime_version SET available = false, verified_at = now() WHERE runtime_ref = 'core.python' AND version = '3.13'`);
    // and seeding again is idempotent
    const again = await seedCoreCatalog(db.pool);
    assert.equal(again.runtimes['core.python'].versions['3.12'].id, seeded.runtimes['core.python'].versions['3.12'].id);
  });

  test('versionComponents fills only the components written, like Attune', () => {
    assert.deepEqual(versionComponents('3.11'), [3, 11, null]);
    assert.deepEqual(versionComponents('20'), [20, null, null]);
    assert.deepEqual(versionComponents('v3.12.1'), [3, 12, 1]);
    assert.deepEqual(versionComponents('nightly'), [null, null, null]);
  });
});

describe('pack_install and pack_test_execution, as the pack tests write them', () => {
  test('pack_install columns, the status CHECK (with activating) and no FK on pack_id / test_execution_id', async () => {
    const c = await columns('pack_install');
    assert.deepEqual([...c.keys()].sort(), [
      'absent_metadata_policy', 'assigned_worker_id', 'candidate_access_token_hash', 'error_message', 'finished_at', 'id', 'pack_id', 'pack_ref',
      'pack_version', 'requested_by', 'started_at', 'status', 'test_execution_id', 'test_result', 'trigger_reason', 'updated_at',
    ]);
    assert.deepEqual(['status', 'test_result', 'test_execution_id', 'finished_at', 'candidate_access_token_hash'].map((k) => [k, c.get(k)!.type, c.get(k)!.nullable]),
      [['status', 'text', false], ['test_result', 'jsonb', true], ['test_execution_id', 'int8', true], ['finished_at', 'timestamptz', true], ['candidate_access_token_hash', 'text', true]]);
    assert.deepEqual(await constraintNames('pack_install', 'f'), [], 'plain BIGINTs: the pack may be rolled back, the test row cascade-deleted');
    const insert = (status: string) => q(`INSERT INTO pack_install (pack_ref, pack_version, status, trigger_reason) VALUES ('p', '1', $1, 'install')`, [status]);
    for (const s of ['pending', 'running', 'activating', 'succeeded', 'failed', 'rolled_back']) await insert(s);
    await rejects(`INSERT INTO pack_install (pack_ref, pack_version, status, trigger_reason) VALUES ('p', '1', 'done', 'install')`, [], 'valid_pack_install_status_enum');
  });

  test('pack_test_execution: pass_rate DOUBLE PRECISION (20260818000001), version VARCHAR(50), trigger reason and count CHECKs, cascade from pack', async () => {
    const c = await columns('pack_test_execution');
    assert.deepEqual([...c.entries()].map(([k, v]) => [k, v.type, v.nullable]), [
      ['id', 'int8', false], ['pack_id', 'int8', false], ['pack_version', 'varchar', false], ['execution_time', 'timestamptz', false],
      ['trigger_reason', 'varchar', false], ['total_tests', 'int4', false], ['passed', 'int4', false], ['failed', 'int4', false], ['skipped', 'int4', false],
      ['pass_rate', 'float8', false], ['duration_ms', 'int8', false], ['result', 'jsonb', false], ['created', 'timestamptz', false],
    ]);
    assert.deepEqual(await constraintNames('pack_test_execution', 'c'), ['valid_pass_rate', 'valid_test_counts', 'valid_trigger_reason']);
    const pack = (await q<{ id: number }>(`INSERT INTO pack (ref, label, version) VALUES ('ptefacts', 'x', '1.0.0') RETURNING id`))[0].id;
    const ins = `INSERT INTO pack_test_execution (pack_id, pack_version, execution_time, trigger_reason, total_tests, passed, failed, skipped, pass_rate, duration_ms, result)
                 VALUES ($1, $2, now(), $3, 3, 2, 1, 0, $4, 5, '{}')`;
    await q(ins, [pack, '1.0.0', 'install', 2 / 3]);
    assert.equal((await q<{ pass_rate: number }>('SELECT pass_rate FROM pack_test_execution WHERE pack_id = $1', [pack]))[0].pass_rate, 2 / 3, 'an f64 round-trips exactly');
    await rejects(ins, [pack, '1.0.0', 'retest', 0.5], 'valid_trigger_reason');
    await rejects(ins, [pack, '1.0.0', 'install', 1.5], 'valid_pass_rate');
    await assert.rejects(q(ins, [pack, 'x'.repeat(51), 'install', 0.5]), /value too long for type character varying\(50\)/);
    await q('DELETE FROM pack WHERE id = $1', [pack]);
    assert.equal((await q('SELECT 1 FROM pack_test_execution WHERE pack_id = $1', [pack])).length, 0, 'ON DELETE CASCADE');
  });
});
