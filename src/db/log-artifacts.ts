/**
 * Log artifacts (docs/attune-compat.md §5.10): what Attune's API and UI read to show an execution's output.
 *
 * Per execution, before the spawn: the action's two `artifact` rows (`{action_ref}.stdout.log`,
 * `{action_ref}.stderr.log`, shared by all its executions) are ensured, one new `artifact_version`
 * each is allocated (version = max+1 under the advisory lock Attune uses) with
 * `file_path = {ref with dots as /}/v{N}.txt`, and one `log_stream` row each (backend `shared_file`:
 * the artifacts volume). The runner then appends the bounded output to
 * `{artifacts_dir}/{file_path}`. After the run the agent seals them as Attune's API does for a
 * shared-file stream (POST …/seal, which this agent cannot call: it has no API client): file
 * frozen read-only, stream `sealed` with its total (`truncated` when the cap cut the output),
 * version `ready` with size and SHA-256. Left `pending`, Attune's maintenance would delete them.
 */
import type pg from 'pg';
import { poolTimeouts, prepared } from './pool.ts';

export type LogStreamName = 'stdout' | 'stderr';

export interface LogVersion {
  stream: LogStreamName;
  artifactId: number;
  versionId: number;
  version: number;
  /** Relative to artifacts_dir. */
  filePath: string;
}

export type LogAllocation = Record<LogStreamName, LogVersion>;

export interface AllocateInput {
  executionId: number;
  actionRef: string;
  /** The action's log_retention_policy/limit, else the worker's execution_log_retention_* settings. */
  retentionPolicy: string;
  retentionLimit: number;
  /** log_stream.max_unflushed_bytes / max_unflushed_milliseconds (artifacts.log_segment_max_bytes, flush_interval_ms). */
  maxUnflushedBytes: number;
  maxUnflushedMs: number;
}

const STREAMS: readonly LogStreamName[] = ['stdout', 'stderr'];

export function logArtifactRef(actionRef: string, stream: LogStreamName): string {
  return `${actionRef}.${stream}.log`;
}

/** `mypack.deploy.stdout.log`, 3 → `mypack/deploy/stdout/log/v3.txt` (docs/attune-compat.md §5.10). */
export function logArtifactFilePath(ref: string, version: number): string {
  return `${ref.replaceAll('.', '/')}/v${version}.txt`;
}

/**
 * The statements of an allocation, PREPAREd once per connection (the names are this agent's).
 *
 * `artifact.ref` is NOT unique in Attune's schema (a plain index): several rows may share a ref
 * (two workers that both found none and both inserted, or rows made through Attune's API). Like
 * Attune's worker (find by ref, create when missing), the agent never relies on a uniqueness the
 * schema lacks: the action's row for a stream is the OLDEST row with that ref (lowest id — what
 * Attune's unordered lookup returns on a btree index in practice, and a choice every agent makes
 * the same way), and it is created only when no row has the ref. The lookup-or-create runs under
 * a transaction-scoped advisory lock on the refs (taken in ref order), so agents racing on an
 * action's first run create one row per ref, not two.
 */
