/**
 * The reads and writes of the execution pipeline (docs/attune-compat.md §5.1, §5.2, §5.12). Explicit column lists
 * everywhere: `execution` has a DB-only `workflow_def` column that must not be mapped blindly.
 * The worker writes only `status`, `result`, `started_at` and `updated`.
 */
import type { ActionRow, DispatchRelease, EnforcementRefs, ExecutionRow, ExecutionStatus, RuntimeRow, RuntimeVersionRow, StoredSecretValue, TerminalStatus } from '../model.ts';
import { prepared, type Queryable } from './pool.ts';
import { collectAfterLargeRelease } from '../native/memory.ts';

export const EXECUTION_COLUMNS = [
  'id', 'action', 'action_ref', 'pack_release', 'pack_release_digest', 'executable_snapshot', 'config', 'env_vars',
  'parent', 'enforcement', 'executor', 'permission_set_refs', 'artifact_retention_policy', 'artifact_retention_limit',
  'worker_selector', 'worker_tolerations', 'worker_affinity', 'worker', 'status', 'trace_tag', 'result', 'retry_count',
  'max_retries', 'retry_reason', 'original_execution', 'started_at', 'timeout_seconds', 'workflow_task', 'created', 'updated',
] as const;

export const ACTION_COLUMNS = [
  'id', 'ref', 'pack', 'pack_ref', 'entrypoint', 'runtime', 'runtime_version_constraint', 'param_schema', 'out_schema',
  'is_adhoc', 'parameter_delivery', 'parameter_format', 'output_format', 'timeout_seconds', 'log_retention_policy',
  'log_retention_limit',
] as const;

export const RUNTIME_COLUMNS = [
  'id', 'ref', 'pack', 'pack_ref', 'description', 'name', 'aliases', 'distributions', 'installation', 'installers',
  'execution_config', 'auto_detected', 'detection_config', 'retired_at', 'created', 'updated',
] as const;

export const RUNTIME_VERSION_COLUMNS = [
  'id', 'runtime', 'runtime_ref', 'version', 'version_major', 'version_minor', 'version_patch', 'execution_config',
  'distributions', 'is_default', 'available', 'verified_at', 'meta', 'retired_at', 'created', 'updated',
] as const;

/** The §5.12 columns ExecutionRow (model.ts) leaves out. */
export interface ExecutionRecord extends ExecutionRow {
  artifact_retention_policy: string | null;
  artifact_retention_limit: number | null;
  worker_selector: unknown;
  worker_tolerations: unknown;
  worker_affinity: unknown;
  retry_count: number;
  max_retries: number | null;
  retry_reason: string | null;
  original_execution: number | null;
  created: Date;
  updated: Date;
}

export interface RuntimeRecord extends RuntimeRow {
  installers: unknown;
  retired_at: Date | null;
}

export interface RuntimeVersionRecord extends RuntimeVersionRow {
  version_major: number | null;
  version_minor: number | null;
  version_patch: number | null;
  distributions: unknown;
  verified_at: Date | null;
  meta: unknown;
  retired_at: Date | null;
}

/** Statuses a dispatch may move to `running` (the executor's own states). */
export const CLAIMABLE_STATUSES: readonly ExecutionStatus[] = ['requested', 'scheduling', 'scheduled'];

const cols = (c: readonly string[], alias = '') => c.map((x) => alias + x).join(', ');

export async function loadExecution(db: Queryable, id: number): Promise<ExecutionRecord | null> {
  const { rows } = await db.query<ExecutionRecord>(`SELECT ${cols(EXECUTION_COLUMNS)} FROM execution WHERE id = $1`, [id]);
  return rows[0] ?? null;
}

export interface ActionContext {
  action: ActionRow;
  runtime: RuntimeRecord | null;
  /** Live versions of `runtime`, in id order (empty without a runtime). */
  runtimeVersions: RuntimeVersionRecord[];
}

