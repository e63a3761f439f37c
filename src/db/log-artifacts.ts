/**
 * Log artifacts (contract §5.10): what Attune's API and UI read to show an execution's output.
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

/** `mypack.deploy.stdout.log`, 3 → `mypack/deploy/stdout/log/v3.txt` (contract §5.10). */
export function logArtifactFilePath(ref: string, version: number): string {
  return `${ref.replaceAll('.', '/')}/v${version}.txt`;
}

interface ArtifactRow { id: string; ref: string; differs: boolean }

export async function allocateLogArtifacts(pool: pg.Pool, input: AllocateInput): Promise<LogAllocation> {
  const refs = STREAMS.map((s) => logArtifactRef(input.actionRef, s));
  const names = STREAMS.map((s) => `${input.actionRef} ${s}`);
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    // Existing rows are read first: the steady state (the action ran before, nothing changed) writes nothing.
    const wanted = `(t.scope, t.owner, t.type, t.visibility, t.classification, t.retention_policy, t.retention_limit, t.name, t.content_type)`;
    const columns = `'action'::owner_type_enum, $2::text, 'file_text'::artifact_type_enum, 'private'::artifact_visibility_enum,
                     'runtime_log'::artifact_classification_enum, $3::artifact_retention_enum, $4::int, x.name, 'text/plain'::text`;
    let rows = (await client.query<ArtifactRow>(
      `SELECT t.id, t.ref, ${wanted} IS DISTINCT FROM (${columns}) AS differs
         FROM artifact t JOIN unnest($1::text[], $5::text[]) AS x(ref, name) ON x.ref = t.ref`,
      [refs, input.actionRef, input.retentionPolicy, input.retentionLimit, names],
    )).rows;
    if (rows.length < refs.length || rows.some((r) => r.differs)) {
      rows = (await client.query<ArtifactRow>(
        `INSERT INTO artifact AS t (ref, scope, owner, type, visibility, classification, retention_policy, retention_limit, name, content_type)
         SELECT x.ref, ${columns} FROM unnest($1::text[], $5::text[]) AS x(ref, name)
         ON CONFLICT (ref) DO UPDATE SET scope = EXCLUDED.scope, owner = EXCLUDED.owner, type = EXCLUDED.type,
           visibility = EXCLUDED.visibility, classification = EXCLUDED.classification, retention_policy = EXCLUDED.retention_policy,
           retention_limit = EXCLUDED.retention_limit, name = EXCLUDED.name, content_type = EXCLUDED.content_type
         RETURNING t.id, t.ref, false AS differs`,
        [refs, input.actionRef, input.retentionPolicy, input.retentionLimit, names],
      )).rows;
    }
    const ids = refs.map((ref) => {
      const row = rows.find((r) => r.ref === ref);
      if (!row) throw new Error(`artifact ${ref} was neither found nor created`);
      return Number(row.id);
    });
    // Attune's lock for version numbers, taken in a statement of its own: the next statement's
    // snapshot must see versions committed while we waited. Ordered ids: no deadlock between workers.
    await client.query(
      `SELECT pg_advisory_xact_lock(hashtext('artifact_version'), hashtext(id::text)) FROM unnest($1::bigint[]) AS id ORDER BY id`,
      [[...ids].sort((a, b) => a - b)],
    );
    const versions = (await client.query<{ id: string; artifact: string; version: number; file_path: string }>(
      `WITH x AS (
         SELECT a.id AS artifact, a.stream, a.prefix,
                COALESCE((SELECT MAX(v.version) FROM artifact_version v WHERE v.artifact = a.id), 0) + 1 AS version
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS a(id, stream, prefix)
       ), ins AS (
         INSERT INTO artifact_version (artifact, version, execution, content_type, body_state, meta, created_by, file_path)
         SELECT x.artifact, x.version, $4, 'text/plain', 'pending', jsonb_build_object('stream', x.stream, 'execution_id', $4::bigint),
                'worker', x.prefix || '/v' || x.version || '.txt'
           FROM x
         RETURNING id, artifact, version, file_path
       ), streams AS (
         INSERT INTO log_stream (artifact_version, backend, max_unflushed_bytes, max_unflushed_milliseconds)
         SELECT id, 'shared_file', $5, $6 FROM ins
       )
       SELECT id, artifact, version, file_path FROM ins`,
      [ids, [...STREAMS], refs.map((r) => r.replaceAll('.', '/')), input.executionId, input.maxUnflushedBytes, input.maxUnflushedMs],
    )).rows;
    await client.query('COMMIT');
    const out = {} as LogAllocation;
    STREAMS.forEach((stream, i) => {
      const v = versions.find((r) => Number(r.artifact) === ids[i]);
      if (!v) throw new Error(`no artifact_version allocated for ${refs[i]}`);
      out[stream] = { stream, artifactId: ids[i], versionId: Number(v.id), version: v.version, filePath: v.file_path };
    });
    return out;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw e;
  } finally {
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
 * Seal both streams the way Attune's API seals a shared-file log (one statement): the stream gets
 * its total and `sealed`, the version becomes `ready` with size and digest (only from `pending`:
 * a body Attune already sealed or reclaimed is left alone), the artifact takes the size.
 */
export async function finalizeLogArtifacts(pool: pg.Pool, alloc: LogAllocation, ends: Record<LogStreamName, StreamEnd>): Promise<void> {
  await pool.query(
    `WITH x AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bool[], $4::text[]) AS x(version, bytes, truncated, sha256)),
     sealed AS (
       UPDATE log_stream l SET total_bytes = x.bytes, sealed = true, truncated = l.truncated OR x.truncated,
              sealed_at = COALESCE(l.sealed_at, NOW())
         FROM x WHERE l.artifact_version = x.version AND NOT l.sealed
     ),
     ready AS (
       UPDATE artifact_version v SET body_state = 'ready', size_bytes = x.bytes, sha256 = x.sha256
         FROM x WHERE v.id = x.version AND v.body_state = 'pending'
       RETURNING v.artifact, x.bytes
     )
     UPDATE artifact a SET size_bytes = r.bytes FROM ready r WHERE a.id = r.artifact`,
    [STREAMS.map((s) => alloc[s].versionId), STREAMS.map((s) => ends[s].bytes), STREAMS.map((s) => ends[s].truncated), STREAMS.map((s) => ends[s].sha256)],
  );
}