const ALLOCATION_FIELDS = ['scope', 'owner', 'type', 'visibility', 'classification', 'retention_policy', 'retention_limit', 'name', 'content_type'];
const CHOSEN = `SELECT DISTINCT ON (a.ref) a.id, a.ref FROM artifact a WHERE a.ref IN ($1, $2) ORDER BY a.ref, a.id`;
const PREPARE_ALLOCATION = `
PREPARE attune_agent_log_ref_lock AS
SELECT pg_advisory_xact_lock(hashtext('artifact'), hashtext(r.ref)) FROM (SELECT DISTINCT ref FROM unnest(ARRAY[$1::text, $2::text]) AS u(ref) ORDER BY ref) r;
PREPARE attune_agent_log_create AS
INSERT INTO artifact (ref, ${ALLOCATION_FIELDS.join(', ')})
SELECT w.ref, 'action', $3, 'file_text', 'private', 'runtime_log', $4, $5, $3 || ' ' || w.stream, 'text/plain'
  FROM (VALUES ($1::text, 'stdout'), ($2::text, 'stderr')) AS w(ref, stream)
 WHERE NOT EXISTS (SELECT 1 FROM artifact a WHERE a.ref = w.ref);
PREPARE attune_agent_log_update AS
UPDATE artifact t SET (${ALLOCATION_FIELDS.join(', ')}) = ('action', $3, 'file_text', 'private', 'runtime_log', $4, $5, $3 || ' ' || w.stream, 'text/plain')
  FROM (${CHOSEN}) c JOIN (VALUES ($1::text, 'stdout'), ($2::text, 'stderr')) AS w(ref, stream) ON w.ref = c.ref
 WHERE t.id = c.id
   AND (${ALLOCATION_FIELDS.map((f) => `t.${f}`).join(', ')}) IS DISTINCT FROM ('action', $3, 'file_text', 'private', 'runtime_log', $4, $5, $3 || ' ' || w.stream, 'text/plain');
PREPARE attune_agent_log_lock AS
SELECT pg_advisory_xact_lock(hashtext('artifact_version'), hashtext(c.id::text)) FROM (${CHOSEN}) c ORDER BY c.id;
PREPARE attune_agent_log_versions AS
WITH x AS (
  SELECT c.id AS artifact, CASE WHEN c.ref = $1 THEN 'stdout' ELSE 'stderr' END AS stream, replace(c.ref, '.', '/') AS prefix,
         COALESCE((SELECT MAX(v.version) FROM artifact_version v WHERE v.artifact = c.id), 0) + 1 AS version
    FROM (${CHOSEN}) c
), ins AS (
  INSERT INTO artifact_version (artifact, version, execution, content_type, body_state, meta, created_by, file_path)
  SELECT x.artifact, x.version, $3::bigint, 'text/plain', 'pending',
         jsonb_build_object('stream', x.stream, 'execution_id', $3::bigint), 'worker', x.prefix || '/v' || x.version || '.txt'
    FROM x
  RETURNING id, artifact, version, file_path, meta->>'stream' AS stream
), streams AS (
  INSERT INTO log_stream (artifact_version, backend, max_unflushed_bytes, max_unflushed_milliseconds)
  SELECT id, 'shared_file', $4, $5 FROM ins
)
SELECT id, artifact, version, file_path, stream FROM ins;`;

/**
 * A text value as SQL that means the same bytes whatever the session's client_encoding,
 * standard_conforming_strings or backslash_quote: only hex digits travel in the statement.
 */
export function hexText(value: string): string {
  return `convert_from(decode('${Buffer.from(value, 'utf8').toString('hex')}', 'hex'), 'UTF8')`;
}

/** Pool connections that hold the PREPAREd allocation statements. */
const preparedOn = new WeakSet<pg.PoolClient>();

/**
 * One round trip: the whole allocation goes as one multi-statement simple query of EXECUTEs
 * (text values inlined as hex, see hexText) of statements PREPAREd once per connection — PostgreSQL
 * plans them once, not on every execution (planning was most of the cost) — so the advisory lock
 * still comes in a statement of its own: the next statement's snapshot sees versions other workers
 * (and Attune's API) committed while we waited. The artifact rows are created if missing and
 * updated only when their settings differ: an unchanged row is not locked (an upsert would lock
 * both rows until COMMIT, and with the seal's or Attune's own lock order that deadlocked).
 * Committed without waiting for the WAL flush (synchronous_commit off, as the seal): the run's
 * terminal write, synchronous and later, flushes the WAL past these rows before the run is
 * reported; a PostgreSQL crash before that can only lose log rows of a run that is then
 * recovered as failed anyway.
 * Every lock wait (Attune's advisory locks included) is bounded by database.log_lock_timeout: past
 * it the transaction fails with 55P03, is rolled back on the same connection (kept in the pool),
 * and the caller runs the action with plain log files instead of waiting.
 */