const RV_DATE_COLUMNS = ['verified_at', 'retired_at', 'created', 'updated'] as const;

/** The SQL that selects an action's runtime (aliased `r.col`) and its live versions (`r.versions`), given `a.runtime`. */
const RUNTIME_SELECT = `${RUNTIME_COLUMNS.map((c) => `r.${c} AS "r.${c}"`).join(', ')},
            (SELECT COALESCE(json_agg(v ORDER BY v.id), '[]'::json)
               FROM (SELECT ${cols(RUNTIME_VERSION_COLUMNS)} FROM runtime_version WHERE runtime = r.id AND retired_at IS NULL) v) AS "r.versions"`;

/** An ActionContext from a row whose action columns are named `{prefix}col` and runtime ones `r.col`. */
function contextFromRow(row: Record<string, unknown>, prefix: string): ActionContext {
  const action = Object.fromEntries(ACTION_COLUMNS.map((c) => [c, row[prefix + c]])) as unknown as ActionRow;
  if (row['r.id'] === null || row['r.id'] === undefined) return { action, runtime: null, runtimeVersions: [] };
  const runtime = Object.fromEntries(RUNTIME_COLUMNS.map((c) => [c, row[`r.${c}`]])) as unknown as RuntimeRecord;
  // json_agg gives timestamps as text; the rest (numbers, JSON, booleans) arrives as the row types would.
  const runtimeVersions = (row['r.versions'] as Record<string, unknown>[]).map((v) => {
    for (const c of RV_DATE_COLUMNS) if (typeof v[c] === 'string') v[c] = new Date(v[c] as string);
    return v as unknown as RuntimeVersionRecord;
  });
  return { action, runtime, runtimeVersions };
}

export async function loadRuntime(db: Queryable, id: number): Promise<RuntimeRecord | null> {
  const { rows } = await db.query<RuntimeRecord>(`SELECT ${cols(RUNTIME_COLUMNS)} FROM runtime WHERE id = $1`, [id]);
  return rows[0] ?? null;
}

/** Live (not retired) versions of a runtime, in id order; choosing one is the caller's job. */
export async function listRuntimeVersions(db: Queryable, runtimeId: number): Promise<RuntimeVersionRecord[]> {
  const { rows } = await db.query<RuntimeVersionRecord>(
    `SELECT ${cols(RUNTIME_VERSION_COLUMNS)} FROM runtime_version WHERE runtime = $1 AND retired_at IS NULL ORDER BY id`,
    [runtimeId],
  );
  return rows;
}


/**
 * The claim's common part ($1 id, $2 claimable statuses, $3 release id, $4 release digest): `prev`
 * is the row under its lock as it was, `upd` moves it to `running` only from a claimable status and
 * when it is pinned to no other release than the dispatch names.
 */
const CLAIM_CTES = `prev AS (SELECT ${cols(EXECUTION_COLUMNS)} FROM execution WHERE id = $1 FOR UPDATE),
          upd AS (UPDATE execution e SET status = 'running', started_at = now(), updated = now()
                    FROM prev WHERE e.id = prev.id AND prev.status = ANY($2::execution_status_enum[])
                     AND ($3::bigint IS NULL OR prev.pack_release IS NULL OR prev.pack_release = $3)
                     AND ($4::text IS NULL OR prev.pack_release_digest IS NULL OR prev.pack_release_digest = '' OR prev.pack_release_digest = $4)
                  RETURNING e.started_at)`;

function claimParams(id: number, release: DispatchRelease, from: readonly ExecutionStatus[]): unknown[] {
  return [id, from, release.releaseId, release.releaseDigest === '' ? null : release.releaseDigest];
}

