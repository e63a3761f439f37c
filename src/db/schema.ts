/**
 * What this Attune schema has beyond the tables every version has (pool.ts REQUIRED_TABLES),
 * probed once at start (after verifyDatabase) into a frozen value that is passed down: nothing
 * learns it later from a failing statement. An older Attune has no execution_secret_value table
 * (secret parameters, docs/attune-compat.md §5.5, §5.9), or no log streams, or none on shared files (§5.10).
 */
import type { Queryable } from './pool.ts';

export interface SchemaCapabilities {
  /** execution_secret_value exists: secret parameters are restored and secret outputs stored. */
  readonly secretValues: boolean;
  /** artifact, artifact_version (with file_path) and log_stream (with backend) exist: logs become log artifacts. */
  readonly logArtifacts: boolean;
}

export async function probeSchema(db: Queryable, schema: string): Promise<SchemaCapabilities> {
  // to_regclass folds case like search_path does with the unquoted name (as verifyDatabase).
  const { rows } = await db.query<{ secret_values: boolean; log_artifacts: boolean }>(
    `WITH t AS (SELECT to_regclass($1 || '.execution_secret_value') AS secret_values, to_regclass($1 || '.artifact') AS artifact,
                       to_regclass($1 || '.artifact_version') AS artifact_version, to_regclass($1 || '.log_stream') AS log_stream),
          col AS (SELECT attrelid, attname FROM pg_attribute, t WHERE attrelid IN (t.artifact_version, t.log_stream) AND attnum > 0 AND NOT attisdropped)
     SELECT t.secret_values IS NOT NULL AS secret_values,
            t.artifact IS NOT NULL
            AND EXISTS (SELECT 1 FROM col WHERE attrelid = t.artifact_version AND attname = 'file_path')
            AND EXISTS (SELECT 1 FROM col WHERE attrelid = t.log_stream AND attname = 'backend') AS log_artifacts
       FROM t`,
    [schema],
  );
  return Object.freeze({ secretValues: rows[0].secret_values, logArtifacts: rows[0].log_artifacts });
}

/** What an operator reads at start about what the schema lacks (empty: nothing). */
export function schemaWarnings(c: SchemaCapabilities): string[] {
  const out: string[] = [];
  if (!c.secretValues) out.push('this Attune schema has no execution_secret_value table: secret parameters reach actions as their redaction markers, and actions with secret outputs fail');
  if (!c.logArtifacts) out.push('this Attune schema has no artifact/artifact_version/log_stream tables (or no shared-file log streams): execution logs are written as plain files (execution_{id}/), invisible to the UI');
  return out;
}