export async function allocateLogArtifacts(pool: pg.Pool, input: AllocateInput): Promise<LogAllocation> {
  for (const [name, n] of [['executionId', input.executionId], ['retentionLimit', input.retentionLimit], ['maxUnflushedBytes', input.maxUnflushedBytes], ['maxUnflushedMs', input.maxUnflushedMs]] as const) {
    if (!Number.isSafeInteger(n)) throw new Error(`log artifacts: ${name} must be an integer, got ${n}`);
  }
  // An enum label (artifact_retention_enum), checked here so it can travel as a plain literal.
  if (!/^[a-z_]{1,32}$/.test(input.retentionPolicy)) throw new Error(`log artifacts: retention policy ${JSON.stringify(input.retentionPolicy)} is not a retention policy name`);
  const client = await pool.connect();
  const [outRef, errRef] = STREAMS.map((s) => logArtifactRef(input.actionRef, s)).map(hexText);
  const sql = `
BEGIN;
SET LOCAL synchronous_commit TO off;
SET LOCAL lock_timeout TO ${poolTimeouts(pool).logLockTimeoutMs};
EXECUTE attune_agent_log_ref_lock(${outRef}, ${errRef});
EXECUTE attune_agent_log_create(${outRef}, ${errRef}, ${hexText(input.actionRef)}, '${input.retentionPolicy}', ${input.retentionLimit});
EXECUTE attune_agent_log_update(${outRef}, ${errRef}, ${hexText(input.actionRef)}, '${input.retentionPolicy}', ${input.retentionLimit});
EXECUTE attune_agent_log_lock(${outRef}, ${errRef});
EXECUTE attune_agent_log_versions(${outRef}, ${errRef}, ${input.executionId}, ${input.maxUnflushedBytes}, ${input.maxUnflushedMs});
COMMIT;`;
  let broken = false;
  // A checked-out client whose connection dies emits 'error' (pg does so even with a query in
  // flight); pg-pool listens only while the client is idle, so without this an outage would
  // crash the agent. The query in flight fails too, which is how the caller learns of it.
  const onConnectionError = () => {
    broken = true;
  };
  client.on('error', onConnectionError);
  try {
    if (!preparedOn.has(client)) {
      await client.query(PREPARE_ALLOCATION);
      preparedOn.add(client);
    }
    const results = (await client.query(sql)) as unknown as pg.QueryResult<{ id: string; artifact: string; version: number; file_path: string; stream: LogStreamName }>[];
    const versions = results[7].rows;
    const out = {} as LogAllocation;
    for (const stream of STREAMS) {
      const v = versions.find((r) => r.stream === stream);
      if (!v) throw new Error(`no artifact_version allocated for ${logArtifactRef(input.actionRef, stream)}`);
      out[stream] = { stream, artifactId: Number(v.artifact), versionId: Number(v.id), version: v.version, filePath: v.file_path };
    }
    return out;
  } catch (e) {
    // A failed statement leaves the transaction open and aborted: end it before the pool reuses the
    // connection. A failed PREPARE (an older schema) leaves some prepared and some not: this
    // connection is dropped rather than guessed about.
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    if (!preparedOn.has(client)) broken = true;
    throw e;
  } finally {
    client.removeListener('error', onConnectionError);
    client.release(broken);
  }
}

export interface StreamEnd {
  bytes: number;
  /** Lowercase hex SHA-256 of the file as sealed. */
  sha256: string;
  truncated: boolean;
}

/**
 * Seal both streams the way Attune's API seals a shared-file log: the stream gets its total and
 * `sealed`, the version becomes `ready` with size and digest (only from `pending`: a body Attune
 * already sealed or reclaimed is left alone), the artifact takes the size. One statement per
 * stream, so each holds the lock of ONE artifact row (shared by every run of the action): two
 * seals, or a seal and an allocation, can never wait for each other in a cycle. The artifact takes
 * the size only when this is its newest ready version (what Attune's own trigger does): a run
 * that seals after a newer one must not leave the artifact with a stale size. Committed without
 * waiting for the WAL flush: a PostgreSQL crash right after it leaves the log `pending`, which
 * Attune reclaims for finished executions.
 */
export async function finalizeLogArtifacts(pool: pg.Pool, alloc: LogAllocation, ends: Record<LogStreamName, StreamEnd>): Promise<void> {
  await Promise.all(STREAMS.map((s) => pool.query(prepared('finalize-log-stream',
    `WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)),
     sealed AS (
       UPDATE log_stream l SET total_bytes = $2, sealed = true, truncated = l.truncated OR $3, sealed_at = COALESCE(l.sealed_at, NOW())
        WHERE l.artifact_version = $1 AND NOT l.sealed
     ),
     ready AS (
       UPDATE artifact_version v SET body_state = 'ready', size_bytes = $2, sha256 = $4
        WHERE v.id = $1 AND v.body_state = 'pending'
       RETURNING v.artifact
     )
     UPDATE artifact a SET size_bytes = $2 FROM ready r, async_commit
      WHERE a.id = r.artifact
        AND NOT EXISTS (SELECT 1 FROM artifact_version newer
                         WHERE newer.artifact = r.artifact AND newer.id <> $1 AND newer.body_state = 'ready'
                           AND newer.version > (SELECT v.version FROM artifact_version v WHERE v.id = $1))`,
    [alloc[s].versionId, ends[s].bytes, ends[s].truncated, ends[s].sha256],
  ))));
}