export interface ClaimWithContext {
  /** The row as it was before this call (under the row lock). */
  execution: ExecutionRecord;
  /** True when this call moved the row to `running`. */
  claimed: boolean;
  /** What loadActionContext({ id: execution.action, ref: execution.action_ref }) gives, read in the same statement. */
  context: ActionContext | null;
  /** The refs of the execution's enforcement row, when it has one. */
  enforcement: EnforcementRefs | null;
  /** The execution's secret-backed parameters (execution_secret_value, `execution_config`); null when not read. */
  secrets: StoredSecretValue[] | null;
}

/**
 * The claim of a dispatch, in ONE statement: the row is read under its lock and moved to `running`
 * + `started_at` only when its status is claimable and it is pinned to no other release than the
 * dispatch names (service.ts explains a refusal from the row); two deliveries of one dispatch race
 * safely: exactly one claims it, the other sees `running`. Read along, everything the run needs
 * before it starts: the execution's action (by id, else — or when that id is gone — by ref), its
 * runtime and that runtime's live versions, the refs of its enforcement, and its stored secret
 * parameters (`withSecrets`: false on a schema without execution_secret_value, db/schema.ts).
 * The context is read even when the claim is refused (then unused), and for executions that carry
 * an executable snapshot (db/execution-store.ts prefers the snapshot's rows). Null when the
 * execution does not exist.
 */
export async function claimWithContext(db: Queryable, id: number, release: DispatchRelease, withSecrets: boolean): Promise<ClaimWithContext | null> {
  const secrets = withSecrets
    ? `(SELECT COALESCE(json_agg(s ORDER BY s.json_path), '[]'::json)
          FROM (SELECT json_path, encrypted_value, encryption_key_hash FROM execution_secret_value
                 WHERE entity_type = 'execution_config' AND entity_id = $1) s)`
    : 'NULL::json';
  const { rows } = await db.query<Record<string, unknown>>(prepared(withSecrets ? 'claim-with-context' : 'claim-with-context-no-secrets',
    `WITH ${CLAIM_CTES},
          a AS (
            SELECT ${cols(ACTION_COLUMNS)} FROM action WHERE id = (SELECT action FROM prev)
            UNION ALL
            SELECT ${cols(ACTION_COLUMNS)} FROM action WHERE ref = (SELECT action_ref FROM prev)
               AND NOT EXISTS (SELECT 1 FROM action WHERE id = (SELECT action FROM prev))
          ),
          ctx AS (
            SELECT ${ACTION_COLUMNS.map((c) => `a.${c} AS "a.${c}"`).join(', ')}, ${RUNTIME_SELECT}
              FROM a LEFT JOIN runtime r ON r.id = a.runtime LIMIT 1
          )
     SELECT prev.*, ctx.*, EXISTS (SELECT 1 FROM upd) AS claimed,
            ${secrets} AS secrets,
            (SELECT json_build_object('id', en.id, 'rule_ref', en.rule_ref, 'trigger_ref', en.trigger_ref)
               FROM enforcement en WHERE en.id = prev.enforcement) AS enforcement_refs
       FROM prev LEFT JOIN ctx ON true`,
    claimParams(id, release, CLAIMABLE_STATUSES),
  ));
  const r = rows[0];
  if (!r) return null;
  const execution = Object.fromEntries(EXECUTION_COLUMNS.map((c) => [c, r[c]])) as unknown as ExecutionRecord;
  return {
    execution,
    claimed: r.claimed as boolean,
    context: r['a.id'] === null || r['a.id'] === undefined ? null : contextFromRow(r, 'a.'),
    enforcement: (r.enforcement_refs as EnforcementRefs | null) ?? null,
    secrets: withSecrets ? (r.secrets as StoredSecretValue[]) : null,
  };
}

export interface TerminalWrite {
  id: number;
  action: number | null;
  action_ref: string;
  status: TerminalStatus;
  result: unknown;
  previous_status: ExecutionStatus;
  started_at: Date | null;
  updated: Date;
}

