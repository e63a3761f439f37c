/**
 * The runtime rows a `PackRegistered` names (its `runtime_names` are lower(runtime.name), as Attune
 * writes them), each with its live versions: what worker/pack-events.ts plans environments from;
 * and the one runtime by ref the pack tests plan their python from (worker/pack-tests.ts).
 */
import type { RuntimeRow, RuntimeVersionRow } from '../model.ts';
import type { Queryable } from './pool.ts';
import { RUNTIME_COLUMNS, RUNTIME_VERSION_COLUMNS } from './executions.ts';
import { collectRuntimeVersions, RUNTIME_VERSIONS_CAPABILITY_KEY, type VersionRowForVerify } from './version-verify.ts';

type RuntimeWithVersions = { runtime: RuntimeRow; versions: RuntimeVersionRow[] };

/** The runtime row with its live (not retired) versions, oldest first. */
async function withLiveVersions(db: Queryable, runtime: RuntimeRow): Promise<RuntimeWithVersions> {
  const v = await db.query<RuntimeVersionRow>(
    `SELECT ${RUNTIME_VERSION_COLUMNS.join(', ')} FROM runtime_version WHERE runtime = $1 AND retired_at IS NULL ORDER BY id`,
    [runtime.id],
  );
  return { runtime, versions: v.rows };
}

export async function loadRuntimesByName(db: Queryable, names: readonly string[]): Promise<RuntimeWithVersions[]> {
  if (names.length === 0) return [];
  const { rows } = await db.query<RuntimeRow>(
    `SELECT ${RUNTIME_COLUMNS.join(', ')} FROM runtime WHERE lower(name) = ANY($1::text[]) AND retired_at IS NULL ORDER BY id`,
    [names.map((n) => n.toLowerCase())],
  );
  const out: RuntimeWithVersions[] = [];
  for (const runtime of rows) out.push(await withLiveVersions(db, runtime));
  return out;
}

/** The live runtime row with this ref and its versions (Attune's prepare_python_test_runtime loads `core.python`), or null. */
export async function loadRuntimeByRef(db: Queryable, ref: string): Promise<RuntimeWithVersions | null> {
  const { rows } = await db.query<RuntimeRow>(`SELECT ${RUNTIME_COLUMNS.join(', ')} FROM runtime WHERE ref = $1 AND retired_at IS NULL`, [ref]);
  return rows[0] ? withLiveVersions(db, rows[0]) : null;
}

/**
 * Attune's `refresh_runtime_version_capabilities_for_registration`: every live runtime_version row
 * of the runtimes this worker runs is verified here (db/version-verify.ts), merged with the
 * detected versions, and written as the worker row's `capabilities.runtime_versions` (only that
 * key: the rest of the row's capabilities stays as registered). Returns the value written.
 */
export async function refreshRuntimeVersionsCapability(
  db: Queryable,
  workerId: number,
  runtimes: ReadonlySet<string>,
  detected: Readonly<Record<string, readonly string[]>>,
  env: Record<string, string>,
): Promise<Record<string, string[]>> {
  const { rows } = await db.query<VersionRowForVerify>(
    'SELECT runtime_ref, version, distributions, execution_config FROM runtime_version WHERE retired_at IS NULL ORDER BY id',
  );
  const value = await collectRuntimeVersions(rows, runtimes, detected, env);
  await db.query(
    `UPDATE worker SET capabilities = jsonb_set(COALESCE(capabilities, '{}'::jsonb), $2::text[], $3::jsonb), updated = now() WHERE id = $1`,
    [workerId, [RUNTIME_VERSIONS_CAPABILITY_KEY], JSON.stringify(value)],
  );
  return value;
}