/**
 * The one terminal write (§5.2 step 7). Unconditional like Attune's (the worker's outcome is
 * authoritative); `previous_status` tells the caller what it replaced. Null when the row is gone.
 *
 * `result` in the answer is the value written, not the column read back: for JSON made by
 * JSON.stringify the stored jsonb is the same JSON value (jsonb only reorders object keys and drops
 * whitespace), and reading back a result with 10 MiB of captured output would cost another two
 * copies of it (the text on the wire and the parsed object) for nothing. A large result's copies
 * are collected right after the write (native/memory.ts).
 */
export async function writeTerminal(db: Queryable, id: number, status: TerminalStatus, result: unknown): Promise<TerminalWrite | null> {
  const { row, jsonLength } = await updateTerminal(db, id, status, result);
  // The JSON text and the driver's copies of it (wire buffers) are garbage now: they lived only in
  // updateTerminal's frame (a collection while a frame still holds them would keep them).
  collectAfterLargeRelease(jsonLength);
  return row ? { ...row, result: result === undefined ? null : result } : null;
}

async function updateTerminal(db: Queryable, id: number, status: TerminalStatus, result: unknown) {
  const json = result === undefined ? null : JSON.stringify(result);
  const { rows } = await db.query<Omit<TerminalWrite, 'result'>>(prepared('write-terminal',
    `WITH prev AS (SELECT id, status FROM execution WHERE id = $1 FOR UPDATE)
     UPDATE execution e SET status = $2::execution_status_enum, result = $3::jsonb, updated = now()
       FROM prev WHERE e.id = prev.id
     RETURNING e.id, e.action, e.action_ref, e.status, prev.status AS previous_status, e.started_at, e.updated`,
    [id, status, json],
  ));
  return { row: rows[0] as Omit<TerminalWrite, 'result'> | undefined, jsonLength: json?.length ?? 0 };
}

export interface SpooledWrite {
  /** True when this call wrote the result; false when the row had moved on (or is gone). */
  written: boolean;
  /** The row's status before the call (null: no such row). */
  previous_status: ExecutionStatus | null;
  /**
   * Not written because the row already holds exactly this status and result: the first terminal
   * write committed but its answer was lost in a cut (the run gave up and spooled it). Its messages
   * were never published.
   */
  already: boolean;
  action: number | null;
  action_ref: string | null;
}

/**
 * The terminal write of a result kept in the result spool (worker/result-spool.ts), possibly long
 * after the run and by another agent: unlike writeTerminal it is conditional, and moves the row only
 * from `running` (or `canceling`: a cancel requested while the result waited) to the terminal
 * status. A row that is terminal already (an operator, Attune's supervisor, an earlier replay) or
 * was reset to an executor status keeps what it has: the answer says what was there, and whether
 * the row already holds this very result (`already`).
 */
export async function writeSpooledTerminal(db: Queryable, id: number, status: TerminalStatus, result: unknown): Promise<SpooledWrite> {
  const json = result === undefined ? null : JSON.stringify(result);
  const { rows } = await db.query<{ written: boolean; already: boolean; previous_status: ExecutionStatus; action: number | null; action_ref: string }>(prepared('write-spooled-terminal',
    `WITH prev AS (SELECT id, status, action, action_ref, result FROM execution WHERE id = $1 FOR UPDATE),
          upd AS (UPDATE execution e SET status = $2::execution_status_enum, result = $3::jsonb, updated = now()
                    FROM prev WHERE e.id = prev.id AND prev.status IN ('running', 'canceling')
                  RETURNING e.id)
     SELECT EXISTS (SELECT 1 FROM upd) AS written,
            (prev.status = $2::execution_status_enum AND prev.result IS NOT DISTINCT FROM $3::jsonb) AS already,
            prev.status AS previous_status, prev.action, prev.action_ref FROM prev`,
    [id, status, json],
  ));
  collectAfterLargeRelease(json?.length ?? 0);
  const r = rows[0];
  return r ? r : { written: false, already: false, previous_status: null, action: null, action_ref: null };
}
